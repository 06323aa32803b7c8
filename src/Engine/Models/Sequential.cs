namespace GpuCnn.Models;

/// <summary>
/// A stack of layers whose channel and feature counts are inferred from the input shape, as PyTorch's
/// nn.Sequential with Lazy modules. Parameter names are PyTorch state_dict keys, "{layer index}.weight" /
/// "{layer index}.bias", counting every layer of the spec.
/// </summary>
public sealed class Sequential : IDisposable
{
    private readonly Dictionary<int, DeviceTensor<float>> _inputs = [];

    /// <summary>Builds the layers for per-sample inputs of <paramref name="inputShape"/> (e.g. (1,28,28)), seeded.</summary>
    public Sequential(IEnumerable<Layer> layers, Shape inputShape, Backend backend, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(backend);
        Layers = [.. layers];
        if (Layers.Count == 0)
        {
            throw new ArgumentException("Sequential: a model needs at least one layer.", nameof(layers));
        }

        Backend = backend;
        InputShape = inputShape;
        var init = new Random(seed);
        Shape shape = inputShape;
        for (int i = 0; i < Layers.Count; i++)
        {
            try
            {
                Layers[i].Build(backend, shape, init);
            }
            catch (ArgumentException e)
            {
                Dispose();
                throw new SpecException($"layer {i + 1} '{Layers[i].Spec}' on input {shape}: {Unprefixed(e.Message)}");
            }

            shape = Layers[i].OutputShape;
        }

        if (shape.Rank != 1)
        {
            Dispose();
            throw new SpecException($"the model ends with shape {shape}; end it with flatten and dense(classes) to produce logits.");
        }

        OutputShape = shape;

        // Dense → activation and conv → activation pairs run as one fused operation: the bias and the activation
        // are applied as each output is stored.
        for (int i = 0; i + 1 < Layers.Count; i++)
        {
            if (Layers[i + 1] is not ActivationLayer { CanFuse: true } activation)
            {
                continue;
            }

            if (Layers[i] is Dense dense)
            {
                dense.FusedActivation = activation;
                activation.FusedIntoPrevious = true;
            }
            else if (Layers[i] is Conv2d conv)
            {
                conv.FusedActivation = activation;
                activation.FusedIntoPrevious = true;
            }
        }
    }

    /// <summary>Parses <paramref name="spec"/> and builds it (see <see cref="ArchitectureSpec"/>).</summary>
    public static Sequential Create(string spec, Shape inputShape, Backend backend, int seed = 0) =>
        new(ArchitectureSpec.Parse(spec), inputShape, backend, seed);

    /// <summary>The layers in order.</summary>
    public IReadOnlyList<Layer> Layers { get; }

    /// <summary>The backend everything lives on.</summary>
    public Backend Backend { get; }

    /// <summary>Per-sample input shape (C,H,W).</summary>
    public Shape InputShape { get; }

    /// <summary>Per-sample output shape (classes).</summary>
    public Shape OutputShape { get; }

    /// <summary>The number of output classes (logits per sample).</summary>
    public int Classes => OutputShape[0];

    /// <summary>The canonical architecture spec.</summary>
    public string Spec => ArchitectureSpec.Format(Layers);

    /// <summary>Every parameter with its state_dict key, in layer order.</summary>
    public IEnumerable<(string Key, Parameter Parameter)> NamedParameters() =>
        Layers.SelectMany((layer, index) => layer.Parameters.Select(p => ($"{index}.{p.Name}", p)));

    /// <summary>logits (N, classes) for x (N, C, H, W) on the device; the result is owned by the last layer.</summary>
    public DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        ArgumentNullException.ThrowIfNull(x);
        bool fits = x.Shape.Rank == InputShape.Rank + 1;
        for (int i = 0; fits && i < InputShape.Rank; i++)
        {
            fits = x.Shape[i + 1] == InputShape[i];
        }

        if (!fits)
        {
            throw new ArgumentException($"Sequential.Forward: input has shape {x.Shape}, the model expects (N,{string.Join(",", InputShape.ToArray())}).", nameof(x));
        }

        for (int i = 0; i < Layers.Count; i++)
        {
            x = Layers[i].Forward(x); // indexed: a foreach over the interface would allocate an enumerator per batch
        }

        return x;
    }

    /// <summary>Back-propagates dlogits through every layer, leaving each parameter's gradient.</summary>
    public void Backward(DeviceTensor<float> dlogits)
    {
        DeviceTensor<float>? gradient = dlogits;
        for (int i = Layers.Count - 1; i >= 0 && gradient is not null; i--)
        {
            gradient = Layers[i].Backward(gradient, needInputGradient: i > 0);
        }
    }

    /// <summary>Logits (N, classes) for host images (N, C, H, W), computed in batches on the device.</summary>
    public Tensor Predict(Tensor images, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(images);
        Checks.Positive("Predict", nameof(batchSize), batchSize);
        int count = images.Shape[0], sample = InputShape.Size;
        if (images.Shape.SizeFrom(1) != sample || images.Shape.Rank != InputShape.Rank + 1)
        {
            throw new ArgumentException($"Predict: images have shape {images.Shape}, the model expects (N,{string.Join(",", InputShape.ToArray())}).", nameof(images));
        }

        var logits = new Tensor(new Shape(count, Classes));
        for (int start = 0; start < count; start += batchSize)
        {
            int batch = Math.Min(batchSize, count - start);
            var input = InputBuffer(batch);
            Backend.Upload<float>(images.Data.AsSpan(start * sample, batch * sample), input);
            Backend.Download<float>(Forward(input), logits.Data.AsSpan(start * Classes, batch * Classes));
        }

        return logits;
    }

    /// <summary>Copies the parameters to host tensors keyed by state_dict name.</summary>
    public Dictionary<string, Tensor> StateDict() =>
        NamedParameters().ToDictionary(p => p.Key, p => Backend.Download(p.Parameter.Value));

    /// <summary>
    /// Loads parameters by state_dict name. Strict, as PyTorch's load_state_dict: every key must be present with
    /// exactly the model's shape, and no key may be left over; on any mismatch nothing is changed.
    /// </summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var named = NamedParameters().ToList();
        foreach (var (key, parameter) in named)
        {
            if (!state.TryGetValue(key, out var tensor))
            {
                throw new ArgumentException($"weights: tensor '{key}' is missing; the model needs it with shape {parameter.Shape}.", nameof(state));
            }

            if (tensor.Shape != parameter.Shape)
            {
                throw new ArgumentException($"weights: tensor '{key}' has shape {tensor.Shape}, the model needs {parameter.Shape}.", nameof(state));
            }
        }

        string? extra = state.Keys.Except(named.Select(n => n.Key)).Order(StringComparer.Ordinal).FirstOrDefault();
        if (extra is not null)
        {
            throw new ArgumentException($"weights: tensor '{extra}' does not belong to this model (its parameters are {string.Join(", ", named.Select(n => n.Key))}).", nameof(state));
        }

        foreach (var (key, parameter) in named)
        {
            Backend.Upload<float>(state[key].Data, parameter.Value);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var layer in Layers)
        {
            layer.Dispose();
        }

        foreach (var input in _inputs.Values)
        {
            input.Dispose();
        }
    }

    private DeviceTensor<float> InputBuffer(int batch)
    {
        if (!_inputs.TryGetValue(batch, out var tensor))
        {
            tensor = Backend.Allocate<float>(new Shape([batch, .. InputShape.ToArray()]));
            _inputs[batch] = tensor;
        }

        return tensor;
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
