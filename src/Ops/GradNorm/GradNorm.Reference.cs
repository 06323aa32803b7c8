using System.Numerics;

namespace GpuCnn.Cpu;

/// <summary>The naive clip_grad_norm_ (compiled into GpuCnn.Engine.Cpu).</summary>
internal static partial class ReferenceMath
{
    /// <summary>Σ x², in index order, each square added in double (in float a million squares of 0.1 lost 1.4 %).</summary>
    public static T SquaredNorm<T>(ReadOnlySpan<T> x)
        where T : IFloatingPointIeee754<T>
    {
        double sum = 0;
        foreach (var v in x)
        {
            sum += double.CreateChecked(v * v);
        }

        return T.CreateChecked(sum);
    }

    /// <summary>
    /// (min(1, maxNorm / (total + 1e-6)), total), total = √(Σ sums) in slot order: PyTorch's clip_grad_norm_, whose
    /// clamp keeps a NaN. PyTorch 1.13 divides a Python float by a tensor as the tensor's reciprocal times the float
    /// (Tensor.__rdiv__): two roundings, kept here so the coefficient has its bits.
    /// </summary>
    public static (T Coefficient, T Total) ClipCoefficient<T>(ReadOnlySpan<T> sums, T maxNorm)
        where T : IFloatingPointIeee754<T>
    {
        T squares = T.Zero;
        foreach (var s in sums)
        {
            squares += s;
        }

        T total = T.Sqrt(squares);
        T clip = (T.One / (total + T.CreateTruncating(1e-6))) * maxNorm; // PyTorch's float / tensor: reciprocal, then product
        return (clip > T.One ? T.One : clip, total);
    }
}

/// <summary>clip_grad_norm_ on the host backends (the fast CPU backend vectorises the norm and the scaling).</summary>
public abstract partial class HostBackend
{
    /// <inheritdoc/>
    protected override void SquaredNormCore(DeviceTensor<float> x, DeviceTensor<float> sums, int slot) =>
        Data(sums)[slot] = ReferenceMath.SquaredNorm<float>(Data(x));

    /// <inheritdoc/>
    protected override void ClipCoefficientCore(DeviceTensor<float> sums, float maxNorm, DeviceTensor<float> coefficient)
    {
        var (clip, total) = ReferenceMath.ClipCoefficient<float>(Data(sums), maxNorm);
        (Data(coefficient)[0], Data(coefficient)[1]) = (clip, total);
    }

    /// <inheritdoc/>
    protected override void ScaleByCore(DeviceTensor<float> x, DeviceTensor<float> coefficient)
    {
        float scale = Data(coefficient)[0];
        foreach (ref float v in Data(x))
        {
            v *= scale;
        }
    }
}
