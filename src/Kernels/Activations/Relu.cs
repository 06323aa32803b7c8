namespace GpuCnn.Kernels;

/// <summary>ReLU: y = max(x, 0); f′ = 1 for x &gt; 0, else 0 (the same test on y).</summary>
public readonly struct Relu : IDerivativeFromOutput
{
    /// <inheritdoc/>
    public string Spec => "relu";

    /// <inheritdoc/>
    public bool DerivableFromOutput => true;

    /// <inheritdoc/>
    public float Forward(float x) => x > 0f ? x : 0f;

    /// <inheritdoc/>
    public double Forward(double x) => x > 0 ? x : 0;

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy) => x > 0f ? dy : 0f;

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) => x > 0 ? dy : 0;

    /// <inheritdoc/>
    public float BackwardFromOutput(float y, float dy) => y > 0f ? dy : 0f;

    /// <inheritdoc/>
    public double BackwardFromOutput(double y, double dy) => y > 0 ? dy : 0;
}
