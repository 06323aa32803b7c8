using System.Globalization;
using GpuCnn.Kernels;

namespace GpuCnn.Models;

/// <summary>
/// PyTorch's Dropout(p): in training mode each element is zeroed with probability p and the rest scaled by
/// 1/(1 − p) (inverted dropout); in evaluation mode the identity. The mask comes from the key the model hands the
/// layer for each batch (<see cref="Sequential.SetRandomKey"/>; the trainer derives it from the seed, epoch and
/// batch), so runs and resumed runs repeat it, and the backward pass recomputes it instead of storing it.
/// Spec: <c>dropout(P)</c> with P in [0, 1).
/// </summary>
public sealed class Dropout : Layer
{
    private uint _key, _forwardKey;
    private int _firstSample, _forwardFirstSample;
    private bool _forwardDropped;

    /// <summary>A layer dropping with probability <paramref name="p"/> in [0, 1).</summary>
    public Dropout(float p)
    {
        if (!(p >= 0f && p < 1f))
        {
            throw new SpecException($"dropout: p {p.ToString("R", CultureInfo.InvariantCulture)} lies outside [0, 1).");
        }

        P = p;
    }

    /// <summary>The layer for <c>dropout(P)</c>.</summary>
    public static Dropout Parse(LayerArguments args)
    {
        ArgumentNullException.ThrowIfNull(args);
        return new Dropout(args.Number(0, "p"));
    }

    /// <summary>The probability of zeroing an element.</summary>
    public float P { get; }

    /// <inheritdoc/>
    public override string Spec => $"dropout({P.ToString("R", CultureInfo.InvariantCulture)})";

    /// <inheritdoc/>
    public override void SetRandomKey(uint key, int firstSample) => (_key, _firstSample) = (key, firstSample);

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input) => input;

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        _forwardDropped = Training && P > 0f;
        if (!_forwardDropped)
        {
            return x;
        }

        (_forwardKey, _forwardFirstSample) = (_key, _firstSample);
        var y = OutputBuffer(x.Shape[0]);
        Backend.Dropout(x, y, P, _forwardKey, _forwardFirstSample);
        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        if (!needInputGradient || !_forwardDropped)
        {
            return needInputGradient ? dy : null;
        }

        var dx = InputGradientBuffer(dy.Shape[0]);
        Backend.Dropout(dy, dx, P, _forwardKey, _forwardFirstSample); // the same mask and scale: dx = dy·mask/(1 − p)
        return dx;
    }
}
