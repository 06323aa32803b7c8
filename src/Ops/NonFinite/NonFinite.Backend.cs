namespace GpuCnn;

/// <summary>The public operation and its core (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// flags[slot] = 1 if <paramref name="x"/> holds any NaN or ±∞; otherwise flags is left as it was (start it at 0).
    /// On the device, so a trainer can watch every parameter with one small download per check.
    /// </summary>
    public void FlagNonFinite(DeviceTensor<float> x, DeviceTensor<float> flags, int slot)
    {
        using var operation = EnterOperation();
        const string op = "FlagNonFinite";
        Checks.Owned(op, nameof(x), x, this);
        Checks.Owned(op, nameof(flags), flags, this);
        if ((uint)slot >= (uint)flags.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(slot), slot, $"{op}: slot {slot} lies outside flags {flags.Shape}.");
        }

        FlagNonFiniteCore(x, flags, slot);
    }

    /// <summary>Sets flags[slot] when x is not all finite; arguments already checked.</summary>
    protected abstract void FlagNonFiniteCore(DeviceTensor<float> x, DeviceTensor<float> flags, int slot);
}
