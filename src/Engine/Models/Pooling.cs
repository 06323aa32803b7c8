namespace GpuCnn.Models;

/// <summary>Shared shape logic of the pooling layers: window, stride (defaults to the window), padding, ceil mode.</summary>
public abstract class Pool2dLayer((int H, int W) kernel, (int H, int W)? stride, (int H, int W) padding, bool ceilMode = false) : Layer
{
    /// <summary>The window.</summary>
    public (int H, int W) Kernel { get; } = kernel;

    /// <summary>The stride (the window when not given, as in PyTorch).</summary>
    public (int H, int W) Stride { get; } = stride ?? kernel;

    /// <summary>Padding on each side.</summary>
    public (int H, int W) Padding { get; } = padding;

    /// <summary>
    /// PyTorch's ceil_mode: a last, partial window where the stride leaves input over (<see cref="Pool2dGeometry.CeilMode"/>).
    /// </summary>
    public bool CeilMode { get; } = ceilMode;

    /// <summary>The spec name: maxpool or avgpool.</summary>
    protected abstract string Kind { get; }

    /// <inheritdoc/>
    public override string Spec =>
        $"{Kind}({SpecText.Pair(Kernel)}{(Stride == Kernel ? "" : ",stride=" + SpecText.Pair(Stride))}" +
        $"{(Padding == (0, 0) ? "" : ",pad=" + SpecText.Pair(Padding))}{(CeilMode ? ",ceil_mode=true" : "")})";

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input)
    {
        if (input.Rank != 3)
        {
            throw new ArgumentException($"needs a (C,H,W) input, got {input}");
        }

        var g = Geometry(1);
        g.Validate(Kind);
        return new Shape(input[0], g.P, g.Q);
    }

    /// <summary>The geometry for a batch.</summary>
    protected internal Pool2dGeometry Geometry(int batch) =>
        new(batch, InputShape[0], InputShape[1], InputShape[2], Kernel.H, Kernel.W, Stride.H, Stride.W, Padding.H, Padding.W)
        {
            PlaneMean = PlaneMean,
            CeilMode = CeilMode,
            CountIncludePad = CountsPadding,
        };

    /// <summary>Set by global pooling, whose average is each plane's mean (<see cref="Pool2dGeometry.PlaneMean"/>).</summary>
    internal bool PlaneMean { get; init; }

    /// <summary>Whether the average counts padding in its divisor (always for max pooling, which ignores it).</summary>
    private protected virtual bool CountsPadding => true;
}

/// <summary>PyTorch's MaxPool2d; keeps the switch mask of its last forward for the backward.</summary>
public sealed class MaxPool2d((int H, int W) kernel, (int H, int W)? stride = null, (int H, int W) padding = default, bool ceilMode = false)
    : Pool2dLayer(kernel, stride, padding, ceilMode)
{
    /// <summary>The layer for <c>maxpool(K[,stride=S][,pad=P][,ceil_mode=true])</c>.</summary>
    public static MaxPool2d Parse(LayerArguments args) =>
        new(args.Pair(0, "kernel"), args.OptionalNamedPair("stride"), args.NamedPair("pad", (0, 0), positive: false), args.NamedBool("ceil_mode", false));

    private BatchSizedCache<DeviceTensor<int>>? _switchCache;
    private int _batch;

    /// <inheritdoc/>
    protected override string Kind => "maxpool";

    // The switch masks per batch size, as the outputs are kept.
    private BatchSizedCache<DeviceTensor<int>> Switches
    {
        get
        {
            ThrowIfReleased();
            return _switchCache ??= new(batch => Backend.Allocate<int>(BatchedBuffer(batch, OutputShape)), static switches => switches.Dispose());
        }
    }

    /// <inheritdoc/>
    protected override void ReleaseBuffers()
    {
        _switchCache?.Clear();
    }

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        _batch = x.Shape[0];
        var y = OutputBuffer(_batch);
        Backend.MaxPool2dForward(Geometry(_batch), x, y, Switches.Get(_batch));
        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        if (!needInputGradient)
        {
            return null;
        }

        var dx = InputGradientBuffer(_batch > 0 ? _batch : throw new InvalidOperationException($"{Spec}: backward before forward."));
        Backend.MaxPool2dBackward(Geometry(_batch), dy, Switches.Get(_batch), dx);
        return dx;
    }
}

/// <summary>
/// PyTorch's AvgPool2d: zero padding counted in the mean (count_include_pad, PyTorch's default) or not
/// (<paramref name="countIncludePad"/> false: each window divided by its part inside the input); ceil mode's cut windows
/// divided by what is left of them.
/// </summary>
public sealed class AvgPool2d((int H, int W) kernel, (int H, int W)? stride = null, (int H, int W) padding = default, bool ceilMode = false,
    bool countIncludePad = true)
    : Pool2dLayer(kernel, stride, padding, ceilMode)
{
    /// <summary>The layer for <c>avgpool(K[,stride=S][,pad=P][,ceil_mode=true][,count_include_pad=false])</c>.</summary>
    public static AvgPool2d Parse(LayerArguments args) =>
        new(args.Pair(0, "kernel"), args.OptionalNamedPair("stride"), args.NamedPair("pad", (0, 0), positive: false), args.NamedBool("ceil_mode", false),
            args.NamedBool("count_include_pad", true));

    /// <summary>Whether the padding counts in each window's divisor (PyTorch's count_include_pad).</summary>
    public bool CountIncludePad { get; } = countIncludePad;

    /// <inheritdoc/>
    private protected override bool CountsPadding => CountIncludePad;

    /// <inheritdoc/>
    public override string Spec => CountIncludePad ? base.Spec : base.Spec[..^1] + ",count_include_pad=false)";

    private int _batch;

    /// <inheritdoc/>
    protected override string Kind => "avgpool";

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        _batch = x.Shape[0];
        var y = OutputBuffer(_batch);
        Backend.AvgPool2dForward(Geometry(_batch), x, y);
        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        if (!needInputGradient)
        {
            return null;
        }

        var dx = InputGradientBuffer(_batch > 0 ? _batch : throw new InvalidOperationException($"{Spec}: backward before forward."));
        Backend.AvgPool2dBackward(Geometry(_batch), dy, dx);
        return dx;
    }
}

/// <summary>
/// PyTorch's AdaptiveAvgPool2d(1): (C,H,W) → (C,1,1), each plane's mean — an average pool whose window is the whole
/// plane, built as one for the input it gets. Spec: <c>globalavgpool</c>.
/// </summary>
public sealed class GlobalAvgPool2d : Layer
{
    private AvgPool2d? _pool;

    /// <inheritdoc/>
    public override string Spec => "globalavgpool";

    /// <inheritdoc/>
    private protected override Shape BuildOutput(Shape input, Random init)
    {
        var output = InferOutputShape(input);
        _pool = new AvgPool2d((input[1], input[2])) { PlaneMean = true };
        _pool.Build(Backend, input, init);
        return output;
    }

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input) => input.Rank == 3
        ? new Shape(input[0], 1, 1)
        : throw new ArgumentException($"needs a (C,H,W) input, got {input}; global pooling averages each channel's plane");

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x) => _pool!.Forward(x);

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) => _pool!.Backward(dy, needInputGradient);

    /// <inheritdoc/>
    protected override void ReleaseBuffers() => _pool?.Release();
}
