namespace GpuCnn;

/// <summary>Dropout's public operation and core (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// Inverted dropout with a mask drawn from <paramref name="key"/>: y[i] = x[i]·(1/(1 − p)) where
    /// <see cref="Kernels.CounterRandom.Uniform"/>(key, i) ≥ p, else 0. The mask depends only on the key and the
    /// index, so the same call on dy gives the backward pass (dx = dy·mask/(1 − p)). y may be x.
    /// </summary>
    public void Dropout(DeviceTensor<float> x, DeviceTensor<float> y, float p, uint key)
    {
        using var operation = EnterOperation();
        const string op = "Dropout";
        if (!(p >= 0f && p < 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, $"{op}: p must lie in [0, 1), got {p}.");
        }

        Checks.Owned(op, nameof(x), x, this);
        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        DropoutCore(x, y, p, 1f / (1f - p), key);
    }

    /// <summary>y = x·scale where the key's uniform ≥ p, else 0; arguments already checked.</summary>
    protected abstract void DropoutCore(DeviceTensor<float> x, DeviceTensor<float> y, float p, float scale, uint key);
}
