using System.Globalization;
using System.Runtime.InteropServices;
using Google.Protobuf;
using GpuCnn.IO;
using GpuCnn.Kernels;
using GpuCnn.Models;
using GpuCnn.Onnx.Proto;

namespace GpuCnn.Onnx;

/// <summary>
/// Models as ONNX (opset 17, IR version 8), for ONNX Runtime and the other tools that exchange ONNX: one input "input"
/// (N, C, H, W) with N left free, one output "logits" (N, classes), the weights as initializers under their state-dict
/// names. Every layer the engine has maps to standard operators: Conv (strides, pads, dilations, group), Gemm for
/// dense layers, Relu, LeakyRelu, Sigmoid, Tanh, GELU as x·½(1 + erf(x/√2)) and SiLU as x·σ(x) (opset 17 has neither
/// as one operator), MaxPool, AveragePool (count_include_pad as the layer's; ceil_mode as ONNX counts windows, below),
/// GlobalAveragePool, BatchNormalization with the running statistics (evaluation mode), Pad (constant) for the pad layer, Clip for ReLU6, Flatten, Add for residual
/// blocks; dropout is the identity in evaluation and writes nothing; a model's input normalisation becomes Sub and Div.
/// </summary>
public static partial class OnnxModel
{
    /// <summary>The operator-set version written.</summary>
    public const int Opset = 17;

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> as ONNX, atomically; a model holding a NaN or ±∞
    /// weight is refused (<see cref="InvalidOperationException"/> naming the tensor), as every model file is.
    /// </summary>
    public static void Export(Sequential model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(path);
        var proto = Build(model, $"not writing '{path}'");
        FileUtil.WriteAtomically(path, proto.WriteTo);
    }

    /// <summary>The ONNX model of <paramref name="model"/>, as protobuf bytes; NaN or ±∞ weights are refused as by <see cref="Export"/>.</summary>
    public static byte[] ToBytes(Sequential model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Build(model, "not exporting the model").ToByteArray();
    }

    private static ModelProto Build(Sequential model, string refusal)
    {
        var state = model.StateDict();
        if (ModelFile.FirstNonFinite(state) is { } bad)
        {
            // Such a file would load as a broken model, and our own Load refuses it.
            throw new InvalidOperationException($"{refusal}: {bad}; a model with NaN or infinite weights is not exported.");
        }

        var graph = new GraphBuilder(state);
        var input = graph.Declare("input", model.InputShape);
        string x = input;
        if (model.Normalization is { } norm)
        {
            // (x − mean) / std per channel, as the model applies it to what it is given: (1, C, 1, 1) against (N, C, H, W),
            // (1, F) against (N, F).
            long[] shape = [1, norm.Channels, .. Enumerable.Repeat(1L, model.InputShape.Rank - 1)];
            x = graph.Node("Sub", [x, graph.Constant("normalize.mean", [.. norm.Mean], shape)]);
            x = graph.Node("Div", [x, graph.Constant("normalize.std", [.. norm.Std], shape)]);
        }

        x = graph.Chain(model.Layers, x, "");
        graph.Output(x, "logits", model.OutputShape);

        var proto = new ModelProto
        {
            IrVersion = 8,
            ProducerName = "GpuCnn",
            ProducerVersion = typeof(OnnxModel).Assembly.GetName().Version?.ToString() ?? "",
            Graph = graph.Graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        proto.MetadataProps.Add(new StringStringEntryProto { Key = "arch", Value = model.Spec });
        return proto;
    }

    /// <summary>Builds the graph node by node, naming each output after its node.</summary>
    private sealed class GraphBuilder(IReadOnlyDictionary<string, Tensor> state)
    {
        private int _nodes;

        public GraphProto Graph { get; } = new() { Name = "gpucnn" };

        public string Declare(string name, Shape sample)
        {
            Graph.Input.Add(ValueInfo(name, sample));
            return name;
        }

        public void Output(string from, string name, Shape sample)
        {
            Node("Identity", [from], name);
            Graph.Output.Add(ValueInfo(name, sample));
        }

        /// <summary>Emits a node with one output (named <paramref name="output"/> or after the node) and returns the output.</summary>
        public string Node(string op, string[] inputs, string? output = null, params AttributeProto[] attributes)
        {
            string name = $"{op}_{_nodes++}";
            var node = new NodeProto { OpType = op, Name = name };
            node.Input.AddRange(inputs);
            node.Output.Add(output ?? name);
            node.Attribute.AddRange(attributes);
            Graph.Node.Add(node);
            return output ?? name;
        }

        /// <summary>The state-dict tensor <paramref name="key"/> as an initializer.</summary>
        public string Weight(string key)
        {
            var tensor = state.TryGetValue(key, out var t) ? t : throw new InvalidOperationException($"ONNX export: the model has no tensor '{key}'.");
            return Constant(key, tensor.Data, [.. tensor.Shape.ToArray().Select(d => (long)d)]);
        }

        public string Constant(string name, float[] values, long[] dims)
        {
            var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())) };
            tensor.Dims.AddRange(dims);
            Graph.Initializer.Add(tensor);
            return name;
        }

        public string Scalar(float value) => Constant($"const_{_nodes++}", [value], []);

        /// <summary>A one-dimensional int64 initializer (a Pad node's pads).</summary>
        public string Int64s(params long[] values)
        {
            var tensor = new TensorProto { Name = $"const_{_nodes++}", DataType = (int)TensorProto.Types.DataType.Int64, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())) };
            tensor.Dims.Add(values.Length);
            Graph.Initializer.Add(tensor);
            return tensor.Name;
        }

        public string Chain(IReadOnlyList<Layer> layers, string x, string prefix)
        {
            for (int i = 0; i < layers.Count; i++)
            {
                x = Layer(layers[i], x, $"{prefix}{i}.");
            }

            return x;
        }

        private string Layer(Layer layer, string x, string key) => layer switch
        {
            Conv2d conv => Node("Conv", conv.HasBias ? [x, Weight(key + "weight"), Weight(key + "bias")] : [x, Weight(key + "weight")], null,
                Ints("kernel_shape", conv.Kernel.H, conv.Kernel.W), Ints("strides", conv.Stride.H, conv.Stride.W),
                Ints("pads", conv.Padding.H, conv.Padding.W, conv.Padding.H, conv.Padding.W), Ints("dilations", conv.Dilation.H, conv.Dilation.W),
                Int("group", conv.Groups)),
            Dense => Node("Gemm", [x, Weight(key + "weight"), Weight(key + "bias")], null, Int("transB", 1)),
            Flatten => Node("Flatten", [x], null, Int("axis", 1)),
            MaxPool2d pool => Node("MaxPool", [x], null, PoolAttributes(pool)),
            AvgPool2d pool => Node("AveragePool", [x], null, [.. PoolAttributes(pool), Int("count_include_pad", pool.CountIncludePad ? 1 : 0)]),
            GlobalAvgPool2d => Node("GlobalAveragePool", [x]),
            // (N, C, H, W)'s begins, then its ends; a negative amount crops, in ONNX as in the layer.
            ConstantPad2d pad => Node("Pad", [x, Int64s(0, 0, pad.Top, pad.Left, 0, 0, pad.Bottom, pad.Right), Scalar(pad.Value)], null, String("mode", "constant")),
            BatchNorm norm => Node("BatchNormalization",
                [x, Weight(key + "weight"), Weight(key + "bias"), Weight(key + "running_mean"), Weight(key + "running_var")], null,
                Float("epsilon", norm.Epsilon), Float("momentum", 1f - norm.Momentum)),
            Dropout => x, // evaluation mode: the identity
            Residual block => Node("Add", [Chain(block.Body, x, key + "body."), Chain(block.Shortcut, x, key + "shortcut.")]),
            ActivationLayer activation => Activation(activation, x),
            _ => throw new NotSupportedException($"ONNX export: layer '{layer.Spec}' has no ONNX form here."),
        };

        private string Activation(ActivationLayer activation, string x) => activation switch
        {
            ActivationLayer<Relu> => Node("Relu", [x]),
            ActivationLayer<Relu6> => Node("Clip", [x, Scalar(0f), Scalar(Relu6.Ceiling)]),
            ActivationLayer<LeakyRelu> leaky => Node("LeakyRelu", [x], null, Float("alpha", leaky.Function.Alpha)),
            ActivationLayer<Sigmoid> => Node("Sigmoid", [x]),
            ActivationLayer<Tanh> => Node("Tanh", [x]),
            ActivationLayer<Silu> => Node("Mul", [x, Node("Sigmoid", [x])]),
            ActivationLayer<Gelu> => Node("Mul", [Node("Mul", [x, Node("Add", [Node("Erf", [Node("Div", [x, Scalar(MathF.Sqrt(2f))])]), Scalar(1f)])]), Scalar(0.5f)]),
            _ => throw new NotSupportedException($"ONNX export: activation '{activation.Spec}' has no ONNX form here."),
        };

        private static AttributeProto[] PoolAttributes(Pool2dLayer pool) =>
        [
            Ints("kernel_shape", pool.Kernel.H, pool.Kernel.W), Ints("strides", pool.Stride.H, pool.Stride.W),
            Ints("pads", pool.Padding.H, pool.Padding.W, pool.Padding.H, pool.Padding.W), Int("ceil_mode", OnnxCeilMode(pool) ? 1 : 0),
        ];

        /// <summary>
        /// ONNX's ceil_mode (opset 17, as ONNX Runtime runs it) counts ⌈(H + 2P − K)/S⌉ + 1 windows; PyTorch's, and the
        /// layer's, drop a last one that would start past the input and its near padding. Where that drop happens on an
        /// axis the layer's windows there are floor mode's, so: ceil_mode 1 where no axis drops, 0 where every axis that
        /// ceil mode changes drops, and no ONNX form where the axes differ.
        /// </summary>
        private static bool OnnxCeilMode(Pool2dLayer pool)
        {
            if (!pool.CeilMode)
            {
                return false;
            }

            var ceil = pool.Geometry(1);
            var floor = ceil with { CeilMode = false };
            long onnxP = Onnx(ceil.H, ceil.PadH, ceil.KernelH, ceil.StrideH), onnxQ = Onnx(ceil.W, ceil.PadW, ceil.KernelW, ceil.StrideW);
            if (ceil.P == onnxP && ceil.Q == onnxQ)
            {
                return true;
            }

            return ceil.P == floor.P && ceil.Q == floor.Q
                ? false
                : throw new NotSupportedException($"ONNX export: layer '{pool.Spec}' on {pool.InputShape}: its last window is dropped on one " +
                    "axis (PyTorch's ceil_mode rule) and kept on the other, which ONNX's ceil_mode cannot say.");

            static long Onnx(int size, int pad, int kernel, int stride) => ((size + (2L * pad) - kernel + stride - 1) / stride) + 1;
        }

        private static ValueInfoProto ValueInfo(string name, Shape sample)
        {
            var shape = new TensorShapeProto();
            shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = "N" });
            foreach (int d in sample.ToArray())
            {
                shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
            }

            return new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
            };
        }

        private static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

        private static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

        private static AttributeProto String(string name, string value) =>
            new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

        private static AttributeProto Ints(string name, params long[] values)
        {
            var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
            attribute.Ints.AddRange(values);
            return attribute;
        }
    }
}
