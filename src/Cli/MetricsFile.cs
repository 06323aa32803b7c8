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
            epochs = history.Select(e => new
            {
                epoch = e.Epoch,
                train_loss = e.TrainLoss,
                train_accuracy = e.TrainAccuracy,
                test_loss = e.TestLoss,
                test_accuracy = e.TestAccuracy,
                seconds = e.Elapsed.TotalSeconds,
            }),
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
}
