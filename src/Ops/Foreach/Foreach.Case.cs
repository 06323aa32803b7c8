namespace GpuCnn.Cpu;

/// <summary>The tensor-list operations' cases in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>Two steps of SGD (momentum, dampening, weight decay) and of AdamW on lists of tensors of the lengths given.</summary>
    public static OperationCase ListedOptimizers(int[] lengths, int seed) =>
        new("sgd, adamw over a list of tensors", $"({string.Join(", ", lengths)}) x 2 steps", null, backend =>
        {
            ArgumentNullException.ThrowIfNull(lengths);
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var starts = lengths.Select(n => Values(random, n)).ToArray();
            DeviceTensor<float>[] Written(Func<int, float[]> values) => [.. lengths.Select((n, i) => run.Input([n], values(i), written: true))];
            var p = Written(i => starts[i]);
            var q = Written(i => starts[i]);
            var v = Written(i => new float[lengths[i]]);
            var m = Written(i => new float[lengths[i]]);
            var s = Written(i => new float[lengths[i]]);
            var g1 = lengths.Select(n => run.Input([n], random)).ToArray();
            var g2 = lengths.Select(n => run.Input([n], random)).ToArray();
            var sgd = new SgdOptions(0.1f, 0.9f, 0.1f, 0.01f);
            var adamw = AdamOptions.AdamW(0.01f, 0.05f);
            return run.Does(() =>
            {
                backend.SgdUpdate(sgd, true, p, g1, v);
                backend.AdamUpdate(adamw, 1, q, g1, m, s);
                backend.SgdUpdate(sgd, false, p, g2, v);
                backend.AdamUpdate(adamw, 2, q, g2, m, s);
            });
        });

    /// <summary>Tensors of the lengths given packed into one buffer, scaled, then a second set unpacked from it.</summary>
    public static OperationCase FlatCopies(int[] lengths, float scale, int seed) =>
        new("copy a list of tensors to one buffer and back", $"({string.Join(", ", lengths)}) x {scale}", null, backend =>
        {
            ArgumentNullException.ThrowIfNull(lengths);
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var sources = lengths.Select(n => run.Input([n], random)).ToArray();
            var flat = run.Output([lengths.Sum()]);
            var targets = lengths.Select(n => run.Output([n])).ToArray();
            return run.Does(() =>
            {
                backend.CopyToFlat(sources, flat, scale);
                backend.CopyFromFlat(flat, targets);
            });
        });

    /// <summary>
    /// One SGD step (momentum 0.9, weight decay 5e-4, PyTorch's ResNet recipe) over tensors of the lengths given: as a
    /// list (<paramref name="listed"/>: a few launches on a GPU) or a tensor at a time (a launch each), to show what the
    /// list saves on each backend in the same process.
    /// </summary>
    public static OperationCase SgdStep(string name, int[] lengths, bool listed) =>
        new(name, $"{lengths.Length} tensors, {lengths.Sum()} weights{(listed ? "" : ", a call per tensor")}", null, backend =>
        {
            ArgumentNullException.ThrowIfNull(lengths);
            var random = new Random(1);
            var run = new PreparedRun(backend);
            var p = lengths.Select(n => run.Input([n], random, written: true)).ToArray();
            var g = lengths.Select(n => run.Input([n], random)).ToArray();
            var v = lengths.Select(n => run.Input([n], new float[n], written: true)).ToArray();
            var sgd = new SgdOptions(0.01f, 0.9f, WeightDecay: 5e-4f);
            return run.Does(() =>
            {
                if (listed)
                {
                    backend.SgdUpdate(sgd, false, p, g, v);
                    return;
                }

                for (int i = 0; i < p.Length; i++)
                {
                    backend.SgdUpdate(sgd, false, p[i], g[i], v[i]);
                }
            });
        });
}
