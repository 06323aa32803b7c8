using ILGPU;
using ILGPU.Runtime;
using Float4 = GpuCnn.Kernels.GemmTiled8x8Kernels.Float4;

namespace GpuCnn.Kernels;

/// <summary>
/// The filter gradient of a convolution with few taps T = C·R·S — a first layer (C = 1 or 3) or a 1×1 layer of few
/// channels — where the implicit GEMM's tiles (32 or 64 filters × 128 or 256 taps) are mostly empty: ResNet-8's
/// 1 → 16 3×3 layer (9 taps, 16 filters) used 1.8 % of the multiply-adds its tiles issued, 0.21 ms on an H200 for
/// 29 MFLOP. Here dW (K × T) = Σ over the N·P·Q output pixels j of dy[k, j] · cols[t, j] runs as a split reduction:
/// group z sums the pixels [z·perChunk, (z + 1)·perChunk) in batches of <see cref="BatchPixels"/>, each batch staged
/// in shared memory (dy as K × 32, the pixels' columns as T × 32), and thread i owns outputs i, i + threads, …: weight
/// (k, t) for i = k·T + t &lt; K·T, then, with the bias, the bias of filter i − K·T (Σ_j dy[k, j]). Each thread adds a
/// batch's 32 products in pixel order to its output's accumulator, so partial[z, i] has a fixed order;
/// <see cref="ReductionKernels.SumChunks"/> adds the chunks in order.
/// </summary>
internal static class ConvolutionFewTapsKernels
{
    /// <summary>Pixels staged per batch (a power of two: the staging loops split an index by shifts).</summary>
    public const int BatchPixels = 32;

    /// <summary>The most floats a group stages (32 KB, as the depthwise kernels: the local memory of the smallest GPUs).</summary>
    public const int MaxSharedFloats = 8192;

    /// <summary>
    /// The most weights (K·T) a layer may have here: each thread reads two shared floats per multiply-add, so the cost
    /// grows with the weights where the implicit GEMM's 8×4 blocks read 0.4. Measured on an H200: 2,048 (a 32 → 64 1×1
    /// layer) 0.64× the implicit GEMM's time; 2,304 (16 → 16 at 3×3, 144 taps) 1.11×.
    /// </summary>
    public const int MaxWeights = 2048;

    /// <summary>Floats per staged row: 32 pixels and one of padding, so that a warp's 32 taps read 32 different banks.</summary>
    private const int Row = BatchPixels + 1;

    /// <summary>The batch's pixel table: four ints a pixel (its window's start in x, top row, left column, offset in dy).</summary>
    private const int PixelTable = 4 * BatchPixels;

    /// <summary>
    /// partial[chunk, i] = Σ over this chunk's pixels j of dy[k, j]·cols[t, j] (i = k·T + t) or dy[k, j] (the bias,
    /// i = K·T + k, when <paramref name="withBias"/> is 1). Launch: <see cref="Config"/>.
    /// </summary>
    public static void FilterGradient(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partial, Conv2dGeometry g,
        int pixelsPerChunk, int withBias)
    {
        int thread = Group.IdxX, threads = Group.DimX, chunk = Grid.IdxX;
        int taps = g.C * g.R * g.S, weights = g.K * taps, outputs = weights + (withBias * g.K), pq = g.P * g.Q, hw = g.H * g.W;
        var shared = SharedMemory.GetDynamic<float>();
        var ints = shared.Cast<int>();
        // Slots: pixel table | tap table (3 × T ints) | accumulators (outputs) | dy stage (K rows) | column stage (T rows).
        int tapOffsets = PixelTable, tapRows = tapOffsets + taps, tapColumns = tapRows + taps;
        int accumulators = tapColumns + taps, dyStage = accumulators + outputs, columnStage = dyStage + (g.K * Row);

        WriteTapTable(ints, g, tapOffsets, thread, threads);

        for (int i = thread; i < outputs; i += threads)
        {
            shared[accumulators + i] = 0f;
        }

        int first = chunk * pixelsPerChunk, end = first + pixelsPerChunk < g.N * pq ? first + pixelsPerChunk : g.N * pq;
        for (int j0 = first; j0 < end; j0 += BatchPixels)
        {
            // Only the staging below reads the pixel table, and it finished before the last barrier.
            WritePixelTable(ints, g, pq, hw, j0, end, thread, threads);

            Group.Barrier(); // the table is written, and every thread has finished the previous batch's products
            for (int e = thread; e < g.K * BatchPixels; e += threads)
            {
                int k = e / BatchPixels, j = e & (BatchPixels - 1), at = ints[(3 * BatchPixels) + j];
                shared[dyStage + (k * Row) + j] = at >= 0 ? dy[at + (k * pq)] : 0f;
            }

            for (int e = thread; e < taps * BatchPixels; e += threads)
            {
                int t = e / BatchPixels, j = e & (BatchPixels - 1);
                shared[columnStage + (t * Row) + j] = Gathered(x, ints, g, tapOffsets, tapRows, tapColumns, t, j);
            }

            Group.Barrier();
            for (int i = thread; i < outputs; i += threads)
            {
                float sum = 0f;
                if (i < weights)
                {
                    int k = i / taps, gradients = dyStage + (k * Row), column = columnStage + ((i - (k * taps)) * Row);
                    for (int j = 0; j < BatchPixels; j++)
                    {
                        sum += shared[gradients + j] * shared[column + j];
                    }
                }
                else
                {
                    int gradients = dyStage + ((i - weights) * Row);
                    for (int j = 0; j < BatchPixels; j++)
                    {
                        sum += shared[gradients + j];
                    }
                }

                shared[accumulators + i] += sum;
            }
        }

        for (int i = thread; i < outputs; i += threads)
        {
            partial[((long)chunk * outputs) + i] = shared[accumulators + i];
        }
    }

    /// <summary>Filters a thread of <see cref="FilterGradientBlocked"/> sums at once, in registers.</summary>
    public const int BlockFilters = 16;

    /// <summary>
    /// The most threads a group of <see cref="FilterGradientBlocked"/> may have: the kernels load without a launch
    /// bound, so the compiler may give a thread more than the 64 registers that 1,024 threads leave it; 512 leave 128.
    /// </summary>
    public const int MaxBlockedThreads = 512;

    /// <summary>
    /// The fewest threads a group of <see cref="FilterGradientBlocked"/> has for it to take a layer that
    /// <see cref="FilterGradient"/> could take too: groups of a warp or less (a few taps, at most 16 filters) leave its
    /// multiprocessors short of threads, and it lost to <see cref="FilterGradient"/> there on an H200.
    /// </summary>
    public const int PreferredBlockedThreads = 128;

    /// <summary>
    /// The same partial sums as <see cref="FilterGradient"/> with the products blocked in registers, for layers of more
    /// taps: a thread owns one column u of the batch's stage — tap u, or, with the bias, the column of ones after the
    /// taps — and a block of 16 filters b, and per staged pixel j adds x_col[u, j]·dy[16b + f, j] for f &lt; 16 to 16
    /// accumulators it keeps over the whole chunk: one shared float and four 16-byte loads (the same four for every
    /// thread of the block, a broadcast) per 16 multiply-adds, where <see cref="FilterGradient"/> reads two floats per
    /// one. dy is staged transposed (pixel by pixel, filters padded to whole blocks of zeros). Thread i takes block
    /// i / (T + bias) and column i mod (T + bias); a group needs at least that many threads (<see cref="BlockedThreads"/>,
    /// at most <see cref="MaxBlockedThreads"/>).
    /// Each accumulator adds its pixels in order, so partial[z, ·] has a fixed order; laid out as
    /// <see cref="FilterGradient"/>'s. Launch: <see cref="BlockedConfig"/>.
    /// </summary>
    public static void FilterGradientBlocked(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partial, Conv2dGeometry g,
        int pixelsPerChunk, int withBias)
    {
        int thread = Group.IdxX, threads = Group.DimX, chunk = Grid.IdxX;
        int taps = g.C * g.R * g.S, columns = taps + withBias, weights = g.K * taps, outputs = weights + (withBias * g.K);
        int padded = BlockFilters * ((g.K + BlockFilters - 1) / BlockFilters), dyRow = padded + 4, pq = g.P * g.Q, hw = g.H * g.W;
        var shared4 = SharedMemory.GetDynamic<Float4>();
        var shared = shared4.Cast<float>();
        var ints = shared.Cast<int>();
        // Slots: pixel table | dyᵀ stage (32 pixels × padded filters, rows of padded + 4 floats: 16-byte aligned) | tap
        // table (3 × T ints) | column stage (T + bias rows).
        int dyStage = PixelTable, tapOffsets = dyStage + (BatchPixels * dyRow), tapRows = tapOffsets + taps;
        int tapColumns = tapRows + taps, columnStage = tapColumns + taps;

        WriteTapTable(ints, g, tapOffsets, thread, threads);

        int block = thread / columns, own = thread - (block * columns);
        bool owner = block * BlockFilters < g.K;
        Float4 a0 = default, a1 = default, a2 = default, a3 = default;
        int first = chunk * pixelsPerChunk, end = first + pixelsPerChunk < g.N * pq ? first + pixelsPerChunk : g.N * pq;
        for (int j0 = first; j0 < end; j0 += BatchPixels)
        {
            // Only the staging below reads the pixel table, and it finished before the last barrier.
            WritePixelTable(ints, g, pq, hw, j0, end, thread, threads);

            Group.Barrier(); // the table is written, and every thread has finished the previous batch's products
            for (int e = thread; e < padded * BatchPixels; e += threads)
            {
                // Consecutive threads read consecutive pixels of one filter from dy (coalesced) and store them a row
                // apart; rows of padded + 4 floats spread those stores over 8 banks, where rows of 16 or 32 put them in 2 or 1.
                int k = e / BatchPixels, j = e & (BatchPixels - 1), at = ints[(3 * BatchPixels) + j];
                shared[dyStage + (j * dyRow) + k] = at >= 0 && k < g.K ? dy[at + (k * pq)] : 0f;
            }

            for (int e = thread; e < columns * BatchPixels; e += threads)
            {
                int t = e / BatchPixels, j = e & (BatchPixels - 1);
                // Past the taps, the bias's column of ones: Σ_j dy[k, j] (dy is 0 past the chunk's end).
                shared[columnStage + (t * Row) + j] = t < taps ? Gathered(x, ints, g, tapOffsets, tapRows, tapColumns, t, j) : 1f;
            }

            Group.Barrier();
            if (owner)
            {
                int column = columnStage + (own * Row), gradients = (dyStage + (block * BlockFilters)) / 4;
                for (int j = 0; j < BatchPixels; j++)
                {
                    float v = shared[column + j];
                    a0 = MultiplyAdd(a0, v, shared4[gradients]);
                    a1 = MultiplyAdd(a1, v, shared4[gradients + 1]);
                    a2 = MultiplyAdd(a2, v, shared4[gradients + 2]);
                    a3 = MultiplyAdd(a3, v, shared4[gradients + 3]);
                    gradients += dyRow / 4;
                }
            }
        }

        if (owner)
        {
            // Filter k's sum of column u is output k·T + u (a weight) or, for the column of ones, K·T + k (its bias).
            var target = partial.SubView((long)chunk * outputs, outputs);
            int k = block * BlockFilters;
            StoreBlocked(target, g.K, taps, weights, own, k, a0);
            StoreBlocked(target, g.K, taps, weights, own, k + 4, a1);
            StoreBlocked(target, g.K, taps, weights, own, k + 8, a2);
            StoreBlocked(target, g.K, taps, weights, own, k + 12, a3);
        }
    }

    /// <summary>acc + v·d, lane by lane.</summary>
    private static Float4 MultiplyAdd(Float4 acc, float v, Float4 d) => new()
    {
        X = acc.X + (v * d.X),
        Y = acc.Y + (v * d.Y),
        Z = acc.Z + (v * d.Z),
        W = acc.W + (v * d.W),
    };

    /// <summary>The sums of filters k … k + 3 (those below K) for column u.</summary>
    private static void StoreBlocked(ArrayView<float> target, int filters, int taps, int weights, int u, int k, Float4 sums)
    {
        StoreBlocked(target, filters, taps, weights, u, k, sums.X);
        StoreBlocked(target, filters, taps, weights, u, k + 1, sums.Y);
        StoreBlocked(target, filters, taps, weights, u, k + 2, sums.Z);
        StoreBlocked(target, filters, taps, weights, u, k + 3, sums.W);
    }

    private static void StoreBlocked(ArrayView<float> target, int filters, int taps, int weights, int u, int k, float sum)
    {
        if (k < filters)
        {
            target[u < taps ? (k * taps) + u : weights + k] = sum;
        }
    }

    /// <summary>The shared floats a group of <see cref="FilterGradientBlocked"/> needs for <paramref name="g"/>.</summary>
    public static long BlockedSharedFloats(Conv2dGeometry g, bool withBias)
    {
        long taps = (long)g.C * g.R * g.S, padded = BlockFilters * (((long)g.K + BlockFilters - 1) / BlockFilters);
        return PixelTable + (BatchPixels * (padded + 4)) + (3 * taps) + ((taps + (withBias ? 1 : 0)) * Row);
    }

    /// <summary>The threads a group of <see cref="FilterGradientBlocked"/> needs: one per block of filters and column, in whole warps.</summary>
    public static long BlockedThreads(Conv2dGeometry g, bool withBias)
    {
        long items = (((long)g.K + BlockFilters - 1) / BlockFilters) * (((long)g.C * g.R * g.S) + (withBias ? 1 : 0));
        return (items + 31) / 32 * 32;
    }

    /// <summary>The launch of <see cref="FilterGradientBlocked"/>: a group of <paramref name="groupThreads"/> per chunk.</summary>
    public static KernelConfig BlockedConfig(Conv2dGeometry g, int chunks, int groupThreads, bool withBias) =>
        new(chunks, groupThreads, SharedMemoryConfig.RequestDynamic<Float4>((int)((BlockedSharedFloats(g, withBias) + 3) / 4)));

    /// <summary>
    /// The tap table at <paramref name="at"/>: for each tap (c, r, s), its offset from a window's start in x, then (T
    /// ints on) its row and (2T on) its column within the window.
    /// </summary>
    private static void WriteTapTable(ArrayView<int> ints, Conv2dGeometry g, int at, int thread, int threads)
    {
        int rs = g.R * g.S, taps = g.C * rs, hw = g.H * g.W;
        for (int t = thread; t < taps; t += threads)
        {
            int c = t / rs, rest = t - (c * rs), r = rest / g.S, s = rest - (r * g.S);
            int row = r * g.DilationH, column = s * g.DilationW;
            ints[at + t] = (c * hw) + (row * g.W) + column;
            ints[at + taps + t] = row;
            ints[at + (2 * taps) + t] = column;
        }
    }

    /// <summary>
    /// The pixel table of the batch from pixel <paramref name="j0"/> (n, p, q): where each window starts in x, its top
    /// and left, where the pixel is in dy (−1 past the chunk's end), 32 ints each. <paramref name="pq"/> = P·Q, worked
    /// out once by the caller (P and Q are each worked out by a division), as <paramref name="hw"/> = H·W.
    /// </summary>
    private static void WritePixelTable(ArrayView<int> ints, Conv2dGeometry g, int pq, int hw, int j0, int end, int thread, int threads)
    {
        for (int j = thread; j < BatchPixels; j += threads)
        {
            int pixel = j0 + j, n = pixel / pq, rest = pixel - (n * pq), p = rest / g.Q;
            int top = (p * g.StrideH) - g.PadH, left = ((rest - (p * g.Q)) * g.StrideW) - g.PadW;
            ints[j] = (n * g.C * hw) + (top * g.W) + left;
            ints[BatchPixels + j] = top;
            ints[(2 * BatchPixels) + j] = left;
            ints[(3 * BatchPixels) + j] = pixel < end ? (n * g.K * pq) + rest : -1;
        }
    }

    /// <summary>
    /// cols[t, j]: the x value tap t of the batch's pixel j reads, 0 in the padding and past the chunk's end; the tap
    /// table's three parts start at <paramref name="tapOffsets"/>, <paramref name="tapRows"/>, <paramref name="tapColumns"/>.
    /// </summary>
    private static float Gathered(ArrayView<float> x, ArrayView<int> ints, Conv2dGeometry g, int tapOffsets, int tapRows, int tapColumns, int t, int j)
    {
        int h = ints[BatchPixels + j] + ints[tapRows + t], w = ints[(2 * BatchPixels) + j] + ints[tapColumns + t];
        bool inside = ints[(3 * BatchPixels) + j] >= 0 && (uint)h < (uint)g.H && (uint)w < (uint)g.W;
        return inside ? x[ints[j] + ints[tapOffsets + t]] : 0f;
    }

    /// <summary>The shared floats a group of <see cref="FilterGradient"/> needs for <paramref name="g"/>.</summary>
    public static long SharedFloats(Conv2dGeometry g, bool withBias)
    {
        long taps = (long)g.C * g.R * g.S, outputs = (g.K * taps) + (withBias ? g.K : 0);
        return PixelTable + (3 * taps) + outputs + ((g.K + taps) * Row);
    }

    /// <summary>The launch of <see cref="FilterGradient"/>: a group of <paramref name="groupThreads"/> per chunk.</summary>
    public static KernelConfig Config(Conv2dGeometry g, int chunks, int groupThreads, bool withBias) =>
        new(chunks, groupThreads, SharedMemoryConfig.RequestDynamic<float>((int)SharedFloats(g, withBias)));
}
