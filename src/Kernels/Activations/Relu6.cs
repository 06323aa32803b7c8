namespace GpuCnn.Kernels;

/// <summary>
/// ReLU6 (MobileNet's, PyTorch's nn.ReLU6 = hardtanh(x, 0, 6)): y = min(max(x, 0), 6), a NaN staying NaN and −0 staying
/// −0 as PyTorch's clamp does; f′ as PyTorch's hardtanh_backward: 0 where x ≤ 0 or x ≥ 6, else 1 — the same from the
/// output (y ≤ 0 ⇔ x ≤ 0, y ≥ 6 ⇔ x ≥ 6), and a NaN passes dy through.
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
    public float Backward(float x, float y, float dy) => x <= 0f || x >= Ceiling ? 0f : dy;

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) => x <= 0 || x >= Ceiling ? 0 : dy;

    /// <inheritdoc/>
    public float BackwardFromOutput(float y, float dy) => y <= 0f || y >= Ceiling ? 0f : dy;

    /// <inheritdoc/>
    public double BackwardFromOutput(double y, double dy) => y <= 0 || y >= Ceiling ? 0 : dy;
}
