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
        var layout = CommonOptions.Layout();
        var command = new Command("predict", "Write a model's logits for images in a .npy file.") { model, input, output, layout, arch, normalize, device, batchSize, allowNonFinite };
        command.SetAction(parse =>
        {
            int batch = CommonOptions.Positive("--batch-size", parse.GetValue(batchSize));
            var imageLayout = CommonOptions.ParseLayout(parse.GetValue(layout)!);
            string modelPath = CommonOptions.ModelWithArch(CommonOptions.ExistingFile("--model", parse.GetValue(model)!), parse.GetValue(arch));
            string outputPath = CommonOptions.WritableFile("--output", parse.GetValue(output)!);
            CommonOptions.Apart("--output", outputPath, ("--model", modelPath), ("--input", parse.GetValue(input)));
            var images = Npy.ReadTensor(CommonOptions.ExistingFile("--input", parse.GetValue(input)!));
            if (!parse.GetValue(allowNonFinite))
            {
                DataChecks.RequireFinite(images, parse.GetValue(input)!);
            }

            using var backend = CommonOptions.OpenDevice(parse.GetValue(device)!, io.Error);
            using var network = CommonOptions.LoadFitting(modelPath, backend, parse.GetValue(arch), ref images, "--input", parse.GetValue(input)!, io.Error,
                imageLayout);
            CommonOptions.NoteRawPixels(io.Error, images, "--input", offerNormalize: network.Normalization is null && parse.GetValue(normalize) is null);

            CommonOptions.ApplyNormalize(network, parse.GetValue(normalize), modelPath);

            var logits = network.Predict(images, batch);
            CommonOptions.WriteOutput("--output", outputPath, () => Npy.Write(outputPath, logits));
            io.Out.WriteLine($"wrote {parse.GetValue(output)}: logits {logits.Shape}");
            return 0;
        });
        return command;
    }
}
