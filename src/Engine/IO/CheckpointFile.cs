using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using GpuCnn.Models;

namespace GpuCnn.IO;

/// <summary>
/// Training checkpoints as safetensors: the weights ("model.{key}"), the optimizer state ("optimizer.{key}.{slot}"),
/// and in __metadata__ the architecture, the training position (epoch, batch, optimizer steps, partial metric sums)
/// and the settings a resumed run must share (optimizer, batch size, seed) so that it continues bitwise. A SHA-256 of
/// the metadata and every tensor ("checksum") is checked before anything is restored, so a torn or corrupted
/// checkpoint is reported and never loaded (files written before checksums existed carry none and are not checked).
/// </summary>
public static class CheckpointFile
{
    private const string Kind = "gpucnn-checkpoint";

    /// <summary>Whether a safetensors file's metadata is a checkpoint's (its weights are "model.…", beside optimizer state).</summary>
    internal static bool IsCheckpoint(IReadOnlyDictionary<string, string> metadata) => metadata.GetValueOrDefault("kind") == Kind;

    /// <summary>The error for a checkpoint given where a model file is expected.</summary>
    internal static FileFormatException NotAModel(string path, string what) =>
        new($"{what} '{path}' is a gpucnn training checkpoint, not a model: continue it with train --resume, or use the model train --out wrote.");

    /// <summary>Writes a checkpoint atomically.</summary>
    public static void Save(string path, Sequential model, Optimizer optimizer, TrainingState state,
        IReadOnlyDictionary<string, string> settings)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(settings);
        // Held throughout: another thread's step between the weights and the optimizer state would save a state no run had.
        using var use = model.Use("CheckpointFile.Save");
        using var stepping = optimizer.Use("CheckpointFile.Save");
        optimizer.ThrowIfDisposed("CheckpointFile.Save");
        optimizer.CheckUpdates(model, "CheckpointFile.Save");
        var backend = model.Backend;
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, tensor) in model.StateDict())
        {
            tensors["model." + key] = tensor;
        }

        foreach (var (name, tensor) in optimizer.StateTensors())
        {
            tensors["optimizer." + name] = backend.Download(tensor);
        }

        ModelFile.RequireFinite(tensors, path);

        var metadata = new Dictionary<string, string>(settings, StringComparer.Ordinal)
        {
            ["kind"] = Kind,
            ["arch"] = model.Spec,
            ["input"] = ModelFile.FormatShape(model.InputShape),
            ["epoch"] = Text(state.Epoch),
            ["batch"] = Text(state.Batch),
            ["steps"] = Text(state.OptimizerSteps),
            ["loss_sum"] = state.LossSum.ToString("R", CultureInfo.InvariantCulture),
            ["correct_sum"] = state.CorrectSum.ToString("R", CultureInfo.InvariantCulture),
            ["device"] = DeviceOf(backend),
        };
        metadata[ChecksumKey] = Checksum(tensors, metadata);
        Safetensors.Write(path, tensors, metadata, model.CounterKeys.Select(key => "model." + key).ToHashSet(StringComparer.Ordinal));
    }

    /// <summary>
    /// Restores weights and optimizer state from a checkpoint written for the same spec and settings, and returns
    /// where training stood. Any mismatch is an error naming what differs; nothing is changed then.
    /// <paramref name="addedLater"/> names settings that checkpoints written before they existed lack, with the value
    /// those runs had (the command line's clip_grad_norm: "-"); any other setting the file lacks is a mismatch.
    /// </summary>
    public static TrainingState Restore(string path, Sequential model, Optimizer optimizer, IReadOnlyDictionary<string, string> settings,
        IReadOnlyDictionary<string, string>? addedLater = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(settings);
        using var use = model.Use("CheckpointFile.Restore");
        using var stepping = optimizer.Use("CheckpointFile.Restore");
        optimizer.ThrowIfDisposed("CheckpointFile.Restore"); // before anything is changed: the weights had been loaded first
        optimizer.CheckUpdates(model, "CheckpointFile.Restore");
        var contents = Safetensors.Read(path);
        var meta = contents.Metadata;
        if (meta.GetValueOrDefault("kind") != Kind)
        {
            throw new FileFormatException($"checkpoint '{path}' is not a gpucnn checkpoint (a model file? load it as initial weights instead).");
        }

        if (meta.TryGetValue(ChecksumKey, out string? written) && written != Checksum(contents.Tensors, meta))
        {
            throw new FileFormatException($"checkpoint '{path}' is damaged: its contents do not match the checksum written with it " +
                "(changed on disk after it was written); nothing was loaded. Resume from another checkpoint or train from the start.");
        }

        foreach (var (key, value) in settings.Append(new("arch", model.Spec)))
        {
            string saved = meta.GetValueOrDefault(key) ?? addedLater?.GetValueOrDefault(key) ?? "(none)";
            if (saved != value)
            {
                throw new ArgumentException($"checkpoint '{path}' was written with {key} {saved}, this run has {value}; resume with the same settings.");
            }
        }

        var weights = contents.Tensors.Where(t => t.Key.StartsWith("model.", StringComparison.Ordinal))
            .ToDictionary(t => t.Key["model.".Length..], t => t.Value, StringComparer.Ordinal);
        var state = optimizer.StateTensors().ToList();
        foreach (var (name, tensor) in state)
        {
            if (!contents.Tensors.TryGetValue("optimizer." + name, out var saved) || saved.Shape != tensor.Shape)
            {
                throw new FileFormatException($"checkpoint '{path}': optimizer state '{name}' is missing or has the wrong shape.");
            }
        }

        var position = new TrainingState(Integer(meta, "epoch", path), Integer(meta, "batch", path), Integer(meta, "steps", path),
            Single(meta, "loss_sum", path), Single(meta, "correct_sum", path)) { WrittenOn = meta.GetValueOrDefault("device") };
        model.LoadStateDict(weights);
        foreach (var (name, tensor) in state)
        {
            model.Backend.Upload<float>(contents.Tensors["optimizer." + name].Data, tensor);
        }

        optimizer.RestoreStepCount(position.OptimizerSteps);
        return position;
    }

    /// <summary>
    /// The backend as checkpoints record it ("cpu (2 threads, Vector512 (X64))"): summation orders, hence the last bits,
    /// depend on it — a run resumed elsewhere continues, but not bitwise as it would have where it began.
    /// </summary>
    public static string DeviceOf(Backend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return $"{backend.Name} ({backend.DeviceName})";
    }

    private const string ChecksumKey = "checksum";

    /// <summary>"sha256:…" over the metadata (but the checksum itself) and every tensor's name, shape and float values, in name order.</summary>
    private static string Checksum(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (key, value) in metadata.Where(m => m.Key != ChecksumKey).OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{key}={value}\n"));
        }

        foreach (var (key, tensor) in tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{key}:{tensor.Shape}\n"));
            hash.AppendData(MemoryMarshal.AsBytes(tensor.Data.AsSpan()));
        }

        return "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static int Integer(IReadOnlyDictionary<string, string> meta, string key, string path) =>
        int.TryParse(meta.GetValueOrDefault(key), NumberStyles.None, CultureInfo.InvariantCulture, out int value)
            ? value
            : throw new FileFormatException($"checkpoint '{path}': metadata '{key}' is missing or not a non-negative integer.");

    private static float Single(IReadOnlyDictionary<string, string> meta, string key, string path) =>
        float.TryParse(meta.GetValueOrDefault(key), NumberStyles.Float, CultureInfo.InvariantCulture, out float value) && float.IsFinite(value)
            ? value
            : throw new FileFormatException($"checkpoint '{path}': metadata '{key}' is missing or not a number.");
}
