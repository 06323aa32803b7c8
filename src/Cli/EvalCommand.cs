using System.CommandLine;
using GpuCnn.IO;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary><c>gpucnn eval --model M --data DIR</c> (or <c>--images X --labels Y</c>): accuracy and confusion matrix on the test split.</summary>
internal static class EvalCommand
{
    public static Command Create(CliIo io)
    {
        var model = new Option<string>("--model") { Description = "Model file (.safetensors or .onnx).", Required = true };
        var data = new Option<string?>("--data") { Description = "MNIST folder (default: the bundled sample); its t10k files are evaluated (the train files need not be there)." };
        var images = new Option<string?>("--images") { Description = "Images (N, C, H, W) as .npy (with --labels), in place of --data." };
        var labels = new Option<string?>("--labels") { Description = "Labels (N) as .npy." };
        var arch = new Option<string?>("--arch") { Description = "Architecture spec, for files without one in their metadata (e.g. saved by PyTorch); the input shape is the data's." };
        var device = CommonOptions.Device();
        var batchSize = CommonOptions.BatchSize(256);
        var normalize = CommonOptions.Normalize();
        var layout = CommonOptions.Layout();
        var command = new Command("eval", "Evaluate a model: accuracy and confusion matrix.") { model, data, images, labels, layout, arch, normalize, device, batchSize };
        command.SetAction(parse =>
        {
            int batch = CommonOptions.Positive("--batch-size", parse.GetValue(batchSize));
            var imageLayout = CommonOptions.ParseLayout(parse.GetValue(layout)!);
            string path = CommonOptions.ModelWithArch(CommonOptions.ExistingFile("--model", parse.GetValue(model)!), parse.GetValue(arch));
            string? folder = parse.GetValue(data), imagesPath = parse.GetValue(images), labelsPath = parse.GetValue(labels), spec = parse.GetValue(arch);
            bool fromNpy = imagesPath is not null || labelsPath is not null;
            if (fromNpy && folder is not null)
            {
                throw new UsageException("give either --data or --images/--labels, not both.");
            }

            if (fromNpy && (imagesPath is null || labelsPath is null))
            {
                throw new UsageException("--images and --labels go together.");
            }

            Tensor x;
            int[] y;
            string option, where, source;
            if (fromNpy)
            {
                (x, y) = CommonOptions.ReadNpyData("--images", imagesPath!, "--labels", labelsPath!);
                (option, where, source) = ("--images", imagesPath!, $"--images '{imagesPath}', --labels '{labelsPath}'");
            }
            else
            {
                folder ??= CommonOptions.BundledSample();
                var mnist = Idx.ReadMnistTest(folder);
                DataChecks.RequireFinite(mnist.Images, folder); // IDX pixels are bytes; checked all the same, as every loader is
                (x, y, option, where, source) = (mnist.Images, mnist.Labels, "--data", folder, mnist.Source!);
            }

            using var backend = CommonOptions.OpenDevice(parse.GetValue(device)!, io.Error);
            // IDX images are (N, 1, H, W) already; .npy ones are fitted as --layout says.
            using var network = CommonOptions.LoadFitting(path, backend, spec, ref x, option, where, io.Error, fromNpy ? imageLayout : CommonOptions.ImageLayout.Nchw);
            if (fromNpy)
            {
                CommonOptions.NoteRawPixels(io.Error, x, "--images", offerNormalize: network.Normalization is null && parse.GetValue(normalize) is null);
            }

            CommonOptions.ApplyNormalize(network, parse.GetValue(normalize), path);
            var result = Trainer.Evaluate(network, new Dataset(x, y) { Source = source }, batch);
            WriteConfusion(io.Out, result);
            io.Out.WriteLine($"loss: {result.Loss:F4}");
            io.Out.WriteLine($"accuracy: {result.Accuracy * 100:F2}% ({result.Count} samples)");
            return 0;
        });
        return command;
    }

    public static void WriteConfusion(TextWriter output, Evaluation result)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(result);
        // Columns as wide as the largest count and a space (six at least): a count of 100,000 had run into its neighbour.
        int width = Math.Max(6, result.Confusion.Cast<int>().Append(result.Classes - 1).Max().ToString(System.Globalization.CultureInfo.InvariantCulture).Length + 1);
        output.WriteLine("confusion matrix (rows: true class, columns: predicted):");
        output.Write(new string(' ', width));
        for (int j = 0; j < result.Classes; j++)
        {
            output.Write(j.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(width));
        }

        output.WriteLine();
        for (int i = 0; i < result.Classes; i++)
        {
            output.Write(i.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(width));
            for (int j = 0; j < result.Classes; j++)
            {
                output.Write(result.Confusion[i, j].ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(width));
            }

            output.WriteLine();
        }
    }
}
