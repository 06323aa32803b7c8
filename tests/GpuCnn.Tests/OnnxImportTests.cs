using Google.Protobuf;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Onnx;
using GpuCnn.Onnx.Proto;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// ONNX files in: our own exports come back exactly, PyTorch's export of a Sequential CNN gives PyTorch's logits,
/// predict, eval and --init take .onnx, and hostile files end in one clear error.
/// </summary>
public sealed class OnnxImportTests
{
    [Theory]
    [MemberData(nameof(OnnxExportTests.Models), MemberType = typeof(OnnxExportTests))]
    public void Export_then_import_predicts_bitwise_the_same(string spec, string input)
    {
        using var backend = Backends.Open("cpu");
        using var temp = Fixtures.TempFolder();
        var (model, images) = OnnxExportTests.ModelWithMovedStatistics(backend, spec, input, seed: 9);
        using var owned = model;
        OnnxModel.Export(model, temp.File("m.onnx"));
        using var loaded = OnnxModel.Load(temp.File("m.onnx"), backend);
        TensorAssert.Identical<float>(model.Predict(images).Data, loaded.Predict(images).Data, spec);
        Assert.Equal(model.Normalization, loaded.Normalization);
        Assert.Equal(model.Spec.Replace(",dropout(0.3)", "", StringComparison.Ordinal), loaded.Spec); // dropout is not in ONNX
    }

    [Fact]
    public void A_residual_block_reads_the_same_whichever_branch_comes_first()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create("conv(4,3,pad=1),relu,residual(conv(4,3,pad=1),tanh),flatten,dense(3)", [1, 6, 6], backend, seed: 2);
        byte[] reordered = Edit(OnnxModel.ToBytes(model), m =>
        {
            var add = m.Graph.Node.Single(n => n.OpType == "Add");
            m.Graph.Node.Remove(add);
            m.Graph.Node.Insert(m.Graph.Node.IndexOf(m.Graph.Node.First(n => n.OpType == "Relu")) + 1, add); // the identity branch first
        });
        var contents = OnnxModel.Parse(reordered, "reordered");
        using var loaded = Sequential.Create(contents.Spec, contents.InputShape, backend);
        Assert.Equal(model.Spec, loaded.Spec);
    }

    [Fact]
    public void A_pytorch_export_gives_pytorchs_logits()
    {
        using var backend = Backends.Open("cpu");
        using var model = OnnxModel.Load(Fixtures.Torch("torch_cnn.onnx"), backend);
        Assert.Equal("conv(4,3,pad=1),relu,maxpool(2),conv(6,3),leakyrelu(0.1),avgpool(2),flatten,dense(8),batchnorm,tanh,dense(3)", model.Spec);
        var input = Npy.ReadTensor(Fixtures.Torch("torch_cnn.input.npy"));
        var expected = Npy.ReadTensor(Fixtures.Torch("torch_cnn.logits.npy"));
        TensorAssert.Close(expected.Data, model.Predict(input).Data, expected.Shape, 1e-5, 1e-4, "PyTorch's ONNX export");
    }

    [Fact]
    public void Predict_eval_and_init_take_onnx_files()
    {
        using var temp = Fixtures.TempFolder();
        Assert.Equal(0, CliRunner.Run("train", "--epochs", "1", "--data", Fixtures.MnistSample, "--device", "cpu", "--out", temp.File("m.safetensors")).ExitCode);
        Assert.Equal(0, CliRunner.Run("export", "--model", temp.File("m.safetensors"), "--output", temp.File("m.onnx")).ExitCode);
        string images = Fixtures.Torch("lenet5.input.npy");
        Assert.Equal(0, CliRunner.Run("predict", "--model", temp.File("m.onnx"), "--input", images, "--output", temp.File("onnx.npy")).ExitCode);
        Assert.Equal(0, CliRunner.Run("predict", "--model", temp.File("m.safetensors"), "--input", images, "--output", temp.File("st.npy")).ExitCode);
        TensorAssert.Identical<float>(Npy.ReadTensor(temp.File("st.npy")).Data, Npy.ReadTensor(temp.File("onnx.npy")).Data, "predict");
        var eval = CliRunner.Run("eval", "--model", temp.File("m.onnx"), "--data", Fixtures.MnistSample);
        Assert.True(eval.ExitCode == 0, eval.Error);
        var init = CliRunner.Run("train", "--epochs", "1", "--data", Fixtures.MnistSample, "--device", "cpu", "--init", temp.File("m.onnx"), "--lr", "0",
            "--out", temp.File("again.safetensors"));
        Assert.True(init.ExitCode == 0, init.Error);
        ReliabilityTests.AssertSameWeights(temp.File("m.safetensors"), temp.File("again.safetensors")); // lr 0: the weights it started from
    }

    [Fact]
    public void Hostile_files_end_in_one_clear_error()
    {
        byte[] valid = File.ReadAllBytes(Fixtures.Torch("torch_cnn.onnx"));
        Assert.Contains("is not a valid ONNX model", Rejected(valid[..(valid.Length / 2)]), StringComparison.Ordinal);

        Assert.Contains(",1099511627776): not positive, or more than 268435456 elements",
            Rejected(Edit(valid, m => m.Graph.Initializer[0].Dims.Add(1L << 40))), StringComparison.Ordinal);
        Assert.Contains("holds no data for its", Rejected(Edit(valid, m => m.Graph.Initializer[0].RawData = ByteString.Empty)), StringComparison.Ordinal);
        Assert.Contains("is neither a graph input, an initializer nor another node's output",
            Rejected(Edit(valid, m => m.Graph.Node.First(n => n.OpType == "Relu").Input[0] = "nowhere")), StringComparison.Ordinal);
        Assert.Contains("operator Softmax is not supported (supported: Conv,",
            Rejected(Edit(valid, m => m.Graph.Node.First(n => n.OpType == "Relu").OpType = "Softmax")), StringComparison.Ordinal);

        // A cycle: the first convolution reads the last node's output, so nothing is reachable from the input.
        string cycle = Rejected(Edit(valid, m => m.Graph.Node.First(n => n.OpType == "Conv").Input[0] = m.Graph.Node.Last().Output[0]));
        Assert.Contains("torch_cnn.onnx", cycle, StringComparison.Ordinal);
    }

    private static string Rejected(byte[] bytes) =>
        Assert.Throws<FileFormatException>(() => OnnxModel.Parse(bytes, "torch_cnn.onnx")).Message;

    private static byte[] Edit(byte[] bytes, Action<ModelProto> change)
    {
        var model = ModelProto.Parser.ParseFrom(bytes);
        change(model);
        return model.ToByteArray();
    }
}
