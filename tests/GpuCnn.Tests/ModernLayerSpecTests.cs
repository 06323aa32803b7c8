using GpuCnn.Cpu;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The modern layers' grammar, the named architectures, and what their state dicts hold.</summary>
public sealed class ModernLayerSpecTests
{
    [Theory]
    [InlineData("conv(8,3,pad=1,bias=false),batchnorm,relu,batchnorm(momentum=0.01,eps=0.001),globalavgpool,flatten,dense(10),batchnorm")]
    [InlineData("conv(4,3),batchnorm(eps=0.01),flatten,dense(3)")]
    public void Modern_layers_round_trip(string spec) =>
        Assert.Equal(spec, ArchitectureSpec.Format(ArchitectureSpec.Parse(spec)));

    [Theory]
    [InlineData(1, 28, 77_754)]
    [InlineData(3, 32, 78_042)]
    public void ResNet8_builds_for_mnist_and_cifar_shapes_with_the_documented_parameter_count(int channels, int size, int parameters)
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("resnet8", [channels, size, size], backend);
        Assert.Equal(ArchitectureSpec.ResNet8, model.Spec);
        Assert.Equal(parameters, model.NamedParameters().Sum(p => p.Parameter.Shape.Size));
        Assert.Equal(10, model.Classes);
        var state = model.StateDict();
        Assert.Equal(new Shape(16, channels, 3, 3), state["0.weight"].Shape);
        Assert.DoesNotContain("0.bias", state.Keys);
        Assert.Equal(new Shape(16), state["1.running_var"].Shape);
        Assert.Equal(new Shape(Array.Empty<int>()), state["1.num_batches_tracked"].Shape);
        Assert.Equal(new Shape(64, 32, 1, 1), state["7.shortcut.0.weight"].Shape);
        Assert.Equal(new Shape(64), state["7.shortcut.1.running_mean"].Shape);
        Assert.Equal(new Shape(10, 64), state["11.weight"].Shape);
    }

    [Fact]
    public void Batch_norm_layers_and_residual_blocks_take_the_activation_after_them()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("resnet8", [1, 28, 28], backend);
        var stemNorm = Assert.IsType<BatchNorm>(model.Layers[1]);
        Assert.Equal("relu", stemNorm.FusedActivation?.Spec);
        var block = Assert.IsType<Residual>(model.Layers[3]);
        Assert.Equal("relu", block.FusedActivation?.Spec);
        Assert.Equal("relu", Assert.IsType<BatchNorm>(block.Body[1]).FusedActivation?.Spec);
        Assert.Null(Assert.IsType<BatchNorm>(block.Body[^1]).FusedActivation); // the body's last batch norm: the join comes next

        // After a batch norm the activation's backward hands dy on (batch norm applies f′); after a join it takes f′ itself.
        Assert.True(Assert.IsAssignableFrom<ActivationLayer>(model.Layers[2]).GradientFusedIntoPrevious);
        Assert.False(Assert.IsAssignableFrom<ActivationLayer>(model.Layers[4]).GradientFusedIntoPrevious);
        Assert.True(Assert.IsAssignableFrom<ActivationLayer>(model.Layers[4]).FusedIntoPrevious);

        // GELU's derivative needs its input: it stays a layer of its own.
        using var gelu = Sequential.Create("conv(2,3,bias=false),batchnorm,gelu,flatten,dense(2)", [1, 5, 5], backend);
        Assert.Null(Assert.IsType<BatchNorm>(gelu.Layers[1]).FusedActivation);
    }

    [Theory]
    [InlineData("batchnorm(momentum=1.5)", "layer 1 'batchnorm(momentum=1.5)': batchnorm: momentum 1.5 lies outside [0, 1].")]
    [InlineData("batchnorm(momentum=-0.1)", "batchnorm: momentum -0.1 lies outside [0, 1].")]
    [InlineData("batchnorm(eps=-1)", "batchnorm: eps -1 is not a finite number ≥ 0.")]
    [InlineData("batchnorm(decay=0.1)", "batchnorm has no option 'decay'")]
    [InlineData("conv(4,3,bias=maybe)", "bias 'maybe' is not true or false.")]
    public void Bad_modern_layer_arguments_say_what_is_wrong(string spec, string message) =>
        Assert.Contains(message, Assert.Throws<SpecException>(() => ArchitectureSpec.Parse(spec)).Message, StringComparison.Ordinal);

    /// <summary>
    /// PyTorch's momentum 0 (running statistics frozen) and ε = 0 are legal there, and were refused here — which also
    /// refused every ONNX file of a batch norm with momentum=None, written as momentum 1.
    /// </summary>
    [Fact]
    public void Batch_norm_takes_momentum_0_which_freezes_the_running_statistics_and_eps_0()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("batchnorm(momentum=0,eps=0)", [3], backend);
        using var x = backend.Upload(Tensor.Random([4, 3], seed: 1));
        model.Forward(x); // training mode: the batch's statistics, counted, not folded into the running ones
        var state = model.StateDict();
        Assert.All(state["0.running_mean"].Data, v => Assert.Equal(0f, v));
        Assert.All(state["0.running_var"].Data, v => Assert.Equal(1f, v));
        Assert.Equal(1f, state["0.num_batches_tracked"].Data[0]);
        model.Eval();
        Assert.Equal(backend.DownloadArray(x), backend.DownloadArray(model.Forward(x))); // (x − 0) / √(1 + 0)
    }

    [Fact]
    public void Global_pooling_after_a_flat_tensor_names_the_layer_and_shape()
    {
        using var backend = new ReferenceBackend();
        var error = Assert.Throws<SpecException>(() => Sequential.Create("flatten,globalavgpool,dense(2)", [2, 3, 3], backend));
        Assert.Equal("layer 2 'globalavgpool' on input (18): needs a (C,H,W) input, got (18); global pooling averages each channel's plane", error.Message);
    }

    [Fact]
    public void Batch_norm_counts_training_batches_only_and_saves_the_count_as_int64()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("conv(2,3,bias=false),batchnorm,flatten,dense(3),batchnorm", [1, 5, 5], backend);
        using var x = backend.Upload<float>([4, 1, 5, 5], TestData.Uniform(100, 1));
        model.Forward(x);
        model.Forward(x);
        model.Eval();
        model.Forward(x);
        Assert.All(model.NamedCounters(), c => Assert.Equal(2, c.Counter.Value));
        Assert.Equal(["1.num_batches_tracked", "4.num_batches_tracked"], model.NamedCounters().Select(c => c.Key));

        string path = Path.Combine(Path.GetTempPath(), $"gpucnn-bn-{Guid.NewGuid():N}.safetensors");
        try
        {
            ModelFile.Save(model, path);
            string header = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(path));
            Assert.Contains("\"1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[]", header, StringComparison.Ordinal);
            using var loaded = ModelFile.Load(path, backend);
            Assert.Equal(2, loaded.NamedCounters().First().Counter.Value);
            var saved = model.StateDict();
            foreach (var (key, tensor) in loaded.StateDict())
            {
                TensorAssert.Identical<float>(saved[key].Data, tensor.Data, key);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A state dict without num_batches_tracked (written before PyTorch 0.4.1 had it, or converted without it) loads with
    /// the count at 0, as PyTorch's load_state_dict takes it; it had been refused as missing. A missing weight or
    /// running statistic is still an error.
    /// </summary>
    [Fact]
    public void A_state_dict_without_num_batches_tracked_loads_with_the_count_at_0()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("conv(2,3,bias=false),batchnorm,flatten,dense(3)", [1, 5, 5], backend, seed: 1);
        using var x = backend.Upload<float>([4, 1, 5, 5], TestData.Uniform(100, 1));
        model.Forward(x);
        var saved = model.StateDict();
        using var fresh = Sequential.Create("conv(2,3,bias=false),batchnorm,flatten,dense(3)", [1, 5, 5], backend, seed: 2);
        using var temp = Fixtures.TempFolder();
        Safetensors.Write(temp.File("old.safetensors"), saved.Where(p => p.Key != "1.num_batches_tracked").ToDictionary(p => p.Key, p => p.Value));
        using var loaded = ModelFile.Load(temp.File("old.safetensors"), backend, "conv(2,3,bias=false),batchnorm,flatten,dense(3)", new Shape(1, 5, 5));
        Assert.Equal(0, loaded.NamedCounters().Single().Counter.Value);
        foreach (var (key, tensor) in saved.Where(p => p.Key != "1.num_batches_tracked"))
        {
            TensorAssert.Identical<float>(tensor.Data, loaded.StateDict()[key].Data, key);
        }

        var before = fresh.StateDict();
        Assert.StartsWith("weights: tensor '1.running_var' is missing", Assert.Throws<ArgumentException>(() =>
            fresh.LoadStateDict(saved.Where(p => p.Key != "1.running_var").ToDictionary(p => p.Key, p => p.Value))).Message, StringComparison.Ordinal);
        Assert.Equal(before["0.weight"].Data, fresh.StateDict()["0.weight"].Data); // nothing changed
    }

    [Theory]
    [InlineData("dropout(1)", "dropout: p 1 lies outside [0, 1).")]
    [InlineData("dropout(-0.1)", "dropout: p -0.1 lies outside [0, 1).")]
    [InlineData("dropout", "layer 1 'dropout': missing p.")]
    [InlineData("dropout(p=0.5)", "layer 1 'dropout(p=0.5)': p is given by position, not by name: write 0.5 for p=0.5.")] // had said "missing p"
    [InlineData("conv(6,kernel=5)", "layer 1 'conv(6,kernel=5)': kernel is given by position, not by name: write 5 for kernel=5.")]
    public void Bad_dropout_probabilities_are_refused(string spec, string message) =>
        Assert.Contains(message, Assert.Throws<SpecException>(() => ArchitectureSpec.Parse(spec)).Message, StringComparison.Ordinal);

    [Fact]
    public void Dropout_is_the_identity_in_evaluation_and_draws_a_new_mask_each_training_batch()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("flatten,dropout(0.5),dense(3)", [1, 4, 4], backend);
        var dropout = (Dropout)model.Layers[1];
        using var x = backend.Upload<float>([2, 1, 4, 4], TestData.Uniform(32, 3, 0.5f, 1f));
        float[] Masked() => backend.DownloadArray(dropout.Forward(model.Layers[0].Forward(x)));

        model.Eval();
        Assert.Equal(backend.DownloadArray(x), Masked());

        model.Train();
        model.SetRandomKey(7);
        model.Forward(x);
        float[] first = backend.DownloadArray(dropout.Forward(model.Layers[0].Forward(x)));
        model.Forward(x); // no key set: the model advances its stream
        float[] second = backend.DownloadArray(dropout.Forward(model.Layers[0].Forward(x)));
        Assert.NotEqual(first, second);
        Assert.Contains(0f, first);
        model.SetRandomKey(7);
        model.Forward(x);
        TensorAssert.Identical<float>(first, backend.DownloadArray(dropout.Forward(model.Layers[0].Forward(x))), "the same key again");
    }

    [Theory]
    [InlineData("conv(6,3,dilation=2,groups=3,bias=false),conv(6,3x1,pad=1,dilation=2x1,groups=6),flatten,dense(2)")]
    public void Grouped_and_dilated_convolutions_round_trip_and_shape_their_weights_as_pytorch(string spec)
    {
        Assert.Equal(spec, ArchitectureSpec.Format(ArchitectureSpec.Parse(spec)));
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create(spec, [3, 9, 9], backend);
        var state = model.StateDict();
        Assert.Equal(new Shape(6, 1, 3, 3), state["0.weight"].Shape); // groups 3 of 1 input channel each
        Assert.Equal(new Shape(6, 1, 3, 1), state["1.weight"].Shape); // depthwise
        Assert.Equal(new Shape(6, 5, 5), model.Layers[0].OutputShape); // 9 − 2·(3 − 1) = 5
        Assert.Equal(new Shape(6, 3, 7), model.Layers[1].OutputShape); // rows 5 + 2·1 − (2·2 + 1) + 1 = 3, columns 5 + 2 − 1 + 1 = 7
    }

    [Theory]
    [InlineData("conv(4,3,groups=2)", "layer 1 'conv(4,3,groups=2)' on input (3,8,8): groups 2 must divide both the 3 input channels and the 4 output channels.")]
    [InlineData("conv(3,3,groups=3,dilation=4)", "layer 1 'conv(3,3,dilation=4,groups=3)' on input (3,8,8): kernel 3x3 at dilation 4x4 spans 9x9, which is larger than the padded input 8x8 (input 8x8, padding 0x0).")]
    [InlineData("conv(3,3,groups=0)", "groups '0' is not a positive integer")]
    public void Impossible_groups_and_dilations_name_the_layer_and_the_numbers(string spec, string message)
    {
        using var backend = new ReferenceBackend();
        var error = Assert.ThrowsAny<Exception>(() => Sequential.Create(spec + ",flatten,dense(2)", [3, 8, 8], backend));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
