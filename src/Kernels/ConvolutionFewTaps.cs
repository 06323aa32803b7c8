using ILGPU;
using ILGPU.Runtime;

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
        int rs = g.R * g.S, taps = g.C * rs, weights = g.K * taps, outputs = weights + (withBias * g.K);
        int pq = g.P * g.Q, hw = g.H * g.W;
        var shared = SharedMemory.GetDynamic<float>();
        var ints = shared.Cast<int>();
        // Slots: pixel table | tap table (3 × T ints) | accumulators (outputs) | dy stage (K rows) | column stage (T rows).
        int tapOffsets = PixelTable, tapRows = tapOffsets + taps, tapColumns = tapRows + taps;
        int accumulators = tapColumns + taps, dyStage = accumulators + outputs, columnStage = dyStage + (g.K * Row);

        // Each tap (c, r, s): its offset from a window's start in x, and its row and column within the window.
        for (int t = thread; t < taps; t += threads)
        {
            int c = t / rs, rest = t - (c * rs), r = rest / g.S, s = rest - (r * g.S);
            int row = r * g.DilationH, column = s * g.DilationW;
            ints[tapOffsets + t] = (c * hw) + (row * g.W) + column;
            ints[tapRows + t] = row;
            ints[tapColumns + t] = column;
        }

        for (int i = thread; i < outputs; i += threads)
        {
            shared[accumulators + i] = 0f;
        }

        int first = chunk * pixelsPerChunk, end = first + pixelsPerChunk < g.N * pq ? first + pixelsPerChunk : g.N * pq;
        for (int j0 = first; j0 < end; j0 += BatchPixels)
        {
            // The batch's pixels (n, p, q): where each window starts in x, its top and left, where the pixel is in dy
            // (−1 past the chunk's end). Only the staging below reads the table, and it finished before the last barrier.
            for (int j = thread; j < BatchPixels; j += threads)
            {
                int pixel = j0 + j, n = pixel / pq, rest = pixel - (n * pq), p = rest / g.Q;
                int top = (p * g.StrideH) - g.PadH, left = ((rest - (p * g.Q)) * g.StrideW) - g.PadW;
                ints[j] = (n * g.C * hw) + (top * g.W) + left;
                ints[BatchPixels + j] = top;
                ints[(2 * BatchPixels) + j] = left;
                ints[(3 * BatchPixels) + j] = pixel < end ? (n * g.K * pq) + rest : -1;
            }

            Group.Barrier(); // the table is written, and every thread has finished the previous batch's products
            for (int e = thread; e < g.K * BatchPixels; e += threads)
            {
                int k = e / BatchPixels, j = e & (BatchPixels - 1), at = ints[(3 * BatchPixels) + j];
                shared[dyStage + (k * Row) + j] = at >= 0 ? dy[at + (k * pq)] : 0f;
            }

            for (int e = thread; e < taps * BatchPixels; e += threads)
            {
                int t = e / BatchPixels, j = e & (BatchPixels - 1);
                int h = ints[BatchPixels + j] + ints[tapRows + t], w = ints[(2 * BatchPixels) + j] + ints[tapColumns + t];
                bool inside = ints[(3 * BatchPixels) + j] >= 0 && (uint)h < (uint)g.H && (uint)w < (uint)g.W;
                shared[columnStage + (t * Row) + j] = inside ? x[ints[j] + ints[tapOffsets + t]] : 0f;
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
