namespace GpuCnn.Kernels;

/// <summary>
/// ReLU: y = max(x, 0), NaN staying NaN and −0 staying −0 as PyTorch's clamp does; f′ as PyTorch's threshold_backward
/// on the output: 0 where y ≤ 0, else 1 — so a NaN passes dy through, as in PyTorch.
/// </summary>
public readonly struct Relu : IDerivativeFromOutput
{
    /// <inheritdoc/>
    public string Spec => "relu";

    /// <inheritdoc/>
    public bool DerivableFromOutput => true;

    /// <inheritdoc/>
    public float Forward(float x) => x < 0f ? 0f : x;

    /// <inheritdoc/>
    public double Forward(double x) => x < 0 ? 0 : x;

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy) => BackwardFromOutput(y, dy);

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) => BackwardFromOutput(y, dy);

    /// <inheritdoc/>
    public float BackwardFromOutput(float y, float dy) => y <= 0f ? 0f : dy;

    /// <inheritdoc/>
    public double BackwardFromOutput(double y, double dy) => y <= 0 ? 0 : dy;
}
