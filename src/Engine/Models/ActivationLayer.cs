using GpuCnn.Kernels;

namespace GpuCnn.Models;

/// <summary>
/// An elementwise activation layer for any <see cref="IActivationFunction"/> (relu, leakyrelu, sigmoid, tanh, gelu,
/// silu, …): <see cref="Create"/> picks the fusable variant when the function can take its derivative from its
/// output. This non-generic base is what the model code and the tests hold.
/// </summary>
public abstract class ActivationLayer : Layer
{
    /// <summary>
    /// Set by the layer chain when the layer before (an <see cref="IActivationHost"/>) applies this function as it stores: the
    /// forward pass then hands its input on unchanged and the backward takes f′ from the output alone.
    /// </summary>
    internal bool FusedIntoPrevious { get; set; }

    /// <summary>
    /// Set with <see cref="FusedIntoPrevious"/> when the layer before also applies f′ in its backward (batch norm):
    /// this layer's backward then hands dy on unchanged.
    /// </summary>
    internal bool GradientFusedIntoPrevious { get; set; }

    /// <summary>Whether a preceding dense, convolution or batch-norm layer or residual block may apply this function for it (opt-in by capability).</summary>
    /// <remarks>
    /// Only the engine's own activations fuse: a subclass elsewhere cannot see that it was fused, so it would apply its
    /// function a second time after the layer before had (tanh(tanh(z))).
    /// </remarks>
    public bool CanFuse => FusesInto;

    /// <summary>What <see cref="CanFuse"/> says; overridden by the engine's fusable activations only.</summary>
    private protected virtual bool FusesInto => false;

    /// <summary>f(x) in double, for tests and checks.</summary>
    public abstract double Evaluate(double x);

    /// <summary>dy·f′(x) in double, from x and y = f(x).</summary>
    public abstract double EvaluateBackward(double x, double y, double dy);

    /// <summary>An activation layer for <paramref name="function"/>: fusable when its type implements <see cref="IDerivativeFromOutput"/>.</summary>
    public static ActivationLayer Create<TF>(TF function)
        where TF : struct, IActivationFunction =>
        typeof(IDerivativeFromOutput).IsAssignableFrom(typeof(TF))
            ? (ActivationLayer)Activator.CreateInstance(typeof(FusableActivationLayer<>).MakeGenericType(typeof(TF)), function)!
            : new ActivationLayer<TF>(function);

    /// <summary>y = f(x) on the backend.</summary>
    public abstract void Apply(Backend backend, DeviceTensor<float> x, DeviceTensor<float> y);

    /// <summary>dx = dy·f′ on the backend, from x and y = f(x).</summary>
    public abstract void ApplyBackward(Backend backend, DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> dy, DeviceTensor<float> dx);

    /// <summary>dx = dy·f′ from y = f(x) alone; only for layers that <see cref="CanFuse"/>.</summary>
    public virtual void ApplyBackwardFromOutput(Backend backend, DeviceTensor<float> y, DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        throw new NotSupportedException($"{Spec} has no derivative from its output alone.");

    /// <summary>y = f(conv(x, w) + b) on the backend, in one fused operation.</summary>
    public abstract void Conv2dForward(Backend backend, Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w,
        DeviceTensor<float>? b, DeviceTensor<float> y);

    /// <summary>y = f(x · Wᵀ + b) on the backend, in one fused operation.</summary>
    public abstract void LinearForward(Backend backend, DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float> b,
        DeviceTensor<float> y);

    /// <summary>y = f(batch_norm(x)) on the backend, in one fused operation (arguments as <see cref="Backend.BatchNormForward{TF}"/>).</summary>
    public abstract void BatchNormForward(Backend backend, bool training, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, float momentum, float epsilon,
        DeviceTensor<float> y, DeviceTensor<float> mean, DeviceTensor<float> invStd);

    /// <summary>
    /// The gradients of y = f(batch_norm(x)) from dy and y, f′ applied on the way (<see cref="Backend.BatchNormBackward{TF}"/>);
    /// only for layers that <see cref="CanFuse"/>.
    /// </summary>
    public virtual void BatchNormBackward(Backend backend, bool training, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<float> dy, DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd, DeviceTensor<float>? dx,
        DeviceTensor<float> dweight, DeviceTensor<float> dbias) =>
        throw new NotSupportedException($"{Spec} has no derivative from its output alone.");

    /// <summary>y = f(a + b) on the backend, in one fused operation (a residual block's join and the activation after it).</summary>
    public abstract void AddForward(Backend backend, DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y);
}

/// <summary>The activation layer of one function type.</summary>
public class ActivationLayer<TF>(TF function) : ActivationLayer
    where TF : struct, IActivationFunction
{
    private DeviceTensor<float>? _input, _output;

    /// <summary>The function, with its parameters.</summary>
    public TF Function { get; } = function;

    /// <inheritdoc/>
    public override string Spec => Function.Spec;

    /// <inheritdoc/>
    public override double Evaluate(double x) => Function.Forward(x);

    /// <inheritdoc/>
    public override double EvaluateBackward(double x, double y, double dy) => Function.Backward(x, y, dy);

    /// <inheritdoc/>
    public override void Apply(Backend backend, DeviceTensor<float> x, DeviceTensor<float> y) =>
        backend.ActivationForward(Function, x, y);

    /// <inheritdoc/>
    public override void ApplyBackward(Backend backend, DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> dy,
        DeviceTensor<float> dx) =>
        backend.ActivationBackward(Function, x, y, dy, dx);

    /// <inheritdoc/>
    public override void Conv2dForward(Backend backend, Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w,
        DeviceTensor<float>? b, DeviceTensor<float> y) =>
        backend.Conv2dForward(g, x, w, b, y, Function);

    /// <inheritdoc/>
    public override void LinearForward(Backend backend, DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float> b,
        DeviceTensor<float> y) =>
        backend.LinearForward(x, w, b, y, Function);

    /// <inheritdoc/>
    public override void BatchNormForward(Backend backend, bool training, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, float momentum, float epsilon,
        DeviceTensor<float> y, DeviceTensor<float> mean, DeviceTensor<float> invStd)
    {
        ArgumentNullException.ThrowIfNull(backend);
        backend.BatchNormForward(training, x, weight, bias, runningMean, runningVar, momentum, epsilon, y, mean, invStd, Function);
    }

    /// <inheritdoc/>
    public override void AddForward(Backend backend, DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y)
    {
        ArgumentNullException.ThrowIfNull(backend);
        backend.Add(a, b, y, Function);
    }

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input) => input;

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        if (FusedIntoPrevious)
        {
            _input = _output = x; // x is already f(z)
            return x;
        }

        _input = x;
        _output = OutputBuffer(x.Shape[0]);
        Backend.ActivationForward(Function, x, _output);
        return _output;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        if (!needInputGradient)
        {
            return null;
        }

        if (GradientFusedIntoPrevious)
        {
            return dy; // the layer before applies f′ as it takes dy
        }

        var x = _input ?? throw new InvalidOperationException($"{Spec}: backward before forward.");
        var dx = InputGradientBuffer(x.Shape[0]);
        if (FusedIntoPrevious)
        {
            ApplyBackwardFromOutput(Backend, _output!, dy, dx);
        }
        else
        {
            Backend.ActivationBackward(Function, x, _output!, dy, dx);
        }

        return dx;
    }
}

/// <summary>The activation layer of a function whose derivative can be taken from its output: it may be fused.</summary>
public sealed class FusableActivationLayer<TF>(TF function) : ActivationLayer<TF>(function)
    where TF : struct, IDerivativeFromOutput
{
    /// <inheritdoc/>
    private protected override bool FusesInto => Function.DerivableFromOutput;

    /// <inheritdoc/>
    public override void ApplyBackwardFromOutput(Backend backend, DeviceTensor<float> y, DeviceTensor<float> dy, DeviceTensor<float> dx)
    {
        ArgumentNullException.ThrowIfNull(backend);
        backend.ActivationBackwardFromOutput(Function, y, dy, dx);
    }

    /// <inheritdoc/>
    public override void BatchNormBackward(Backend backend, bool training, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<float> dy, DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd, DeviceTensor<float>? dx,
        DeviceTensor<float> dweight, DeviceTensor<float> dbias)
    {
        ArgumentNullException.ThrowIfNull(backend);
        backend.BatchNormBackward(training, x, y, dy, weight, mean, invStd, dx, dweight, dbias, Function);
    }
}
