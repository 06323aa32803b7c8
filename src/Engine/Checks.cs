namespace GpuCnn;

/// <summary>Argument checks whose messages name the operation, the argument, what was expected and what came.</summary>
internal static class Checks
{
    /// <summary>Throws, naming the first bad sample, when a label lies outside [0, classes).</summary>
    public static void Labels(string what, ReadOnlySpan<int> labels, int classes)
    {
        for (int i = 0; i < labels.Length; i++)
        {
            if ((uint)labels[i] >= (uint)classes)
            {
                throw new ArgumentException($"{what}: label {labels[i]} of sample {i} is outside the model's {classes} classes (0…{classes - 1}).");
            }
        }
    }

    /// <summary>The tensor must live on <paramref name="backend"/>, be undisposed, and have exactly <paramref name="expected"/>.</summary>
    public static void Tensor<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend, Shape expected)
        where T : unmanaged
    {
        Owned(operation, argument, tensor, backend);
        if (tensor!.Shape != expected)
        {
            throw new ArgumentException($"{operation}: {argument} has shape {tensor.Shape}, expected {expected}.", argument);
        }
    }

    /// <summary>
    /// The tensor must live on <paramref name="backend"/>, be undisposed, and have exactly the dimensions
    /// <paramref name="expected"/> (no allocation unless it fails: this runs on every operation).
    /// </summary>
    public static void Dims<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend, params ReadOnlySpan<int> expected)
        where T : unmanaged
    {
        Owned(operation, argument, tensor, backend);
        var shape = tensor!.Shape;
        bool same = shape.Rank == expected.Length;
        for (int i = 0; same && i < expected.Length; i++)
        {
            same = shape[i] == expected[i];
        }

        if (!same)
        {
            throw new ArgumentException($"{operation}: {argument} has shape {shape}, expected ({string.Join(",", expected.ToArray())}).", argument);
        }
    }

    /// <summary>The tensor must live on <paramref name="backend"/>, be undisposed, and hold <paramref name="length"/> elements.</summary>
    public static void Length<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend, long length)
        where T : unmanaged
    {
        Owned(operation, argument, tensor, backend);
        if (tensor!.Length != length)
        {
            throw new ArgumentException($"{operation}: {argument} has shape {tensor.Shape} ({tensor.Length} elements), expected {length} elements.", argument);
        }
    }

    /// <summary>The tensor must be non-null, undisposed and owned by <paramref name="backend"/>.</summary>
    public static void Owned<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend)
        where T : unmanaged
    {
        if (tensor is null)
        {
            throw new ArgumentNullException(argument, $"{operation}: {argument} is null.");
        }

        if (tensor.IsDisposed)
        {
            throw new ObjectDisposedException(argument, $"{operation}: {argument} {tensor.Shape} has been disposed.");
        }

        if (!ReferenceEquals(tensor.Backend, backend))
        {
            throw new ArgumentException($"{operation}: {argument} lives on backend '{tensor.Backend.Name}', not on '{backend.Name}'; move it with Download/Upload.", argument);
        }
    }

    /// <summary>
    /// A list of tensors for a foreach operation: non-null, each entry on <paramref name="backend"/> and undisposed, and,
    /// when <paramref name="shapedAs"/> is given, as long as it with each entry of the same shape as its entry there
    /// (no allocation unless it fails: this runs on every optimizer step).
    /// </summary>
    public static void TensorList(string operation, string argument, IReadOnlyList<DeviceTensor<float>>? list, Backend backend,
        IReadOnlyList<DeviceTensor<float>>? shapedAs)
    {
        if (list is null)
        {
            throw new ArgumentNullException(argument, $"{operation}: {argument} is null.");
        }

        if (shapedAs is not null && list.Count != shapedAs.Count)
        {
            throw new ArgumentException($"{operation}: {argument} lists {list.Count} tensors, expected one for each of {shapedAs.Count}.", argument);
        }

        for (int i = 0; i < list.Count; i++)
        {
            var tensor = list[i];
            if (tensor is null || tensor.IsDisposed || !ReferenceEquals(tensor.Backend, backend)
                || (shapedAs is not null && tensor.Shape != shapedAs[i].Shape))
            {
                string entry = $"{argument}[{i}]";
                if (shapedAs is null)
                {
                    Owned(operation, entry, tensor, backend);
                }
                else
                {
                    Tensor(operation, entry, tensor, backend, shapedAs[i].Shape);
                }
            }
        }
    }

    /// <summary>
    /// No two entries of the lists an operation writes share storage: a GPU would update such a tensor from two threads
    /// at once, where a loop over the list would update it twice. Each storage owner is stamped with
    /// <paramref name="stamp"/> (new for every check, under the backend's lock), so the check is one pass and allocates
    /// nothing unless it fails.
    /// </summary>
    public static void Unaliased(string operation, long stamp, params ReadOnlySpan<(string Name, IReadOnlyList<DeviceTensor<float>> List)> lists)
    {
        for (int a = 0; a < lists.Length; a++)
        {
            for (int i = 0; i < lists[a].List.Count; i++)
            {
                var storage = lists[a].List[i].Storage;
                if (storage.ListedStamp == stamp)
                {
                    ThrowShared(operation, lists, a, i);
                }

                storage.ListedStamp = stamp;
            }
        }
    }

    /// <summary>
    /// No entry of <paramref name="read"/> is one of the tensors <see cref="Unaliased"/> just stamped with
    /// <paramref name="stamp"/>: a GPU thread would read it while another writes it (a gradient that is also a parameter
    /// or a moment). One pass, no allocation unless it fails.
    /// </summary>
    public static void NotWritten(string operation, long stamp, string readName, IReadOnlyList<DeviceTensor<float>> read,
        params ReadOnlySpan<(string Name, IReadOnlyList<DeviceTensor<float>> List)> written)
    {
        for (int i = 0; i < read.Count; i++)
        {
            if (read[i].Storage.ListedStamp != stamp)
            {
                continue;
            }

            for (int b = 0; b < written.Length; b++)
            {
                for (int j = 0; j < written[b].List.Count; j++)
                {
                    if (written[b].List[j].SharesStorageWith(read[i]))
                    {
                        throw new ArgumentException($"{operation}: {readName}[{i}] and {written[b].Name}[{j}] share storage; what it reads must not be what it writes.", readName);
                    }
                }
            }
        }
    }

    private static void ThrowShared(string operation, ReadOnlySpan<(string Name, IReadOnlyList<DeviceTensor<float>> List)> lists, int a, int i)
    {
        for (int b = 0; b <= a; b++)
        {
            for (int j = 0; j < (b == a ? i : lists[b].List.Count); j++)
            {
                if (lists[b].List[j].SharesStorageWith(lists[a].List[i]))
                {
                    throw new ArgumentException($"{operation}: {lists[b].Name}[{j}] and {lists[a].Name}[{i}] share storage; every tensor it writes must be listed once.", lists[a].Name);
                }
            }
        }
    }

    /// <summary>The elements of a list of tensors together, which must fit one tensor (fewer than 2³¹).</summary>
    public static int TotalLength(string operation, string argument, IReadOnlyList<DeviceTensor<float>> list)
    {
        long total = 0;
        for (int i = 0; i < list.Count; i++)
        {
            total += list[i].Length;
        }

        return total <= Shape.MaximumElements
            ? (int)total
            : throw new ArgumentException($"{operation}: {argument} holds {total} elements in all, more than one tensor can ({Shape.MaximumElements}).", argument);
    }

    /// <summary>The tensor is none of the list's (no allocation unless it fails).</summary>
    public static void Apart(string operation, string argument, DeviceTensor<float> tensor, string listArgument, IReadOnlyList<DeviceTensor<float>> list)
    {
        for (int i = 0; i < list.Count; i++)
        {
            if (tensor.SharesStorageWith(list[i]))
            {
                throw new ArgumentException($"{operation}: {argument} shares storage with {listArgument}[{i}]; a GPU would read it while writing it.", argument);
            }
        }
    }

    /// <summary>
    /// The written tensor shares no storage with any read one: these operations read their inputs while writing
    /// (tiles, windows, sums), so a shared one would be read after it was overwritten — a different wrong answer on
    /// each backend. Null entries (absent optional inputs) are skipped; no allocation unless it fails.
    /// </summary>
    public static void WrittenApart<T>(string operation, string written, DeviceTensor<T> output, params ReadOnlySpan<(string Name, DeviceTensor<T>? Tensor)> read)
        where T : unmanaged
    {
        foreach (var (name, tensor) in read)
        {
            if (tensor is not null && output.SharesStorageWith(tensor))
            {
                throw new ArgumentException($"{operation}: {written} shares storage with {name}, which it reads while {written} is written; give {written} a tensor of its own.", written);
            }
        }
    }

    /// <summary>
    /// The error for a max-pooling switch that names no element of its plane (an index outside [0, H·W)): switches
    /// that MaxPool2dForward did not write, or wrote for another geometry. <paramref name="index"/> is the switch's
    /// flat position in the (N, C, P, Q) tensor.
    /// </summary>
    public static ArgumentException SwitchOutsidePlane(Pool2dGeometry g, long index, int value)
    {
        long q = index % g.Q, p = index / g.Q % g.P, c = index / ((long)g.P * g.Q) % g.C, n = index / ((long)g.P * g.Q * g.C);
        return new ArgumentException(
            $"MaxPool2dBackward: switches[{n},{c},{p},{q}] = {value} is not an element of its {g.H}x{g.W} plane (0 … {(long)g.H * g.W - 1}); " +
            "pass the switches MaxPool2dForward wrote for this geometry.");
    }

    /// <summary>The value must be finite and ≥ 0.</summary>
    public static void FiniteNonNegative(string operation, string argument, float value)
    {
        if (!float.IsFinite(value) || value < 0f)
        {
            throw new ArgumentOutOfRangeException(argument, value, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{operation}: {argument} must be a finite number ≥ 0, got {value}."));
        }
    }

    /// <summary>The value must be positive.</summary>
    public static void Positive(string operation, string argument, int value)
    {
        if (value <= 0)
        {
            throw new ArgumentOutOfRangeException(argument, value, $"{operation}: {argument} must be positive, got {value}.");
        }
    }
}
