using System.Globalization;

namespace GpuCnn.Models;

/// <summary>An elementwise activation layer: ReLU, LeakyReLU(α), Sigmoid or Tanh.</summary>
public sealed class ActivationLayer(Activation function, float alpha = 0.01f) : Layer
{
    private DeviceTensor<float>? _input, _output;

    /// <summary>The function.</summary>
    public Activation Function { get; } = function;

    /// <summary>LeakyReLU's negative slope.</summary>
    public float Alpha { get; } = alpha;

    /// <summary>
    /// Set by <see cref="Sequential"/> when the dense or convolution layer before applies this function as it stores: the
    /// forward pass then hands its input on unchanged, and the backward derives f′ from the output alone (valid for
    /// ReLU, LeakyReLU with α ≥ 0, Sigmoid and Tanh, whose f′ is a function of f(x)).
    /// </summary>
    internal bool FusedIntoPrevious { get; set; }

    /// <summary>Whether a preceding dense or convolution layer may apply this function for it.</summary>
    internal bool CanFuse => Function != Activation.LeakyRelu || Alpha >= 0f;

    /// <inheritdoc/>
    public override string Spec => Function switch
    {
        Activation.Relu => "relu",
        Activation.LeakyRelu => $"leakyrelu({Alpha.ToString("R", CultureInfo.InvariantCulture)})",
        Activation.Sigmoid => "sigmoid",
        _ => "tanh",
    };

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
        Backend.ActivationForward(Function, Alpha, x, _output);
        return _output;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        if (!needInputGradient)
        {
            return null;
        }

        var x = _input ?? throw new InvalidOperationException($"{Spec}: backward before forward.");
        var dx = InputGradientBuffer(x.Shape[0]);

        // Fused: only y = f(z) exists; the sign tests of ReLU and LeakyReLU read the same on y as on z.
        Backend.ActivationBackward(Function, Alpha, FusedIntoPrevious ? _output! : x, _output!, dy, dx);
        return dx;
    }
}

/// <summary>PyTorch's Flatten: (N, C, H, W) → (N, C·H·W), a view without a copy.</summary>
public sealed class Flatten : Layer
{
    // The tensors flowing through are the neighbours' per-batch-size buffers, so their views are made once.
    private readonly Dictionary<DeviceTensor<float>, DeviceTensor<float>> _views = new(ReferenceEqualityComparer.Instance);

    /// <inheritdoc/>
    public override string Spec => "flatten";

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input) => new(input.Size);

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x) => ViewOf(x, OutputShape);

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) =>
        needInputGradient ? ViewOf(dy, InputShape) : null;

    private DeviceTensor<float> ViewOf(DeviceTensor<float> tensor, Shape sample)
    {
        if (!_views.TryGetValue(tensor, out var view) || view.IsDisposed)
        {
            view = tensor.View(Batched(tensor.Shape[0], sample));
            _views[tensor] = view;
        }

        return view;
    }
}

/// <summary>PyTorch's Linear: y = x·Wᵀ + b with weight (out, in), bias (out); input features inferred.</summary>
public sealed class Dense(int outFeatures) : Layer
{
    private Parameter? _weight, _bias;
    private DeviceTensor<float>? _input;

    /// <summary>Output features.</summary>
    public int OutFeatures { get; } = outFeatures;

    /// <summary>The activation of the next layer, applied here in the GEMM's epilogue (set by <see cref="Sequential"/>).</summary>
    internal ActivationLayer? FusedActivation { get; set; }

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
        Backend.LinearForward(x, _weight!.Value, _bias!.Value, y, FusedActivation?.Function, FusedActivation?.Alpha ?? 0f); // f(x·Wᵀ + b)
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
