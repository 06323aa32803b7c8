using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>Sigmoid: y = 1 / (1 + e^−x); f′ = y (1 − y).</summary>
public readonly struct Sigmoid : IDerivativeFromOutput
{
    /// <inheritdoc/>
    public string Spec => "sigmoid";

    /// <inheritdoc/>
    public bool DerivableFromOutput => true;

    /// <inheritdoc/>
    public float Forward(float x) => 1f / (1f + XMath.Exp(-x));

    /// <inheritdoc/>
    public double Forward(double x) => 1 / (1 + Math.Exp(-x));

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy) => BackwardFromOutput(y, dy);

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) => BackwardFromOutput(y, dy);

    /// <inheritdoc/>
    public float BackwardFromOutput(float y, float dy) => dy * y * (1f - y);

    /// <inheritdoc/>
    public double BackwardFromOutput(double y, double dy) => dy * y * (1 - y);
}
