using System.CommandLine;
using GpuCnn.IO;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary><c>gpucnn eval --model M --data DIR</c>: accuracy and confusion matrix on the test split.</summary>
internal static class EvalCommand
{
    public static Command Create(CliIo io)
    {
        var model = new Option<string>("--model") { Description = "Model file (.safetensors or .onnx).", Required = true };
        var data = new Option<string?>("--data") { Description = "MNIST folder (default: the bundled sample); its t10k files are evaluated (the train files need not be there)." };
        var arch = new Option<string?>("--arch") { Description = "Architecture spec, for files without one in their metadata (e.g. saved by PyTorch); the input shape is the data's." };
        var device = CommonOptions.Device();
        var batchSize = CommonOptions.BatchSize(256);
        var command = new Command("eval", "Evaluate a model: accuracy and confusion matrix.") { model, data, arch, device, batchSize };
        command.SetAction(parse =>
        {
            int batch = CommonOptions.Positive("--batch-size", parse.GetValue(batchSize));
            string path = CommonOptions.ModelWithArch(CommonOptions.ExistingFile("--model", parse.GetValue(model)!), parse.GetValue(arch));
            string folder = parse.GetValue(data) ?? CommonOptions.BundledSample();
            var test = Idx.ReadMnistTest(folder);
            DataChecks.RequireFinite(test.Images, folder); // IDX pixels are bytes; checked all the same, as every loader is
            using var backend = CommonOptions.OpenDevice(parse.GetValue(device)!, io.Error);
            string? spec = parse.GetValue(arch);
            using var network = ModelFile.Load(path, backend, spec, spec is null ? (Shape?)null : new Shape(test.Images.Shape.ToArray()[1..]));
            var result = Trainer.Evaluate(network, test, batch);
            WriteConfusion(io.Out, result);
            io.Out.WriteLine($"loss: {result.Loss:F4}");
            io.Out.WriteLine($"accuracy: {result.Accuracy * 100:F2}% ({result.Count} samples)");
            return 0;
        });
        return command;
    }

    public static void WriteConfusion(TextWriter output, Evaluation result)
    {
        output.WriteLine("confusion matrix (rows: true class, columns: predicted):");
        output.Write("      ");
        for (int j = 0; j < result.Classes; j++)
        {
            output.Write($"{j,6}");
        }

        output.WriteLine();
        for (int i = 0; i < result.Classes; i++)
        {
            output.Write($"{i,6}");
            for (int j = 0; j < result.Classes; j++)
            {
                output.Write($"{result.Confusion[i, j],6}");
            }

            output.WriteLine();
        }
    }
}
