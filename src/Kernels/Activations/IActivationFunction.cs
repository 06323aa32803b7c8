namespace GpuCnn.Kernels;

/// <summary>
/// An elementwise activation f, one struct per function, used by every backend: ILGPU kernels are generic over it
/// (compiled once per function), the fast CPU backend's loops are specialised for it by the JIT, and the reference
/// evaluates it in double. A struct may carry parameters (LeakyReLU's slope). Register a new one in
/// <c>GpuCnn.Models.LayerRegistry</c> to give it a spec name; tests, selftest and the docs then cover it.
/// </summary>
public interface IActivationFunction
{
    /// <summary>The layer as written in an architecture spec, e.g. <c>relu</c> or <c>leakyrelu(0.2)</c>.</summary>
    string Spec { get; }

    /// <summary>f(x) in float (kernels and the CPU backend).</summary>
    float Forward(float x);

    /// <summary>f(x) in double (the reference, and the gradient checks through it).</summary>
    double Forward(double x);

    /// <summary>dx = dy · f′(x), from the input x and the output y = f(x), in float.</summary>
    float Backward(float x, float y, float dy);

    /// <summary>dx = dy · f′(x) in double.</summary>
    double Backward(double x, double y, double dy);
}

/// <summary>
/// The capability that lets the layer before (dense, convolution, batch norm, a residual join) apply f as it stores its output and keep only y = f(z):
/// f′ is then a function of y alone. Fusion is opt-in: a function without this interface is never fused.
/// </summary>
public interface IDerivativeFromOutput : IActivationFunction
{
    /// <summary>Whether these parameters allow it (LeakyReLU with a negative slope does not: y's sign flips).</summary>
    bool DerivableFromOutput { get; }

    /// <summary>dx = dy · f′, from the output y alone, in float.</summary>
    float BackwardFromOutput(float y, float dy);

    /// <summary>The same in double.</summary>
    double BackwardFromOutput(double y, double dy);
}

/// <summary>No activation: f(x) = x (the epilogue of a plain GEMM or convolution).</summary>
public readonly struct Identity : IDerivativeFromOutput
{
    /// <inheritdoc/>
    public string Spec => "identity";

    /// <inheritdoc/>
    public bool DerivableFromOutput => true;

    /// <inheritdoc/>
    public float Forward(float x) => x;

    /// <inheritdoc/>
    public double Forward(double x) => x;

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy) => dy;

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) => dy;

    /// <inheritdoc/>
    public float BackwardFromOutput(float y, float dy) => dy;

    /// <inheritdoc/>
    public double BackwardFromOutput(double y, double dy) => dy;
}
