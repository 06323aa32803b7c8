namespace GpuCnn;

/// <summary>Dropout's public operation and core (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// Inverted dropout with a mask drawn from <paramref name="key"/>: y[i] = x[i]·(1/(1 − p)) (rounded as PyTorch's,
    /// <see cref="InvertedScale"/>) where
    /// <see cref="Kernels.CounterRandom.Uniform"/>(key, first + i) ≥ p, else 0, where first = <paramref name="firstSample"/>
    /// · (elements per sample of x (N, …)): the position of x's first sample in the whole batch, so that ranks sharing
    /// a global batch draw what one process would (counters wrap modulo 2³²). The mask depends only on the key and the
    /// index, so the same call on dy gives the backward pass (dx = dy·mask/(1 − p)). y may be x.
    /// </summary>
    public void Dropout(DeviceTensor<float> x, DeviceTensor<float> y, float p, uint key, int firstSample = 0)
    {
        using var operation = EnterOperation();
        const string op = "Dropout";
        if (!(p >= 0f && p < 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{op}: p must lie in [0, 1), got {p}."));
        }

        Checks.Owned(op, nameof(x), x, this);
        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        if (firstSample < 0 || (firstSample > 0 && x.Shape.Rank == 0))
        {
            throw new ArgumentOutOfRangeException(nameof(firstSample), firstSample,
                $"{op}: firstSample must be ≥ 0, and 0 for a scalar x; got {firstSample} for x {x.Shape}.");
        }

        uint first = x.Shape.Rank == 0 || x.Shape[0] == 0 ? 0u : unchecked((uint)firstSample * (uint)(x.Length / x.Shape[0]));
        DropoutCore(x, y, p, InvertedScale(p), key, first);
    }

    /// <summary>
    /// PyTorch's scale 1/(1 − p): p is a Python float (a double), 1 − p is formed in double and the division done in
    /// float. Our p is a float, so its shortest decimal (0.9f → "0.9", what was written) stands for that double: dropout(0.9)
    /// scales by 10 as PyTorch does, not by 9.999998 (1f − 0.9f is 0.100000024). Allocates nothing.
    /// </summary>
    internal static float InvertedScale(float p) => 1f / (float)(1.0 - AsWritten(p));

    /// <summary>y[i] = x[i]·scale where the key's uniform at first + i ≥ p, else 0; arguments already checked.</summary>
    protected abstract void DropoutCore(DeviceTensor<float> x, DeviceTensor<float> y, float p, float scale, uint key, uint first);
}
