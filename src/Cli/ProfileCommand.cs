using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using GpuCnn.IO;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>
/// <c>gpucnn profile [--arch SPEC] [--input-shape C,H,W] [--batch-size N] [--steps N] [--optimizer O] [--inference] [--device D]
/// [--json FILE]</c>: where a training step's (or an inference pass's) time goes, layer by layer (<see cref="StepProfiler"/>),
/// on random inputs and labels.
/// </summary>
internal static class ProfileCommand
{
    /// <summary>The profiler's least warm-up, as the text says it (invariant: the tests run in a German culture).</summary>
    private static string WarmupSeconds => StepProfiler.DefaultWarmupTime.TotalSeconds.ToString(CultureInfo.InvariantCulture);

    public static Command Create(CliIo io)
    {
        var arch = new Option<string>("--arch") { Description = "Architecture spec, or a built-in architecture: lenet5 or resnet8.", DefaultValueFactory = _ => "lenet5" };
        var inputShape = new Option<string>("--input-shape") { Description = "Per-sample input shape C,H,W.", DefaultValueFactory = _ => "1,28,28" };
        var batchSize = CommonOptions.BatchSize(64);
        var steps = new Option<int>("--steps") { Description = $"Steps timed, after a warm-up of at least 2 steps and {WarmupSeconds} s (medians are reported).", DefaultValueFactory = _ => 10 };
        var optimizer = new Option<string>("--optimizer") { Description = "sgd (momentum 0.9), adam or adamw, at a learning rate of 0: the weights stay as initialised (batch norm's running statistics still move).", DefaultValueFactory = _ => "sgd" };
        var device = CommonOptions.Device();
        var inference = new Option<bool>("--inference") { Description = "Time inference instead: forward passes only, the model in evaluation mode." };
        var json = new Option<string?>("--json") { Description = "Also write the profile as JSON to this file." };
        var command = new Command("profile", "Time a training step (or inference) layer by layer, each layer between synchronisations.")
        {
            arch, inputShape, batchSize, steps, optimizer, inference, device, json,
        };
        command.SetAction(parse =>
        {
            if (parse.GetValue(json) is { } target)
            {
                CommonOptions.WritableFile("--json", target);
            }

            string optimizerName = parse.GetValue(optimizer)!.Trim().ToLowerInvariant();
            if (optimizerName is not ("sgd" or "adam" or "adamw"))
            {
                throw new UsageException($"--optimizer must be sgd, adam or adamw, got '{parse.GetValue(optimizer)}'.");
            }

            int batch = CommonOptions.Positive("--batch-size", parse.GetValue(batchSize));
            int timedSteps = CommonOptions.Positive("--steps", parse.GetValue(steps));
            Shape sample = CommonOptions.InputShape(parse.GetValue(inputShape)!);

            using var backend = CommonOptions.OpenDevice(parse.GetValue(device)!, io.Error);
            using var model = Sequential.Create(parse.GetValue(arch)!, sample, backend, seed: 1);
            using Optimizer update = optimizerName == "sgd"
                ? new Sgd(backend, model.NamedParameters(), new SgdOptions(0f, 0.9f))
                : new Adam(backend, model.NamedParameters(), new AdamOptions(0f, DecoupledWeightDecay: optimizerName == "adamw"));
            using var images = backend.Upload(Tensor.Random(new Shape([batch, .. sample.ToArray()]), seed: 2, 0f, 1f));
            using var labels = backend.Upload<int>([batch], [.. Enumerable.Range(0, batch).Select(i => i % model.Classes)]);

            io.Out.WriteLine($"device: {backend.Name} ({backend.DeviceName})");
            io.Out.WriteLine($"model: {model.Spec}");
            bool forwardOnly = parse.GetValue(inference);
            io.Out.WriteLine(forwardOnly
                ? $"inference, batch {batch} of ({string.Join(",", sample.ToArray())}), evaluation mode; medians of {timedSteps} passes after at least 2 warm-up passes and {WarmupSeconds} s, each layer's forward between two synchronisations"
                : $"training, batch {batch} of ({string.Join(",", sample.ToArray())}), {optimizerName}; medians of {timedSteps} steps after at least 2 warm-up steps and {WarmupSeconds} s, each layer's forward and backward between two synchronisations");
            var profile = forwardOnly ? StepProfiler.RunInference(model, images, timedSteps) : StepProfiler.Run(model, update, images, labels, timedSteps);
            Print(io.Out, profile, optimizerName);

            if (parse.GetValue(json) is { } path)
            {
                var document = new
                {
                    device = backend.Name,
                    device_name = backend.DeviceName,
                    model = model.Spec,
                    input_shape = sample.ToArray(),
                    batch,
                    mode = profile.Training ? "training" : "inference",
                    optimizer = profile.Training ? optimizerName : null,
                    steps = timedSteps,
                    layers = profile.Layers.Select(l => new
                    {
                        name = l.Name, spec = l.Spec, depth = l.Depth, output_shape = l.OutputShape.ToArray(), fused = l.FusedIntoPrevious,
                        forward_ms = Math.Round(l.ForwardMs, 4), backward_ms = Math.Round(l.BackwardMs, 4),
                    }),
                    loss_ms = Math.Round(profile.LossMs, 4),
                    update_ms = Math.Round(profile.UpdateMs, 4),
                    profiled_ms = Math.Round(profile.ProfiledMs, 4),
                    step_ms = Math.Round(profile.StepMs, 4),
                };
                byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(document, JsonOptions);
                CommonOptions.WriteOutput("--json", path, () => FileUtil.WriteAtomically(path, s => s.Write(bytes)));
                io.Out.WriteLine($"wrote {path}");
            }

            return 0;
        });
        return command;
    }

    private static void Print(TextWriter output, StepProfile profile, string optimizerName)
    {
        const int SpecWidth = 36;
        double whole = profile.ProfiledMs;
        output.WriteLine($"{"layer",-16} {"spec",-SpecWidth} {"output",-12} {"forward ms",11} {"backward ms",12} {"total ms",10} {"share",7}");
        foreach (var layer in profile.Layers)
        {
            string name = new string(' ', 2 * layer.Depth) + layer.Name;
            string spec = layer.Spec.Length <= SpecWidth ? layer.Spec : layer.Spec[..(SpecWidth - 1)] + "…";
            string note = layer.FusedIntoPrevious ? " (fused into the layer before)" : "";
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-16} {spec,-SpecWidth} {string.Join("x", layer.OutputShape.ToArray()),-12} {layer.ForwardMs,11:F3} {layer.BackwardMs,12:F3} {layer.TotalMs,10:F3} {Share(layer.TotalMs, whole),7}{note}"));
        }

        if (profile.Training)
        {
            Row(output, "loss (softmax cross-entropy, forward and gradient)", profile.LossMs, whole);
            Row(output, $"update ({optimizerName})", profile.UpdateMs, whole);
            Row(output, "profiled step (the model's layers, loss and update)", whole, whole);
            Row(output, "whole step, no synchronisation between layers", profile.StepMs, whole);
        }
        else
        {
            Row(output, "profiled pass (the model's layers)", whole, whole);
            Row(output, "whole pass, no synchronisation between layers", profile.StepMs, whole);
        }
    }

    private static void Row(TextWriter output, string what, double ms, double whole) =>
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what,-91} {ms,10:F3} {Share(ms, whole),7}")); // under "total ms"

    private static string Share(double ms, double whole) =>
        whole > 0 ? (100 * ms / whole).ToString("F1", CultureInfo.InvariantCulture) + "%" : "-";

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
}
