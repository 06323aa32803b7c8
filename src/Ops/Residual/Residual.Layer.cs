namespace GpuCnn.Models;

/// <summary>
/// A residual block, y = body(x) + shortcut(x), as a PyTorch module with two nn.Sequential children named
/// <c>body</c> and <c>shortcut</c> (state-dict keys "body.0.weight", "shortcut.0.weight"; an identity shortcut has
/// none). Spec: <c>residual(BODY)</c> or <c>residual(BODY; SHORTCUT)</c>, each a comma-separated layer list. The
/// gradient reaches x through both branches and adds up: dx = dbody + dshortcut.
/// </summary>
public sealed class Residual : Layer, IActivationHost
{
    private readonly LayerChain _body, _shortcut;

    /// <summary>A block from its two branches; an empty shortcut is the identity.</summary>
    public Residual(IEnumerable<Layer> body, IEnumerable<Layer>? shortcut = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        _body = new LayerChain([.. body]);
        _shortcut = new LayerChain(shortcut is null ? [] : [.. shortcut]);
        if (_body.Layers.Count == 0)
        {
            throw new SpecException("residual: the body needs at least one layer.");
        }
    }

    /// <summary>The layer for <c>residual(BODY)</c> (identity shortcut) or <c>residual(BODY; SHORTCUT)</c>.</summary>
    public static Residual Parse(LayerArguments args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var parts = ArchitectureSpec.SplitTopLevel(args.Raw(), ';');
        if (parts.Count > 2 || parts[0].Trim().Length == 0)
        {
            throw new SpecException("expected residual(BODY) or residual(BODY; SHORTCUT), each a comma-separated layer list.");
        }

        return new Residual(Branch(parts[0], "body"), parts.Count == 2 ? Branch(parts[1], "shortcut") : null);
    }

    /// <inheritdoc/>
    public ActivationLayer? FusedActivation { get; private set; }

    void IActivationHost.Fuse(ActivationLayer activation) => FusedActivation = activation;

    /// <summary>The body's layers.</summary>
    public IReadOnlyList<Layer> Body => _body.Layers;

    /// <summary>The shortcut's layers (empty: identity).</summary>
    public IReadOnlyList<Layer> Shortcut => _shortcut.Layers;

    /// <inheritdoc/>
    public override string Spec => Shortcut.Count == 0 ? $"residual({_body.Spec})" : $"residual({_body.Spec}; {_shortcut.Spec})";

    /// <inheritdoc/>
    public override IEnumerable<(string Name, Parameter Parameter)> NamedParameters() =>
        _body.NamedParameters().Select(p => ("body." + p.Name, p.Parameter))
            .Concat(_shortcut.NamedParameters().Select(p => ("shortcut." + p.Name, p.Parameter)));

    /// <inheritdoc/>
    public override IEnumerable<(string Name, DeviceTensor<float> Buffer)> NamedBuffers() =>
        _body.NamedBuffers().Select(b => ("body." + b.Name, b.Buffer))
            .Concat(_shortcut.NamedBuffers().Select(b => ("shortcut." + b.Name, b.Buffer)));

    /// <inheritdoc/>
    public override IEnumerable<(string Name, Counter Counter)> NamedCounters() =>
        _body.NamedCounters().Select(c => ("body." + c.Name, c.Counter))
            .Concat(_shortcut.NamedCounters().Select(c => ("shortcut." + c.Name, c.Counter)));

    /// <inheritdoc/>
    public override void SetRandomKey(uint key, int firstSample)
    {
        _body.SetRandomKey(Kernels.CounterRandom.Derive(key, 1), firstSample);
        _shortcut.SetRandomKey(Kernels.CounterRandom.Derive(key, 2), firstSample);
    }

    /// <inheritdoc/>
    public override void SetTraining(bool training)
    {
        base.SetTraining(training);
        _body.SetTraining(training);
        _shortcut.SetTraining(training);
    }

    /// <inheritdoc/>
    internal override void AttachTimer(LayerTimer? timer, string name)
    {
        _body.AttachTimer(timer, name + ".body.");
        _shortcut.AttachTimer(timer, name + ".shortcut.");
    }

    /// <inheritdoc/>
    private protected override Shape BuildOutput(Shape input, Random init)
    {
        var body = _body.Build(Backend, input, init, "body layer");
        var shortcut = _shortcut.Build(Backend, input, init, "shortcut layer");
        if (body != shortcut)
        {
            throw new SpecException($"residual: the body gives {body} but the shortcut gives {shortcut}; they must match to be added.");
        }

        return body;
    }

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input) => _body.Layers[^1].OutputShape; // BuildOutput builds the branches

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        var body = _body.Forward(x);
        var shortcut = _shortcut.Forward(x);
        var y = OutputBuffer(x.Shape[0]);
        if (FusedActivation is { } f)
        {
            f.AddForward(Backend, body, shortcut, y); // f(body + shortcut) as the sums are stored
        }
        else
        {
            Backend.Add(body, shortcut, y);
        }

        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        var body = _body.Backward(dy, needInputGradient);
        var shortcut = _shortcut.Backward(dy, needInputGradient);
        if (!needInputGradient)
        {
            return null;
        }

        var dx = InputGradientBuffer(dy.Shape[0]);
        Backend.Add(body!, shortcut!, dx);
        return dx;
    }

    private static IReadOnlyList<Layer> Branch(string spec, string what)
    {
        try
        {
            return ArchitectureSpec.Parse(spec);
        }
        catch (SpecException e)
        {
            throw new SpecException($"{what}: {e.Message}");
        }
    }

    /// <inheritdoc/>
    protected override void ReleaseBuffers()
    {
        _body.Release();
        _shortcut.Release();
    }
}
