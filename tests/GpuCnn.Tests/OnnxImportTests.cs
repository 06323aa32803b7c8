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
        // Dropout is not in ONNX; a ceil-mode pool whose last windows PyTorch's rule drops is floor mode's, and is written so.
        string expected = model.Spec.Replace(",dropout(0.3)", "", StringComparison.Ordinal);
        Assert.Equal(spec.Contains("pad=1,ceil_mode=true),maxpool(2,pad=1,ceil_mode=true)", StringComparison.Ordinal)
            ? expected.Replace(",ceil_mode=true", "", StringComparison.Ordinal) : expected, loaded.Spec);
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
    public void A_pytorch_export_gives_pytorchs_logits() =>
        AssertPytorchsLogits("torch_cnn", "conv(4,3,pad=1),relu,maxpool(2),conv(6,3),leakyrelu(0.1),avgpool(2),flatten,dense(8),batchnorm,tanh,dense(3)");

    [Fact]
    public void A_batch_norm_with_pytorchs_cumulative_momentum_gives_pytorchs_logits() =>
        AssertPytorchsLogits("torch_cumulative", "flatten,dense(6),batchnorm(momentum=0),relu,dense(3)"); // momentum=None, written as 1: it had been refused

    [Fact]
    public void Gelu_and_silu_as_pytorch_writes_them_out_give_pytorchs_logits() =>
        AssertPytorchsLogits("torch_act", "conv(4,3),gelu,conv(4,3),silu,flatten,dense(3)"); // opset 17 has neither: Div by √2, Erf, Add 1, Mul by x, Mul by ½; Sigmoid, Mul

    /// <summary>
    /// ZeroPad2d and ConstantPad2d as torch.onnx.export writes them: the pads computed by a chain of shape arithmetic
    /// (Shape, Gather, Mul, Sub, ConstantOfShape, Concat, Reshape, a Slice of step −1, Transpose, Cast) that the importer
    /// folds; each Pad is a pad layer, as each module is one in PyTorch (the layers numbered alike).
    /// </summary>
    [Fact]
    public void Pytorchs_zero_and_constant_padding_give_pytorchs_logits()
    {
        AssertPytorchsLogits("torch_pad", "pad(0,1,0,1),conv(4,3,stride=2),relu,pad(1,-1,2,0,value=0.5),pad(1),maxpool(2),flatten,dense(3)");
        AssertPytorchsLogits("torch_pad_folded", "pad(0,1,0,1),conv(4,3,stride=2),relu,pad(1,-1,2,0,value=0.5),pad(1),maxpool(2),flatten,dense(3)");

        // What the folding does not take stays a node, and the Pad that reads it says its pads are not a constant.
        byte[] unfoldable = Edit(File.ReadAllBytes(Fixtures.Torch("torch_pad.onnx")), m =>
            m.Graph.Node.First(n => n.OpType == "Cast" && n.Output[0] == m.Graph.Node.First(p => p.OpType == "Pad").Input[1]).Attribute.Single(a => a.Name == "to").I = 1);
        Assert.Contains("(Pad): its input 1 is not a constant tensor (an initializer)", Rejected(unfoldable), StringComparison.Ordinal);
    }

    /// <summary>
    /// PyTorch's tutorial LeNet, an nn.Module whose forward flattens with x.view(−1, 16 * 4 * 4): a Reshape to (−1, F)
    /// before a Linear of F input features is a flatten; before anything else, or to another F, it is refused by name.
    /// </summary>
    [Fact]
    public void A_tutorial_lenet_that_flattens_with_view_gives_pytorchs_logits()
    {
        AssertPytorchsLogits("torch_view", "conv(6,5),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,dense(120),relu,dense(84),relu,dense(10)");
        byte[] tutorial = File.ReadAllBytes(Fixtures.Torch("torch_view.onnx"));
        string otherFeatures = Rejected(Edit(tutorial, m =>
        {
            var shape = m.Graph.Node.Single(n => n.OpType == "Reshape").Input[1];
            var constant = m.Graph.Node.Single(n => n.Output[0] == shape);
            constant.Attribute[0].T = new TensorProto { DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 2 }, Int64Data = { -1, 128 } };
        }));
        Assert.Contains("(Reshape): only a reshape to (N, −1), or to (−1, F) before a Gemm or MatMul of F input features, is supported", otherFeatures, StringComparison.Ordinal);
    }

    /// <summary>
    /// x.view(x.size(0), −1): with a dynamic batch the exporter takes the batch from the tensor's Shape in nodes (Shape,
    /// Gather, Unsqueeze, Concat with −1), which the importer reads as Reshape(x, (0, −1)); with a fixed batch it writes
    /// the constant (3, −1), which matches the batch the input declares. Another batch, or the Shape of another tensor,
    /// is refused.
    /// </summary>
    [Fact]
    public void A_view_of_the_tensors_own_batch_is_a_flatten_with_a_dynamic_or_a_fixed_batch()
    {
        AssertPytorchsLogits("torch_view_batch", "conv(4,3),relu,flatten,dense(3)");
        AssertPytorchsLogits("torch_view_static", "conv(4,3),relu,flatten,dense(3)");

        byte[] otherBatch = Edit(File.ReadAllBytes(Fixtures.Torch("torch_view_static.onnx")), m =>
        {
            m.Graph.Initializer.Add(new TensorProto { Name = "two", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 2 }, Int64Data = { 2, -1 } });
            m.Graph.Node.Single(r => r.OpType == "Reshape").Input[1] = "two"; // (the folded chain it had read is left over, taken)
        });
        Assert.Contains("(Reshape): only a reshape to (N, −1)", Rejected(otherBatch), StringComparison.Ordinal);

        byte[] otherTensor = Edit(File.ReadAllBytes(Fixtures.Torch("torch_view_batch.onnx")), m =>
            m.Graph.Node.Single(n => n.OpType == "Shape").Input[0] = m.Graph.Node.Single(n => n.OpType == "Conv").Output[0]);
        Assert.Contains("(Reshape): the branches from '/conv/Conv_output_0' meet here, not in an Add", Rejected(otherTensor), StringComparison.Ordinal);

        // x.view(x.size(1), −1) is not a flatten: the Gather must take the batch, index 0.
        byte[] channels = Edit(File.ReadAllBytes(Fixtures.Torch("torch_view_batch.onnx")), m =>
        {
            m.Graph.Initializer.Add(new TensorProto { Name = "one", DataType = (int)TensorProto.Types.DataType.Int64, Int64Data = { 1 } });
            m.Graph.Node.Single(n => n.OpType == "Gather").Input[1] = "one";
        });
        Assert.Contains("(Reshape): the branches from '/Relu_output_0' meet here, not in an Add", Rejected(channels), StringComparison.Ordinal);
    }

    /// <summary>
    /// A small MobileNetV2 as torch.onnx.export writes it: batch norms folded into the convolutions, ReLU6 as a Clip to
    /// [0, 6], inverted residual blocks whose Add lists the shortcut first; a Clip to another range is refused by name.
    /// </summary>
    [Fact]
    public void A_pytorch_mobilenet_v2_with_relu6_gives_pytorchs_logits()
    {
        const string block = "residual(conv(32,1),relu6,conv(32,3,pad=1,groups=32),relu6,conv(8,1))";
        AssertPytorchsLogits("torch_mobile", $"conv(8,3,stride=2,pad=1),relu6,{block},{block},conv(16,1),relu6,globalavgpool,flatten,dense(5)");
        Assert.Contains("(Clip): a Clip to [-1, 1] is not supported (only [0, 6], ReLU6, and [0, ∞), ReLU)", Rejected(Edit(
            File.ReadAllBytes(Fixtures.Torch("torch_mobile.onnx")), m =>
            {
                var clip = m.Graph.Node.First(n => n.OpType == "Clip");
                foreach (var (index, value) in (ReadOnlySpan<(int, float)>)[(1, -1f), (2, 1f)])
                {
                    m.Graph.Node.Single(n => n.Output[0] == clip.Input[index]).Attribute[0].T =
                        new TensorProto { DataType = (int)TensorProto.Types.DataType.Float, FloatData = { value } };
                }
            })), StringComparison.Ordinal);
    }

    [Fact]
    public void A_padded_average_pool_and_a_fresh_batch_norm_as_pytorch_exports_them_give_pytorchs_logits()
    {
        // AvgPool2d(2, padding=1) is a Pad of zeros before an AveragePool; a fresh BatchNorm1d reads two of its four
        // tensors through Identity nodes (the exporter keeps one initializer for equal tensors).
        var contents = OnnxModel.Read(Fixtures.Torch("torch_fresh.onnx"));
        var graph = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Fixtures.Torch("torch_fresh.onnx"))).Graph;
        Assert.Contains(graph.Node, n => n.OpType == "Pad");
        Assert.Contains(graph.Node, n => n.OpType == "Identity");
        Assert.Equal("conv(3,3x3,stride=1x1,pad=0x0,dilation=1x1,groups=1),relu,avgpool(2x2,stride=2x2,pad=1x1),flatten,dense(6),batchnorm(momentum=0.1,eps=1E-05),relu,dense(3)",
            contents.Spec);
        AssertPytorchsLogits("torch_fresh", "conv(3,3),relu,avgpool(2,pad=1),flatten,dense(6),batchnorm,relu,dense(3)");
    }

    /// <summary>
    /// PyTorch writes AvgPool2d(padding=p, ceil_mode=True) as a Pad and an AveragePool in ceil mode. ONNX's ceil_mode
    /// counts a last window that PyTorch's drops where the stride passes the window less the padding (H = 5, window 2,
    /// stride 2, pad 1: ONNX Runtime 4, PyTorch 3), so that is refused by name; within it they agree and the Pad becomes
    /// the layer's padding.
    /// </summary>
    [Theory]
    [InlineData(2, 2, false)]
    [InlineData(3, 2, true)]
    public void A_pad_before_a_ceil_mode_average_pool_is_taken_where_onnx_and_pytorch_agree(int kernel, int stride, bool taken)
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create($"conv(2,1),avgpool({kernel},stride={stride},ceil_mode=true),flatten,dense(3)", [1, 5, 5], backend, seed: 4);
        byte[] padded = Edit(OnnxModel.ToBytes(model), m =>
        {
            var pool = m.Graph.Node.First(n => n.OpType == "AveragePool");
            m.Graph.Initializer.Add(new TensorProto { Name = "amounts", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 8 }, Int64Data = { 0, 0, 1, 1, 0, 0, 1, 1 } });
            var pad = new NodeProto { Name = "pad", OpType = "Pad", Input = { pool.Input[0], "amounts" }, Output = { "padded" } };
            pool.Input[0] = "padded";
            m.Graph.Node.Insert(m.Graph.Node.IndexOf(pool), pad);
        });
        if (taken)
        {
            Assert.Contains($"avgpool({kernel}x{kernel},stride={stride}x{stride},pad=1x1,ceil_mode=true)", OnnxModel.Parse(padded, "ceil").Spec, StringComparison.Ordinal);
        }
        else
        {
            Assert.Contains("(AveragePool): ceil_mode with stride 2x2 beyond the window less the padding (1x1) is not supported",
                Rejected(padded), StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// PyTorch's form of AvgPool2d(padding=p) — a Pad of zeros without a constant_value — is taken by the pool only where
    /// the pool can hold it as padding: past half its window, or beside padding of its own it does not count, it stays
    /// a pad layer (the same values either way).
    /// </summary>
    [Theory]
    [InlineData(1, 0, 1, "avgpool(2x2,stride=2x2,pad=1x1)")]
    [InlineData(2, 0, 1, "pad(2,2,2,2),avgpool(2x2,stride=2x2,pad=0x0)")]
    [InlineData(1, 1, 0, "pad(1,1,1,1),avgpool(4x4,stride=2x2,pad=1x1,count_include_pad=false)")]
    [InlineData(1, 1, 1, "avgpool(4x4,stride=2x2,pad=2x2)")]
    public void A_pad_of_zeros_is_the_average_pools_padding_only_where_it_can_be(int zeros, int own, int countIncludePad, string expected)
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create($"conv(2,1),avgpool({(own > 0 ? 4 : 2)},stride=2{(own > 0 ? $",pad={own}" : "")}),flatten,dense(3)", [1, 6, 6], backend, seed: 4);
        byte[] padded = Edit(OnnxModel.ToBytes(model), m =>
        {
            var pool = m.Graph.Node.First(n => n.OpType == "AveragePool");
            pool.Attribute.Single(a => a.Name == "count_include_pad").I = countIncludePad;
            m.Graph.Initializer.Add(new TensorProto { Name = "amounts", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 8 },
                Int64Data = { 0, 0, zeros, zeros, 0, 0, zeros, zeros } });
            var pad = new NodeProto { Name = "pad", OpType = "Pad", Input = { pool.Input[0], "amounts" }, Output = { "padded" } };
            pool.Input[0] = "padded";
            m.Graph.Node.Insert(m.Graph.Node.IndexOf(pool), pad);
        });
        Assert.Contains($"conv(2,1x1,stride=1x1,pad=0x0,dilation=1x1,groups=1),{expected},flatten", OnnxModel.Parse(padded, "pad").Spec, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pad_of_zeros_before_a_convolution_is_a_pad_layer_and_pool_strides_default_to_one()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create("conv(4,3,pad=1),relu,maxpool(2),flatten,dense(3)", [2, 6, 6], backend, seed: 4);
        byte[] padded = Edit(OnnxModel.ToBytes(model), m =>
        {
            var conv = m.Graph.Node.First(n => n.OpType == "Conv");
            conv.Attribute.Single(a => a.Name == "pads").Ints.Clear();
            conv.Attribute.Single(a => a.Name == "pads").Ints.Add([0, 0, 0, 0]);
            m.Graph.Initializer.Add(new TensorProto { Name = "amounts", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 8 }, Int64Data = { 0, 0, 1, 1, 0, 0, 1, 1 } });
            var pad = new NodeProto { Name = "pad", OpType = "Pad", Input = { conv.Input[0], "amounts" }, Output = { "padded" } };
            conv.Input[0] = "padded";
            m.Graph.Node.Insert(m.Graph.Node.IndexOf(conv), pad);
        });
        using var temp = Fixtures.TempFolder();
        File.WriteAllBytes(temp.File("padded.onnx"), padded);
        using var loaded = OnnxModel.Load(temp.File("padded.onnx"), backend);
        // A layer of its own, as PyTorch's ZeroPad2d before a Conv2d is a module of its own (the layers stay numbered alike).
        Assert.StartsWith("pad(1),conv(4,3),relu", loaded.Spec, StringComparison.Ordinal);
        var images = Tensor.Random([3, 2, 6, 6], 5);
        TensorAssert.Close(model.Predict(images).Data, loaded.Predict(images).Data, new Shape(3, 3), 1e-6, 1e-5, "a Pad before the Conv");

        // ONNX's pooling strides default to 1, not to the kernel as PyTorch's do.
        string spec = OnnxModel.Parse(Edit(padded, m => m.Graph.Node.First(n => n.OpType == "MaxPool").Attribute.Remove(
            m.Graph.Node.First(n => n.OpType == "MaxPool").Attribute.Single(a => a.Name == "strides"))), "no strides").Spec;
        Assert.Contains("maxpool(2x2,stride=1x1,pad=0x0)", spec, StringComparison.Ordinal);

        // ceil_mode is the layer's own.
        static NodeProto MaxPool(ModelProto m) => m.Graph.Node.First(n => n.OpType == "MaxPool");
        Assert.Contains("maxpool(2x2,stride=2x2,pad=0x0,ceil_mode=true)", OnnxModel.Parse(Edit(padded, m =>
        {
            var pool = MaxPool(m);
            pool.Attribute.Remove(pool.Attribute.Single(a => a.Name == "ceil_mode"));
            pool.Attribute.Add(new AttributeProto { Name = "ceil_mode", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        }), "ceil mode").Spec, StringComparison.Ordinal);

        // What pooling does not offer is named one by one (a single message had listed three reasons).
        Assert.Contains("(MaxPool): one-sided padding (0,0,1,1: top, left, bottom, right) is not supported", Rejected(Edit(padded, m =>
        {
            var pool = MaxPool(m);
            pool.Attribute.Remove(pool.Attribute.SingleOrDefault(a => a.Name == "pads"));
            pool.Attribute.Add(new AttributeProto { Name = "pads", Type = AttributeProto.Types.AttributeType.Ints, Ints = { 0, 0, 1, 1 } });
        })), StringComparison.Ordinal);

        // Zeros before a max pool are not its padding (it pads with −∞): such a Pad is a pad layer, whose zeros the maximum takes.
        string beforeMax = OnnxModel.Parse(Edit(padded, m =>
        {
            var pool = m.Graph.Node.First(n => n.OpType == "MaxPool");
            var pad = m.Graph.Node.First(n => n.OpType == "Pad");
            m.Graph.Node.Remove(pad);
            pad.Input[0] = pool.Input[0];
            pool.Input[0] = pad.Output[0];
            m.Graph.Node.Insert(m.Graph.Node.IndexOf(pool), pad);
            m.Graph.Node.First(n => n.OpType == "Conv").Input[0] = m.Graph.Input[0].Name;
        }), "before max").Spec;
        Assert.Contains("relu,pad(1,1,1,1),maxpool(2x2,stride=2x2,pad=0x0)", beforeMax, StringComparison.Ordinal);
    }

    /// <summary>
    /// Padding more on one side than the other (what exporters write for "same" padding at stride 2): the difference is
    /// a pad layer before the Conv or the AveragePool, which keeps the rest; ONNX Runtime gives the same logits.
    /// Where zeros before the node would change it — a MaxPool, an average without count_include_pad, ceil mode — it is
    /// refused by name.
    /// </summary>
    [Fact]
    public void One_sided_padding_becomes_a_pad_layer_where_zeros_before_the_node_are_the_same()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create("conv(4,3,pad=1),relu,avgpool(3,stride=2,pad=1),flatten,dense(3)", [2, 7, 8], backend, seed: 6);
        static void SetPads(NodeProto node, params long[] pads)
        {
            node.Attribute.Remove(node.Attribute.Single(a => a.Name == "pads"));
            node.Attribute.Add(new AttributeProto { Name = "pads", Type = AttributeProto.Types.AttributeType.Ints, Ints = { pads } });
        }

        byte[] oneSided = Edit(OnnxModel.ToBytes(model), m =>
        {
            SetPads(m.Graph.Node.First(n => n.OpType == "Conv"), 1, 0, 2, 1); // top 1, left 0, bottom 2, right 1
            SetPads(m.Graph.Node.First(n => n.OpType == "AveragePool"), 0, 1, 1, 1);
        });
        var contents = OnnxModel.Parse(oneSided, "one-sided");
        Assert.StartsWith("pad(0,1,0,1),conv(4,3x3,stride=1x1,pad=1x0,", contents.Spec, StringComparison.Ordinal);
        Assert.Contains("relu,pad(0,0,0,1),avgpool(3x3,stride=2x2,pad=0x1)", contents.Spec, StringComparison.Ordinal);
        using var temp = Fixtures.TempFolder();
        File.WriteAllBytes(temp.File("one-sided.onnx"), oneSided);
        using var loaded = OnnxModel.Load(temp.File("one-sided.onnx"), backend);
        Assert.Equal(["1.weight", "1.bias", "6.weight", "6.bias"], loaded.NamedParameters().Select(p => p.Key)); // the pad layers take indices 0 and 3
        var images = Tensor.Random([3, 2, 7, 8], 7);
        OnnxExportTests.SkipWithoutOnnxRuntime();
        TensorAssert.Close(loaded.Predict(images).Data, OnnxExportTests.OnnxRuntimeLogits(oneSided, images), new Shape(3, 3), 1e-5, 1e-4,
            "one-sided padding: ONNX Runtime against predict");

        byte[] WithPool(string op, long countIncludePad, long ceilMode) => Edit(oneSided, m =>
        {
            var pool = m.Graph.Node.First(n => n.OpType == "AveragePool");
            pool.OpType = op;
            pool.Attribute.Remove(pool.Attribute.Single(a => a.Name == "count_include_pad"));
            if (op == "AveragePool")
            {
                pool.Attribute.Add(new AttributeProto { Name = "count_include_pad", Type = AttributeProto.Types.AttributeType.Int, I = countIncludePad });
            }

            pool.Attribute.Single(a => a.Name == "ceil_mode").I = ceilMode;
        });
        Assert.Contains("(MaxPool): one-sided padding (0,1,1,1: top, left, bottom, right) is not supported here: a MaxPool's padding is never taken",
            Rejected(WithPool("MaxPool", 1, 0)), StringComparison.Ordinal);
        Assert.Contains("(AveragePool): one-sided padding (0,1,1,1: top, left, bottom, right) is not supported here: without count_include_pad",
            Rejected(WithPool("AveragePool", 0, 0)), StringComparison.Ordinal);
        Assert.Contains("(AveragePool): one-sided padding (0,1,1,1: top, left, bottom, right) is not supported here: ceil mode's last window",
            Rejected(WithPool("AveragePool", 1, 1)), StringComparison.Ordinal);
    }

    /// <summary>
    /// A Pad node that no Conv or AveragePool can take — a value other than zero, a crop (negative pads), zeros before
    /// anything else — is a pad layer; other modes and padding of N or C are refused by name.
    /// </summary>
    [Fact]
    public void A_constant_pad_or_crop_is_a_pad_layer_and_other_pads_are_refused_by_name()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create("conv(2,3),relu,flatten,dense(3)", [1, 6, 6], backend, seed: 8);
        byte[] WithPad(long[] amounts, float? value = null, string? mode = null) => Edit(OnnxModel.ToBytes(model), m =>
        {
            var relu = m.Graph.Node.First(n => n.OpType == "Relu");
            m.Graph.Initializer.Add(new TensorProto { Name = "amounts", DataType = (int)TensorProto.Types.DataType.Int64, Dims = { amounts.Length }, Int64Data = { amounts } });
            var pad = new NodeProto { Name = "pad", OpType = "Pad", Input = { relu.Output[0], "amounts" }, Output = { "padded" } };
            if (value is { } v)
            {
                m.Graph.Initializer.Add(new TensorProto { Name = "value", DataType = (int)TensorProto.Types.DataType.Float, FloatData = { v } });
                pad.Input.Add("value");
            }

            if (mode is not null)
            {
                pad.Attribute.Add(new AttributeProto { Name = "mode", Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(mode) });
            }

            m.Graph.Node.First(n => n.OpType == "Flatten").Input[0] = "padded";
            m.Graph.Node.Insert(m.Graph.Node.IndexOf(relu) + 1, pad); // (the dense weights no longer fit: Parse reads the layers alone)
        });

        Assert.Contains("relu,pad(-1,2,1,0,value=0.5),flatten", OnnxModel.Parse(WithPad([0, 0, 1, -1, 0, 0, 0, 2], 0.5f), "value").Spec, StringComparison.Ordinal);
        Assert.Contains("relu,pad(0,1,0,1),flatten", OnnxModel.Parse(WithPad([0, 0, 0, 0, 0, 0, 1, 1]), "zeros").Spec, StringComparison.Ordinal);
        Assert.Contains("relu,flatten", OnnxModel.Parse(WithPad([0, 0, 0, 0, 0, 0, 0, 0]), "none").Spec, StringComparison.Ordinal);
        Assert.Contains("node 'pad' (Pad): only a constant Pad (mode constant, no axes) is supported",
            Rejected(WithPad([0, 0, 1, 1, 0, 0, 1, 1], mode: "reflect")), StringComparison.Ordinal);
        Assert.Contains("node 'pad' (Pad): a Pad is supported only around H and W of an (N, C, H, W) tensor",
            Rejected(WithPad([0, 1, 0, 0, 0, 0, 0, 0])), StringComparison.Ordinal);
        Assert.Contains("node 'pad' (Pad): its constant_value (NaN) is not one finite number",
            Rejected(WithPad([0, 0, 1, 1, 0, 0, 1, 1], float.NaN)), StringComparison.Ordinal);
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

        // An attribute that changes what an activation computes is refused, not ignored: GELU's tanh approximation.
        AttributeProto Text(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };
        Assert.Contains("approximate='tanh' is not supported (only the exact GELU, 'none')", Rejected(Edit(valid, m =>
        {
            var node = m.Graph.Node.First(n => n.OpType == "Relu");
            node.OpType = "Gelu";
            node.Attribute.Add(Text("approximate", "tanh"));
        })), StringComparison.Ordinal);
        Assert.Contains("attribute 'alpha' is not supported (supported: )", Rejected(Edit(valid, m =>
            m.Graph.Node.First(n => n.OpType == "Relu").Attribute.Add(Text("alpha", "1")))), StringComparison.Ordinal);
        byte[] exact = Edit(valid, m =>
        {
            var node = m.Graph.Node.First(n => n.OpType == "Relu");
            node.OpType = "Gelu";
            node.Attribute.Add(Text("approximate", "none"));
        });
        Assert.Contains("gelu", OnnxModel.Parse(exact, "exact.onnx").Spec, StringComparison.Ordinal);

        Assert.Contains("two initializers are named", Rejected(Edit(valid, m => m.Graph.Initializer.Add(m.Graph.Initializer[0]))), StringComparison.Ordinal);
        Assert.Contains("'strides' is (0,0); 2 values in 1 … 65536 are supported",
            Rejected(Edit(valid, m =>
            {
                var strides = m.Graph.Node.First(n => n.OpType == "Conv").Attribute.Single(a => a.Name == "strides");
                strides.Ints.Clear();
                strides.Ints.Add([0, 0]);
            })), StringComparison.Ordinal);

        // A cycle: the first convolution reads the last node's output, so nothing is reachable from the input.
        string cycle = Rejected(Edit(valid, m => m.Graph.Node.First(n => n.OpType == "Conv").Input[0] = m.Graph.Node.Last().Output[0]));
        Assert.Contains("torch_cnn.onnx", cycle, StringComparison.Ordinal);
    }

    [Fact]
    public void Init_weights_from_an_onnx_file_fit_a_model_whose_dropout_layers_it_leaves_out()
    {
        // ONNX has no dropout, so the file's layers are numbered without them; the model's (as nn.Sequential's) count them.
        const string Spec = "conv(4,3,pad=1),relu,dropout(0.2),residual(dropout(0.1),conv(4,3,pad=1),batchnorm,relu),flatten,dropout(0.5),dense(3)";
        using var backend = Backends.Open("cpu");
        using var trained = Sequential.Create(Spec, [1, 6, 6], backend, seed: 4);
        var contents = OnnxModel.Parse(OnnxModel.ToBytes(trained), "m.onnx");
        Assert.DoesNotContain("dropout", contents.Spec, StringComparison.Ordinal);

        using var fresh = Sequential.Create(Spec, [1, 6, 6], backend, seed: 5);
        fresh.LoadStateDict(OnnxModel.StateDict(contents, fresh));
        foreach (var (key, tensor) in trained.StateDict().Where(p => !p.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)))
        {
            Assert.Equal(tensor.Data, fresh.StateDict()[key].Data);
        }

        // A spec with fewer layers than the file: the tensor without a layer is named, not a key clash.
        using var shorter = Sequential.Create("flatten,dropout(0.5),dense(3)", [1, 6, 6], backend);
        var error = Assert.Throws<ArgumentException>(() => OnnxModel.StateDict(contents, shorter));
        Assert.Contains("is for a layer the model does not have: the file has more layers than the spec (dropout aside)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Gelu_is_read_only_with_its_own_constants()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create("flatten,dense(4),gelu,dense(4),silu,dense(2)", [1, 2, 2], backend, seed: 3);
        byte[] valid = OnnxModel.ToBytes(model);
        Assert.Equal(model.Spec, OnnxModel.Parse(valid, "m.onnx").Spec);

        // Each of GELU's constants changed (½ to 1, √2 to 2, 1 to 2): another function, refused rather than read as GELU.
        foreach (var (from, to) in (ValueTuple<float, float>[])[(0.5f, 1f), (MathF.Sqrt(2f), 2f), (1f, 2f)])
        {
            string error = Assert.Throws<FileFormatException>(() => OnnxModel.Parse(Edit(valid, m =>
            {
                var scalar = m.Graph.Initializer.Concat(m.Graph.Node.Where(n => n.OpType == "Constant").Select(n => n.Attribute[0].T))
                    .Single(t => t.Dims.Count == 0 && BitConverter.ToSingle(t.RawData.Span) == from);
                scalar.RawData = ByteString.CopyFrom(BitConverter.GetBytes(to));
            }), "m.onnx")).Message;
            Assert.Contains("do not compute x·½(1 + erf(x/√2)) (GELU) with its constants √2, 1 and ½", error, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(100_000, false)]
    [InlineData(20_000, true)] // each level's join found by a walk through everything inside it: 32 walks, then the refusal
    public void Residual_blocks_nested_past_the_specs_limit_are_refused_before_the_stack_runs_out(int depth, bool reluShortcuts)
    {
        // residual(relu,residual(relu,…)) deep: each level's input feeds a Relu and the Add that closes the level (or a
        // second Relu into it: residual(relu,…; relu)).
        var graph = new GraphProto();
        graph.Input.Add(Declared("x", [1, 4]));
        for (int k = 0; k < depth; k++)
        {
            graph.Node.Add(new NodeProto { OpType = "Relu", Name = $"relu{k}", Input = { k == 0 ? "x" : $"r{k - 1}" }, Output = { $"r{k}" } });
        }

        for (int k = depth - 1; k >= 0; k--)
        {
            string inner = k == depth - 1 ? $"r{k}" : $"a{k + 1}";
            string input = k == 0 ? "x" : $"r{k - 1}";
            if (reluShortcuts)
            {
                graph.Node.Add(new NodeProto { OpType = "Relu", Name = $"s{k}", Input = { input }, Output = { $"s{k}" } });
                input = $"s{k}";
            }

            graph.Node.Add(new NodeProto { OpType = "Add", Name = $"add{k}", Input = { inner, input }, Output = { $"a{k}" } });
        }

        graph.Output.Add(Declared("a0", [1, 4]));
        var bytes = new ModelProto { IrVersion = 8, Graph = graph, OpsetImport = { new OperatorSetIdProto { Version = 17 } } }.ToByteArray();
        string error = Assert.Throws<FileFormatException>(() => OnnxModel.Parse(bytes, "deep.onnx")).Message;
        Assert.Contains("residual blocks nest deeper than 32 levels", error, StringComparison.Ordinal);
        Assert.Contains("deep.onnx", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Branches_that_meet_elsewhere_than_in_an_add_or_feed_too_many_nodes_are_refused()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create("conv(4,3,pad=1),residual(relu; tanh),flatten,dense(3)", [1, 6, 6], backend, seed: 2);
        byte[] valid = OnnxModel.ToBytes(model);
        string mul = Assert.Throws<FileFormatException>(() => OnnxModel.Parse(Edit(valid, m => m.Graph.Node.Single(n => n.OpType == "Add" && n.Input.Count(i => m.Graph.Initializer.All(t => t.Name != i)) == 2).OpType = "Mul"), "m.onnx")).Message;
        Assert.Contains("meet here, not in an Add of two tensors", mul, StringComparison.Ordinal);
        Assert.Contains("m.onnx", mul, StringComparison.Ordinal);

        // The convolution's output feeding nine Relus, each of them on to nothing the output needs.
        string many = Assert.Throws<FileFormatException>(() => OnnxModel.Parse(Edit(valid, m =>
        {
            string conv = m.Graph.Node.First(n => n.OpType == "Conv").Output[0];
            for (int i = 0; i < 8; i++)
            {
                m.Graph.Node.Add(new NodeProto { OpType = "Relu", Name = $"extra{i}", Input = { conv }, Output = { $"extra{i}" } });
            }
        }), "m.onnx")).Message;
        Assert.Contains("feeds 10 nodes", many, StringComparison.Ordinal);
    }

    [Fact]
    public void A_normalisation_is_read_only_from_constants_that_vary_along_the_channels()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create("conv(4,3),flatten,dense(3)", [3, 5, 3], backend, seed: 2);
        model.Normalization = new ChannelNormalization([0.1f, 0.2f, 0.3f], [0.5f, 0.6f, 0.7f]);
        byte[] valid = OnnxModel.ToBytes(model);
        Assert.Equal(model.Normalization, OnnxModel.Parse(valid, "m.onnx").Normalization);

        // (3,) against (N, 3, 5, 3) varies along W in ONNX (the width is 3 too): never read per channel.
        string alongWidth = Assert.Throws<FileFormatException>(() => OnnxModel.Parse(Reshaped(valid, "normalize.mean", [3]), "m.onnx")).Message;
        Assert.Contains("'normalize.mean' of shape (3)", alongWidth, StringComparison.Ordinal);
        Assert.Contains("(C, 1, 1), (1, C, 1, 1) or one value", alongWidth, StringComparison.Ordinal);
        // (3, 1, 1) is per channel; one value (a scalar or (1, 1, 1, 1)) is every channel's.
        Assert.Equal(model.Normalization, OnnxModel.Parse(Reshaped(valid, "normalize.mean", [3, 1, 1]), "m.onnx").Normalization);
        byte[] scalars = Edit(valid, m =>
        {
            foreach (var (name, dims, value) in new[] { ("normalize.mean", Array.Empty<long>(), 0.25f), ("normalize.std", new long[] { 1, 1, 1, 1 }, 0.5f) })
            {
                var tensor = m.Graph.Initializer.Single(t => t.Name == name);
                tensor.Dims.Clear();
                tensor.Dims.AddRange(dims);
                tensor.RawData = ByteString.CopyFrom(BitConverter.GetBytes(value));
            }
        });
        Assert.Equal(new ChannelNormalization([0.25f, 0.25f, 0.25f], [0.5f, 0.5f, 0.5f]), OnnxModel.Parse(scalars, "m.onnx").Normalization);
    }

    /// <summary><paramref name="bytes"/> with initializer <paramref name="name"/>'s dims replaced (its values kept).</summary>
    private static byte[] Reshaped(byte[] bytes, string name, long[] dims) => Edit(bytes, m =>
    {
        var tensor = m.Graph.Initializer.Single(t => t.Name == name);
        tensor.Dims.Clear();
        tensor.Dims.AddRange(dims);
    });

    [Fact]
    public void An_input_declared_larger_than_a_tensor_can_hold_is_a_format_error()
    {
        byte[] valid = File.ReadAllBytes(Fixtures.Torch("torch_cnn.onnx"));
        string error = Rejected(Edit(valid, m =>
        {
            var dims = m.Graph.Input[0].Type.TensorType.Shape.Dim;
            for (int i = 1; i < dims.Count; i++)
            {
                dims[i].DimValue = 2048;
            }
        }));
        Assert.Contains("declares (2048,2048,2048) a sample: more than 2147479551 values", error, StringComparison.Ordinal);
    }

    /// <summary>The PyTorch-exported fixture <paramref name="name"/> loads as <paramref name="spec"/> and gives PyTorch's logits for its input.</summary>
    private static void AssertPytorchsLogits(string name, string spec)
    {
        using var backend = Backends.Open("cpu");
        using var model = OnnxModel.Load(Fixtures.Torch($"{name}.onnx"), backend);
        Assert.Equal(spec, model.Spec);
        var input = Npy.ReadTensor(Fixtures.Torch($"{name}.input.npy"));
        var expected = Npy.ReadTensor(Fixtures.Torch($"{name}.logits.npy"));
        TensorAssert.Close(expected.Data, model.Predict(input).Data, expected.Shape, 1e-5, 1e-4, $"PyTorch's ONNX export {name}");
    }

    private static ValueInfoProto Declared(string name, long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (long d in dims)
        {
            shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        }

        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = shape } } };
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
