using System.Globalization;
using System.Runtime.InteropServices;
using Google.Protobuf;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Onnx.Proto;

namespace GpuCnn.Onnx;

/// <summary>
/// What an ONNX file holds once read: the network as a spec, its per-sample input shape, its weights under the spec's
/// state-dict names, and the input normalisation when the graph starts with one (<see cref="OnnxModel.Parse"/>).
/// </summary>
public sealed record OnnxContents(string Spec, Shape InputShape, IReadOnlyDictionary<string, Tensor> Weights, ChannelNormalization? Normalization);

public static partial class OnnxModel
{
    /// <summary>Files larger than this are refused before they are read.</summary>
    public const long MaximumBytes = 1L << 31;

    private const long MaximumElements = 1L << 28; // per tensor: 1 GiB of float32
    private const int MaximumConsumers = 8;

    /// <summary>
    /// Loads an ONNX file as a model on <paramref name="backend"/> (see <see cref="Parse"/> for what it accepts);
    /// batch-norm counters start at 0 (ONNX keeps none).
    /// </summary>
    public static Sequential Load(string path, Backend backend)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(backend);
        var contents = Read(path);
        var model = ModelFile.BuildFor(path, contents.Weights, contents.Spec, contents.InputShape, backend, $"ONNX file '{path}': its graph, read as '{contents.Spec}'");
        try
        {
            model.LoadStateDict(StateDict(contents, model));
            model.Normalization = contents.Normalization;
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Reads and parses an ONNX file (at most <see cref="MaximumBytes"/>).</summary>
    public static OnnxContents Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Parse(FileUtil.ReadAll(path, "ONNX file", MaximumBytes), path);
    }

    /// <summary>
    /// The file's weights as a state dict for <paramref name="model"/> (one of the same layers, as `--init` loads):
    /// batch-norm counters, which ONNX keeps none of, start at 0. The file's layers are numbered without the dropout
    /// layers ONNX leaves out; the keys follow <paramref name="model"/>'s numbering, which counts them (as PyTorch's
    /// nn.Sequential does).
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> StateDict(OnnxContents contents, Sequential model)
    {
        ArgumentNullException.ThrowIfNull(contents);
        ArgumentNullException.ThrowIfNull(model);
        var weights = contents.Weights.ToDictionary(
            p => ModelKey(p.Key, model.Layers)
                ?? throw new ArgumentException($"weights: tensor '{p.Key}' is for a layer the model does not have: the file has more layers than the spec (dropout aside)."),
            p => p.Value, StringComparer.Ordinal);
        foreach (var (key, _) in model.NamedCounters())
        {
            weights.TryAdd(key, new Tensor([], [0f]));
        }

        return weights;
    }

    /// <summary>
    /// "4.weight", numbered among the layers ONNX keeps, as the key of the same layer among <paramref name="layers"/>;
    /// null when <paramref name="layers"/> has fewer.
    /// </summary>
    private static string? ModelKey(string key, IReadOnlyList<Layer> layers)
    {
        int dot = key.IndexOf('.', StringComparison.Ordinal);
        if (dot < 0 || !int.TryParse(key.AsSpan(0, dot), NumberStyles.None, CultureInfo.InvariantCulture, out int kept))
        {
            return key;
        }

        int index = -1;
        for (int i = 0, seen = 0; i < layers.Count && index < 0; i++)
        {
            if (layers[i] is not Dropout && seen++ == kept)
            {
                index = i;
            }
        }

        if (index < 0)
        {
            return null;
        }

        string rest = key[(dot + 1)..];
        return layers[index] switch
        {
            Residual r when rest.StartsWith("body.", StringComparison.Ordinal) =>
                ModelKey(rest["body.".Length..], r.Body) is { } inner ? $"{index}.body.{inner}" : null,
            Residual r when rest.StartsWith("shortcut.", StringComparison.Ordinal) =>
                ModelKey(rest["shortcut.".Length..], r.Shortcut) is { } inner ? $"{index}.shortcut.{inner}" : null,
            _ => $"{index}.{rest}",
        };
    }

    /// <summary>
    /// Reads an ONNX model made of the operators <see cref="OnnxModel"/> writes, and of what PyTorch's
    /// torch.onnx.export writes for a Sequential CNN: Conv, Gemm or MatMul + Add, Flatten (or Reshape to (N, −1) — N from the tensor's own Shape too, x.view(x.size(0), −1) —, or to (−1, F) before a Gemm or MatMul of F input features),
    /// MaxPool, AveragePool, GlobalAveragePool, Relu, Clip to [0, 6] (ReLU6), LeakyRelu, Sigmoid, Tanh, Gelu (or its erf formula), SiLU as
    /// x·σ(x), BatchNormalization, Dropout, Identity, a constant Pad of H and W (a pad layer, or PyTorch's AvgPool2d
    /// padding: zeros with no constant_value before an AveragePool that can take them), one-sided padding of a Conv or
    /// an AveragePool (a pad layer of the difference before it), shape arithmetic on constants (folded:
    /// <see cref="OnnxConstantFolding"/>), Constant nodes and Identities of them, Add of two branches
    /// from one tensor (a residual block), and Sub + Div by per-channel constants first (the input normalisation). Anything else — another
    /// operator or attribute, a graph that is not such a chain, external data, a tensor whose data does not match its
    /// dims — is a <see cref="FileFormatException"/> naming the node.
    /// </summary>
    public static OnnxContents Parse(ReadOnlySpan<byte> bytes, string name)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new FileFormatException($"ONNX file '{name}' is not a valid ONNX model: {e.Message}", e);
        }

        if (model.Graph is not { } graph)
        {
            throw new FileFormatException($"ONNX file '{name}' has no graph.");
        }

        return new GraphReader(graph, name).Read();
    }

    /// <summary>Walks the graph from its input to its output, turning chains of nodes into layers.</summary>
    private sealed class GraphReader
    {
        private readonly string _name;
        private readonly Dictionary<string, TensorProto> _initializers = new(StringComparer.Ordinal);
        private readonly Dictionary<string, List<NodeProto>> _consumers = new(StringComparer.Ordinal);
        private readonly Dictionary<string, NodeProto> _producers = new(StringComparer.Ordinal);
        private readonly Dictionary<NodeProto, int> _order = new(ReferenceEqualityComparer.Instance); // a topological order (none for nodes on a cycle)
        private readonly List<NodeProto> _ordered = []; // the nodes in that order
        private readonly List<int[]> _successors = []; // by order: the orders of the nodes that read each node's outputs
        private readonly HashSet<NodeProto> _visited = new(ReferenceEqualityComparer.Instance); // by reference: a node's own hash code walks all its contents
        private readonly Dictionary<string, Tensor> _weights = new(StringComparer.Ordinal);
        private readonly GraphProto _graph;
        private int[]? _padBefore; // the zeros of a Pad node, for the AveragePool after it (TakesPadding)
        private long? _declaredBatch; // the input's batch dim where the file fixes it

        public GraphReader(GraphProto graph, string name)
        {
            _graph = graph;
            _name = name;
            foreach (var tensor in graph.Initializer)
            {
                if (!_initializers.TryAdd(tensor.Name, tensor))
                {
                    throw new FileFormatException($"ONNX file '{name}': two initializers are named '{tensor.Name}'.");
                }
            }

            // Constant nodes (what exporters write for small tensors such as Pad's pads) are initializers by another name.
            foreach (var node in graph.Node.Where(n => n.OpType == "Constant"))
            {
                if (node.Output.Count != 1 || node.Attribute.FirstOrDefault(a => a.Name == "value")?.T is not { } value)
                {
                    throw Error(node, "only a Constant with one tensor 'value' is supported");
                }

                AddConstant(node, value);
            }

            // An Identity of a constant is the constant: torch.onnx.export writes one where two parameters hold the same
            // values (a fresh batch norm's running_var and weight, all ones) and it keeps one initializer for both.
            // Chains of them resolve in one pass over the nodes: each Identity follows its input back to a constant once.
            var identities = graph.Node.Where(n => n.OpType == "Identity" && n.Input.Count == 1 && n.Output.Count == 1)
                .GroupBy(n => n.Output[0], StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
            var walked = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance); // resolved, or known not to lead to a constant
            foreach (var node in identities.Values)
            {
                var chain = new List<NodeProto>();
                for (var at = node; at is not null && walked.Add(at); at = identities.GetValueOrDefault(at.Input[0]))
                {
                    chain.Add(at);
                }

                if (chain.Count > 0 && _initializers.TryGetValue(chain[^1].Input[0], out var value))
                {
                    for (int i = chain.Count - 1; i >= 0; i--)
                    {
                        AddConstant(chain[i], value);
                    }
                }
            }

            FoldConstants(graph);
            TakeBatchSizedReshapes(graph);

            var produced = new HashSet<string>(StringComparer.Ordinal);
            foreach (var node in graph.Node.Where(n => n.OpType != "Constant"))
            {
                if (node.Output.Count == 0 || node.Output.Any(o => o.Length == 0))
                {
                    throw Error(node, "it has no output");
                }

                foreach (string output in node.Output)
                {
                    if (!produced.Add(output))
                    {
                        throw Error(node, $"its output '{output}' is also another node's output");
                    }

                    _producers[output] = node;
                }

                // (Nodes taken already — folded, or a batch-sized reshape's Shape — consume nothing the chain follows.)
                foreach (string input in node.Input.Where(i => i.Length > 0 && !_initializers.ContainsKey(i) && !_visited.Contains(node)))
                {
                    if (!_consumers.TryGetValue(input, out var list))
                    {
                        _consumers[input] = list = [];
                    }

                    list.Add(node);
                }
            }

            var sources = produced.Concat(graph.Input.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
            foreach (var node in graph.Node)
            {
                if (node.Input.FirstOrDefault(i => i.Length > 0 && !_initializers.ContainsKey(i) && !sources.Contains(i)) is { } missing)
                {
                    throw Error(node, $"its input '{missing}' is neither a graph input, an initializer nor another node's output");
                }
            }

            OrderTopologically();
        }

        /// <summary>
        /// Shape arithmetic on constants becomes constants (<see cref="OnnxConstantFolding"/>): each candidate node is
        /// folded once, as soon as every input it has is a constant, so chains fold in one pass whatever the nodes' order.
        /// </summary>
        private void FoldConstants(GraphProto graph)
        {
            var waiting = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal); // a tensor not yet constant → the candidates reading it
            var ready = new Queue<NodeProto>();
            foreach (var node in graph.Node.Where(OnnxConstantFolding.IsCandidate))
            {
                var missing = node.Input.Where(i => i.Length > 0 && !_initializers.ContainsKey(i)).Distinct(StringComparer.Ordinal).ToList();
                if (missing.Count == 0)
                {
                    ready.Enqueue(node);
                }

                foreach (string input in missing)
                {
                    if (!waiting.TryGetValue(input, out var list))
                    {
                        waiting[input] = list = [];
                    }

                    list.Add(node);
                }
            }

            while (ready.TryDequeue(out var node))
            {
                if (_visited.Contains(node) || node.Input.Any(i => i.Length > 0 && !_initializers.ContainsKey(i)))
                {
                    continue; // folded already, or still waiting on another input
                }

                TensorProto?[] inputs = [.. node.Input.Select(i => i.Length == 0 ? null : _initializers[i])];
                if (OnnxConstantFolding.Fold(node, inputs) is not { } value || _initializers.ContainsKey(node.Output[0]))
                {
                    continue; // not arithmetic this folds (or an output named twice, which the checks below report)
                }

                AddConstant(node, value);
                foreach (var next in waiting.GetValueOrDefault(node.Output[0]) ?? [])
                {
                    ready.Enqueue(next);
                }
            }
        }

        /// <summary>
        /// x.view(x.size(0), −1) as torch.onnx.export writes it for a dynamic batch: Reshape(x, Concat(Unsqueeze(Gather(
        /// Shape(x), 0), [0]), [−1])) — x's own batch, then −1. The constant (0, −1) says the same to a Reshape (a 0 keeps
        /// that dim), so the Concat's output becomes that constant and the chain's nodes are taken; the Reshape is then a
        /// flatten. Each tensor of the chain must feed only the next node, and the Shape must be of the Reshape's own input.
        /// </summary>
        private void TakeBatchSizedReshapes(GraphProto graph)
        {
            var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
            var readers = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var node in graph.Node)
            {
                foreach (string output in node.Output)
                {
                    producers.TryAdd(output, node);
                }

                foreach (string input in node.Input)
                {
                    readers[input] = readers.GetValueOrDefault(input) + 1;
                }
            }

            NodeProto? Feeding(string tensor, string op, int inputs) =>
                producers.TryGetValue(tensor, out var node) && node.OpType == op && node.Input.Count == inputs && node.Output.Count == 1 &&
                !_visited.Contains(node) && readers.GetValueOrDefault(tensor) == 1 ? node : null;
            bool Holds(string tensor, long value) =>
                _initializers.TryGetValue(tensor, out var proto) && OnnxConstantFolding.Int64Values(proto) is [var only] && only == value;
            long Axis(NodeProto node) => node.Attribute.FirstOrDefault(a => a.Name == "axis")?.I ?? 0;

            foreach (var reshape in graph.Node.Where(n => n.OpType == "Reshape" && n.Input.Count == 2))
            {
                if (Feeding(reshape.Input[1], "Concat", 2) is not { } concat || Axis(concat) != 0 || !Holds(concat.Input[1], -1) ||
                    Feeding(concat.Input[0], "Unsqueeze", 2) is not { Attribute.Count: 0 } unsqueeze || !Holds(unsqueeze.Input[1], 0) ||
                    Feeding(unsqueeze.Input[0], "Gather", 2) is not { } gather || Axis(gather) != 0 || !Holds(gather.Input[1], 0) ||
                    Feeding(gather.Input[0], "Shape", 1) is not { Attribute.Count: 0 } shape || shape.Input[0] != reshape.Input[0] ||
                    _initializers.ContainsKey(concat.Output[0]))
                {
                    continue;
                }

                AddConstant(concat, new TensorProto { Name = concat.Output[0], DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 2 }, Int64Data = { 0, -1 } });
                _visited.UnionWith([unsqueeze, gather, shape]);
            }
        }

        /// <summary>Numbers the nodes so that each comes after those it reads from (Kahn's algorithm); nodes on a cycle get no number.</summary>
        private void OrderTopologically()
        {
            var waiting = new Dictionary<NodeProto, int>(ReferenceEqualityComparer.Instance);
            var ready = new Queue<NodeProto>();
            foreach (var node in _graph.Node.Where(n => n.OpType != "Constant"))
            {
                int inputs = node.Input.Count(i => _producers.ContainsKey(i) && !_initializers.ContainsKey(i));
                waiting[node] = inputs;
                if (inputs == 0)
                {
                    ready.Enqueue(node);
                }
            }

            while (ready.TryDequeue(out var node))
            {
                _order[node] = _order.Count;
                _ordered.Add(node);
                foreach (string output in node.Output)
                {
                    foreach (var consumer in _consumers.GetValueOrDefault(output) ?? [])
                    {
                        if (--waiting[consumer] == 0)
                        {
                            ready.Enqueue(consumer);
                        }
                    }
                }
            }

            // Successors as numbers, once: a join's walk then touches no dictionary of names (a hostile file's 32 nested
            // levels walk everything inside them 32 times).
            foreach (var node in _ordered)
            {
                _successors.Add([.. node.Output.SelectMany(o => _consumers.GetValueOrDefault(o) ?? []).Where(_order.ContainsKey).Select(c => _order[c])]);
            }
        }

        public OnnxContents Read()
        {
            var inputs = _graph.Input.Where(i => !_initializers.ContainsKey(i.Name)).ToList();
            if (inputs.Count != 1 || _graph.Output.Count != 1)
            {
                throw new FileFormatException($"ONNX file '{_name}': the graph has {inputs.Count} inputs and {_graph.Output.Count} outputs besides its weights; one of each is supported.");
            }

            var sample = SampleShape(inputs[0]);
            var batch = inputs[0].Type?.TensorType?.Shape?.Dim.FirstOrDefault();
            _declaredBatch = batch?.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? batch.DimValue : null;
            string x = inputs[0].Name;
            ChannelNormalization? normalization = null;
            if (Single(x) is { OpType: "Sub" } sub && Single(sub.Output[0]) is { OpType: "Div" } div)
            {
                float[] mean = ChannelValues(sub, sample), std = ChannelValues(div, sample);
                try
                {
                    normalization = new ChannelNormalization(mean, std);
                }
                catch (ArgumentException e)
                {
                    throw Error(div, e.Message);
                }

                Visit(sub);
                Visit(div);
                x = div.Output[0];
            }

            var layers = new List<string>();
            x = Chain(x, _graph.Output[0].Name, layers, "", 0);
            if (x != _graph.Output[0].Name)
            {
                throw new FileFormatException($"ONNX file '{_name}': the chain from the input ends at '{x}', not at the output '{_graph.Output[0].Name}'.");
            }

            if (_visited.Count != _graph.Node.Count)
            {
                var stray = _graph.Node.First(n => !_visited.Contains(n));
                throw Error(stray, "it is not on the path from the input to the output");
            }

            return new OnnxContents(string.Join(",", layers), sample, _weights, normalization);
        }

        /// <summary>
        /// Follows single-consumer nodes from <paramref name="x"/> until <paramref name="end"/> or a node with several inputs
        /// from the chain, inside <paramref name="depth"/> residual blocks (at most the spec's nesting: a hostile file's
        /// thousands would overflow the stack, which nothing can catch). <paramref name="first"/>, when given, are the
        /// branches this chain takes from x (a residual block's body or shortcut: the rest of x's consumers are the other's).
        /// </summary>
        private string Chain(string x, string end, List<string> layers, string prefix, int depth, List<BranchStart>? first = null)
        {
            while (x != end && (first is not null || _consumers.ContainsKey(x)))
            {
                var starts = first ?? StartsFrom(x);
                first = null;
                if (starts.Count == 1 && starts[0].Fused is { } fused)
                {
                    x = Take(fused, layers);
                    continue;
                }

                if (starts.Count >= 2)
                {
                    // A residual block: branches from x that meet in an Add (more than two where a branch starts with a block of its own).
                    if (depth >= ArchitectureSpec.MaximumNesting)
                    {
                        throw Error(starts[0].Node, $"residual blocks nest deeper than {ArchitectureSpec.MaximumNesting} levels");
                    }

                    var (join, bodyStarts, shortcutStarts) = Join(x, starts);
                    var body = new List<string>();
                    var shortcut = new List<string>();
                    string left = Branch(bodyStarts, x, join, body, $"{prefix}{layers.Count}.body.", depth + 1);
                    string right = Branch(shortcutStarts, x, join, shortcut, $"{prefix}{layers.Count}.shortcut.", depth + 1);
                    if (!join.Input.Contains(left) || !join.Input.Contains(right))
                    {
                        throw Error(join, "its inputs are not the ends of the two branches that start at the same tensor");
                    }

                    Visit(join);
                    layers.Add(shortcut.Count == 0 ? $"residual({string.Join(",", body)})" : $"residual({string.Join(",", body)}; {string.Join(",", shortcut)})");
                    x = join.Output[0];
                    continue;
                }

                var node = starts[0].Node;
                if (IsJoin(node))
                {
                    return x; // the end of a branch: the caller's residual block takes the Add
                }

                x = Step(node, layers, prefix);
            }

            return x;
        }

        /// <summary>What x's consumers start, each SiLU or GELU pattern one start.</summary>
        private List<BranchStart> StartsFrom(string x)
        {
            var next = _consumers[x];
            // Nested blocks that start together feed one node more each; a hostile file's thousands would make grouping them quadratic.
            if (next.Count > MaximumConsumers)
            {
                throw Error(next[0], $"'{x}' feeds {next.Count} nodes; a chain, or branches that meet in Adds (at most {MaximumConsumers} consumers of one tensor), is supported");
            }

            return Starts(x, next);
        }

        /// <summary>Takes <paramref name="node"/> as the next layer (none for the nodes evaluation drops) and returns the tensor the chain continues from.</summary>
        private string Step(NodeProto node, List<string> layers, string prefix)
        {
            Visit(node);
            if (Layer(node, layers, prefix, out string output) is { } spec)
            {
                layers.Add(spec);
            }

            return output;
        }

        /// <summary>Takes a SiLU or GELU written out in nodes as the next layer; returns its output.</summary>
        private string Take(FusedActivation fused, List<string> layers)
        {
            foreach (var node in fused.Nodes)
            {
                Visit(node);
            }

            layers.Add(fused.Spec);
            return fused.Output;
        }

        /// <summary>
        /// One branch of a residual block: the layers from <paramref name="starts"/> (none, when the one start is the Add
        /// itself) to the join.
        /// </summary>
        private string Branch(List<BranchStart> starts, string x, NodeProto join, List<string> layers, string prefix, int depth) =>
            starts is [{ Fused: null } identity] && identity.Node == join ? x : Chain(x, "", layers, prefix, depth, starts);

        /// <summary>
        /// Where the branches from <paramref name="x"/> meet: the first node, in topological order, that every branch reaches
        /// (each node visited once, carrying the set of branches that reach it), which must be an Add of two computed tensors.
        /// Its two inputs split the branches into the body (the side of the first-listed branch, as an exporter writes the
        /// body first; never an identity) and the shortcut.
        /// </summary>
        private (NodeProto Join, List<BranchStart> Body, List<BranchStart> Shortcut) Join(string x, List<BranchStart> starts)
        {
            // Two branches, one of them x straight into an Add: that Add is the join (its other input can only come from
            // the other branch; the caller checks it does), found without a walk through everything nested inside. Not
            // for Add(x, x), both of whose starts are the Add: the walk refuses it.
            if (starts.Count == 2 && starts[0].Node != starts[1].Node && starts.FindIndex(s => s.Fused is null && IsJoin(s.Node)) is var identity and >= 0)
            {
                return (starts[identity].Node, [starts[1 - identity]], [starts[identity]]);
            }

            var reached = new Dictionary<int, int>(); // node (by order) -> bit set of the starts that reach it
            var pending = new PriorityQueue<int, int>();
            void Reach(int order, int branches)
            {
                if (reached.TryGetValue(order, out int before))
                {
                    reached[order] = before | branches;
                }
                else
                {
                    reached[order] = branches;
                    pending.Enqueue(order, order);
                }
            }

            for (int i = 0; i < starts.Count; i++)
            {
                foreach (var node in starts[i].Fused?.Nodes ?? [starts[i].Node])
                {
                    if (_order.TryGetValue(node, out int order)) // none on a cycle: never reached in order, so the branches do not meet
                    {
                        Reach(order, 1 << i);
                    }
                }
            }

            int all = (1 << starts.Count) - 1;
            while (pending.TryDequeue(out int at, out _))
            {
                int branches = reached[at];
                if (branches == all)
                {
                    var node = _ordered[at];
                    if (!IsJoin(node))
                    {
                        throw Error(node, $"the branches from '{x}' meet here, not in an Add of two tensors");
                    }

                    string[] inputs = [.. node.Input.Where(i => !_initializers.ContainsKey(i))];
                    int[] sides = [.. inputs.Select(i => i == x
                        ? 1 << starts.FindIndex(s => s.Fused is null && s.Node == node)
                        : _producers.TryGetValue(i, out var producer) && _order.TryGetValue(producer, out int from) ? reached.GetValueOrDefault(from) : 0)];
                    if (sides[0] == 0 || sides[1] == 0 || (sides[0] & sides[1]) != 0 || (sides[0] | sides[1]) != all)
                    {
                        throw Error(node, $"its inputs are not the ends of branches that start at '{x}'");
                    }

                    // The body is the side of the first-listed branch, unless that side is x itself (an identity shortcut).
                    int first = (sides[0] & 1) != 0 ? 0 : 1;
                    int body = inputs[first] == x ? sides[1 - first] : sides[first];
                    return (node, [.. starts.Where((_, i) => (body >> i & 1) != 0)], [.. starts.Where((_, i) => (body >> i & 1) == 0)]);
                }

                foreach (int next in _successors[at])
                {
                    Reach(next, branches);
                }
            }

            throw Error(starts[0].Node, $"'{x}' feeds branches that do not meet in an Add");
        }

        /// <summary>An Add of two computed tensors (not a bias Add after a MatMul): where two branches meet.</summary>
        private bool IsJoin(NodeProto node) => node.OpType == "Add" && node.Input.Count(i => !_initializers.ContainsKey(i)) == 2;

        /// <summary>A layer x·σ(x) (SiLU) or x·½(1 + erf(x/√2)) (GELU): its nodes, the first of which consume x.</summary>
        private sealed record FusedActivation(string Spec, string Output, NodeProto[] Nodes);

        /// <summary>Where a branch from a tensor starts: one node, or a SiLU or GELU written out (its two consumers of the tensor).</summary>
        private sealed record BranchStart(NodeProto Node, FusedActivation? Fused)
        {
            public string Output => Fused?.Output ?? Node.Output[0];
        }

        /// <summary>The consumers of <paramref name="x"/> grouped into what they start: each SiLU or GELU pattern one start.</summary>
        private List<BranchStart> Starts(string x, List<NodeProto> next)
        {
            var starts = new List<BranchStart>();
            var left = new List<NodeProto>(next);
            while (Pattern(x, left) is { } fused)
            {
                starts.Add(new BranchStart(fused.Nodes[0], fused));
                left.RemoveAll(fused.Nodes.Contains);
            }

            starts.AddRange(left.Select(n => new BranchStart(n, null)));
            // In the order the graph lists them (an exporter writes the body first), as single nodes are.
            return [.. starts.OrderBy(s => (s.Fused?.Nodes ?? [s.Node]).Select(n => next.IndexOf(n)).Where(i => i >= 0).Min())];
        }

        /// <summary>A SiLU or GELU among <paramref name="next"/>, the consumers of x; null when there is none.</summary>
        private FusedActivation? Pattern(string x, List<NodeProto> next)
        {
            foreach (var sigmoid in next.Where(n => n.OpType == "Sigmoid"))
            {
                if (next.FirstOrDefault(n => n.OpType == "Mul" && n.Input.Contains(sigmoid.Output[0])) is { } mul)
                {
                    return new FusedActivation("silu", mul.Output[0], [sigmoid, mul]);
                }
            }

            foreach (var div in next.Where(n => n.OpType == "Div"))
            {
                if (Single(div.Output[0]) is { OpType: "Erf" } erf && Single(erf.Output[0]) is { OpType: "Add" } add &&
                    next.FirstOrDefault(n => n.OpType == "Mul" && n.Input.Contains(add.Output[0])) is { } mul && Single(mul.Output[0]) is { OpType: "Mul" } half)
                {
                    // Each constant checked: another divisor, addend or factor computes another function, never to be read as GELU.
                    if (div.Input.Count != 2 || div.Input[0] != x || !IsScalar(div.Input[1], MathF.Sqrt(2f)) || !Operands(add, erf.Output[0], null, 1f) ||
                        !Operands(mul, x, add.Output[0]) || !Operands(half, mul.Output[0], null, 0.5f))
                    {
                        throw Error(half, "Div, Erf, Add and Mul from one tensor do not compute x·½(1 + erf(x/√2)) (GELU) with its constants √2, 1 and ½");
                    }

                    return new FusedActivation("gelu", half.Output[0], [div, mul, erf, add, half]);
                }
            }

            return null;
        }

        /// <summary>
        /// Whether <paramref name="node"/>'s two inputs are <paramref name="tensor"/> and <paramref name="other"/> in either
        /// order, or, with <paramref name="other"/> null, <paramref name="tensor"/> and a one-value constant equal to
        /// <paramref name="constant"/> (to float rounding).
        /// </summary>
        private bool Operands(NodeProto node, string tensor, string? other, float constant = 0f) =>
            node.Input.Count == 2 && node.Input.Contains(tensor) &&
            (other is not null
                ? node.Input.Contains(other)
                : IsScalar(node.Input[node.Input[0] == tensor ? 1 : 0], constant));

        private bool IsScalar(string name, float value) =>
            _initializers.TryGetValue(name, out var proto) && proto.Dims.All(d => d == 1) &&
            proto.DataType == (int)TensorProto.Types.DataType.Float &&
            (proto.RawData.Length == 4 ? BitConverter.ToSingle(proto.RawData.Span) : proto.FloatData.Count == 1 ? proto.FloatData[0] : float.NaN) is float v &&
            Math.Abs(v - value) <= 1e-6f * Math.Abs(value);

        /// <summary>
        /// The spec of the layer <paramref name="node"/> is, its weights stored under the key of the next layer of
        /// <paramref name="layers"/>; null for nodes that are dropped. A Conv or AveragePool padded more on one side than
        /// the other adds a pad layer of the difference first (<see cref="SplitPadding"/>).
        /// </summary>
        private string? Layer(NodeProto node, List<string> layers, string prefix, out string output)
        {
            output = node.Output[0];
            string key = $"{prefix}{layers.Count}.";
            switch (node.OpType)
            {
                case "Conv":
                {
                    Allow(node, "kernel_shape", "strides", "pads", "dilations", "group");
                    int[] pads = SplitPadding(Ints(node, "pads", [0, 0, 0, 0], 4), layers);
                    key = $"{prefix}{layers.Count}.";
                    var weight = Weight(node, 1, key + "weight", rank: 4);
                    int[] kernel = Ints(node, "kernel_shape", [weight.Shape[2], weight.Shape[3]], 2, minimum: 1);
                    int[] stride = Ints(node, "strides", [1, 1], 2, minimum: 1), dilation = Ints(node, "dilations", [1, 1], 2, minimum: 1);

                    bool bias = node.Input.Count > 2 && node.Input[2].Length > 0;
                    if (bias)
                    {
                        Weight(node, 2, key + "bias", rank: 1);
                    }

                    int groups = Int(node, "group", 1);
                    string noBias = bias ? "" : ",bias=false";
                    return Text($"conv({weight.Shape[0]},{kernel[0]}x{kernel[1]},stride={stride[0]}x{stride[1]},pad={pads[0]}x{pads[1]},dilation={dilation[0]}x{dilation[1]},groups={groups}{noBias})");
                }

                case "Gemm":
                {
                    Allow(node, "transA", "transB", "alpha", "beta");
                    if (Int(node, "transA", 0) != 0 || Float(node, "alpha", 1f) != 1f || Float(node, "beta", 1f) != 1f)
                    {
                        throw Error(node, "transA, alpha and beta other than 0, 1 and 1 are not supported");
                    }

                    var weight = Weight(node, 1, key + "weight", rank: 2, transpose: Int(node, "transB", 0) == 0);
                    if (node.Input.Count > 2 && node.Input[2].Length > 0)
                    {
                        Weight(node, 2, key + "bias", rank: 1);
                    }
                    else
                    {
                        _weights[key + "bias"] = new Tensor([weight.Shape[0]]);
                    }

                    return Text($"dense({weight.Shape[0]})");
                }

                case "MatMul":
                {
                    // torch's Linear without Gemm: MatMul by Wᵀ, then Add of the bias.
                    var weight = Weight(node, 1, key + "weight", rank: 2, transpose: true);
                    if (Single(node.Output[0]) is { OpType: "Add" } add && add.Input.Any(_initializers.ContainsKey))
                    {
                        Visit(add);
                        Weight(add, add.Input.ToList().FindIndex(_initializers.ContainsKey), key + "bias", rank: 1);
                        output = add.Output[0]; // the chain continues after the Add
                    }
                    else
                    {
                        _weights[key + "bias"] = new Tensor([weight.Shape[0]]);
                    }

                    return Text($"dense({weight.Shape[0]})");
                }

                case "Flatten":
                    Allow(node, "axis");
                    return Int(node, "axis", 1) == 1 ? "flatten" : throw Error(node, "only axis 1 is supported");
                case "Reshape":
                {
                    float[] shape = Constant(node, 1);
                    // (N, −1) — N as 0, −1, or the batch an input of fixed batch declares (x.view(x.size(0), −1) exported
                    // without a dynamic batch) — or x.view(−1, F) before a Linear of F input features (PyTorch's tutorial
                    // LeNet): the same flatten, since that Linear's weights then hold only where F is the C·H·W it gives.
                    bool flatten = shape.Length == 2 && ((shape[1] == -1 && (shape[0] is 0 or -1 || shape[0] == _declaredBatch)) ||
                        (shape[0] == -1 && shape[1] >= 1 && Single(output) is { } next && InputFeatures(next) == shape[1]));
                    return flatten ? "flatten" : throw Error(node, "only a reshape to (N, −1), or to (−1, F) before a Gemm or MatMul of F input features, is supported");
                }

                case "MaxPool":
                case "AveragePool":
                {
                    Allow(node, "kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad");
                    // ONNX's strides default to 1 (PyTorch's to the kernel, but its exporter always writes them).
                    int[] kernel = Ints(node, "kernel_shape", null, 2, minimum: 1), stride = Ints(node, "strides", [1, 1], 2, minimum: 1);
                    bool average = node.OpType == "AveragePool";
                    // A Pad node's zeros, when this node takes them (TakesPadding), are padding that every window counts.
                    int[] own = Ints(node, "pads", [0, 0, 0, 0], 4), pads = Padded(own);
                    bool excludePad = average && own.Any(p => p != 0) && Int(node, "count_include_pad", 0) != 1;
                    bool ceilMode = Int(node, "ceil_mode", 0) != 0;
                    if (pads[0] != pads[2] || pads[1] != pads[3])
                    {
                        // Zeros that every window counts can stand in a pad layer before the pooling; a maximum's padding
                        // (−∞, never taken), an average's uncounted padding and ceil mode's cut windows cannot.
                        string why = !average ? "a MaxPool's padding is never taken, which zeros before it would be"
                            : excludePad ? "without count_include_pad the padding is not counted, which zeros before it would be"
                            : ceilMode ? "ceil mode's last window depends on where the padding lies"
                            : "";
                        if (why.Length > 0)
                        {
                            throw Error(node, $"one-sided padding ({string.Join(",", pads)}: top, left, bottom, right) is not supported here: {why}");
                        }

                        pads = SplitPadding(pads, layers);
                    }

                    // ONNX's ceil_mode (as ONNX Runtime runs it) counts ⌈(H + 2P − K)/S⌉ + 1 windows; PyTorch's, and the layer's,
                    // drop a last one that would start past the input and its near padding, which can happen only with a
                    // stride beyond the window less the padding (H = 5, window 2, stride 2, pad 1: ONNX 4, the layer 3).
                    if (ceilMode && (stride[0] > kernel[0] - pads[0] || stride[1] > kernel[1] - pads[1]))
                    {
                        throw Error(node, $"ceil_mode with stride {stride[0]}x{stride[1]} beyond the window less the padding " +
                            $"({kernel[0] - pads[0]}x{kernel[1] - pads[1]}) is not supported: ONNX can count a last window there that PyTorch's pooling drops");
                    }

                    string kind = average ? "avgpool" : "maxpool", ceil = ceilMode ? ",ceil_mode=true" : "", exclude = excludePad ? ",count_include_pad=false" : "";
                    return Text($"{kind}({kernel[0]}x{kernel[1]},stride={stride[0]}x{stride[1]},pad={pads[0]}x{pads[1]}{ceil}{exclude})");
                }

                case "GlobalAveragePool":
                    return "globalavgpool";
                case "BatchNormalization":
                {
                    Allow(node, "epsilon", "momentum", "training_mode");
                    if (node.Output.Count > 1 || Int(node, "training_mode", 0) != 0)
                    {
                        throw Error(node, "only evaluation mode (one output) is supported");
                    }

                    Weight(node, 1, key + "weight", rank: 1);
                    Weight(node, 2, key + "bias", rank: 1);
                    Weight(node, 3, key + "running_mean", rank: 1);
                    Weight(node, 4, key + "running_var", rank: 1);
                    // ONNX's momentum is the running statistics' weight, PyTorch's and ours the new batch's: 1 − it, rounded
                    // to 7 decimals (a float near 1 resolves 6e-8) so that 0.1, written as 0.9, reads back as 0.1. PyTorch
                    // writes 1 for momentum=None (a cumulative average, which ONNX cannot say) as for 0: it reads as 0,
                    // statistics frozen should the model be trained on; evaluation never uses it.
                    string momentum = Math.Round(1.0 - Float(node, "momentum", 0.9f), 7).ToString(CultureInfo.InvariantCulture);
                    string epsilon = Float(node, "epsilon", 1e-5f).ToString("R", CultureInfo.InvariantCulture);
                    return Text($"batchnorm(momentum={momentum},eps={epsilon})");
                }

                case "Relu":
                case "Sigmoid":
                case "Tanh":
                    Allow(node);
                    return node.OpType.ToLowerInvariant();
                case "Gelu":
                {
                    // Opset 20's Gelu may be the tanh approximation (PyTorch's GELU(approximate='tanh')): refused, not read
                    // as the exact erf form, which differs from it by up to 5e-4.
                    Allow(node, "approximate");
                    string approximate = node.Attribute.FirstOrDefault(a => a.Name == "approximate")?.S.ToStringUtf8() ?? "none";
                    return approximate == "none" ? "gelu" : throw Error(node, $"approximate='{approximate}' is not supported (only the exact GELU, 'none')");
                }
                case "Clip":
                {
                    // ReLU6 (PyTorch writes nn.ReLU6 as a Clip to [0, 6]); a Clip to [0, ∞) is a ReLU.
                    Allow(node);
                    float[] low = node.Input.Count > 1 && node.Input[1].Length > 0 ? Constant(node, 1) : [float.NegativeInfinity];
                    float[] high = node.Input.Count > 2 && node.Input[2].Length > 0 ? Constant(node, 2) : [float.PositiveInfinity];
                    return (low, high) switch
                    {
                        ([0f], [Kernels.Relu6.Ceiling]) => "relu6",
                        ([0f], [float.PositiveInfinity]) => "relu",
                        _ => throw Error(node, $"a Clip to [{string.Join(",", low)}, {string.Join(",", high)}] is not supported (only [0, 6], ReLU6, and [0, ∞), ReLU)"),
                    };
                }

                case "LeakyRelu":
                    Allow(node, "alpha");
                    return Text($"leakyrelu({Float(node, "alpha", 0.01f).ToString("R", CultureInfo.InvariantCulture)})");
                case "Dropout":
                case "Identity":
                    return null; // evaluation: the identity
                case "Pad":
                {
                    // PyTorch writes AvgPool2d(padding=p) as a Pad of zeros with no constant_value input and an
                    // AveragePool: the pool takes those zeros as its padding where it can (TakesPadding; _padBefore), so
                    // the layers stay numbered as PyTorch's modules. Any other constant padding or crop of H and W — a
                    // ZeroPad2d or ConstantPad2d (whose Pad has a constant_value, as ours has), one-sided padding — is a
                    // pad layer.
                    Allow(node, "mode");
                    var mode = node.Attribute.FirstOrDefault(a => a.Name == "mode");
                    float[] amounts = Constant(node, 1);
                    bool valueGiven = node.Input.Count > 2 && node.Input[2].Length > 0;
                    float[] value = valueGiven ? Constant(node, 2) : [0f];
                    if ((mode is not null && mode.S.ToStringUtf8() != "constant") || (node.Input.Count > 3 && node.Input[3].Length > 0))
                    {
                        throw Error(node, "only a constant Pad (mode constant, no axes) is supported");
                    }

                    if (value.Length != 1 || !float.IsFinite(value[0]))
                    {
                        throw Error(node, $"its constant_value ({string.Join(",", value)}) is not one finite number");
                    }

                    if (amounts.Any(p => p != MathF.Round(p) || Math.Abs(p) > 1 << 16))
                    {
                        throw Error(node, $"its pads ({string.Join(",", amounts)}) are not whole numbers within ±65536");
                    }

                    if (amounts.All(p => p == 0f))
                    {
                        return null;
                    }

                    // (N, C, H, W): begins then ends; only H and W may be padded or cropped.
                    if (amounts.Length != 8 || amounts[0] != 0f || amounts[1] != 0f || amounts[4] != 0f || amounts[5] != 0f)
                    {
                        throw Error(node, "a Pad is supported only around H and W of an (N, C, H, W) tensor");
                    }

                    int top = (int)amounts[2], left = (int)amounts[3], bottom = (int)amounts[6], right = (int)amounts[7];
                    if (!valueGiven && Single(output) is { OpType: "AveragePool" } pool && TakesPadding(pool, [top, left, bottom, right]))
                    {
                        _padBefore = [top, left, bottom, right];
                        return null;
                    }

                    string valueText = value[0] == 0f ? "" : ",value=" + value[0].ToString("R", CultureInfo.InvariantCulture);
                    return Text($"pad({left},{right},{top},{bottom}{valueText})");
                }
                default:
                    throw Error(node, $"operator {node.OpType} is not supported (supported: Conv, Gemm, MatMul + Add, Flatten, Reshape to (N, −1) or (−1, F), MaxPool, " +
                        "AveragePool, GlobalAveragePool, BatchNormalization, Relu, Clip to [0, 6] (ReLU6), LeakyRelu, Sigmoid, Tanh, Gelu, SiLU and GELU formulas, Dropout, Identity, " +
                        "a constant Pad, Constant, Add of two branches)");
            }
        }

        /// <summary>Takes <paramref name="node"/>'s one output as a constant tensor.</summary>
        private void AddConstant(NodeProto node, TensorProto value)
        {
            if (!_initializers.TryAdd(node.Output[0], value))
            {
                throw Error(node, $"its output '{node.Output[0]}' is also an initializer or another constant");
            }

            _visited.Add(node);
        }

        private void Visit(NodeProto node)
        {
            if (!_visited.Add(node))
            {
                throw Error(node, "it is reached twice: the graph has a cycle");
            }
        }

        private NodeProto? Single(string tensor) => _consumers.TryGetValue(tensor, out var list) && list.Count == 1 ? list[0] : null;

        /// <summary>Input <paramref name="index"/> of <paramref name="node"/> as a weight of the given rank, stored under <paramref name="key"/>.</summary>
        private Tensor Weight(NodeProto node, int index, string key, int rank, bool transpose = false)
        {
            if (index < 0 || index >= node.Input.Count || !_initializers.TryGetValue(node.Input[index], out var proto))
            {
                throw Error(node, $"its input {index} is not a constant tensor (an initializer)");
            }

            var tensor = Decode(proto, node);
            if (tensor.Shape.Rank != rank)
            {
                throw Error(node, $"its tensor '{proto.Name}' has shape {tensor.Shape}, not rank {rank}");
            }

            if (transpose)
            {
                int rows = tensor.Shape[0], columns = tensor.Shape[1];
                var data = new float[tensor.Data.Length];
                for (int i = 0; i < rows; i++)
                {
                    for (int j = 0; j < columns; j++)
                    {
                        data[(j * rows) + i] = tensor.Data[(i * columns) + j];
                    }
                }

                tensor = new Tensor([columns, rows], data);
            }

            _weights[key] = tensor;
            return tensor;
        }

        private float[] Constant(NodeProto node, int index) =>
            index < node.Input.Count && _initializers.TryGetValue(node.Input[index], out var proto)
                ? Decode(proto, node).Data
                : throw Error(node, $"its input {index} is not a constant tensor (an initializer)");

        /// <summary>
        /// The per-channel values of <paramref name="node"/>'s second input (a normalisation's mean or std). It must vary
        /// along the channels alone: ONNX aligns dims from the right, so against (N, C, H, W) a (C, 1, 1) or (1, C, 1, 1)
        /// constant is per channel and a (C,) one would vary along W. One value serves every channel.
        /// </summary>
        private float[] ChannelValues(NodeProto node, Shape sample)
        {
            if (node.Input.Count != 2 || !_initializers.TryGetValue(node.Input[1], out var proto))
            {
                throw Error(node, "it has two inputs, the second a constant tensor (an initializer), as an input normalisation");
            }

            var constant = Decode(proto, node);
            int offset = sample.Rank + 1 - constant.Shape.Rank; // the input axis of the constant's first dim
            int channels = sample[0];
            if (offset >= 0 && !Enumerable.Range(0, constant.Shape.Rank).Any(i => constant.Shape[i] != 1 && offset + i != 1))
            {
                if (constant.Data.Length == channels)
                {
                    return constant.Data;
                }

                if (constant.Data.Length == 1)
                {
                    return [.. Enumerable.Repeat(constant.Data[0], channels)];
                }
            }

            string layout = sample.Rank == 1 ? "(F,), (1, F)" : "(C, 1, 1), (1, C, 1, 1)";
            throw Error(node, $"its constant '{proto.Name}' of shape ({string.Join(", ", proto.Dims)}) does not vary along the channels alone " +
                $"against the input (N, {string.Join(", ", sample.ToArray())}); an input normalisation takes {layout} or one value");
        }

        /// <summary>A float or int64 initializer as floats; its element count checked against its data before anything is allocated.</summary>
        private Tensor Decode(TensorProto proto, NodeProto node)
        {
            long count = 1;
            foreach (long d in proto.Dims)
            {
                if (d <= 0 || d > int.MaxValue || (count *= d) > MaximumElements)
                {
                    throw Error(node, $"tensor '{proto.Name}' declares dims ({string.Join(",", proto.Dims)}): not positive, or more than {MaximumElements} elements");
                }
            }

            var shape = new Shape([.. proto.Dims.Select(d => (int)d)]);
            float[] values = proto.DataType switch
            {
                (int)TensorProto.Types.DataType.Float when proto.RawData.Length > 0 && proto.RawData.Length == count * 4 =>
                    MemoryMarshal.Cast<byte, float>(proto.RawData.Span).ToArray(),
                (int)TensorProto.Types.DataType.Float when proto.RawData.Length == 0 && proto.FloatData.Count == count => [.. proto.FloatData],
                (int)TensorProto.Types.DataType.Int64 when proto.RawData.Length > 0 && proto.RawData.Length == count * 8 =>
                    [.. MemoryMarshal.Cast<byte, long>(proto.RawData.Span).ToArray().Select(v => (float)v)],
                (int)TensorProto.Types.DataType.Int64 when proto.RawData.Length == 0 && proto.Int64Data.Count == count => [.. proto.Int64Data.Select(v => (float)v)],
                (int)TensorProto.Types.DataType.Float or (int)TensorProto.Types.DataType.Int64 =>
                    throw Error(node, $"tensor '{proto.Name}' holds no data for its {count} elements in the file (external data is not supported)"),
                _ => throw Error(node, $"tensor '{proto.Name}' has data type {proto.DataType}; float32 and int64 are supported"),
            };
            return new Tensor(shape, values);
        }

        private Shape SampleShape(ValueInfoProto input)
        {
            var dims = input.Type?.TensorType?.Shape?.Dim;
            if (dims is null || dims.Count < 2 || dims.Skip(1).Any(d => d.ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue || d.DimValue is <= 0 or > 1 << 20))
            {
                throw new FileFormatException($"ONNX file '{_name}': input '{input.Name}' has no fixed shape after its batch axis (N, C, H, W) or (N, features).");
            }

            if (dims.Skip(1).Aggregate(1L, (size, d) => Math.Min(size * d.DimValue, 1L << 40)) > Shape.MaximumElements)
            {
                throw new FileFormatException($"ONNX file '{_name}': input '{input.Name}' declares ({string.Join(",", dims.Skip(1).Select(d => d.DimValue))}) a sample: more than {Shape.MaximumElements} values.");
            }

            return new Shape([.. dims.Skip(1).Select(d => (int)d.DimValue)]);
        }

        private void Allow(NodeProto node, params string[] names)
        {
            if (node.Attribute.FirstOrDefault(a => !names.Contains(a.Name)) is { } other)
            {
                throw Error(node, $"attribute '{other.Name}' is not supported (supported: {string.Join(", ", names)})");
            }
        }

        private int[] Ints(NodeProto node, string name, int[]? fallback, int count, int minimum = 0)
        {
            var attribute = node.Attribute.FirstOrDefault(a => a.Name == name);
            if (attribute is null)
            {
                return fallback ?? throw Error(node, $"it has no '{name}'");
            }

            if (attribute.Ints.Count != count || attribute.Ints.Any(v => v < minimum || v > 1 << 16))
            {
                throw Error(node, $"'{name}' is ({string.Join(",", attribute.Ints)}); {count} values in {minimum} … 65536 are supported (2-D layers only)");
            }

            return [.. attribute.Ints.Select(v => (int)v)];
        }

        /// <summary>The input features of a Gemm or MatMul by a constant weight; −1 for any other node.</summary>
        private long InputFeatures(NodeProto node) =>
            node.Input.Count > 1 && _initializers.TryGetValue(node.Input[1], out var weight) && weight.Dims.Count == 2
                ? node.OpType switch
                {
                    "Gemm" => weight.Dims[node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I == 1 ? 1 : 0],
                    "MatMul" => weight.Dims[0],
                    _ => -1,
                }
                : -1;

        /// <summary>
        /// Whether AveragePool <paramref name="pool"/> can take a Pad node's zeros (H begin, W begin, H end, W end) as
        /// padding it counts: the sum with its own padding the same on both sides and at most half the window (PyTorch's
        /// rule), and its own padding counted too (count_include_pad) or none.
        /// </summary>
        private bool TakesPadding(NodeProto pool, int[] zeros)
        {
            int[] own = Ints(pool, "pads", [0, 0, 0, 0], 4), kernel = Ints(pool, "kernel_shape", null, 2, minimum: 1);
            int[] sum = [.. own.Zip(zeros, (a, b) => a + b)];
            return zeros.All(p => p >= 0) && sum[0] == sum[2] && sum[1] == sum[3] && 2L * sum[0] <= kernel[0] && 2L * sum[1] <= kernel[1] &&
                (own.All(p => p == 0) || Int(pool, "count_include_pad", 0) == 1);
        }

        /// <summary>
        /// Padding more on one side of an axis than on the other (ONNX's auto_pad SAME as exporters write it, a Pad node
        /// before a Conv): what exceeds the smaller side becomes a pad layer of zeros added to <paramref name="layers"/>,
        /// and the rest — the same on both sides — is returned for the node's own padding.
        /// </summary>
        private static int[] SplitPadding(int[] pads, List<string> layers)
        {
            if (pads[0] == pads[2] && pads[1] == pads[3])
            {
                return pads;
            }

            int h = Math.Min(pads[0], pads[2]), w = Math.Min(pads[1], pads[3]);
            layers.Add(Text($"pad({pads[1] - w},{pads[3] - w},{pads[0] - h},{pads[2] - h})"));
            return [h, w, h, w];
        }

        /// <summary>An AveragePool's pads (H begin, W begin, H end, W end) plus those of the Pad node before it, which it takes.</summary>
        private int[] Padded(int[] pads)
        {
            if (_padBefore is { } before)
            {
                pads = [.. pads.Zip(before, (own, added) => own + added)];
                _padBefore = null;
            }

            return pads;
        }

        private int Int(NodeProto node, string name, int fallback)
        {
            var attribute = node.Attribute.FirstOrDefault(a => a.Name == name);
            return attribute is null ? fallback : attribute.I is >= 0 and <= 1 << 16 ? (int)attribute.I : throw Error(node, $"'{name}' is {attribute.I}");
        }

        private static float Float(NodeProto node, string name, float fallback) => node.Attribute.FirstOrDefault(a => a.Name == name)?.F ?? fallback;

        private static string Text(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

        private FileFormatException Error(NodeProto node, string what) =>
            new($"ONNX file '{_name}': node '{node.Name}' ({node.OpType}): {what}.");
    }
}
