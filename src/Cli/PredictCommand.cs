using System.CommandLine;
using GpuCnn.IO;

namespace GpuCnn.Cli;

/// <summary><c>gpucnn predict --model M --input X.npy --output Y.npy</c>: logits (N, classes) as float32.</summary>
internal static class PredictCommand
{
    public static Command Create(CliIo io)
    {
        var model = new Option<string>("--model") { Description = "Model file (.safetensors or .onnx).", Required = true };
        var input = new Option<string>("--input") { Description = "Images (N, C, H, W) as .npy.", Required = true };
        var output = new Option<string>("--output") { Description = "Where to write the logits (N, classes) as float32 .npy.", Required = true };
        var arch = new Option<string?>("--arch") { Description = "Architecture spec, for files without one in their metadata (e.g. saved by PyTorch)." };
        var device = CommonOptions.Device();
        var batchSize = CommonOptions.BatchSize(256);
        var allowNonFinite = new Option<bool>("--allow-nonfinite")
        {
            Description = "Let images with NaN or ±∞ through (their logits then hold NaN, as in PyTorch); rejected by default.",
        };
        var normalize = CommonOptions.Normalize();
        var command = new Command("predict", "Write a model's logits for images in a .npy file.") { model, input, output, arch, normalize, device, batchSize, allowNonFinite };
        command.SetAction(parse =>
        {
            int batch = CommonOptions.Positive("--batch-size", parse.GetValue(batchSize));
            string modelPath = CommonOptions.ModelWithArch(CommonOptions.ExistingFile("--model", parse.GetValue(model)!), parse.GetValue(arch));
            string outputPath = CommonOptions.WritableFile("--output", parse.GetValue(output)!);
            CommonOptions.Apart("--output", outputPath, ("--model", modelPath), ("--input", parse.GetValue(input)));
            var images = Npy.ReadTensor(CommonOptions.ExistingFile("--input", parse.GetValue(input)!));
            if (!parse.GetValue(allowNonFinite))
            {
                DataChecks.RequireFinite(images, parse.GetValue(input)!);
            }

            if (images.Shape.Rank < 2)
            {
                throw new UsageException($"--input: images must be (N, C, H, W), got shape {images.Shape}.");
            }

            using var backend = CommonOptions.OpenDevice(parse.GetValue(device)!, io.Error);
            string? spec = parse.GetValue(arch);
            if (spec is not null && images.Shape.Rank is 3 or 4)
            {
                images = CommonOptions.ImagesNchw(images, "--input", parse.GetValue(input)!, io.Error); // the --arch model is built for them
            }

            using var network = ModelFile.Load(modelPath, backend, spec, spec is null ? (Shape?)null : new Shape(images.Shape.ToArray()[1..]));
            images = FitToModel(images, network.InputShape, parse.GetValue(input)!, io.Error);

            CommonOptions.NoteRawPixels(io.Error, images, "--input", network.Normalization is not null);

            CommonOptions.ApplyNormalize(network, parse.GetValue(normalize), modelPath);

            var logits = network.Predict(images, batch);
            CommonOptions.WriteOutput("--output", outputPath, () => Npy.Write(outputPath, logits));
            io.Out.WriteLine($"wrote {parse.GetValue(output)}: logits {logits.Shape}");
            return 0;
        });
        return command;
    }

    /// <summary>
    /// The images as the model takes them: (N, H, W) for a one-channel model gets its channel (said in a note); any
    /// other difference is refused, naming channels-last images, (N, H, W, C), where that is what they are.
    /// </summary>
    private static Tensor FitToModel(Tensor images, Shape takes, string path, TextWriter notes)
    {
        var sample = new Shape(images.Shape.ToArray()[1..]);
        if (sample == takes)
        {
            return images;
        }

        if (takes.Rank == 3 && takes[0] == 1 && sample.Rank == 2 && sample[0] == takes[1] && sample[1] == takes[2])
        {
            notes.WriteLine($"note: --input '{path}' holds {images.Shape}, (N, H, W): read as one channel, as the model takes {takes}.");
            return new Tensor(new Shape([images.Shape[0], .. takes.ToArray()]), images.Data);
        }

        string hint = takes.Rank == 3 && sample.Rank == 3 && sample[0] == takes[1] && sample[1] == takes[2] && sample[2] == takes[0]
            ? "; they look channels-last, (N, H, W, C): save them as x.transpose(0, 3, 1, 2)" : "";
        throw new UsageException($"--input: images of shape {sample} each, the model takes {takes}{hint}.");
    }
}
