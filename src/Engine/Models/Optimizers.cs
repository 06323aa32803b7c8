namespace GpuCnn.Models;

/// <summary>Updates parameters from their gradients; its state (momentum, moments) stays on the device.</summary>
/// <remarks>
/// To write one's own: derive, make state buffers with <see cref="ZeroStates"/> (one a parameter; nothing is left
/// allocated when the device runs out part-way) or <see cref="ZeroState"/>, step <see cref="Values"/> from
/// <see cref="Gradients"/> with the backend's operations in <see cref="StepCore"/> (<see cref="Step"/> guards and
/// counts it), name the state in
/// <see cref="StateTensors"/> (checkpoints save and restore it) and <see cref="Free"/> it in <see cref="Dispose(bool)"/>
/// (samples/Consumer/CustomOptimizer.cs).
/// </remarks>
public abstract class Optimizer : IDisposable
{
    private readonly ThreadUse _use = new();

    /// <summary>Takes the parameters to update, with their state_dict keys.</summary>
    protected Optimizer(Backend backend, IEnumerable<(string Key, Parameter Parameter)> parameters)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(parameters);
        Backend = backend;
        Parameters = [.. parameters];
        Parameter.CheckList("Optimizer", backend, Parameters, nameof(parameters));

        Values = [.. Parameters.Select(p => p.Parameter.Value)];
        Gradients = [.. Parameters.Select(p => p.Parameter.Gradient)];
        _stepName = $"{GetType().Name}.Step";
    }

    private readonly string _stepName; // made once: a step allocates nothing

    /// <summary>The parameters in update order.</summary>
    public IReadOnlyList<(string Key, Parameter Parameter)> Parameters { get; }

    /// <summary>
    /// Enters a step (or a trainer's whole run): another thread stepping at the same time would apply updates to
    /// weights in the middle of a training step, silently.
    /// </summary>
    internal ThreadUse.Scope Use(string method) => _use.Enter(method, static method =>
        $"{method}: the optimizer is in use by another thread (a Trainer's Fit steps it); an optimizer serves one thread at a time.");

    /// <summary>
    /// Throws unless every parameter this optimizer updates is one of <paramref name="model"/>'s: an optimizer made for
    /// another model would step that model with stale gradients while this one never moves. A subset is fine (frozen
    /// layers).
    /// </summary>
    internal void CheckUpdates(Sequential model, string what)
    {
        var own = model.NamedParameters().Select(p => p.Parameter).ToHashSet(ReferenceEqualityComparer.Instance);
        foreach (var (key, parameter) in Parameters)
        {
            if (!own.Contains(parameter))
            {
                throw new ArgumentException($"{what}: the optimizer's parameter '{key}' is not a parameter of this model; give the optimizer the model's NamedParameters().");
            }
        }
    }

    /// <summary>Steps taken so far (a step that threw is not counted).</summary>
    public int StepCount { get; private set; }

    /// <summary>The learning rate the next step uses (a schedule may change it between epochs).</summary>
    public abstract float LearningRate { get; set; }

    /// <summary>
    /// The optimizer's hyperparameters, as ranks training together must share them (with its type's name); an
    /// optimizer of the user's own has none to compare.
    /// </summary>
    internal virtual object Settings => string.Empty;

    /// <summary>The backend.</summary>
    protected Backend Backend { get; }

    /// <summary>The parameters' values, in update order (the tensor lists a step hands to the backend at once).</summary>
    protected IReadOnlyList<DeviceTensor<float>> Values { get; }

    /// <summary>The parameters' gradients, in update order.</summary>
    protected IReadOnlyList<DeviceTensor<float>> Gradients { get; }

    /// <summary>Sets the step count, when resuming from a checkpoint.</summary>
    public void RestoreStepCount(int steps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        StepCount = steps;
    }

    /// <summary>
    /// The state tensors, named "{parameter key}.{slot}" with PyTorch's slot names (momentum_buffer; exp_avg,
    /// exp_avg_sq), for checkpoints. Writing into them restores the state together with
    /// <see cref="RestoreStepCount"/>, as PyTorch's load_state_dict restores the buffers and the step: the count decides
    /// SGD's first step (which takes the gradient as its momentum) and Adam's bias correction.
    /// </summary>
    public abstract IEnumerable<(string Name, DeviceTensor<float> Tensor)> StateTensors();

    /// <summary>
    /// Applies one update to every parameter from its current gradient (<see cref="StepCore"/>) and counts it; refused
    /// to a thread other than the one stepping it or running a trainer with it, and once it or its model has been
    /// disposed.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1716", Justification = "PyTorch's name for it.")]
    public void Step()
    {
        using var use = Use(_stepName);
        ThrowIfDisposed(_stepName);
        StepCore();
        StepCount++; // after: a step that throws is not counted
    }

    /// <summary>
    /// One update of every parameter from its current gradient; <see cref="StepCount"/> is the steps before it (0 on
    /// the first).
    /// </summary>
    protected abstract void StepCore();

    /// <summary>A state buffer shaped like <paramref name="parameter"/>, zero-filled.</summary>
    protected DeviceTensor<float> ZeroState(Parameter parameter)
    {
        return Backend.AllocateFilled(parameter.Shape, 0f).Lend(); // StateTensors hands it out; Dispose frees it
    }

    /// <summary>
    /// A zero-filled state buffer for every parameter, in order; when one cannot be made (the device out of memory),
    /// those made before it are freed, so that a failed constructor leaves nothing allocated.
    /// </summary>
    protected DeviceTensor<float>[] ZeroStates()
    {
        var states = new List<DeviceTensor<float>>(Parameters.Count);
        try
        {
            foreach (var (_, parameter) in Parameters)
            {
                states.Add(ZeroState(parameter));
            }
        }
        catch
        {
            Free(states);
            throw;
        }

        return [.. states];
    }

    /// <summary>Frees state buffers this optimizer made with <see cref="ZeroState"/> (from <see cref="Dispose(bool)"/>).</summary>
    protected static void Free(IEnumerable<DeviceTensor<float>> states)
    {
        ArgumentNullException.ThrowIfNull(states);
        foreach (var state in states)
        {
            state.Reclaim();
        }
    }

    /// <summary>Checks a new learning rate.</summary>
    protected static float Checked(float learningRate)
    {
        Checks.FiniteNonNegative("Optimizer", "learning rate", learningRate);
        return learningRate;
    }

    /// <summary>Whether <see cref="Dispose()"/> has freed the state.</summary>
    public bool IsDisposed { get; private set; }

    /// <inheritdoc/>
    public void Dispose()
    {
        using var use = Use("Optimizer.Dispose"); // not while a trainer steps it on another thread
        if (IsDisposed)
        {
            return; // a second Dispose frees nothing twice
        }

        IsDisposed = true;
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// Throws, naming <paramref name="method"/>, when this optimizer or the model whose parameters it updates has been
    /// disposed (their tensors' own messages named only an operation's argument). Allocates nothing.
    /// </summary>
    internal void ThrowIfDisposed(string method)
    {
        if (IsDisposed)
        {
            throw new ObjectDisposedException(GetType().Name, $"{method}: the optimizer has been disposed.");
        }

        for (int i = 0; i < Values.Count; i++)
        {
            if (Values[i].IsDisposed)
            {
                throw new ObjectDisposedException(nameof(Sequential),
                    $"{method}: parameter '{Parameters[i].Key}' has been freed: the model this optimizer updates has been disposed.");
            }
        }
    }

    /// <summary>Frees the state buffers.</summary>
    protected abstract void Dispose(bool disposing);
}

/// <summary>torch.optim.SGD: momentum, dampening, weight decay, Nesterov (docs/05-optimizers.md).</summary>
public sealed class Sgd : Optimizer
{
    private readonly DeviceTensor<float>[] _velocity;

    /// <summary>
    /// Creates the optimizer; its momentum buffers start at zero. Without momentum it keeps none, as PyTorch keeps
    /// none (its momentum_buffer is None): no state, and no memory the size of the model.
    /// </summary>
    public Sgd(Backend backend, IEnumerable<(string Key, Parameter Parameter)> parameters, SgdOptions options)
        : base(backend, parameters)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _learningRate = options.LearningRate;
        _velocity = options.Momentum != 0f ? ZeroStates() : [];
    }

    private readonly SgdOptions _options;
    private float _learningRate;

    /// <summary>The hyperparameters (with the current learning rate).</summary>
    public SgdOptions Options => _learningRate == _options.LearningRate ? _options : _options with { LearningRate = _learningRate };

    /// <inheritdoc/>
    internal override object Settings => Options;

    /// <inheritdoc/>
    public override float LearningRate
    {
        get => _learningRate;
        set => _learningRate = Checked(value); // a field, not a new options record: a warm-up sets it every batch
    }

    /// <inheritdoc/>
    /// <remarks>None without momentum (a checkpoint written with zero buffers before then still restores: they are not read).</remarks>
    public override IEnumerable<(string Name, DeviceTensor<float> Tensor)> StateTensors() =>
        _velocity.Select((velocity, i) => ($"{Parameters[i].Key}.momentum_buffer", velocity));

    /// <inheritdoc/>
    protected override void StepCore() => Backend.SgdUpdate(_options, StepCount == 0, Values, Gradients, _velocity, _learningRate);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        Free(_velocity);
    }
}

/// <summary>torch.optim.Adam with bias correction (docs/05-optimizers.md).</summary>
public sealed class Adam : Optimizer
{
    private readonly DeviceTensor<float>[] _m, _v;

    /// <summary>Creates the optimizer; its moments start at zero.</summary>
    public Adam(Backend backend, IEnumerable<(string Key, Parameter Parameter)> parameters, AdamOptions options)
        : base(backend, parameters)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _learningRate = options.LearningRate;
        _m = ZeroStates();
        try
        {
            _v = ZeroStates();
        }
        catch
        {
            Free(_m);
            throw;
        }
    }

    private readonly AdamOptions _options;
    private float _learningRate;

    /// <summary>The hyperparameters (with the current learning rate).</summary>
    public AdamOptions Options => _learningRate == _options.LearningRate ? _options : _options with { LearningRate = _learningRate };

    /// <inheritdoc/>
    internal override object Settings => Options;

    /// <inheritdoc/>
    public override float LearningRate
    {
        get => _learningRate;
        set => _learningRate = Checked(value); // a field, not a new options record: a warm-up sets it every batch
    }

    /// <inheritdoc/>
    public override IEnumerable<(string Name, DeviceTensor<float> Tensor)> StateTensors() =>
        Parameters.SelectMany((p, i) => new[] { ($"{p.Key}.exp_avg", _m[i]), ($"{p.Key}.exp_avg_sq", _v[i]) });

    /// <inheritdoc/>
    protected override void StepCore() =>
        Backend.AdamUpdate(_options, StepCount + 1, Values, Gradients, _m, _v, _learningRate); // step t counts from 1 in the bias correction

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        Free(_m.Concat(_v));
    }
}
