using System.Numerics;
using System.Runtime.CompilerServices;

namespace GpuCnn.Cpu.Fast;

/// <summary>Add on the fast CPU backend, vectorised (compiled into GpuCnn.Engine.Cpu).</summary>
public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void AddCore(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y)
    {
        var left = Data(a).AsSpan(0, a.Length);
        var right = Data(b).AsSpan(0, b.Length);
        var sum = Data(y).AsSpan(0, y.Length);
        int i = 0;
        for (; i <= sum.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            (new Vector<float>(left[i..]) + new Vector<float>(right[i..])).CopyTo(sum[i..]);
        }

        for (; i < sum.Length; i++)
        {
            sum[i] = left[i] + right[i];
        }
    }
}
