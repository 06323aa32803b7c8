using System.Text.Json;
using GpuCnn.IO;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>The metrics file a training run leaves: settings, device, per-epoch metrics, final test results.</summary>
internal static class MetricsFile
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };

    public static void Write(string path, TrainSettings settings, Backend backend, IReadOnlyList<EpochMetrics> history, Evaluation? final)
    {
        var document = new
        {
            settings,
            device = new { name = backend.Name, description = backend.DeviceName },
            epochs = history.Select(EpochEntry.Of),
            test = final is null ? null : new
            {
                loss = final.Loss,
                accuracy = final.Accuracy,
                count = final.Count,
                confusion = Enumerable.Range(0, final.Classes).Select(i => Enumerable.Range(0, final.Classes).Select(j => final.Confusion[i, j])),
            },
        };
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(document, Indented);
        FileUtil.WriteAtomically(path, stream => stream.Write(json));
    }

    /// <summary>Epochs as a checkpoint carries them (the metrics file's entries, on one line), so that a resumed run's plot and metrics cover them.</summary>
    public static string FormatHistory(IEnumerable<EpochMetrics> history) =>
        JsonSerializer.Serialize(history.Select(EpochEntry.Of), Compact);

    /// <summary>The epochs <see cref="FormatHistory"/> wrote (without their confusion matrices); a malformed list names <paramref name="source"/>.</summary>
    public static IReadOnlyList<EpochMetrics> ParseHistory(string json, string source)
    {
        List<EpochEntry>? entries;
        try
        {
            entries = JsonSerializer.Deserialize<List<EpochEntry>>(json, Compact);
        }
        catch (JsonException e)
        {
            throw new FileFormatException($"{source}: its epoch history is not a valid list ({e.Message}).", e);
        }

        return entries is null || entries.Any(e => e is null)
            ? throw new FileFormatException($"{source}: its epoch history is not a list of epochs.")
            : entries.Select(e => new EpochMetrics(e.Epoch, e.TrainLoss, e.TrainAccuracy, e.TestLoss, e.TestAccuracy, TimeSpan.FromSeconds(e.Seconds))).ToList();
    }

    private static readonly JsonSerializerOptions Compact = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>One epoch of the metrics file (and of a checkpoint's history).</summary>
    private sealed record EpochEntry(int Epoch, double TrainLoss, double TrainAccuracy, double? TestLoss, double? TestAccuracy, double Seconds)
    {
        public static EpochEntry Of(EpochMetrics e) => new(e.Epoch, e.TrainLoss, e.TrainAccuracy, e.TestLoss, e.TestAccuracy, e.Elapsed.TotalSeconds);
    }
}
