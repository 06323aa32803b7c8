using System.Globalization;
using GpuCnn.IO;
using System.CommandLine;
using GpuCnn.Cpu;

namespace GpuCnn.Cli;

/// <summary>Options shared by several commands, and value checks that raise usage errors.</summary>
internal static class CommonOptions
{
    public static Option<string> Device() => new("--device")
    {
        Description = $"Where to compute: {string.Join(", ", Backends.Names)}.",
        DefaultValueFactory = _ => "auto",
    };

    public static Option<int> BatchSize(int fallback) => new("--batch-size")
    {
        Description = "Samples per batch.",
        DefaultValueFactory = _ => fallback,
    };

    /// <summary>
    /// A number option read with a decimal point only. System.CommandLine's own parse also takes thousands separators,
    /// so in the invariant culture "--lr 0,05" (a decimal comma) had been read as 5.
    /// </summary>
    public static Option<float> Number(string name, string description, float fallback) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => fallback,
        CustomParser = result => ParseNumber(result, name) ?? fallback,
    };

    /// <summary>As <see cref="Number"/>, for an option without a default (null when not given).</summary>
    public static Option<float?> OptionalNumber(string name, string description) => new(name)
    {
        Description = description,
        CustomParser = result => ParseNumber(result, name),
    };

    private static float? ParseNumber(System.CommandLine.Parsing.ArgumentResult result, string name)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value))
        {
            return value;
        }

        result.AddError($"Cannot parse argument '{text}' for option '{name}' as a number{(text.Contains(',', StringComparison.Ordinal) ? " (a point marks decimals: 0.05, not 0,05)" : "")}.");
        return null;
    }

    public static Backend OpenDevice(string name, TextWriter error)
    {
        if (!Backends.Names.Contains(name.Trim().ToLowerInvariant()))
        {
            throw new UsageException($"unknown device '{name}'; expected one of: {string.Join(", ", Backends.Names)}.");
        }

        var backend = Backends.Open(name, warning => error.WriteLine($"warning: {warning}"));
        if (name.Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            error.WriteLine($"device: {backend.Name} ({backend.DeviceName})");
        }

        return backend;
    }

    public static int Positive(string option, int value) =>
        value > 0 ? value : throw new UsageException($"{option} must be a positive integer, got {value}.");

    public static float NonNegative(string option, float value) =>
        float.IsFinite(value) && value >= 0 ? value : throw new UsageException($"{option} must be a finite number ≥ 0, got {value}.");

    /// <summary>
    /// An output checked before any data is read or any batch runs: its folder exists or can be created and a file can
    /// be created there; otherwise one error naming the option, the path and the operating system's reason.
    /// </summary>
    public static string WritableFile(string option, string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new UsageException($"{option} is empty; give a file path.");
        }

        try
        {
            FileUtil.RequireWritable(path);
        }
        catch (Exception e) when (e is IOException or ArgumentException or NotSupportedException)
        {
            throw new IOException($"{option} '{path}': {e.Message}", e);
        }

        return path;
    }

    /// <summary>
    /// Writes an output through <paramref name="write"/>; an I/O failure becomes one error naming the option, the path
    /// and the reason, followed by what is still intact (<paramref name="kept"/>).
    /// </summary>
    public static void WriteOutput(string option, string path, Action write, string kept = "")
    {
        try
        {
            write();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{option} '{path}' could not be written: {FileUtil.Reason(e)}.{kept}", e);
        }
    }

    /// <summary>
    /// Refuses an output that is the same file as another of the command's files (<paramref name="others"/>: what it
    /// reads and its other outputs; null paths are not given): writing it would replace that file.
    /// </summary>
    public static void Apart(string option, string path, params (string Option, string? Path)[] others)
    {
        string file = SameFileKey(NotEmpty(option, path));
        foreach (var (otherOption, otherPath) in others)
        {
            if (otherPath is not null)
            {
                NotEmpty(otherOption, otherPath); // (an unset variable in a script): named here, before any other check
            }

            if (otherPath is not null && SameFileKey(otherPath) == file)
            {
                throw new UsageException($"{option} '{path}' is the same file as {otherOption}, which writing it would replace; give another path.");
            }
        }
    }

    /// <summary>
    /// A key equal for two paths to one file: the full path with every symbolic link along it resolved (as realpath
    /// does), case-folded where file names ignore case. Hard links are not seen.
    /// </summary>
    private static string SameFileKey(string path)
    {
        string full = Path.GetFullPath(path);
        string resolved = Path.GetPathRoot(full) ?? "";
        foreach (string part in full[resolved.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            resolved = Path.Combine(resolved, part);
            try
            {
                if (new FileInfo(resolved).ResolveLinkTarget(returnFinalTarget: true) is { } target)
                {
                    resolved = Path.GetFullPath(target.FullName);
                }
            }
            catch (IOException)
            {
                // A broken or looping link: compare the path as written from here on.
            }
        }

        return OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? resolved.ToUpperInvariant() : resolved;
    }

    public static string ExistingFile(string option, string path) =>
        File.Exists(NotEmpty(option, path)) ? path
        : Directory.Exists(path) ? throw new IOException($"{option}: '{path}' is a folder, not a file.")
        : throw new FileNotFoundException($"{option}: file '{path}' does not exist.", path);

    /// <summary>
    /// --normalize for predict, eval and export: the input normalisation of a model file that records none (a state_dict
    /// saved by PyTorch, whose transforms.Normalize lived outside the model) — without it such a model was fed raw pixels.
    /// </summary>
    /// <summary>How .npy images are laid out (train, eval, predict).</summary>
    public enum ImageLayout
    {
        /// <summary>(N, C, H, W); (N, H, W) takes a channel; channels-last images told apart where they can be.</summary>
        Auto,

        /// <summary>(N, C, H, W) as they are, whatever their shape suggests.</summary>
        Nchw,

        /// <summary>(N, H, W, C), channels last (Keras, TensorFlow, PIL arrays): transposed on reading.</summary>
        Nhwc,
    }

    public static Option<string> Layout() => new("--layout")
    {
        Description = ".npy images' layout: auto ((N, C, H, W); (N, H, W) takes a channel; channels-last images refused where they can be told apart), " +
            "nchw (as they are) or nhwc (channels last, transposed on reading).",
        DefaultValueFactory = _ => "auto",
    };

    public static ImageLayout ParseLayout(string text) => text.ToLowerInvariant() switch
    {
        "auto" => ImageLayout.Auto,
        "nchw" => ImageLayout.Nchw,
        "nhwc" => ImageLayout.Nhwc,
        _ => throw new UsageException($"--layout must be auto, nchw or nhwc, got '{text}'."),
    };

    public static Option<string?> Normalize() => new("--normalize")
    {
        Description = "Input normalisation (x - MEAN) / STD per channel for a model file that records none (e.g. saved by PyTorch): MEAN,STD or C means then C stds.",
    };

    /// <summary>
    /// Gives <paramref name="model"/> the --normalize <paramref name="given"/>: taken when its file records none, accepted
    /// when it is the file's own, and a usage error when it differs (the file's was what the model was trained with).
    /// </summary>
    public static void ApplyNormalize(Models.Sequential model, string? given, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (given is null)
        {
            return;
        }

        Models.ChannelNormalization normalization;
        try
        {
            normalization = Models.ChannelNormalization.Parse(given, model.InputShape[0]);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--normalize: {e.Message}");
        }

        if (model.Normalization is { } own && !own.Equals(normalization))
        {
            throw new UsageException($"--normalize {given}: model file '{path}' records its own input normalisation, {own}, which its weights were trained with; leave --normalize out.");
        }

        model.Normalization = normalization;
    }

    /// <summary>
    /// A note on <paramref name="error"/> when <paramref name="images"/> look like raw 8-bit pixels (integers from 0 to 255,
    /// some above 1): an .npy file is read as it holds, where IDX files (--data, the bundled sample) are scaled to [0, 1],
    /// so a model trained on one and fed the other sees inputs 255 times off — a silent 10 % accuracy. It offers
    /// --normalize only where <paramref name="offerNormalize"/> (not given already, and not refused: a model that
    /// records its own normalisation refuses another, <see cref="ApplyNormalize"/>).
    /// </summary>
    public static void NoteRawPixels(TextWriter error, Tensor images, string option, bool offerNormalize)
    {
        ArgumentNullException.ThrowIfNull(error);
        ArgumentNullException.ThrowIfNull(images);
        float most = 0f;
        foreach (float v in images.Data)
        {
            if (!(v >= 0f && v <= 255f && v == MathF.Floor(v)))
            {
                return;
            }

            most = Math.Max(most, v);
        }

        if (most > 1f)
        {
            error.WriteLine($"note: {option} holds whole numbers from 0 to {most.ToString(CultureInfo.InvariantCulture)} (raw 8-bit pixels?); they are used as they are, where IDX files " +
                $"(--data, the bundled sample) are read scaled to [0, 1]: divide by 255{(offerNormalize ? " (or give --normalize)" : "")} if the model takes [0, 1].");
        }
    }

    /// <summary>
    /// Images from an .npy file in the layout the model takes, (N, C, H, W) for images. Given the model's per-sample
    /// shape <paramref name="takes"/> (a model file's): as they are when they match it, with a channel axis when they are
    /// (N, H, W) of a one-channel model, and otherwise refused, naming channels-last images, (N, H, W, C), where that
    /// is what they are. Without it (train, --arch: the model is built for the images): (N, H, W) takes a channel;
    /// channels-last images of square pictures and 1, 3 or 4 channels — which would otherwise build a model of H
    /// channels on W × C pictures and train on without a word — are refused with the transpose that fixes them, and
    /// other 4-D arrays whose last axis is 1, 3 or 4 and the shortest get a note (a signal (N, C, L, 1) is such a shape
    /// too); other ranks, (N, features) say, pass as they are. <paramref name="layout"/> (--layout) overrides the
    /// guesses: Nhwc transposes 4-D images to channels first before anything else, Nchw takes them as they are.
    /// </summary>
    public static Tensor FitImages(Tensor images, Shape? takes, string option, string path, TextWriter notes, ImageLayout layout = ImageLayout.Auto)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(notes);
        if (layout == ImageLayout.Nhwc && images.Shape.Rank == 4)
        {
            images = ChannelsFirst(images);
            layout = ImageLayout.Nchw; // what they are now
        }

        var s = images.Shape;
        if (s.Rank < 2)
        {
            throw new UsageException($"{option} '{path}': images must be (N, C, H, W), got {s}.");
        }

        var sample = new Shape(s.ToArray()[1..]);
        if (sample == takes)
        {
            return images;
        }

        if (s.Rank == 3 && (takes is null || (takes.Value.Rank == 3 && takes.Value[0] == 1 && takes.Value[1] == s[1] && takes.Value[2] == s[2])))
        {
            notes.WriteLine($"note: {option} '{path}' holds {s}, (N, H, W): read as one channel, ({s[0]},1,{s[1]},{s[2]}).");
            return new Tensor(new Shape(s[0], 1, s[1], s[2]), images.Data);
        }

        const string transpose = "save them as x.transpose(0, 3, 1, 2)";
        if (takes is { } model)
        {
            string hint = model.Rank == 3 && sample.Rank == 3 && sample[0] == model[1] && sample[1] == model[2] && sample[2] == model[0]
                ? $"; they look channels-last, (N, H, W, C): give --layout nhwc, or {transpose}" : "";
            throw new UsageException($"{option} '{path}': images of shape {sample} each, the model takes {model}{hint}.");
        }

        if (layout == ImageLayout.Nchw)
        {
            return images;
        }

        if (s.Rank == 4 && s[3] is 1 or 3 or 4 && s[1] == s[2] && s[1] > 4)
        {
            throw new UsageException($"{option} '{path}': images {s} look channels-last, (N, H, W, C); the engine takes (N, C, H, W): give --layout nhwc, " +
                $"or {transpose} (--layout nchw takes them as they are).");
        }

        if (s.Rank == 4 && s[3] is 1 or 3 or 4 && s[1] > s[3] && s[2] > s[3])
        {
            notes.WriteLine($"note: {option} '{path}' holds {s}: taken as (N, C, H, W); if they are channels-last, (N, H, W, C), give --layout nhwc.");
        }

        return images;
    }

    /// <summary>(N, H, W, C) images as (N, C, H, W): x.transpose(0, 3, 1, 2).</summary>
    private static Tensor ChannelsFirst(Tensor images)
    {
        var s = images.Shape;
        int n = s[0], h = s[1], w = s[2], c = s[3];
        var data = new float[images.Data.Length];
        for (int i = 0; i < n; i++)
        {
            for (int y = 0; y < h; y++)
            {
                for (int x = 0; x < w; x++)
                {
                    for (int k = 0; k < c; k++)
                    {
                        data[(((((long)i * c) + k) * h) + y) * w + x] = images.Data[(((((long)i * h) + y) * w) + x) * c + k];
                    }
                }
            }
        }

        return new Tensor(new Shape(n, c, h, w), data);
    }

    /// <summary>
    /// The model of eval and predict — built by --arch for the images' shape, or as its file says — with the images
    /// fitted to it (<see cref="FitImages"/>: a model file's own shape decides their layout).
    /// </summary>
    public static Models.Sequential LoadFitting(string modelPath, Backend backend, string? arch, ref Tensor images, string option, string path, TextWriter notes,
        ImageLayout layout)
    {
        if (arch is not null)
        {
            images = FitImages(images, takes: null, option, path, notes, layout);
            layout = ImageLayout.Nchw; // fitted: the model is built for them
        }

        var model = ModelFile.Load(modelPath, backend, arch, arch is null ? (Shape?)null : new Shape(images.Shape.ToArray()[1..]));
        try
        {
            images = FitImages(images, model.InputShape, option, path, notes, layout);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Images and labels from two .npy files (train's --images/--labels and --test-images/--test-labels, eval's), unfitted.</summary>
    public static (Tensor Images, int[] Labels) ReadNpyData(string imagesOption, string imagesPath, string labelsOption, string labelsPath)
    {
        var images = Npy.ReadTensor(ExistingFile(imagesOption, imagesPath));
        DataChecks.RequireFinite(images, imagesPath);
        int[] labels = Npy.ReadLabels(ExistingFile(labelsOption, labelsPath));
        if (images.Shape[0] != labels.Length)
        {
            throw new UsageException($"{imagesOption}/{labelsOption}: {images.Shape[0]} images but {labels.Length} labels; the counts must match.");
        }

        return (images, labels);
    }

    /// <summary>
    /// --model for eval and predict, whose --arch (with the data's sample shape) is for files without an architecture:
    /// an ONNX file's graph is its own, so --arch with one is a usage error naming the option.
    /// </summary>
    public static string ModelWithArch(string path, string? arch) =>
        arch is not null && ModelFile.IsOnnx(path)
            ? throw new UsageException($"--arch is for safetensors files without an architecture: model file '{path}' is ONNX, whose graph is its architecture; leave --arch out.")
            : path;

    private static string NotEmpty(string option, string path) =>
        string.IsNullOrWhiteSpace(path) ? throw new UsageException($"{option} is empty; give a file path.") : path;

    /// <summary>An --input-shape such as 1,28,28; one that is not a shape is a usage error.</summary>
    public static Shape InputShape(string text)
    {
        try
        {
            return ModelFile.ParseShape(text, "--input-shape");
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>The bundled MNIST sample, next to the program (or in the repository when run from source).</summary>
    public static string BundledSample()
    {
        foreach (string folder in (string[])[Path.Combine(AppContext.BaseDirectory, "data", "mnist-sample"), Path.Combine("data", "mnist-sample")])
        {
            if (Directory.Exists(folder))
            {
                return folder;
            }
        }

        throw new DirectoryNotFoundException("the bundled MNIST sample (data/mnist-sample) is missing; give --data DIR.");
    }
}
