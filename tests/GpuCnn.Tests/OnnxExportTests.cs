using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Onnx;
using GpuCnn.Tests.Support;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace GpuCnn.Tests;

/// <summary>
/// Exported models run in ONNX Runtime and give our predict's logits: every layer kind, residual blocks, batch norm
/// with moved running statistics, input normalisation; through the CLI too.
/// </summary>
public sealed class OnnxExportTests
{
    public static TheoryData<string, string> Models => new()
    {
        { "lenet5", "1x28x28" },
        { "resnet8", "1x28x28" },
        {
            "conv(6,3,pad=1),leakyrelu(0.1),conv(6,3,pad=2,dilation=2,groups=3,bias=false),batchnorm,sigmoid,maxpool(2)," +
            "residual(conv(6,3,pad=1),gelu,conv(6,1)),silu,avgpool(3,stride=2),dropout(0.3),residual(conv(8,3,pad=1),relu; conv(8,1))," +
            "globalavgpool,flatten,dense(8),batchnorm(momentum=0.01,eps=0.001),tanh,dense(4)", "3x12x12"
        },
        { "dense(6),batchnorm,relu,dense(3)", "4" }, // (N, features): the normalisation's constants (1, F), not (1, F, 1, 1)
        // ReLU6 as a Clip to [0, 6], after a depthwise convolution and after a residual join.
        { "conv(8,3,pad=1),relu6,residual(conv(8,3,pad=1,groups=8),relu6,conv(8,1)),relu6,flatten,dense(3)", "2x5x5" },
        // ceil_mode: last windows cut at the far edge; the average's at the padded edge, padding counted in its divisor.
        { "conv(4,3),relu,maxpool(3,stride=2,ceil_mode=true),avgpool(3,stride=2,pad=1,ceil_mode=true),flatten,dense(3)", "2x11x10" },
        // ... and a last window that would start past the input and its near padding is dropped (5 → 3 → 2, not 4 → 3).
        { "conv(2,1),avgpool(2,pad=1,ceil_mode=true),maxpool(2,pad=1,ceil_mode=true),flatten,dense(3)", "1x5x5" },
        // count_include_pad=false: each window divided by its part inside the input, ceil mode's cut window too.
        { "conv(3,3,pad=1),relu,avgpool(3,stride=2,pad=1,count_include_pad=false),avgpool(3,stride=2,pad=1,ceil_mode=true,count_include_pad=false),flatten,dense(3)", "2x9x10" },
        // Padding layers: one-sided with a crop, a value other than zero before a max pool, a crop of every side.
        { "pad(1,0,2,-1),conv(4,3),relu,pad(1,value=-0.5),maxpool(2),pad(-1),flatten,dense(3)", "2x8x9" },
        // ... and zeros before a convolution and average pools, which must come back as layers: an AveragePool could
        // not take pad(2) (more than half its window) or, in ceil mode, a one-sided pad.
        { "pad(1),conv(4,3),relu,pad(2),avgpool(2),pad(0,1,0,1),avgpool(2,ceil_mode=true),flatten,dense(3)", "2x7x8" },
        // Branches that start with a SiLU or GELU (two consumers of the block's input each), and a body that splits again
        // before its join (found along the shortcut).
        { "conv(4,3,pad=1),residual(silu,conv(4,3,pad=1)),residual(gelu,conv(4,3,pad=1); silu,conv(4,1)),residual(conv(4,3,pad=1),residual(relu),tanh; conv(4,1)),flatten,dense(3)", "2x6x6" },
        // Branches that start with residual blocks of their own: the block's input feeds one node more for each block
        // that starts there (three levels: four consumers); a shortcut that starts with one.
        { "conv(4,3,pad=1),residual(residual(conv(4,3,pad=1),relu),conv(4,3,pad=1)),residual(residual(residual(relu)),tanh; conv(4,1)),residual(conv(4,1); residual(conv(4,3,pad=1)),relu),flatten,dense(3)", "2x6x6" },
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void Onnx_runtime_gives_our_logits(string spec, string input)
    {
        SkipWithoutOnnxRuntime();
        using var backend = Backends.Open("cpu");
        var (model, images) = ModelWithMovedStatistics(backend, spec, input, seed: 5);
        using var owned = model;
        model.Eval();
        float[] ours = model.Predict(images).Data;

        // ONNX Runtime's graph optimizer moves a Pad of zeros into the pool after it (its PadFusion, 1.31.1), which is not
        // the same computation for a max pool, a ceil-mode pool or padding past half the window (docs/09): models with pad
        // layers run as the file says, without it.
        float[] theirs = OnnxRuntimeLogits(OnnxModel.ToBytes(model), images, optimized: !spec.Contains("pad(", StringComparison.Ordinal));
        TensorAssert.Close(ours, theirs, new Shape([5, model.Classes]), 1e-5, 1e-4, $"{spec}: ONNX Runtime against predict");
    }

    /// <summary>
    /// A ceil-mode pool whose last window PyTorch's rule drops on one axis (H: window 2, stride 2, pad 1 over 5 rows)
    /// and keeps on the other (W: window 3 over 6 columns, a fourth window cut at the edge) has no ONNX form: ONNX's one
    /// ceil_mode would keep both (ONNX Runtime counts 4 rows).
    /// </summary>
    [Fact]
    public void A_ceil_mode_pool_that_onnx_would_count_otherwise_is_refused_by_name()
    {
        using var backend = new GpuCnn.Cpu.ReferenceBackend();
        using var model = Sequential.Create("avgpool(2x3,stride=2,pad=1,ceil_mode=true),flatten,dense(3)", [1, 5, 6], backend, seed: 1);
        var refused = Assert.Throws<NotSupportedException>(() => OnnxModel.ToBytes(model));
        Assert.Contains("ONNX export: layer 'avgpool(2x3,stride=2,pad=1,ceil_mode=true)' on (1,5,6): its last window is dropped on one axis", refused.Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public void A_model_holding_a_non_finite_weight_is_written_by_no_route()
    {
        // OnnxModel.Export had written it, and ModelFile.Load then refused the file; every model file refuses it now.
        using var backend = new GpuCnn.Cpu.ReferenceBackend();
        using var model = Sequential.Create("flatten,dense(3)", [1, 2, 2], backend, seed: 1);
        var state = model.StateDict();
        state["1.weight"].Data[5] = float.NaN;
        model.LoadStateDict(state);
        using var temp = Fixtures.TempFolder();
        const string Bad = "tensor '1.weight' holds NaN at element 5; a model with NaN or infinite weights is not";
        foreach (string file in (string[])["m.onnx", "m.safetensors"])
        {
            Assert.Contains(Bad, Assert.Throws<InvalidOperationException>(() => ModelFile.Save(model, temp.File(file))).Message, StringComparison.Ordinal);
        }

        Assert.Contains(Bad, Assert.Throws<InvalidOperationException>(() => OnnxModel.Export(model, temp.File("e.onnx"))).Message, StringComparison.Ordinal);
        Assert.Contains(Bad, Assert.Throws<InvalidOperationException>(() => OnnxModel.ToBytes(model)).Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(temp.Path));
    }

    [Fact]
    public void Gpucnn_export_writes_what_onnx_runtime_runs()
    {
        SkipWithoutOnnxRuntime();
        using var temp = Fixtures.TempFolder();
        var train = CliRunner.Run("train", "--epochs", "1", "--data", Fixtures.MnistSample, "--device", "cpu", "--out", temp.File("m.safetensors"));
        Assert.True(train.ExitCode == 0, train.Error);
        var export = CliRunner.Run("export", "--model", temp.File("m.safetensors"), "--output", temp.File("m.onnx"));
        Assert.True(export.ExitCode == 0, export.Error);
        Assert.Equal($"wrote {temp.File("m.onnx")}: ONNX opset 17, input (N,1,28,28), output (N,10)", export.LastLine);
        using var session = new InferenceSession(temp.File("m.onnx"));
        Assert.Equal("input", session.InputMetadata.Keys.Single());
        Assert.Equal("logits", session.OutputMetadata.Keys.Single());
    }

    /// <summary>
    /// A model of <paramref name="spec"/> on inputs <paramref name="input"/> ("CxHxW") with an input normalisation,
    /// whose batch norms have moved their running statistics off 0 and 1 (two training-mode passes), and its 5 images.
    /// </summary>
    internal static (Sequential Model, Tensor Images) ModelWithMovedStatistics(Backend backend, string spec, string input, int seed)
    {
        var sample = new Shape([.. input.Split('x').Select(int.Parse)]);
        var model = Sequential.Create(spec, sample, backend, seed);
        model.Normalization = new ChannelNormalization([.. Enumerable.Repeat(0.2f, sample[0])], [.. Enumerable.Repeat(0.7f, sample[0])]);
        var random = new Random(seed);
        var images = new Tensor(new Shape([5, .. sample.ToArray()]), [.. Enumerable.Range(0, 5 * sample.Size).Select(_ => random.NextSingle())]);
        using (var batch = backend.Upload<float>(images.Shape, images.Data))
        {
            model.Forward(batch);
            model.Forward(batch);
        }

        bool hasBatchNorm = spec.Contains("batchnorm", StringComparison.Ordinal) || spec == "resnet8";
        Assert.True(!hasBatchNorm || model.StateDict().Any(p => p.Key.EndsWith("running_var", StringComparison.Ordinal) && p.Value.Data.Any(v => v != 1f)),
            "the running statistics did not move");
        return (model, images);
    }

    /// <summary>
    /// The logits ONNX Runtime computes from <paramref name="model"/>'s bytes (input "input", output "logits"), with its
    /// graph optimizations as a user gets them or, not <paramref name="optimized"/>, none.
    /// </summary>
    internal static float[] OnnxRuntimeLogits(byte[] model, Tensor images, bool optimized = true)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = optimized ? GraphOptimizationLevel.ORT_ENABLE_ALL : GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(model, options);
        var feed = NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(images.Data, images.Shape.ToArray()));
        using var results = session.Run([feed]);
        return [.. results.Single(r => r.Name == "logits").AsEnumerable<float>()];
    }

    /// <summary>The GPU machine's test bundle leaves ONNX Runtime's native library out (perf/gpu/publish.sh): skip there, saying so.</summary>
    internal static void SkipWithoutOnnxRuntime()
    {
        bool present;
        try
        {
            present = OrtEnv.Instance() is not null; // loads the native library
        }
        catch (TypeInitializationException e) when (e.InnerException is DllNotFoundException)
        {
            present = false;
        }

        Assert.SkipUnless(present, "ONNX Runtime's native library is not in this build (the GPU bundle leaves it out to fit 64 MiB)");
    }
}
