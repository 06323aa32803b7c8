namespace GpuCnn;

/// <summary>The public operations and their cores (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// sums[slot] = Σ x² in float, in an order fixed by the length alone (bitwise reproducible): one gradient tensor's
    /// squared L2 norm, the first half of clip_grad_norm_ (<see cref="ClipCoefficient"/>, <see cref="ScaleBy(DeviceTensor{float}, DeviceTensor{float})"/>; the list forms <see cref="SquaredNorms"/> and <see cref="ScaleBy(IReadOnlyList{DeviceTensor{float}}, DeviceTensor{float})"/> take every gradient at once).
    /// </summary>
    public void SquaredNorm(DeviceTensor<float> x, DeviceTensor<float> sums, int slot)
    {
        using var operation = EnterOperation();
        const string op = "SquaredNorm";
        Checks.Owned(op, nameof(x), x, this);
        Checks.Owned(op, nameof(sums), sums, this);
        if ((uint)slot >= (uint)sums.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(slot), slot, $"{op}: slot {slot} lies outside sums {sums.Shape}.");
        }

        SquaredNormCore(x, sums, slot);
    }

    /// <summary>
    /// torch.nn.utils.clip_grad_norm_'s coefficient from every gradient's squared norm (<paramref name="sums"/>, one per
    /// tensor): total = √(Σ sums) (added in slot order), coefficient[0] = min(1, maxNorm / (total + 1e-6)) — NaN when
    /// total is NaN, as torch.clamp keeps it, 0 when total is ∞ — and coefficient[1] = total. On the device: nothing
    /// waits.
    /// </summary>
    public void ClipCoefficient(DeviceTensor<float> sums, float maxNorm, DeviceTensor<float> coefficient)
    {
        using var operation = EnterOperation();
        const string op = "ClipCoefficient";
        Checks.Owned(op, nameof(sums), sums, this);
        Checks.Length(op, nameof(coefficient), coefficient, this, 2);
        if (!float.IsFinite(maxNorm) || maxNorm <= 0f)
        {
            throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{op}: the largest gradient norm must be finite and positive, got {maxNorm}."));
        }

        ClipCoefficientCore(sums, maxNorm, coefficient);
    }

    /// <summary>x *= coefficient[0], a scalar on the device (<see cref="ClipCoefficient"/>'s): nothing waits for it.</summary>
    public void ScaleBy(DeviceTensor<float> x, DeviceTensor<float> coefficient)
    {
        using var operation = EnterOperation();
        const string op = "ScaleBy";
        Checks.Owned(op, nameof(x), x, this);
        Checks.Owned(op, nameof(coefficient), coefficient, this);
        if (x.SharesStorageWith(coefficient))
        {
            throw new ArgumentException($"{op}: x and coefficient share storage; a GPU would read the coefficient while scaling it.", nameof(coefficient));
        }

        ScaleByCore(x, coefficient);
    }

    /// <summary>sums[slot] = Σ x²; arguments already checked.</summary>
    protected abstract void SquaredNormCore(DeviceTensor<float> x, DeviceTensor<float> sums, int slot);

    /// <summary>The clipping coefficient and total norm; arguments already checked.</summary>
    protected abstract void ClipCoefficientCore(DeviceTensor<float> sums, float maxNorm, DeviceTensor<float> coefficient);

    /// <summary>x *= coefficient[0]; arguments already checked.</summary>
    protected abstract void ScaleByCore(DeviceTensor<float> x, DeviceTensor<float> coefficient);
}
