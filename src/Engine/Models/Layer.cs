namespace GpuCnn.Models;

/// <summary>
/// A trainable tensor of a layer with its gradient, both on the layer's backend and lent by it
/// (<see cref="DeviceTensor{T}.IsLent"/>): the model that holds the layer frees them.
/// </summary>
public sealed class Parameter
{
    internal Parameter(string name, DeviceTensor<float> value, DeviceTensor<float> gradient)
    {
        Name = name;
        Value = value.Lend();
        Gradient = gradient.Lend();
    }

    /// <summary>"weight" or "bias", as in PyTorch's state_dict.</summary>
    public string Name { get; }

    /// <summary>The values.</summary>
    public DeviceTensor<float> Value { get; }

    /// <summary>∂loss/∂value after the last backward pass.</summary>
    public DeviceTensor<float> Gradient { get; }

    /// <summary>The shape, in PyTorch's layout.</summary>
    public Shape Shape => Value.Shape;

    /// <summary>
    /// Refuses a list naming one parameter twice (an optimizer or clipper would update or scale it twice, and a GPU's
    /// one launch for the list from two threads at once), or one that lives on another backend than
    /// <paramref name="backend"/> (found when made, not at the first step after a whole forward and backward).
    /// </summary>
    internal static void CheckList(string who, Backend backend, IReadOnlyList<(string Key, Parameter Parameter)> parameters, string argument)
    {
        for (int i = 0; i < parameters.Count; i++)
        {
            Checks.Owned(who, $"parameter '{parameters[i].Key}'", parameters[i].Parameter.Value, backend);
            for (int j = i + 1; j < parameters.Count; j++)
            {
                if (parameters[i].Parameter.Value.SharesStorageWith(parameters[j].Parameter.Value))
                {
                    throw new ArgumentException($"{who}: {parameters[i].Key} and {parameters[j].Key} are the same tensor; list each parameter once.", argument);
                }
            }
        }
    }

    /// <summary>Frees both tensors (the owning layer, when its model is disposed).</summary>
    internal void Release()
    {
        Value.Reclaim();
        Gradient.Reclaim();
    }
}

/// <summary>
/// A whole number a layer keeps on the host and saves beside its tensors as an int64 scalar (PyTorch's
/// num_batches_tracked).
/// </summary>
public sealed class Counter
{
    /// <summary>The count.</summary>
    public long Value { get; set; }
}

/// <summary>
/// One layer of a <see cref="Sequential"/> model. Layers call only <see cref="GpuCnn.Backend"/> operations; they never
/// see a device type. Shapes are per sample (C,H,W) or (features); tensors carry the batch as their first axis.
/// </summary>
public abstract class Layer
{
    private readonly BatchSizedCache<DeviceTensor<float>> _outputs, _inputGradients;
    private Backend? _backend;
    private bool _released; // built, then freed with its model: a second model gets a message saying so

    /// <summary>A layer; its output and input-gradient buffers are made per batch size on first use.</summary>
    protected Layer()
    {
        _outputs = new(batch => Backend.Allocate<float>(BatchedBuffer(batch, OutputShape)).Lend(), static tensor => tensor.Reclaim());
        _inputGradients = new(batch => Backend.Allocate<float>(BatchedBuffer(batch, InputShape)).Lend(), static tensor => tensor.Reclaim());
    }

    /// <summary>The layer as written in an architecture spec, e.g. <c>conv(6,5,pad=2)</c>.</summary>
    public abstract string Spec { get; }

    /// <summary>The per-sample input shape, known after the model is built.</summary>
    public Shape InputShape { get; private set; }

    /// <summary>The per-sample output shape, known after the model is built.</summary>
    public Shape OutputShape { get; private set; }

    /// <summary>The trainable parameters (weight first, then bias), empty for parameter-free layers.</summary>
    public virtual IReadOnlyList<Parameter> Parameters => [];

    /// <summary>
    /// Whether the layer is in training mode (the default) or evaluation mode, as PyTorch's <c>module.training</c>;
    /// containers pass <see cref="SetTraining"/> on to their children. Layers whose behaviour depends on the mode
    /// (dropout, batch normalisation) read it.
    /// </summary>
    public bool Training { get; private set; } = true;

    /// <summary>Training or evaluation mode for this layer and everything inside it.</summary>
    public virtual void SetTraining(bool training) => Training = training;

    /// <summary>
    /// The key of the random stream for the next forward pass (dropout's mask) and the position of that pass's first
    /// sample in the whole batch the draws are made for (0 in one process; a rank's share start when ranks share a
    /// global batch, so that they draw what one process would). Containers derive a distinct key for each child and
    /// pass the position on. Layers without randomness ignore both.
    /// </summary>
    public virtual void SetRandomKey(uint key, int firstSample)
    {
    }

    /// <summary>
    /// The trainable parameters with their state-dict names relative to this layer ("weight"; a container prefixes
    /// its children's names, e.g. "body.0.weight"). Optimizers see these and nothing else.
    /// </summary>
    public virtual IEnumerable<(string Name, Parameter Parameter)> NamedParameters() => Parameters.Select(p => (p.Name, p));

    /// <summary>
    /// State that is saved and loaded with the parameters but not trained (running statistics), with relative names
    /// as <see cref="NamedParameters"/>; none by default.
    /// </summary>
    public virtual IEnumerable<(string Name, DeviceTensor<float> Buffer)> NamedBuffers() => [];

    /// <summary>Counters saved with the buffers (int64 scalars in files), with relative names; none by default.</summary>
    public virtual IEnumerable<(string Name, Counter Counter)> NamedCounters() => [];

    /// <summary>The backend the layer was built on.</summary>
    protected Backend Backend => _backend ?? throw new InvalidOperationException($"{Spec}: the layer has not been built.");

    /// <summary>Times the layers inside this one (a container's children) under <paramref name="name"/>'s prefix; none by default.</summary>
    internal virtual void AttachTimer(LayerTimer? timer, string name)
    {
    }

    /// <summary>Infers shapes and creates parameters. Throws <see cref="ArgumentException"/> when the input does not fit.</summary>
    internal void Build(Backend backend, Shape input, Random init)
    {
        if (IsBuilt)
        {
            // Building again would re-initialise the weights of the model that holds the layer and leak its buffers.
            throw AlreadyBuilt();
        }

        _backend = backend;
        InputShape = input;
        OutputShape = BuildOutput(input, init);
        CreateParameters(init);
    }

    /// <summary>Whether the layer has been built into a model (it then belongs to that model).</summary>
    internal bool IsBuilt => _backend is not null;

    /// <summary>The error for a layer given to a second model.</summary>
    internal InvalidOperationException AlreadyBuilt() => new(_released
        ? $"{Spec}: this layer was built into a model that has since been disposed or failed to build, which freed it; layers are not reused (parse the spec again: ArchitectureSpec.Parse)."
        : $"{Spec}: this layer already belongs to a model; give each model its own layers (parse the spec again: ArchitectureSpec.Parse).");

    /// <summary>Builds what the layer contains (a container builds its children here) and returns the output shape.</summary>
    private protected virtual Shape BuildOutput(Shape input, Random init) => InferOutputShape(input);

    /// <summary>Runs the layer on x (N, input…) and returns y (N, output…), a buffer the layer owns until its next call.</summary>
    public abstract DeviceTensor<float> Forward(DeviceTensor<float> x);

    /// <summary>
    /// From dy (N, output…) of the last forward, writes the parameter gradients and returns dx (N, input…) when
    /// <paramref name="needInputGradient"/> (the first layer skips it), otherwise null.
    /// </summary>
    public abstract DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient);

    /// <summary>The per-sample output shape for a per-sample input shape.</summary>
    protected abstract Shape InferOutputShape(Shape input);

    /// <summary>Creates and initialises the parameters.</summary>
    protected virtual void CreateParameters(Random init)
    {
    }

    /// <summary>The output buffer for a batch of <paramref name="batch"/>, kept for the four most recently used batch sizes.</summary>
    protected DeviceTensor<float> OutputBuffer(int batch)
    {
        ThrowIfReleased();
        return _outputs.Get(batch);
    }

    /// <summary>The input-gradient buffer for a batch of <paramref name="batch"/>, kept as the outputs are.</summary>
    protected DeviceTensor<float> InputGradientBuffer(int batch)
    {
        ThrowIfReleased();
        return _inputGradients.Get(batch);
    }

    /// <summary>
    /// Throws once the model this layer was built into has been disposed: a layer reached through
    /// <see cref="Sequential.Layers"/> would otherwise make buffers again that nothing frees.
    /// </summary>
    private protected void ThrowIfReleased()
    {
        if (_released)
        {
            throw new ObjectDisposedException(Spec, $"{Spec}: the model this layer was built into has been disposed, which freed the layer.");
        }
    }

    /// <summary>
    /// While a model is built to take a file's weights, how many values its parameters may still have (the file's
    /// count; null: no limit), so that a small file whose spec asks for billions fails before they are allocated.
    /// </summary>
    [ThreadStatic]
    private static long? t_parameterBudget;

    /// <summary>Limits the parameters of the models this thread builds until the result is disposed (see <see cref="IO.ModelFile"/>).</summary>
    internal static IDisposable LimitParameters(long values)
    {
        t_parameterBudget = values;
        return new BudgetScope();
    }

    private static void TakeFromBudget(string name, Shape shape)
    {
        if (t_parameterBudget is { } left)
        {
            t_parameterBudget = shape.Size <= left
                ? left - shape.Size
                : throw new ArgumentException($"its {name} {shape} would hold {shape.Size} values, more than are left in the weights to load ({left}).");
        }
    }

    private sealed class BudgetScope : IDisposable
    {
        public void Dispose() => t_parameterBudget = null;
    }

    /// <summary>A parameter initialised like PyTorch's default (kaiming_uniform with a = √5): U(−1/√fanIn, 1/√fanIn).</summary>
    protected Parameter CreateParameter(string name, Shape shape, int fanIn, Random init)
    {
        TakeFromBudget(name, shape);
        double bound = 1.0 / Math.Sqrt(fanIn);
        var values = new float[shape.Size];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)((init.NextDouble() * 2 - 1) * bound);
        }

        return Keep(name, Backend.Upload<float>(shape, values));
    }

    /// <summary>A parameter with every element <paramref name="value"/> (batch norm's weight 1 and bias 0).</summary>
    protected Parameter ConstantParameter(string name, Shape shape, float value)
    {
        TakeFromBudget(name, shape);
        return Keep(name, Backend.AllocateFilled(shape, value));
    }

    /// <summary>
    /// The parameters this layer has made, in order: what <see cref="Release"/> frees, so that a build that fails
    /// half-way (out of device memory at the bias, say) frees the weight it made before.
    /// </summary>
    private readonly List<Parameter> _made = [];

    /// <summary>A parameter of <paramref name="value"/> and a new gradient, kept for <see cref="Release"/>.</summary>
    private Parameter Keep(string name, DeviceTensor<float> value)
    {
        DeviceTensor<float> gradient;
        try
        {
            gradient = Backend.Allocate<float>(value.Shape);
        }
        catch
        {
            value.Dispose();
            throw;
        }

        var parameter = new Parameter(name, value, gradient);
        _made.Add(parameter);
        return parameter;
    }

    /// <summary>Prepends the batch to a per-sample shape.</summary>
    protected static Shape Batched(int batch, Shape sample) => new([batch, .. sample.ToArray()]);

    /// <summary>
    /// <see cref="Batched"/> for a buffer this layer allocates: a batch too large for one tensor is refused naming the
    /// layer (a bare shape error from deep in a forward pass had named neither the layer nor the batch).
    /// </summary>
    private protected Shape BatchedBuffer(int batch, Shape sample) =>
        (long)batch * sample.Size <= Shape.MaximumElements ? new([batch, .. sample.ToArray()])
        : throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{Spec}: a batch of {batch} makes a tensor of {batch} × {sample} = {(long)batch * sample.Size} elements, more than {Shape.MaximumElements}; " +
            $"use batches of at most {Shape.MaximumElements / sample.Size}."));

    /// <summary>Frees the layer's device memory (its model, when the model is disposed; layers are not the caller's to free).</summary>
    internal void Release()
    {
        _released = IsBuilt;
        _outputs.Clear();
        _inputGradients.Clear();

        foreach (var parameter in _made)
        {
            parameter.Release();
        }

        ReleaseBuffers();
    }

    /// <summary>Frees device buffers a layer keeps beyond its outputs and gradients (max pooling's switches).</summary>
    protected virtual void ReleaseBuffers()
    {
    }

    /// <inheritdoc/>
    public override string ToString() => Spec;

}
