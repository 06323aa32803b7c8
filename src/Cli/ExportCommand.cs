using System.CommandLine;
using GpuCnn.IO;
using GpuCnn.Onnx;

namespace GpuCnn.Cli;

/// <summary><c>gpucnn export --model M.safetensors --output M.onnx</c>: the model as ONNX (opset 17), for ONNX Runtime and other tools.</summary>
internal static class ExportCommand
{
    public static Command Create(CliIo io)
    {
        var model = new Option<string>("--model") { Description = "Model file (.safetensors or .onnx).", Required = true };
        var output = new Option<string>("--output") { Description = "Where to write the ONNX model (.onnx).", Required = true };
        var arch = new Option<string?>("--arch") { Description = "Architecture spec, for files without one in their metadata (e.g. saved by PyTorch)." };
        var inputShape = new Option<string?>("--input-shape") { Description = "Per-sample input shape C,H,W, for files without one in their metadata." };
        var normalize = CommonOptions.Normalize();
        var command = new Command("export", "Write a model as ONNX (opset 17): Conv, Gemm, pooling, activations, BatchNormalization, Add.")
        {
            model, output, arch, inputShape, normalize,
        };
        command.SetAction(parse =>
        {
            Shape? sample = parse.GetValue(inputShape) is { } text ? CommonOptions.InputShape(text) : (Shape?)null; // usage errors first
            string modelPath = CommonOptions.ExistingFile("--model", parse.GetValue(model)!);
            string outputPath = CommonOptions.WritableFile("--output", parse.GetValue(output)!);
            CommonOptions.Apart("--output", outputPath, ("--model", modelPath));
            using var backend = Backends.Open("reference");
            using var network = ModelFile.Load(modelPath, backend, parse.GetValue(arch), sample);
            CommonOptions.ApplyNormalize(network, parse.GetValue(normalize), modelPath);
            CommonOptions.WriteOutput("--output", outputPath, () => OnnxModel.Export(network, outputPath));
            io.Out.WriteLine($"wrote {outputPath}: ONNX opset {OnnxModel.Opset}, input (N,{string.Join(",", network.InputShape.ToArray())}), output (N,{network.Classes})");
            return 0;
        });
        return command;
    }
}
