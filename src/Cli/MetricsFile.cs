using System.Text.Json;
using System.Text.Json.Serialization;
using GpuCnn.IO;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>The metrics file a training run leaves: settings, device, per-epoch metrics, final test results.</summary>
internal static class MetricsFile
{
    private static readonly JsonSerializerOptions Indented = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // "Infinity" for a test loss that overflowed
        Converters = { new JsonStringEnumConverter() },
    };

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

        if (entries is null || entries.Any(e => e is null) || entries.Where((e, i) => e.Epoch < 1 || (i > 0 && e.Epoch <= entries[i - 1].Epoch)).Any())
        {
            throw new FileFormatException($"{source}: its epoch history is not a list of epochs numbered from 1 upwards.");
        }

        return entries.Select(e => new EpochMetrics(e.Epoch, e.TrainLoss, e.TrainAccuracy, e.TestLoss, e.TestAccuracy, TimeSpan.FromSeconds(e.Seconds))).ToList();
    }

    private static readonly JsonSerializerOptions Compact = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        RespectRequiredConstructorParameters = true, // an entry without "epoch" or a loss is malformed, not zero
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // an evaluation's loss can overflow to ∞
    };

    /// <summary>One epoch of the metrics file (and of a checkpoint's history).</summary>
    private sealed record EpochEntry(int Epoch, double TrainLoss, double TrainAccuracy, double? TestLoss, double? TestAccuracy, double Seconds)
    {
        public static EpochEntry Of(EpochMetrics e) => new(e.Epoch, e.TrainLoss, e.TrainAccuracy, e.TestLoss, e.TestAccuracy, e.Elapsed.TotalSeconds);
    }
}
