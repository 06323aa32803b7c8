namespace GpuCnn.Models;

/// <summary>
/// PyTorch's Conv2d: weight (K, C/G, R, S) and, unless <c>bias=false</c> (as PyTorch's <c>bias=False</c>, the usual
/// choice before batchnorm), bias (K); input channels inferred from the input shape. <c>dilation=D</c> spaces the
/// kernel taps D apart; <c>groups=G</c> splits the channels into G independent groups (depthwise when G equals the
/// input channels).
/// </summary>
public sealed class Conv2d(int outChannels, (int H, int W) kernel, (int H, int W) stride, (int H, int W) padding, bool hasBias = true,
    (int H, int W)? dilation = null, int groups = 1)
    : Layer, IActivationHost
{
    /// <summary>The layer for <c>conv(OUT,K[,stride=S][,pad=P][,dilation=D][,groups=G][,bias=false])</c>.</summary>
    public static Conv2d Parse(LayerArguments args) =>
        new(args.PositiveInt(0, "output channels"), args.Pair(1, "kernel"),
            args.NamedPair("stride", (1, 1), positive: true), args.NamedPair("pad", (0, 0), positive: false), args.NamedBool("bias", true),
            args.NamedPair("dilation", (1, 1), positive: true), args.NamedPositiveInt("groups", 1));

    private Parameter? _weight, _bias;
    private DeviceTensor<float>? _input;

    /// <summary>Output channels K.</summary>
    public int OutChannels { get; } = outChannels;

    /// <summary>Kernel R×S.</summary>
    public (int H, int W) Kernel { get; } = kernel;

    /// <summary>Stride.</summary>
    public (int H, int W) Stride { get; } = stride;

    /// <summary>Zero padding on each side.</summary>
    public (int H, int W) Padding { get; } = padding;

    /// <summary>The spacing of the kernel taps.</summary>
    public (int H, int W) Dilation { get; } = dilation ?? (1, 1);

    /// <summary>The channel groups (1: an ordinary convolution).</summary>
    public int Groups { get; } = groups;

    /// <summary>Whether the layer adds a trained bias.</summary>
    public bool HasBias { get; } = hasBias;

    /// <inheritdoc/>
    public ActivationLayer? FusedActivation { get; private set; }

    void IActivationHost.Fuse(ActivationLayer activation) => FusedActivation = activation;

    /// <inheritdoc/>
    public override string Spec =>
        $"conv({OutChannels},{SpecText.Pair(Kernel)}{(Stride == (1, 1) ? "" : ",stride=" + SpecText.Pair(Stride))}" +
        $"{(Padding == (0, 0) ? "" : ",pad=" + SpecText.Pair(Padding))}{(Dilation == (1, 1) ? "" : ",dilation=" + SpecText.Pair(Dilation))}" +
        $"{(Groups == 1 ? "" : ",groups=" + Groups.ToString(System.Globalization.CultureInfo.InvariantCulture))}{(HasBias ? "" : ",bias=false")})";

    /// <inheritdoc/>
    public override IReadOnlyList<Parameter> Parameters => _weight is null ? [] : _bias is null ? [_weight] : [_weight, _bias];

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input)
    {
        if (input.Rank != 3)
        {
            throw new ArgumentException($"needs a (C,H,W) input, got {input}");
        }

        var g = Geometry(1, input);
        g.Validate("conv");
        return new Shape(OutChannels, g.P, g.Q);
    }

    /// <inheritdoc/>
    protected override void CreateParameters(Random init)
    {
        int fanIn = InputShape[0] / Groups * Kernel.H * Kernel.W;
        _weight = CreateParameter("weight", new Shape(OutChannels, InputShape[0] / Groups, Kernel.H, Kernel.W), fanIn, init);
        _bias = HasBias ? CreateParameter("bias", new Shape(OutChannels), fanIn, init) : null;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        _input = x;
        var y = OutputBuffer(x.Shape[0]);
        var g = Geometry(x.Shape[0], InputShape);
        if (FusedActivation is { } f)
        {
            f.Conv2dForward(Backend, g, x, _weight!.Value, _bias?.Value, y); // f(conv + b) as outputs are stored
        }
        else
        {
            Backend.Conv2dForward(g, x, _weight!.Value, _bias?.Value, y);
        }
        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        var x = _input ?? throw new InvalidOperationException($"{Spec}: backward before forward.");
        var g = Geometry(x.Shape[0], InputShape);
        Backend.Conv2dBackwardFilter(g, x, dy, _weight!.Gradient, _bias?.Gradient);
        if (!needInputGradient)
        {
            return null;
        }

        var dx = InputGradientBuffer(x.Shape[0]);
        Backend.Conv2dBackwardData(g, dy, _weight.Value, dx);
        return dx;
    }

    private Conv2dGeometry Geometry(int batch, Shape input) =>
        new(batch, input[0], input[1], input[2], OutChannels, Kernel.H, Kernel.W, Stride.H, Stride.W, Padding.H, Padding.W, Dilation.H, Dilation.W, Groups);
}
