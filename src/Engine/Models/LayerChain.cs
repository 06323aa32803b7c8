namespace GpuCnn.Models;

/// <summary>
/// A layer that can apply the activation after it as it stores its output (dense, convolution and batch-norm layers,
/// residual blocks): the chain hands it a fusable activation, which then passes its input on. Only the engine's own
/// layers implement it (fusing needs an operation on every backend), and only the layer chain fuses.
/// </summary>
public interface IActivationHost
{
    /// <summary>
    /// The activation applied as outputs are stored; null for none. Read-only: the chain sets it when the model is
    /// built, together with the activation layer's own flags, so the two can never disagree.
    /// </summary>
    ActivationLayer? FusedActivation { get; }

    /// <summary>Takes on <paramref name="activation"/> (the layer chain, once, while building the model).</summary>
    internal void Fuse(ActivationLayer activation);

    /// <summary>
    /// Whether the backward also applies the activation's f′ to the gradient it receives (batch norm folds it into its
    /// sums): the activation layer's backward then hands dy on. Otherwise that layer takes f′ from the output itself.
    /// </summary>
    bool AppliesActivationGradient => false;
}

/// <summary>
/// Layers applied one after another: shape inference, activation fusion, forward, backward, modes and state-dict
/// names ("{index}.{name}"). <see cref="Sequential"/> is one chain; a residual block holds two.
/// </summary>
internal sealed class LayerChain(IReadOnlyList<Layer> layers)
{
    public IReadOnlyList<Layer> Layers { get; } = layers;

    /// <summary>
    /// Builds every layer in turn from <paramref name="input"/> and returns the output shape; a layer that does not
    /// fit throws an <see cref="ArgumentException"/> naming it ("{what} 2 'conv(4,3)' on input (3,8,8): …").
    /// </summary>
    public Shape Build(Backend backend, Shape input, Random init, string what)
    {
        // Before building anything: a failure half-way would leave the layers built so far allocated.
        if (Layers.FirstOrDefault(layer => layer.IsBuilt) is { } taken)
        {
            throw taken.AlreadyBuilt();
        }

        var listed = new HashSet<Layer>(ReferenceEqualityComparer.Instance);
        if (Layers.FirstOrDefault(layer => !listed.Add(layer)) is { } twice)
        {
            throw new ArgumentException($"{twice.Spec}: one layer is listed twice; give each place its own layer (parse the spec again: ArchitectureSpec.Parse).");
        }

        _claimed = true;

        Shape shape = input;
        for (int i = 0; i < Layers.Count; i++)
        {
            try
            {
                Layers[i].Build(backend, shape, init);
            }
            catch (Exception e)
            {
                // Free what the layers built so far made, the failing one's first parameters included (out of device
                // memory at a bias, say): a caller who catches the error and builds a smaller model gets it back.
                Release();
                if (e is ArgumentException or SpecException)
                {
                    throw new SpecException($"{what} {i + 1} '{Layers[i].Spec}' on input {shape}: {Unprefixed(e.Message)}");
                }

                throw;
            }

            shape = Layers[i].OutputShape;
        }

        _firstLearned = Layers.Count;
        for (int i = Layers.Count - 1; i >= 0; i--)
        {
            _firstLearned = Layers[i].NamedParameters().Any() ? i : _firstLearned;
        }

        // A dense, convolution or batch-norm layer or a residual block followed by a fusable activation runs as one operation.
        for (int i = 0; i + 1 < Layers.Count; i++)
        {
            if (Layers[i] is IActivationHost host && Layers[i + 1] is ActivationLayer { CanFuse: true } activation)
            {
                host.Fuse(activation);
                activation.FusedIntoPrevious = true;
                activation.GradientFusedIntoPrevious = host.AppliesActivationGradient;
            }
        }

        return shape;
    }

    /// <summary>The profiler timing each layer of this chain, with the layers' state-dict prefixes; null when none.</summary>
    private (LayerTimer Timer, string[] Names)? _timed;

    /// <summary>Whether a profiler's timer is attached (tests: a profile must always take it off).</summary>
    internal bool IsTimed => _timed is not null;

    /// <summary>Whether a profiler's timer is attached and timing the layers now.</summary>
    internal bool IsTiming => _timed is { } t && t.Timer.Timing;

    /// <summary>
    /// Times every layer of the chain, and of the chains inside its layers, with <paramref name="timer"/> under names
    /// "{prefix}{index}" (null: stop timing).
    /// </summary>
    public void AttachTimer(LayerTimer? timer, string prefix)
    {
        _timed = timer is null ? null : (timer, [.. Layers.Select((_, i) => prefix + i.ToString(System.Globalization.CultureInfo.InvariantCulture))]);
        for (int i = 0; i < Layers.Count; i++)
        {
            Layers[i].AttachTimer(timer, _timed?.Names[i] ?? "");
        }
    }

    public DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        for (int i = 0; i < Layers.Count; i++)
        {
            // indexed: a foreach over the interface would allocate an enumerator per batch
            x = _timed is { } t ? t.Timer.Forward(Layers[i], t.Names[i], x) : Layers[i].Forward(x);
        }

        return x;
    }

    /// <summary>The first layer with parameters (its own or, in a residual block, its layers'); Layers.Count when none has any.</summary>
    private int _firstLearned;

    /// <summary>
    /// Back-propagates dy, leaving every parameter's gradient; returns dx when asked (dy itself for an empty chain). A
    /// layer is asked for its input gradient only when something before it learns or the caller wants dx: after
    /// parameter-free layers (flatten, dense(…) on MNIST) the first dense layer's dx — a GEMM as large as its weight
    /// gradient — had been computed and dropped.
    /// </summary>
    public DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        DeviceTensor<float>? gradient = dy;
        for (int i = Layers.Count - 1; i >= 0 && gradient is not null; i--)
        {
            bool need = i > _firstLearned || needInputGradient;
            gradient = _timed is { } t ? t.Timer.Backward(Layers[i], t.Names[i], gradient, need) : Layers[i].Backward(gradient, need);
        }

        return needInputGradient ? gradient : null;
    }

    public void SetRandomKey(uint key, int firstSample)
    {
        for (int i = 0; i < Layers.Count; i++)
        {
            Layers[i].SetRandomKey(Kernels.CounterRandom.Derive(key, (uint)i), firstSample);
        }
    }

    public void SetTraining(bool training)
    {
        foreach (var layer in Layers)
        {
            layer.SetTraining(training);
        }
    }

    public IEnumerable<(string Name, Parameter Parameter)> NamedParameters() =>
        Layers.SelectMany((layer, index) => layer.NamedParameters().Select(p => ($"{index}.{p.Name}", p.Parameter)));

    public IEnumerable<(string Name, DeviceTensor<float> Buffer)> NamedBuffers() =>
        Layers.SelectMany((layer, index) => layer.NamedBuffers().Select(b => ($"{index}.{b.Name}", b.Buffer)));

    public IEnumerable<(string Name, Counter Counter)> NamedCounters() =>
        Layers.SelectMany((layer, index) => layer.NamedCounters().Select(c => ($"{index}.{c.Name}", c.Counter)));

    public string Spec => ArchitectureSpec.Format(Layers);

    /// <summary>
    /// Whether <see cref="Build"/> found every layer free and took them: until then (and when its checks refuse a layer
    /// of another model's, a residual block's inner chain included) <see cref="Release"/> frees nothing, since the
    /// layers may be another model's.
    /// </summary>
    private bool _claimed;

    /// <summary>Frees every layer's device memory (the owning model or residual block, when it is freed).</summary>
    public void Release()
    {
        if (!_claimed)
        {
            return;
        }

        foreach (var layer in Layers)
        {
            layer.Release();
        }
    }

    private static string Unprefixed(string message)
    {
        // Geometry checks say "conv: kernel …"; the layer context already names the layer.
        int colon = message.IndexOf(": ", StringComparison.Ordinal);
        string text = colon is > 0 and < 12 ? message[(colon + 2)..] : message;
        int paramNote = text.IndexOf(" (Parameter '", StringComparison.Ordinal);
        return paramNote > 0 ? text[..paramNote] : text;
    }
}
