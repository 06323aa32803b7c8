using GpuCnn.Kernels;

namespace GpuCnn.Models;

/// <summary>PyTorch's Linear: y = x·Wᵀ + b with weight (out, in), bias (out); input features inferred.</summary>
public sealed class Dense(int outFeatures) : Layer, IActivationHost
{
    /// <summary>The layer for <c>dense(OUT)</c>.</summary>
    public static Dense Parse(LayerArguments args) => new(args.PositiveInt(0, "output features"));

    private Parameter? _weight, _bias;
    private DeviceTensor<float>? _input;

    /// <summary>Output features.</summary>
    public int OutFeatures { get; } = outFeatures;

    /// <inheritdoc/>
    public ActivationLayer? FusedActivation { get; private set; }

    void IActivationHost.Fuse(ActivationLayer activation) => FusedActivation = activation;

    /// <inheritdoc/>
    public override string Spec => $"dense({OutFeatures})";

    /// <inheritdoc/>
    public override IReadOnlyList<Parameter> Parameters => _weight is null ? [] : [_weight, _bias!];

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input)
    {
        if (input.Rank != 1)
        {
            throw new ArgumentException($"needs a flat (features) input, got {input}; add 'flatten' before it");
        }

        return new Shape(OutFeatures);
    }

    /// <inheritdoc/>
    protected override void CreateParameters(Random init)
    {
        _weight = CreateParameter("weight", new Shape(OutFeatures, InputShape[0]), InputShape[0], init);
        _bias = CreateParameter("bias", new Shape(OutFeatures), InputShape[0], init);
    }

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        _input = x;
        int batch = x.Shape[0];
        var y = OutputBuffer(batch);
        if (FusedActivation is { } f)
        {
            f.LinearForward(Backend, x, _weight!.Value, _bias!.Value, y); // f(x·Wᵀ + b) in one pass
        }
        else
        {
            Backend.LinearForward(x, _weight!.Value, _bias!.Value, y, default(Identity));
        }
        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        var x = _input ?? throw new InvalidOperationException($"{Spec}: backward before forward.");
        int batch = x.Shape[0], inFeatures = InputShape[0];
        Backend.Gemm(true, false, OutFeatures, inFeatures, batch, 1f, dy, x, 0f, _weight!.Gradient); // dW = dyᵀ·x
        Backend.BiasGradient(dy, _bias!.Gradient);
        if (!needInputGradient)
        {
            return null;
        }

        var dx = InputGradientBuffer(batch);
        Backend.Gemm(false, false, batch, inFeatures, OutFeatures, 1f, dy, _weight.Value, 0f, dx); // dx = dy·W
        return dx;
    }
}
