using System.Runtime.InteropServices;
using GpuCnn.Onnx.Proto;

namespace GpuCnn.Onnx;

/// <summary>
/// The shape arithmetic an exporter leaves in a graph for values that are constant. torch.onnx.export (PyTorch 1.13,
/// opset 11 and later) writes F.pad's amounts — ZeroPad2d, ConstantPad2d — as Constant → Shape → Gather → Mul/Sub →
/// ConstantOfShape → Concat → Reshape → Slice (step −1) → Transpose → Reshape → Cast before the Pad; its own constant
/// folding leaves the chain from the Slice on in place (it folds no Slice of step −1), and all of it when turned off. Such nodes are evaluated here, on int64
/// tensors of at most <see cref="MaximumValues"/> values, when every input is a constant; what this does not fold stays
/// a node, and the importer then names it as it would have (not on the path from the input, or an input that is not a
/// constant). Nothing is folded that depends on the graph's input.
/// </summary>
internal static class OnnxConstantFolding
{
    /// <summary>The most values a folded tensor, or an int64 tensor read by one, may hold.</summary>
    public const int MaximumValues = 1024;

    /// <summary>The most dims such a tensor may have (a rank past it would cost work per element, not values).</summary>
    public const int MaximumRank = 8;

    private const int Int64 = (int)TensorProto.Types.DataType.Int64;

    private static readonly HashSet<string> Operators = new(StringComparer.Ordinal)
    {
        "Shape", "Gather", "Add", "Sub", "Mul", "Cast", "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Unsqueeze", "Squeeze",
    };

    /// <summary>Whether <paramref name="node"/> is an operator this may fold.</summary>
    public static bool IsCandidate(NodeProto node) => node.Output.Count == 1 && Operators.Contains(node.OpType);

    /// <summary>
    /// <paramref name="node"/>'s output computed from its inputs (null entries: inputs left out), named as the output;
    /// null where it is not int64 shape arithmetic of the forms above.
    /// </summary>
    public static TensorProto? Fold(NodeProto node, TensorProto?[] inputs)
    {
        IntTensor? result;
        try
        {
            result = node.OpType switch
            {
                "Shape" => Shape(node, inputs),
                "Gather" => Gather(node, inputs),
                "Add" => Elementwise(inputs, (a, b) => checked(a + b)),
                "Sub" => Elementwise(inputs, (a, b) => checked(a - b)),
                "Mul" => Elementwise(inputs, (a, b) => checked(a * b)),
                "Cast" => Attribute(node, "to")?.I == Int64 && inputs.Length == 1 ? Read(inputs[0]) : null,
                "ConstantOfShape" => ConstantOfShape(node, inputs),
                "Concat" => Concat(node, inputs),
                "Reshape" => Reshape(node, inputs),
                "Slice" => Slice(inputs),
                "Transpose" => Transpose(node, inputs),
                "Unsqueeze" => Unsqueeze(node, inputs),
                "Squeeze" => Squeeze(node, inputs),
                _ => null,
            };
        }
        catch (OverflowException)
        {
            return null; // checked arithmetic on hostile values: left unfolded
        }

        if (result is null || Count(result.Dims) != result.Values.Length)
        {
            return null;
        }

        var proto = new TensorProto { Name = node.Output[0], DataType = Int64 };
        proto.Dims.AddRange(result.Dims);
        proto.Int64Data.AddRange(result.Values);
        return proto;
    }

    /// <summary>An int64 tensor's values (at most <see cref="MaximumValues"/>); null for any other tensor.</summary>
    public static long[]? Int64Values(TensorProto? proto) => Read(proto)?.Values;

    /// <summary>An int64 tensor: its dims and values in row-major order.</summary>
    private sealed record IntTensor(long[] Dims, long[] Values)
    {
        public int Rank => Dims.Length;
    }

    /// <summary>
    /// The values <paramref name="dims"/> hold; null past <see cref="MaximumValues"/> or <see cref="MaximumRank"/>, or
    /// for a negative dim (never wraps).
    /// </summary>
    private static long? Count(IReadOnlyCollection<long> dims)
    {
        if (dims.Count > MaximumRank)
        {
            return null;
        }

        long count = 1;
        foreach (long d in dims)
        {
            if (d < 0 || d > MaximumValues || (count *= d) > MaximumValues)
            {
                return null;
            }
        }

        return count;
    }

    private static IntTensor? Read(TensorProto? proto)
    {
        if (proto is null || proto.DataType != Int64 || Count(proto.Dims) is not { } count)
        {
            return null;
        }

        long[]? values = proto.RawData.Length == count * 8 && proto.Int64Data.Count == 0 ? MemoryMarshal.Cast<byte, long>(proto.RawData.Span).ToArray()
            : proto.RawData.Length == 0 && proto.Int64Data.Count == count ? [.. proto.Int64Data]
            : null;
        return values is null ? null : new IntTensor([.. proto.Dims], values);
    }

    private static AttributeProto? Attribute(NodeProto node, string name) => node.Attribute.FirstOrDefault(a => a.Name == name);

    private static IntTensor? Shape(NodeProto node, TensorProto?[] inputs)
    {
        if (inputs is not [{ } data] || node.Attribute.Count > 0 || data.Dims.Count > MaximumRank) // (opset 15's start and end: not written by the exporters read here)
        {
            return null;
        }

        return new IntTensor([data.Dims.Count], [.. data.Dims]);
    }

    private static IntTensor? Gather(NodeProto node, TensorProto?[] inputs)
    {
        if (inputs.Length != 2 || Read(inputs[0]) is not { Rank: 1 } data || Read(inputs[1]) is not { Rank: <= 1 } indices ||
            (Attribute(node, "axis")?.I ?? 0) != 0)
        {
            return null;
        }

        long n = data.Values.Length;
        if (indices.Values.Any(i => i < -n || i >= n))
        {
            return null;
        }

        return new IntTensor(indices.Dims, [.. indices.Values.Select(i => data.Values[i < 0 ? i + n : i])]);
    }

    /// <summary>Equal shapes, or one side a single value (the broadcasts shape arithmetic uses); <paramref name="operation"/> checked.</summary>
    private static IntTensor? Elementwise(TensorProto?[] inputs, Func<long, long, long> operation)
    {
        if (inputs.Length != 2 || Read(inputs[0]) is not { } a || Read(inputs[1]) is not { } b)
        {
            return null;
        }

        if (a.Dims.SequenceEqual(b.Dims))
        {
            return new IntTensor(a.Dims, [.. a.Values.Zip(b.Values, operation)]);
        }

        return a.Values.Length == 1 && a.Rank <= b.Rank ? new IntTensor(b.Dims, [.. b.Values.Select(y => operation(a.Values[0], y))])
            : b.Values.Length == 1 && b.Rank <= a.Rank ? new IntTensor(a.Dims, [.. a.Values.Select(x => operation(x, b.Values[0]))])
            : null;
    }

    private static IntTensor? ConstantOfShape(NodeProto node, TensorProto?[] inputs)
    {
        // The value must be int64 (ONNX's default is a float 0, which this leaves alone).
        if (inputs.Length != 1 || Read(inputs[0]) is not { Rank: 1 } shape || Read(Attribute(node, "value")?.T) is not { Values: [long value] })
        {
            return null;
        }

        return Count(shape.Values) is { } count ? new IntTensor(shape.Values, [.. Enumerable.Repeat(value, (int)count)]) : null;
    }

    private static IntTensor? Concat(NodeProto node, TensorProto?[] inputs)
    {
        // The parts' sizes first, from their dims: a file may name one tensor a million times.
        if (inputs.Length == 0 || Attribute(node, "axis")?.I is not (0 or -1) ||
            inputs.Any(p => p is not { Dims.Count: 1 }) || inputs.Sum(p => Math.Min(p!.Dims[0], MaximumValues + 1L)) > MaximumValues)
        {
            return null;
        }

        var parts = inputs.Select(Read).ToList();
        if (parts.Any(p => p is null))
        {
            return null;
        }

        long[] values = [.. parts.SelectMany(p => p!.Values)];
        return new IntTensor([values.Length], values);
    }

    private static IntTensor? Reshape(NodeProto node, TensorProto?[] inputs)
    {
        if (inputs.Length != 2 || Read(inputs[0]) is not { } data || Read(inputs[1]) is not { Rank: 1 } shape || (Attribute(node, "allowzero")?.I ?? 0) != 0)
        {
            return null;
        }

        long[] dims = [.. shape.Values.Select((d, i) => d == 0 && i < data.Rank ? data.Dims[i] : d)];
        int inferred = Array.IndexOf(dims, -1L);
        if (dims.Count(d => d == -1) > 1 || Count([.. dims.Where(d => d != -1)]) is not { } known)
        {
            return null;
        }

        if (inferred >= 0)
        {
            if (known == 0 || data.Values.Length % known != 0)
            {
                return null;
            }

            dims[inferred] = data.Values.Length / known;
        }

        return Count(dims) == data.Values.Length ? data with { Dims = dims } : null;
    }

    /// <summary>ONNX's Slice: per axis a start, an end and a step (negative: backwards), clamped as the specification says.</summary>
    private static IntTensor? Slice(TensorProto?[] inputs)
    {
        if (inputs.Length is < 3 or > 5 || Read(inputs[0]) is not { } data || Read(inputs[1]) is not { Rank: 1 } starts || Read(inputs[2]) is not { Rank: 1 } ends)
        {
            return null;
        }

        long[] axes = inputs.Length > 3 && inputs[3] is not null ? Read(inputs[3])?.Values ?? [] : [.. Enumerable.Range(0, starts.Values.Length).Select(i => (long)i)];
        long[] steps = inputs.Length > 4 && inputs[4] is not null ? Read(inputs[4])?.Values ?? [] : [.. Enumerable.Repeat(1L, starts.Values.Length)];
        int count = starts.Values.Length;
        if (ends.Values.Length != count || axes.Length != count || steps.Length != count || steps.Any(s => s is 0 or < -int.MaxValue or > int.MaxValue))
        {
            return null;
        }

        int rank = data.Rank;
        var first = new long[rank];
        var step = new long[rank];
        var length = new long[rank];
        for (int axis = 0; axis < rank; axis++)
        {
            (first[axis], step[axis], length[axis]) = (0, 1, data.Dims[axis]);
        }

        for (int i = 0; i < count; i++)
        {
            long axis = axes[i] < 0 ? axes[i] + rank : axes[i];
            if (axis < 0 || axis >= rank)
            {
                return null;
            }

            long size = data.Dims[axis], s = steps[i];
            long start = Clamp(starts.Values[i] < 0 ? starts.Values[i] + size : starts.Values[i], s, size, start: true);
            long end = Clamp(ends.Values[i] < 0 ? ends.Values[i] + size : ends.Values[i], s, size, start: false);
            long n = size == 0 ? 0 : s > 0 ? Math.Max(0, (end - start + s - 1) / s) : Math.Max(0, (start - end - s - 1) / -s);
            (first[axis], step[axis], length[axis]) = (start, s, n);
        }

        return Gathered(data, length, index => Enumerable.Range(0, rank).Select(a => first[a] + (index[a] * step[a])).ToArray());

        // ONNX's rule: with a positive step start and end clamp to [0, size]; with a negative one the start to
        // [0, size − 1] and the end to [−1, size − 1].
        static long Clamp(long at, long step, long size, bool start) =>
            step > 0 ? Math.Clamp(at, 0, size) : Math.Clamp(at, start ? 0 : -1, Math.Max(size - 1, start ? 0 : -1));
    }

    private static IntTensor? Transpose(NodeProto node, TensorProto?[] inputs)
    {
        if (inputs.Length != 1 || Read(inputs[0]) is not { } data)
        {
            return null;
        }

        long[] perm = Attribute(node, "perm") is { } given ? [.. given.Ints] : [.. Enumerable.Range(0, data.Rank).Reverse().Select(a => (long)a)];
        if (perm.Length != data.Rank || perm.Distinct().Count() != perm.Length || perm.Any(p => p < 0 || p >= data.Rank))
        {
            return null;
        }

        long[] dims = [.. perm.Select(p => data.Dims[p])];
        return Gathered(data, dims, index =>
        {
            var source = new long[data.Rank];
            for (int a = 0; a < perm.Length; a++)
            {
                source[perm[a]] = index[a];
            }

            return source;
        });
    }

    /// <summary>Opset 13's Unsqueeze (axes an input; the older attribute form is left alone).</summary>
    private static IntTensor? Unsqueeze(NodeProto node, TensorProto?[] inputs)
    {
        if (node.Attribute.Count > 0 || inputs.Length != 2 || Read(inputs[0]) is not { } data || Read(inputs[1]) is not { Rank: 1 } axes)
        {
            return null;
        }

        int rank = data.Rank + axes.Values.Length;
        var inserted = axes.Values.Select(a => a < 0 ? a + rank : a).ToHashSet();
        if (inserted.Count != axes.Values.Length || inserted.Any(a => a < 0 || a >= rank))
        {
            return null;
        }

        var dims = new List<long>();
        for (int axis = 0, from = 0; axis < rank; axis++)
        {
            dims.Add(inserted.Contains(axis) ? 1 : data.Dims[from++]);
        }

        return data with { Dims = [.. dims] };
    }

    /// <summary>Opset 13's Squeeze (axes an optional input; the older attribute form is left alone, not read as "every 1").</summary>
    private static IntTensor? Squeeze(NodeProto node, TensorProto?[] inputs)
    {
        if (node.Attribute.Count > 0 || inputs.Length is < 1 or > 2 || Read(inputs[0]) is not { } data)
        {
            return null;
        }

        var removed = inputs.Length == 2 && inputs[1] is not null
            ? Read(inputs[1])?.Values.Select(a => a < 0 ? a + data.Rank : a).ToHashSet()
            : [.. Enumerable.Range(0, data.Rank).Where(a => data.Dims[a] == 1).Select(a => (long)a)];
        if (removed is null || removed.Any(a => a < 0 || a >= data.Rank || data.Dims[a] != 1))
        {
            return null;
        }

        return data with { Dims = [.. data.Dims.Where((_, a) => !removed.Contains(a))] };
    }

    /// <summary>A tensor of <paramref name="dims"/> whose element at each index is <paramref name="data"/>'s at <paramref name="source"/>(index).</summary>
    private static IntTensor? Gathered(IntTensor data, long[] dims, Func<long[], long[]> source)
    {
        if (Count(dims) is not { } count)
        {
            return null;
        }

        var values = new long[count];
        var index = new long[dims.Length];
        for (long i = 0; i < count; i++)
        {
            long rest = i;
            for (int a = dims.Length - 1; a >= 0; a--)
            {
                index[a] = rest % dims[a];
                rest /= dims[a];
            }

            long flat = 0;
            long[] at = source(index);
            for (int a = 0; a < data.Rank; a++)
            {
                flat = (flat * data.Dims[a]) + at[a];
            }

            values[i] = data.Values[flat];
        }

        return new IntTensor(dims, values);
    }
}
