namespace GpuCnn.Kernels;

/// <summary>
/// ReLU6 (MobileNet's, PyTorch's nn.ReLU6 = hardtanh(x, 0, 6)): y = min(max(x, 0), 6), a NaN staying NaN and −0 staying
/// −0 as PyTorch's clamp does; f′ = 1 where 0 &lt; x &lt; 6, else 0 — the same from the output (0 &lt; y &lt; 6 ⇔ 0 &lt; x &lt; 6).
/// A NaN takes no gradient, as in PyTorch 1.13's vectorised hardtanh_backward (its scalar loop, which only the last
/// elements of a tensor that does not fill whole vectors reach, passes dy through instead).
/// </summary>
public readonly struct Relu6 : IDerivativeFromOutput
{
    /// <summary>The upper bound.</summary>
    public const float Ceiling = 6f;

    /// <inheritdoc/>
    public string Spec => "relu6";

    /// <inheritdoc/>
    public bool DerivableFromOutput => true;

    /// <inheritdoc/>
    public float Forward(float x) => x < 0f ? 0f : x > Ceiling ? Ceiling : x;

    /// <inheritdoc/>
    public double Forward(double x) => x < 0 ? 0 : x > Ceiling ? Ceiling : x;

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy) => x > 0f && x < Ceiling ? dy : 0f;

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) => x > 0 && x < Ceiling ? dy : 0;

    /// <inheritdoc/>
    public float BackwardFromOutput(float y, float dy) => y > 0f && y < Ceiling ? dy : 0f;

    /// <inheritdoc/>
    public double BackwardFromOutput(double y, double dy) => y > 0 && y < Ceiling ? dy : 0;
}
