using System.Numerics;

namespace GpuCnn.Cpu;

/// <summary>The naive FlagNonFinite (compiled into GpuCnn.Engine.Cpu).</summary>
internal static partial class ReferenceMath
{
    /// <summary>flags[slot] = 1 if any x is NaN or ±∞.</summary>
    public static void FlagNonFinite<T>(ReadOnlySpan<T> x, Span<T> flags, int slot)
        where T : IFloatingPointIeee754<T>
    {
        foreach (var v in x)
        {
            if (!T.IsFinite(v))
            {
                flags[slot] = T.One;
                return;
            }
        }
    }
}

/// <summary>FlagNonFinite on the host backends (the reference and the fast CPU backend share it: one pass, once per epoch).</summary>
public abstract partial class HostBackend
{
    /// <inheritdoc/>
    protected override void FlagNonFiniteCore(DeviceTensor<float> x, DeviceTensor<float> flags, int slot) =>
        ReferenceMath.FlagNonFinite<float>(Data(x), Data(flags), slot);
}
