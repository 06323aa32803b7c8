namespace GpuCnn.Models;

/// <summary>
/// A stack of layers whose channel and feature counts are inferred from the input shape, as PyTorch's
/// nn.Sequential with Lazy modules. State-dict names are PyTorch's: "{layer index}.weight" / "{layer index}.bias",
/// counting every layer of the spec, with containers nesting theirs ("3.body.0.weight").
/// </summary>
/// <remarks>
/// A model serves one thread at a time: its layers keep activations and gradients in buffers of their own, reused
/// by the next batch (for the four most recently used batch sizes). <see cref="Forward"/>, <see cref="Backward"/>,
/// <see cref="Predict"/>, <see cref="Train"/>, <see cref="Eval"/>, <see cref="SetRandomKey"/>, <see cref="StateDict"/>,
/// <see cref="LoadStateDict"/>, <see cref="Normalization"/>'s setter and <see cref="Dispose"/> called while another
/// thread is inside one of them (or inside a trainer's Fit or Evaluate, or a profile, which hold the model for their
/// whole run) throw <see cref="InvalidOperationException"/> instead of mixing two batches. A trainer's callbacks run
/// on its thread and may use the model; a handler that runs elsewhere (a <see cref="Progress{T}"/>'s, on the thread
/// pool) must not. Threads may share a backend, each with a model of its own (the backend runs their operations in
/// turn).
/// </remarks>
public sealed class Sequential : IDisposable
{
    private readonly BatchSizedCache<DeviceTensor<float>> _inputs; // Predict's uploads
    private readonly LayerChain _chain;
    private readonly BatchSizedCache<DeviceTensor<float>> _normalized;
    private uint _randomKey;
    private int _randomFirstSample;
    private int _backwardBatch; // the batch of the Forward a Backward goes back through; 0: none (or Predict, Evaluate, Fit ran since)
    private bool _randomKeyFresh;
    private ChannelNormalization? _normalization;
    private DeviceTensor<float>? _mean, _std;
    private readonly ThreadUse _use = new();
    private bool _disposed;
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<DeviceTensor<float>, DeviceTensor<float>> _passedOn = [];

    /// <summary>Builds the layers for per-sample inputs of <paramref name="inputShape"/> (e.g. (1,28,28)), seeded.</summary>
    public Sequential(IEnumerable<Layer> layers, Shape inputShape, Backend backend, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(backend);
        _inputs = new(batch => backend.Allocate<float>(Batch(batch)), static input => input.Dispose());
        _normalized = new(batch => backend.Allocate<float>(Batch(batch)).Lend(), static normalized => normalized.Reclaim());
        Shape Batch(int batch) => new([batch, .. inputShape.ToArray()]);
        _chain = new LayerChain([.. layers]);
        if (Layers.Count == 0)
        {
            throw new ArgumentException("Sequential: a model needs at least one layer.", nameof(layers));
        }

        Backend = backend;
        InputShape = inputShape;
        _randomKey = Kernels.CounterRandom.Hash(0xD5A61266u, unchecked((uint)seed));
        Shape shape;
        try
        {
            shape = _chain.Build(backend, inputShape, new Random(seed), "layer");
        }
        catch (SpecException)
        {
            Dispose(); // the chain has freed its layers already; this frees the model's own buffers
            throw;
        }

        if (shape.Rank != 1)
        {
            Dispose();
            throw new SpecException($"the model ends with shape {shape}; end it with flatten and dense(classes) to produce logits.");
        }

        OutputShape = shape;
    }

    /// <summary>Parses <paramref name="spec"/> and builds it (see <see cref="ArchitectureSpec"/>).</summary>
    public static Sequential Create(string spec, Shape inputShape, Backend backend, int seed = 0) =>
        new(ArchitectureSpec.Parse(spec), inputShape, backend, seed);

    /// <summary>The layers in order.</summary>
    public IReadOnlyList<Layer> Layers => _chain.Layers;

    /// <summary>The backend everything lives on.</summary>
    public Backend Backend { get; }

    /// <summary>Per-sample input shape (C,H,W).</summary>
    public Shape InputShape { get; }

    /// <summary>Per-sample output shape (classes).</summary>
    public Shape OutputShape { get; }

    /// <summary>The number of output classes (logits per sample).</summary>
    public int Classes => OutputShape[0];

    /// <summary>
    /// The input normalisation applied on the device before the first layer (null: none); its channels must be the
    /// input's.
    /// </summary>
    public ChannelNormalization? Normalization
    {
        get => _normalization;
        set
        {
            if (value is not null && (InputShape.Rank < 1 || value.Channels != InputShape[0]))
            {
                throw new ArgumentException($"normalize: {value.Channels} channel(s) given, the model's input {InputShape} has {(InputShape.Rank < 1 ? 0 : InputShape[0])}.");
            }

            using var use = Use("Sequential.Normalization");
            DeviceTensor<float>? mean = null, std = null;
            if (value is not null)
            {
                // The new tensors first: if they cannot be made, the model keeps its current normalisation.
                mean = Backend.Upload<float>([value.Channels], [.. value.Mean]);
                try
                {
                    std = Backend.Upload<float>([value.Channels], [.. value.Std]);
                }
                catch
                {
                    mean.Dispose();
                    throw;
                }
            }

            _mean?.Dispose();
            _std?.Dispose();
            (_mean, _std) = (mean, std);
            _normalization = value;
        }
    }

    /// <summary>The canonical architecture spec.</summary>
    public string Spec => _chain.Spec;

    /// <summary>Whether the model is in training mode (see <see cref="Train"/> and <see cref="Eval"/>).</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Every trainable parameter with its state-dict key, in layer order (what optimizers take).</summary>
    public IEnumerable<(string Key, Parameter Parameter)> NamedParameters() => _chain.NamedParameters();

    /// <summary>Every buffer (saved, not trained: running statistics) with its state-dict key.</summary>
    public IEnumerable<(string Key, DeviceTensor<float> Buffer)> NamedBuffers() => _chain.NamedBuffers();

    /// <summary>Every counter (num_batches_tracked) with its state-dict key; a state dict holds each as a scalar.</summary>
    public IEnumerable<(string Key, Counter Counter)> NamedCounters() => _chain.NamedCounters();

    /// <summary>The state-dict keys that hold counters: files store them as int64, as PyTorch does.</summary>
    public IReadOnlySet<string> CounterKeys => NamedCounters().Select(c => c.Key).ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// The random stream of the next training forward pass (dropout's masks): the trainer sets it for every batch
    /// from the seed, epoch and batch, so a run repeats, and a resumed run continues, bitwise. When it is not set,
    /// each training forward advances it (different masks every batch, repeatable from the model's seed).
    /// <paramref name="firstSample"/> is the position of the next batch's first sample in the whole batch the masks are
    /// drawn for: ranks that share a global batch pass where their share starts, and so draw what one process would.
    /// </summary>
    public void SetRandomKey(uint key, int firstSample = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstSample);
        using var use = Use("Sequential.SetRandomKey");
        (_randomKey, _randomFirstSample) = (key, firstSample);
        _randomKeyFresh = true;
    }

    /// <summary>Training mode for every layer, as PyTorch's <c>model.train()</c>.</summary>
    public void Train() => SetTraining(true);

    /// <summary>Evaluation mode for every layer, as PyTorch's <c>model.eval()</c>.</summary>
    public void Eval() => SetTraining(false);

    private void SetTraining(bool training)
    {
        using var use = Use(training ? "Sequential.Train" : "Sequential.Eval");
        Training = training;
        _chain.SetTraining(training);
    }

    /// <summary>
    /// logits (N, classes) for x (N, C, H, W) on the device; the result is owned by the last layer and lent until the
    /// model's next pass (buffers are kept for the four most recently used batch sizes, so read it before then).
    /// </summary>
    public DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var use = Use("Sequential.Forward");
        var given = x;
        bool fits = x.Shape.Rank == InputShape.Rank + 1;
        for (int i = 0; fits && i < InputShape.Rank; i++)
        {
            fits = x.Shape[i + 1] == InputShape[i];
        }

        if (!fits)
        {
            throw new ArgumentException($"Sequential.Forward: input has shape {x.Shape}, the model expects (N,{string.Join(",", InputShape.ToArray())}).", nameof(x));
        }

        if (_mean is not null)
        {
            var normalized = _normalized.Get(x.Shape[0]); // lent: what Forward returns when every layer passes it on
            Backend.NormalizeChannels(x, normalized, _mean, _std!);
            x = normalized;
        }

        if (Training)
        {
            if (!_randomKeyFresh)
            {
                _randomKey = Kernels.CounterRandom.Derive(_randomKey, 0x9E37u);
                _randomFirstSample = 0; // a key of the model's own stream: its batch stands alone
            }

            _randomKeyFresh = false;
            _chain.SetRandomKey(_randomKey, _randomFirstSample);
        }

        _backwardBatch = 0; // a pass that fails part-way leaves nothing a Backward could go back through
        var y = _chain.Forward(x);
        _backwardBatch = x.Shape[0];
        if (!ReferenceEquals(y, given))
        {
            return y;
        }

        // Every layer passed its input on (dropout in evaluation): the caller's own tensor would come back, and the
        // documented `using var y = model.Forward(x)` would dispose it. A lent view of it comes back instead.
        if (!_passedOn.TryGetValue(given, out var view) || view.IsDisposed)
        {
            view = given.View(given.Shape).Lend();
            _passedOn.AddOrUpdate(given, view);
        }

        return view;
    }

    /// <summary>Times every layer, nested ones included, with <paramref name="timer"/> (null: stop).</summary>
    internal void AttachTimer(LayerTimer? timer) => _chain.AttachTimer(timer, "");

    /// <summary>Whether a profiler's timer is attached.</summary>
    internal bool IsTimed => _chain.IsTimed;

    /// <summary>Whether a profiler's timer is attached and timing the layers now.</summary>
    internal bool IsTiming => _chain.IsTiming;

    /// <summary>
    /// Back-propagates dlogits (N, classes) through the last <see cref="Forward"/> (the layers keep what it saw),
    /// writing each parameter's gradient. Gradients are overwritten, not accumulated as PyTorch's backward() does: to
    /// sum over micro-batches, add them yourself between calls. <see cref="Predict"/>, <c>Trainer.Evaluate</c> and
    /// <c>Trainer.Fit</c> run passes of their own, after which a Backward has nothing to go back through.
    /// </summary>
    public void Backward(DeviceTensor<float> dlogits)
    {
        ArgumentNullException.ThrowIfNull(dlogits);
        using var use = Use("Sequential.Backward");
        if (_backwardBatch == 0)
        {
            throw new InvalidOperationException("Sequential.Backward: there is no Forward to go back through; call Forward on the batch " +
                "first (Predict, Trainer.Evaluate, Trainer.Fit and a profile run passes of their own, which overwrite what the layers kept).");
        }

        if (dlogits.Shape.Rank != 2 || dlogits.Shape[0] != _backwardBatch || dlogits.Shape[1] != Classes) // no Shape allocated per step
        {
            throw new ArgumentException($"Sequential.Backward: dlogits has shape {dlogits.Shape}; the last Forward was of {_backwardBatch} " +
                $"samples, so expected ({_backwardBatch},{Classes}).", nameof(dlogits));
        }

        _chain.Backward(dlogits, needInputGradient: false);
    }

    /// <summary>After a pass of the engine's own (Predict, Evaluate, Fit, a profile): no Backward may follow it.</summary>
    internal void ForgetForward() => _backwardBatch = 0;

    /// <summary>
    /// The largest batch whose tensors all fit one tensor's limit (<see cref="Shape.MaximumElements"/>): the input and
    /// every layer's input and output, nested ones included (what a layer keeps of a batch — gradients, switches,
    /// masks — is no larger); with the top-level layer that binds it (−1: the input itself). A backend's own scratch
    /// is not counted (ILGPU's padded dy for a dilated layer's backward data can be twice the layer's output): it is
    /// refused where it is made, asking for smaller batches.
    /// </summary>
    internal (int Batch, int Layer) LargestBatch()
    {
        long widest = InputShape.Size;
        int binding = -1;
        for (int i = 0; i < Layers.Count; i++)
        {
            if (Widest(Layers[i]) is var size && size > widest)
            {
                (widest, binding) = (size, i);
            }
        }

        return ((int)(Shape.MaximumElements / widest), binding);

        static long Widest(Layer layer) => Math.Max(Math.Max(layer.InputShape.Size, layer.OutputShape.Size),
            layer is Residual block ? block.Body.Concat(block.Shortcut).Select(Widest).DefaultIfEmpty(0).Max() : 0);
    }

    /// <summary>
    /// Refuses a batch of <paramref name="batch"/> samples when a tensor of it would pass one tensor's limit, naming the
    /// layer and the largest batch that fits (before a run starts, not at an allocation half-way through it).
    /// </summary>
    internal void RequireBatchFits(string operation, int batch)
    {
        var (largest, layer) = LargestBatch();
        if (batch > largest)
        {
            string where = layer < 0 ? "the input" : $"layer {layer + 1} '{Layers[layer].Spec}'";
            throw new ArgumentException($"{operation}: a batch of {batch} samples passes the {Shape.MaximumElements} elements one tensor holds at {where}; " +
                $"use a batch size of at most {largest}.");
        }
    }

    /// <summary>
    /// Logits (N, classes) for host images (N, C, H, W), computed in batches on the device (of at most
    /// <paramref name="batchSize"/>, fewer where a layer's tensors would pass one tensor's limit: the logits do not depend on it).
    /// </summary>
    public Tensor Predict(Tensor images, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(images);
        Checks.Positive("Predict", nameof(batchSize), batchSize);
        using var use = Use("Sequential.Predict");
        // Every axis, not just the count: (N,H,W,C) images of a (C,H,W) model hold as many values but are not its input.
        if (images.Shape.Rank != InputShape.Rank + 1 || !images.Shape.ToArray().AsSpan(1).SequenceEqual(InputShape.ToArray()))
        {
            throw new ArgumentException($"Predict: images have shape {images.Shape}, the model expects (N,{string.Join(",", InputShape.ToArray())}).", nameof(images));
        }

        int count = images.Shape[0], sample = InputShape.Size;
        batchSize = Math.Min(batchSize, LargestBatch().Batch);

        var logits = new Tensor(new Shape(count, Classes));
        bool training = Training;
        Eval(); // inference, as PyTorch's model.eval(); the mode is restored after
        try
        {
            for (int start = 0; start < count; start += batchSize)
            {
                int batch = Math.Min(batchSize, count - start);
                var input = InputBuffer(batch);
                Backend.Upload<float>(images.Data.AsSpan(start * sample, batch * sample), input);
                Backend.Download<float>(Forward(input), logits.Data.AsSpan(start * Classes, batch * Classes));
            }
        }
        finally
        {
            SetTraining(training);
            ForgetForward();
        }

        return logits;
    }

    /// <summary>
    /// The state-dict name of the first parameter or buffer (batch norm's running statistics) holding NaN or ±∞, or
    /// null: checked on the device (one flag per tensor, one small download), so a trainer can look every epoch
    /// without copying the weights.
    /// </summary>
    public string? FirstNonFiniteTensor()
    {
        using var use = Use("Sequential.FirstNonFiniteTensor"); // not while another thread steps the weights
        var named = State().ToList();
        if (named.Count == 0)
        {
            return null; // a model without parameters or buffers (flatten, pooling and activations only)
        }

        using var flags = Backend.Upload<float>([named.Count], new float[named.Count]);
        for (int i = 0; i < named.Count; i++)
        {
            Backend.FlagNonFinite(named[i].Tensor, flags, i);
        }

        float[] raised = Backend.DownloadArray(flags);
        int first = Array.FindIndex(raised, f => f != 0f);
        return first < 0 ? null : named[first].Key;
    }

    /// <summary>Copies the parameters, buffers and counters (as scalars) to host tensors keyed by state-dict name.</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        using var use = Use("Sequential.StateDict");
        var state = State().ToDictionary(p => p.Key, p => Backend.Download(p.Tensor));
        foreach (var (key, counter) in NamedCounters())
        {
            state[key] = new Tensor(Scalar, [counter.Value]);
        }

        return state;
    }

    /// <summary>
    /// A counter's shape in a state dict: a scalar, as PyTorch's num_batches_tracked. State dicts hold float32, so a
    /// count is exact up to 2²⁴ (16,777,216 batches) in them and in files; past that it is rounded to float precision
    /// (PyTorch reads the counter only for momentum=None, which the engine does not offer).
    /// </summary>
    private static Shape Scalar => new(Array.Empty<int>());

    /// <summary>
    /// Loads parameters and buffers by state-dict name. Strict, as PyTorch's load_state_dict: every key must be
    /// present with exactly the model's shape, and no key may be left over; on any mismatch nothing is changed. A
    /// counter (batch norm's num_batches_tracked) may be missing, as PyTorch accepts from state dicts written before
    /// it existed and from converted ones: it starts at 0.
    /// </summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        using var use = Use("Sequential.LoadStateDict");
        var named = State().ToList();
        var counters = NamedCounters().ToList();
        var expected = named.Select(n => (n.Key, n.Tensor.Shape, Counter: false)).Concat(counters.Select(c => (c.Key, Scalar, Counter: true))).ToList();
        foreach (var (key, shape, counter) in expected)
        {
            if (!state.TryGetValue(key, out var value))
            {
                if (counter)
                {
                    continue; // counted from 0
                }

                throw new ArgumentException($"weights: tensor '{key}' is missing; the model needs it with shape {shape}.", nameof(state));
            }

            if (value is null)
            {
                throw new ArgumentException($"weights: tensor '{key}' is null; the model needs it with shape {shape}.", nameof(state));
            }

            if (value.Shape != shape)
            {
                throw new ArgumentException($"weights: tensor '{key}' has shape {value.Shape}, the model needs {shape}.", nameof(state));
            }
        }

        string? extra = state.Keys.Except(expected.Select(n => n.Key)).Order(StringComparer.Ordinal).FirstOrDefault();
        if (extra is not null)
        {
            throw new ArgumentException($"weights: tensor '{extra}' does not belong to this model (its tensors are {string.Join(", ", expected.Select(n => n.Key))}).", nameof(state));
        }

        float CountOf(string key) => state.TryGetValue(key, out var count) ? count.Data[0] : 0f;
        foreach (var (key, counter) in counters)
        {
            float count = CountOf(key);
            if (!float.IsFinite(count) || count < 0 || count != MathF.Round(count))
            {
                throw new ArgumentException($"weights: counter '{key}' is {count.ToString(System.Globalization.CultureInfo.InvariantCulture)}, not a whole number of batches.", nameof(state));
            }
        }

        foreach (var (key, tensor) in named)
        {
            Backend.Upload<float>(state[key].Data, tensor);
        }

        foreach (var (key, counter) in counters)
        {
            counter.Value = (long)CountOf(key);
        }
    }

    /// <summary>
    /// Marks the model in use by this thread until the result is disposed; re-entrant on the same thread (Predict
    /// runs Forward; a trainer holds the model for its whole run). Another thread inside a guarded method is an error
    /// naming <paramref name="method"/>.
    /// </summary>
    internal ThreadUse.Scope Use(string method)
    {
        ThrowIfDisposed(method);
        var scope = _use.Enter(method, static method =>
            $"{method}: the model is in use by another thread; a model serves one thread at a time (its layers keep " +
            "each batch's activations and gradients), so give each thread its own model — models may share one backend.");
        if (_disposed)
        {
            scope.Dispose(); // disposed by another thread between the check and the entry
            ThrowIfDisposed(method);
        }

        return scope;
    }

    private void ThrowIfDisposed(string method)
    {
        if (_disposed)
        {
            throw new ObjectDisposedException(nameof(Sequential), $"{method}: the model has been disposed.");
        }
    }

    /// <summary>Parameters then buffers, each with its state-dict key.</summary>
    private IEnumerable<(string Key, DeviceTensor<float> Tensor)> State() =>
        NamedParameters().Select(p => (p.Key, p.Parameter.Value)).Concat(NamedBuffers());

    /// <inheritdoc/>
    public void Dispose()
    {
        ThreadUse.Scope use;
        try
        {
            use = Use("Sequential.Dispose");
        }
        catch (ObjectDisposedException)
        {
            return; // disposed already (perhaps by another thread a moment ago): a second Dispose does nothing
        }

        using var entered = use;
        _disposed = true;
        _chain.Release();
        _inputs.Clear();
        _normalized.Clear();

        _mean?.Dispose();
        _std?.Dispose();
    }

    private DeviceTensor<float> InputBuffer(int batch) => _inputs.Get(batch);
}
