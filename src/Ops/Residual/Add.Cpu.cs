using System.Numerics;
using System.Runtime.CompilerServices;

namespace GpuCnn.Cpu.Fast;

/// <summary>Add on the fast CPU backend, vectorised and split across the team (compiled into GpuCnn.Engine.Cpu).</summary>
public sealed partial class CpuBackend
{
    private readonly AddWork _add = new();

    /// <inheritdoc/>
    protected override void AddCore(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y)
    {
        (_add.A, _add.B, _add.Y) = (Data(a), Data(b), Data(y));
        RunSplit(_add, y.Length);
    }

    /// <summary>y = a + b over a range.</summary>
    private sealed class AddWork : ISplitWork
    {
        public float[] A { get; set; } = [];

        public float[] B { get; set; } = [];

        public float[] Y { get; set; } = [];

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int count)
        {
            var left = A.AsSpan(start, count);
            var right = B.AsSpan(start, count);
            var sum = Y.AsSpan(start, count);
            int i = 0;
            for (; i <= count - Vector<float>.Count; i += Vector<float>.Count)
            {
                (new Vector<float>(left[i..]) + new Vector<float>(right[i..])).CopyTo(sum[i..]);
            }

            for (; i < count; i++)
            {
                sum[i] = left[i] + right[i];
            }
        }
    }
}
