using System.Numerics;
using System.Runtime.CompilerServices;

namespace GpuCnn.Cpu.Fast;

/// <summary>clip_grad_norm_'s norm and scaling on the fast CPU backend, a vector at a time (compiled into GpuCnn.Engine.Cpu).</summary>
public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    /// <remarks>
    /// Four vector accumulators (a sum's dependency chain is what limits a scalar loop: a LeNet-5's 61,706 weights took
    /// longer than its update), added in a fixed order, then the tail: the same bits run after run on one vector width.
    /// A tensor longer than <see cref="SumPiece"/> is summed so piece by piece, the pieces in double: a million squares
    /// of 0.1 in float lanes had come to 2e-5 off.
    /// </remarks>
    protected override void SquaredNormCore(DeviceTensor<float> x, DeviceTensor<float> sums, int slot)
    {
        int n = x.Length;
        double total = 0;
        fixed (float* px = Data(x))
        {
            for (int first = 0, length; first < n; first += length)
            {
                length = Math.Min(SumPiece, n - first);
                total += SquaredSum(px + first, length);
            }
        }

        Data(sums)[slot] = (float)total;
    }

    /// <summary>Σ px[i]² over one piece, in four vector accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float SquaredSum(float* px, int n)
    {
        int width = Vector<float>.Count, i = 0;
        Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (; i <= n - (4 * width); i += 4 * width)
        {
            var v0 = Vector.Load(px + i);
            var v1 = Vector.Load(px + i + width);
            var v2 = Vector.Load(px + i + (2 * width));
            var v3 = Vector.Load(px + i + (3 * width));
            s0 = Vector.FusedMultiplyAdd(v0, v0, s0);
            s1 = Vector.FusedMultiplyAdd(v1, v1, s1);
            s2 = Vector.FusedMultiplyAdd(v2, v2, s2);
            s3 = Vector.FusedMultiplyAdd(v3, v3, s3);
        }

        for (; i <= n - width; i += width)
        {
            var v = Vector.Load(px + i);
            s0 = Vector.FusedMultiplyAdd(v, v, s0);
        }

        float sum = Vector.Sum((s0 + s1) + (s2 + s3));
        for (; i < n; i++)
        {
            sum += px[i] * px[i];
        }

        return sum;
    }

    /// <inheritdoc/>
    protected override void ScaleByCore(DeviceTensor<float> x, DeviceTensor<float> coefficient)
    {
        float scale = Data(coefficient)[0];
        var scaleVector = new Vector<float>(scale);
        int n = x.Length, i = 0;
        fixed (float* px = Data(x))
        {
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            {
                (Vector.Load(px + i) * scaleVector).Store(px + i);
            }

            for (; i < n; i++)
            {
                px[i] *= scale;
            }
        }
    }
}
