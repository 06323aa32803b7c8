using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// GELU, PyTorch's exact form (<c>approximate='none'</c>): y = x·Φ(x) = ½x(1 + erf(x/√2)); f′ = Φ(x) + x·φ(x) with
/// φ(x) = e^{−x²/2}/√(2π). f′ needs x, so GELU is never fused into the layer before it.
/// </summary>
public readonly struct Gelu : IActivationFunction
{
    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;

    /// <inheritdoc/>
    public string Spec => "gelu";

    /// <inheritdoc/>
    public float Forward(float x) => 0.5f * x * (1f + SpecialFunctions.Erf(x * InvSqrt2));

    /// <inheritdoc/>
    public double Forward(double x) => 0.5 * x * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2)));

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy) =>
        dy * ((0.5f * (1f + SpecialFunctions.Erf(x * InvSqrt2))) + (x * InvSqrt2Pi * XMath.Exp(-0.5f * x * x)));

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) =>
        dy * ((0.5 * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2)))) + (x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI)));
}
