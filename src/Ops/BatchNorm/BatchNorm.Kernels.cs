using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// Batch normalisation over x (N, C, inner): <see cref="Channels"/> = C, <see cref="Inner"/> = the positions per
/// channel and sample, <see cref="Count"/> = N·inner values per channel.
/// </summary>
public readonly record struct BatchNormShape(int Channels, int Inner, int Count, float Momentum, float Epsilon, int Training)
{
    /// <summary>The flat index of value e (0 ≤ e &lt; Count) of channel c: sample e / inner, position e mod inner.</summary>
    public int Index(int c, int e)
    {
        int n = e / Inner;
        return (((n * Channels) + c) * Inner) + (e - (n * Inner));
    }

    /// <summary>The channel of flat index i.</summary>
    public int ChannelOf(int i) => i / Inner % Channels;
}

/// <summary>
/// The ILGPU kernels of batch normalisation (compiled into GpuCnn.Kernels; see src/Ops/README.md). Per-channel sums
/// run in two passes: groups of a (channel, chunk) grid each sum a chunk with <see cref="ReductionKernels.GroupSum"/>,
/// then one thread per channel adds its chunks in order (no atomics: the same bits every run). One group per channel
/// had left most of a GPU idle: a 16-channel layer of ResNet-8 at batch 128 spent 270 µs on its statistics on an
/// H100 (docs/benchmarks.md). The per-element work is a separate, fully parallel launch.
/// </summary>
internal static class BatchNormKernels
{
    /// <summary>
    /// Training statistics, first pass: group (c, chunk) = (Grid.IdxX, Grid.IdxY) takes values
    /// [chunk·chunkSize, (chunk + 1)·chunkSize) of channel c and writes the mean of their offsets from the channel's
    /// first value (the pivot, as the reference: a channel far from zero keeps its mean; each offset taken from halves
    /// and scaled by 1/n as it is added, so neither it nor a partial sum overflows) and the sum of their squared
    /// deviations from the chunk's own mean (two passes over the chunk) to partial[2·(c·chunks + chunk)] and the float
    /// after it. <see cref="MergeStatistics"/> combines the chunks.
    /// </summary>
    public static void ChunkStatistics(ArrayView<float> x, ArrayView<float> partial, BatchNormShape s, int chunkSize)
    {
        int c = Grid.IdxX, chunk = Grid.IdxY, chunks = Grid.DimY;
        int begin = chunk * chunkSize, end = XMath.Min(s.Count, begin + chunkSize);
        float pivot = x[s.Index(c, 0)], share = 2f / (end - begin);
        var sum = default(CompensatedSum);
        for (int e = begin + Group.IdxX; e < end; e += Group.DimX)
        {
            sum.Add(((0.5f * x[s.Index(c, e)]) - (0.5f * pivot)) * share); // from halves: finite where x − pivot is not
        }

        float offset = ReductionKernels.GroupSum(sum.Value);
        Group.Barrier(); // every thread has read the sum before the next one overwrites the shared memory
        var squares = default(CompensatedSum);
        for (int e = begin + Group.IdxX; e < end; e += Group.DimX)
        {
            float d = x[s.Index(c, e)] - pivot - offset;
            squares.Add(d * d);
        }

        float deviations = ReductionKernels.GroupSum(squares.Value);
        if (Group.IdxX == 0)
        {
            partial[2 * ((c * chunks) + chunk)] = offset;
            partial[(2 * ((c * chunks) + chunk)) + 1] = deviations;
        }
    }

    /// <summary>
    /// Training statistics, second pass, channel c: mean = pivot + Σ chunk mean offset·n/M (chunk by chunk in order;
    /// this sum and the squared deviations' below are compensated);
    /// the squared deviations from it are, chunk by chunk, the chunk's own plus n·(chunk mean − mean)² (exact in real
    /// arithmetic, the parallel form of the two-pass variance; one chunk gives the two-pass sum itself); invStd =
    /// 1/√(biased variance + ε); the running statistics' momentum update (unbiased variance).
    /// </summary>
    public static void MergeStatistics(Index1D c, ArrayView<float> x, ArrayView<float> partial, ArrayView<float> mean,
        ArrayView<float> invStd, ArrayView<float> runningMean, ArrayView<float> runningVar, BatchNormShape s, int chunkSize)
    {
        int chunks = (s.Count + chunkSize - 1) / chunkSize;
        MergeChannelStatistics(c, partial.SubView(2L * c * chunks, 2L * chunks), x, mean, invStd, runningMean, runningVar, s, chunkSize, chunks);
    }

    /// <summary>
    /// <see cref="MergeStatistics"/> with channel c's chunk statistics first staged in shared memory by all of group c's
    /// threads at once; its first thread then merges them as <see cref="MergeStatistics"/> does — the same sums in the
    /// same order, so the same bits — where one thread reading them from memory waits a round trip a chunk (on an H200
    /// 9.5 µs a launch over ResNet-8's batch norms, docs/09-modern-layers.md). Launch: a group per channel, 2·chunks
    /// floats of shared memory.
    /// </summary>
    public static void MergeStatisticsStaged(ArrayView<float> x, ArrayView<float> partial, ArrayView<float> mean,
        ArrayView<float> invStd, ArrayView<float> runningMean, ArrayView<float> runningVar, BatchNormShape s, int chunkSize)
    {
        int c = Grid.IdxX, chunks = (s.Count + chunkSize - 1) / chunkSize;
        var staged = StageChannel(partial, c, chunks);
        if (Group.IdxX == 0)
        {
            MergeChannelStatistics(c, staged, x, mean, invStd, runningMean, runningVar, s, chunkSize, chunks);
        }
    }

    /// <summary>Channel c's 2·chunks floats of <paramref name="partial"/> copied to shared memory by the whole group.</summary>
    private static ArrayView<float> StageChannel(ArrayView<float> partial, int c, int chunks)
    {
        var staged = SharedMemory.GetDynamic<float>();
        for (int i = Group.IdxX; i < 2 * chunks; i += Group.DimX)
        {
            staged[i] = partial[(2 * c * chunks) + i];
        }

        Group.Barrier();
        return staged;
    }

    /// <summary>The merge of <see cref="MergeStatistics"/> from channel c's chunk statistics (offset, deviations) pairs.</summary>
    private static void MergeChannelStatistics(int c, ArrayView<float> stats, ArrayView<float> x, ArrayView<float> mean,
        ArrayView<float> invStd, ArrayView<float> runningMean, ArrayView<float> runningVar, BatchNormShape s, int chunkSize, int chunks)
    {
        var offsets = default(CompensatedSum);
        for (int chunk = 0; chunk < chunks; chunk++)
        {
            int n = XMath.Min(chunkSize, s.Count - (chunk * chunkSize));
            offsets.Add(stats[2 * chunk] * ((float)n / s.Count));
        }

        float offset = offsets.Value, mu = x[s.Index(c, 0)] + offset;
        var deviations = default(CompensatedSum);
        for (int chunk = 0; chunk < chunks; chunk++)
        {
            int n = XMath.Min(chunkSize, s.Count - (chunk * chunkSize));
            float apart = stats[2 * chunk] - offset;
            deviations.Add(stats[(2 * chunk) + 1] + (n * apart * apart));
        }

        float variance = deviations.Value / s.Count;
        mean[c] = mu;
        invStd[c] = 1f / XMath.Sqrt(variance + s.Epsilon);
        runningMean[c] = ((1f - s.Momentum) * runningMean[c]) + (s.Momentum * mu);
        runningVar[c] = ((1f - s.Momentum) * runningVar[c]) + (s.Momentum * variance * s.Count / (s.Count - 1));
    }

    /// <summary>Evaluation statistics of channel c from the running ones.</summary>
    public static void RunningStatistics(Index1D c, ArrayView<float> runningMean, ArrayView<float> runningVar,
        ArrayView<float> mean, ArrayView<float> invStd, BatchNormShape s)
    {
        mean[c] = runningMean[c];
        invStd[c] = 1f / XMath.Sqrt(runningVar[c] + s.Epsilon);
    }

    /// <summary>y = f((x − mean)·invStd·weight + bias), one element per thread (<see cref="Identity"/>: no activation).</summary>
    public static void Normalize<TF>(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> mean, ArrayView<float> invStd, BatchNormShape s, TF f)
        where TF : struct, IActivationFunction
    {
        int c = s.ChannelOf(i);
        y[i] = f.Forward(((x[i] - mean[c]) * invStd[c] * weight[c]) + bias[c]);
    }

    /// <summary>
    /// Gradient sums, first pass: group (c, chunk) = (Grid.IdxX, Grid.IdxY) sums dz and dz·x̂ over values
    /// [chunk·chunkSize, (chunk + 1)·chunkSize) of channel c into partial[2·(c·chunks + chunk)] and the float after it,
    /// where dz = dy·f′ from the fused output y (<see cref="Identity"/>: dz = dy, y unread).
    /// </summary>
    public static void ChunkGradientSums<TF>(ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> mean,
        ArrayView<float> invStd, ArrayView<float> partial, BatchNormShape s, int chunkSize, TF f)
        where TF : struct, IDerivativeFromOutput
    {
        int c = Grid.IdxX, chunk = Grid.IdxY, chunks = Grid.DimY;
        int begin = chunk * chunkSize, end = XMath.Min(s.Count, begin + chunkSize);
        float mu = mean[c], inv = invStd[c];
        CompensatedSum sumDy = default, sumDyXhat = default;
        for (int e = begin + Group.IdxX; e < end; e += Group.DimX)
        {
            int i = s.Index(c, e);
            float dz = f.BackwardFromOutput(y[i], dy[i]);
            sumDy.Add(dz);
            sumDyXhat.Add(dz * (x[i] - mu) * inv);
        }

        float db = ReductionKernels.GroupSum(sumDy.Value);
        Group.Barrier();
        float dw = ReductionKernels.GroupSum(sumDyXhat.Value);
        if (Group.IdxX == 0)
        {
            partial[2 * ((c * chunks) + chunk)] = db;
            partial[(2 * ((c * chunks) + chunk)) + 1] = dw;
        }
    }

    /// <summary>
    /// Gradient sums, second pass: dbias[c] = Σ dy and dweight[c] = Σ dy·x̂, the chunks added in order, compensated (a
    /// plain float sum of 264 chunks of a million-value channel had come 1.8e-6 off on an H200).
    /// </summary>
    public static void MergeGradientSums(Index1D c, ArrayView<float> partial, ArrayView<float> dweight, ArrayView<float> dbias, int chunks) =>
        MergeChannelGradientSums(c, partial.SubView(2L * c * chunks, 2L * chunks), dweight, dbias, chunks);

    /// <summary>
    /// <see cref="MergeGradientSums"/> with channel c's chunk sums first staged in shared memory by all of group c's
    /// threads (as <see cref="MergeStatisticsStaged"/>): the same sums in the same order, the same bits. Launch: a group
    /// per channel, 2·chunks floats of shared memory.
    /// </summary>
    public static void MergeGradientSumsStaged(ArrayView<float> partial, ArrayView<float> dweight, ArrayView<float> dbias, int chunks)
    {
        int c = Grid.IdxX;
        var staged = StageChannel(partial, c, chunks);
        if (Group.IdxX == 0)
        {
            MergeChannelGradientSums(c, staged, dweight, dbias, chunks);
        }
    }

    /// <summary>The merge of <see cref="MergeGradientSums"/> from channel c's chunk (Σ dz, Σ dz·x̂) pairs.</summary>
    private static void MergeChannelGradientSums(int c, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, int chunks)
    {
        CompensatedSum db = default, dw = default;
        for (int chunk = 0; chunk < chunks; chunk++)
        {
            db.Add(sums[2 * chunk]);
            dw.Add(sums[(2 * chunk) + 1]);
        }

        dbias[c] = db.Value;
        dweight[c] = dw.Value;
    }

    /// <summary>
    /// Per channel, the terms of dx = a·(dz − (meanDz + (x − mean)·k)) in training and a·dz in evaluation:
    /// a = weight·invStd, meanDz = dbias/M, k = invStd·dweight/M — PyTorch's centred form, whose x − mean stays
    /// exact where the mean is large against the spread (the affine form a·dz + b·x + d cancelled there). Writes
    /// (a, meanDz, mean, k) for c.
    /// </summary>
    public static void InputGradientCoefficients(Index1D c, ArrayView<float> weight, ArrayView<float> mean, ArrayView<float> invStd,
        ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> coefficients, BatchNormShape s)
    {
        coefficients[4 * c] = weight[c] * invStd[c];
        coefficients[(4 * c) + 1] = dbias[c] / s.Count;
        coefficients[(4 * c) + 2] = mean[c];
        coefficients[(4 * c) + 3] = invStd[c] * dweight[c] / s.Count;
    }

    /// <summary>
    /// dx from the channel terms of <see cref="InputGradientCoefficients"/>, dz = dy·f′ from the fused output y
    /// (<see cref="Identity"/>: dz = dy).
    /// </summary>
    public static void InputGradient<TF>(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> coefficients,
        ArrayView<float> dx, BatchNormShape s, TF f)
        where TF : struct, IDerivativeFromOutput
    {
        int c = 4 * s.ChannelOf(i);
        float dz = f.BackwardFromOutput(y[i], dy[i]);
        dx[i] = s.Training != 0
            ? coefficients[c] * (dz - (coefficients[c + 1] + ((x[i] - coefficients[c + 2]) * coefficients[c + 3])))
            : coefficients[c] * dz;
    }
}
