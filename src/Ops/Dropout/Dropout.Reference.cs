using System.Numerics;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>The naive dropout (compiled into GpuCnn.Engine.Cpu).</summary>
internal static partial class ReferenceMath
{
    /// <summary>
    /// y[i] = x[i]·m[i], m[i] = scale where uniform(key, first + i) ≥ p, else 0 (inverted dropout, scale = 1/(1 − p)):
    /// a product, as PyTorch's input·mask, so a dropped NaN or ±∞ gives NaN rather than vanishing.
    /// </summary>
    public static void Dropout<T>(ReadOnlySpan<T> x, Span<T> y, float p, T scale, uint key, uint first = 0)
        where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = x[i] * (CounterRandom.Uniform(key, unchecked(first + (uint)i)) >= p ? scale : T.Zero);
        }
    }
}

/// <summary>Dropout on the reference backend.</summary>
public sealed partial class ReferenceBackend
{
    /// <inheritdoc/>
    protected override void DropoutCore(DeviceTensor<float> x, DeviceTensor<float> y, float p, float scale, uint key, uint first) =>
        ReferenceMath.Dropout<float>(Data(x), Data(y), p, scale, key, first);
}
