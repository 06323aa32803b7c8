using System.Numerics;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>The naive Add (compiled into GpuCnn.Engine.Cpu).</summary>
internal static partial class ReferenceMath
{
    /// <summary>y = a + b elementwise (shapes equal; y may be a or b).</summary>
    public static void Add<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y)
        where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < a.Length; i++)
        {
            y[i] = a[i] + b[i];
        }
    }
}

/// <summary>Add on the reference backend.</summary>
public sealed partial class ReferenceBackend
{
    /// <inheritdoc/>
    protected override void AddCore<TF>(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y, TF activation)
    {
        ReferenceMath.Add<float>(Data(a), Data(b), Data(y));
        if (typeof(TF) != typeof(Identity))
        {
            ReferenceMath.ActivationForward<float, TF>(activation, Data(y), Data(y));
        }
    }
}
