using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>SiLU (swish): y = x·σ(x); f′ = σ(x)·(1 + x·(1 − σ(x))). f′ needs x, so SiLU is never fused.</summary>
public readonly struct Silu : IActivationFunction
{
    /// <inheritdoc/>
    public string Spec => "silu";

    /// <inheritdoc/>
    public float Forward(float x) => x / (1f + XMath.Exp(-x));

    /// <inheritdoc/>
    public double Forward(double x) => x / (1 + Math.Exp(-x));

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy)
    {
        float s = 1f / (1f + XMath.Exp(-x));
        return dy * s * (1f + (x * (1f - s)));
    }

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy)
    {
        double s = 1 / (1 + Math.Exp(-x));
        return dy * s * (1 + (x * (1 - s)));
    }
}
