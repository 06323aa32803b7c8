using GpuCnn.Models;

namespace GpuCnn.IO;

/// <summary>
/// Models as safetensors files: PyTorch nn.Sequential state_dict names and layouts, with the architecture spec,
/// per-sample input shape and, when the model has one, input normalisation in __metadata__ ("arch", "input" such as
/// "1x28x28", "normalize" such as "0.1307,0.3081"). A state_dict that PyTorch saved
/// with safetensors loads here given the spec, and files written here load in PyTorch.
/// </summary>
public static class ModelFile
{
    /// <summary>
    /// Saves the model's parameters and description (atomically); refuses weights that are not all finite. A path ending
    /// in ".onnx" is written as ONNX (<see cref="Onnx.OnnxModel.Export"/>: the evaluation-mode graph, without dropout), as
    /// <see cref="Load"/> reads it.
    /// </summary>
    public static void Save(Sequential model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(path);
        if (IsOnnx(path))
        {
            Onnx.OnnxModel.Export(model, path); // which refuses non-finite weights too
            return;
        }

        var state = model.StateDict();
        RequireFinite(state, path);

        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["arch"] = model.Spec,
            ["input"] = FormatShape(model.InputShape),
        };
        if (model.Normalization is { } normalization)
        {
            metadata["normalize"] = normalization.ToString();
        }

        Safetensors.Write(path, state, metadata, model.CounterKeys);
    }

    /// <summary>Whether <paramref name="path"/> names an ONNX file (".onnx", any case): what Save writes and Load reads by.</summary>
    internal static bool IsOnnx(string path) => path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);

    /// <summary>Throws, naming the tensor, when any of <paramref name="tensors"/> holds NaN or ±∞: such a file would load as a broken model.</summary>
    internal static void RequireFinite(IReadOnlyDictionary<string, Tensor> tensors, string path)
    {
        if (FirstNonFinite(tensors) is { } bad)
        {
            throw new InvalidOperationException($"not writing '{path}': {bad}; a model with NaN or infinite weights is not saved.");
        }
    }

    /// <summary>
    /// Throws, naming the file and the tensor, when weights read from <paramref name="path"/> hold NaN or ±∞: such a
    /// model's every output would be NaN (its saving side refuses them, see <see cref="RequireFinite"/>).
    /// </summary>
    internal static void RequireFiniteWeights(IReadOnlyDictionary<string, Tensor> tensors, string path)
    {
        if (FirstNonFinite(tensors) is { } bad)
        {
            throw new FileFormatException($"model file '{path}': {bad}; a model with NaN or infinite weights is not loaded.");
        }
    }

    /// <summary>"tensor '0.weight' holds NaN at element 3" for the first such value in key order; null when every value is finite.</summary>
    internal static string? FirstNonFinite(IReadOnlyDictionary<string, Tensor> tensors)
    {
        foreach (var (key, tensor) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            int bad = Array.FindIndex(tensor.Data, v => !float.IsFinite(v));
            if (bad >= 0)
            {
                float value = tensor.Data[bad];
                return $"tensor '{key}' holds {(float.IsNaN(value) ? "NaN" : value > 0 ? "+∞" : "−∞")} at element {bad}";
            }
        }

        return null;
    }

    /// <summary>
    /// Loads a model onto <paramref name="backend"/>. The spec and input shape come from the file's metadata unless
    /// given (a PyTorch-written file has neither).
    /// </summary>
    public static Sequential Load(string path, Backend backend, string? arch = null, Shape? inputShape = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (IsOnnx(path))
        {
            return arch is null && inputShape is null
                ? Onnx.OnnxModel.Load(path, backend)
                : throw new ArgumentException($"model file '{path}' is ONNX: its graph is the architecture and its input shape; give neither.");
        }

        var contents = Safetensors.Read(path);
        if (CheckpointFile.IsCheckpoint(contents.Metadata))
        {
            throw CheckpointFile.NotAModel(path, "model file");
        }

        bool archGiven = arch is not null, shapeGiven = inputShape is not null;
        arch ??= contents.Metadata.GetValueOrDefault("arch")
            ?? throw new ArgumentException($"model file '{path}' has no \"arch\" in its metadata; give the architecture spec.");
        if (inputShape is null)
        {
            string input = contents.Metadata.GetValueOrDefault("input")
                ?? throw new ArgumentException($"model file '{path}' has no \"input\" shape in its metadata; give the input shape.");
            try
            {
                inputShape = ParseShape(input, $"model file '{path}': its metadata \"input\"");
            }
            catch (ArgumentException e)
            {
                throw new FileFormatException(e.Message, e);
            }
        }

        var model = BuildFor(path, contents.Tensors, arch, inputShape.Value, backend, archGiven || shapeGiven ? null : $"model file '{path}': its metadata \"arch\" '{arch}'");
        try
        {
            try
            {
                model.LoadStateDict(contents.Tensors);
            }
            catch (ArgumentException e) when (!archGiven && !shapeGiven)
            {
                // The file's own arch, input and weights disagree: a defect of the file, not of anything the user gave.
                throw new FileFormatException($"model file '{path}': its weights do not fit its metadata \"arch\": {e.Message}", e);
            }

            if (contents.Metadata.GetValueOrDefault("normalize") is { } normalize)
            {
                try
                {
                    model.Normalization = ChannelNormalization.Parse(normalize, inputShape.Value[0]);
                }
                catch (ArgumentException e)
                {
                    throw new FileFormatException($"model file '{path}': its metadata \"normalize\": {e.Message}", e);
                }
            }

            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Builds the model a file's <paramref name="weights"/> are for, refusing first what would load as a broken one:
    /// NaN or ±∞ weights, and parameters that would hold more values than the weights do (counted as the layers are
    /// built, before they allocate). A spec that does not build is a defect of the file — <paramref name="specInFile"/>
    /// says where the file keeps it — unless the user gave the spec (null): then it stays a spec error.
    /// </summary>
    internal static Sequential BuildFor(string path, IReadOnlyDictionary<string, Tensor> weights, string spec, Shape input, Backend backend, string? specInFile)
    {
        RequireFiniteWeights(weights, path);
        try
        {
            using var limit = Layer.LimitParameters(weights.Values.Sum(t => (long)t.Data.Length));
            return Sequential.Create(spec, input, backend);
        }
        catch (SpecException e) when (specInFile is not null)
        {
            throw new FileFormatException($"{specInFile} on input {input} does not build: {e.Message}", e);
        }
    }

    /// <summary>"1x28x28" for (1,28,28).</summary>
    internal static string FormatShape(Shape shape) => string.Join("x", shape.ToArray());

    /// <summary>Parses "1x28x28" (files' metadata) or "1,28,28" (as the command line's help writes it; spaces around the numbers allowed).</summary>
    internal static Shape ParseShape(string text, string what)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('x', 'X', ',');
        var dims = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.AllowLeadingWhite | System.Globalization.NumberStyles.AllowTrailingWhite,
                    System.Globalization.CultureInfo.InvariantCulture, out dims[i]) || dims[i] <= 0)
            {
                throw new ArgumentException($"{what} '{text}' is not a shape such as 1,28,28 or 1x28x28.");
            }
        }

        try
        {
            return new Shape(dims);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{what} '{text}': {e.Message}", e);
        }
    }
}
