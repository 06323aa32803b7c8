using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Block8x8 = GpuCnn.Kernels.GemmTiled8x8Kernels.Block8x8;
using Float4 = GpuCnn.Kernels.GemmTiled8x8Kernels.Float4;
using Row8 = GpuCnn.Kernels.GemmTiled8x8Kernels.Row8;

namespace GpuCnn.Kernels;

/// <summary>
/// Convolution as an implicit GEMM: y (K × N·P·Q) = W (K × C·R·S) · cols (C·R·S × N·P·Q), where the column matrix
/// of im2col is never written — each group gathers its tile of it straight from x into shared memory — and the
/// product is stored in NCHW with the bias and activation applied (no permute pass). The im2col route writes and
/// reads the columns through device memory, R·S times the input: on an H200 that costs as much as cuDNN's whole
/// 3×3 layer (docs/benchmarks.md).
/// <para>
/// A group of Tx × 8 threads computes a tile of 64 filters × 8·Tx output pixels with the 8×8 register blocks of
/// <see cref="GemmTiled8x8Kernels"/> (thread (tx, ty) owns filters 4ty + i and 32 + 4ty + i, pixels 4tx + j and
/// 4Tx + 4tx + j, i, j &lt; 4, read from shared memory as 16-byte loads); 64 filters fit
/// 64- and 128-channel layers without idle rows. Each thread gathers one pixel's column of the tile, 8 taps deep
/// per stage, so its window position is computed once and consecutive threads read consecutive x values; the tap
/// (c, r, s) advances by steps, without divisions. Two shared-memory stages: the next stage's gathered values
/// wait in registers while the current one is multiplied, so one barrier per stage suffices. With
/// <c>depthPerSplit</c> &gt; 0, split z of the grid sums taps [z·depthPerSplit, (z + 1)·depthPerSplit) into its own
/// NCHW slice of y, raw, and <see cref="SumSplits"/> adds the slices in order (deterministic, no atomics).
/// </para>
/// <para>
/// Stride-1 backward-data is the same kernel on the rotated, channel-swapped kernel (docs/02-convolution.md:
/// dx = the full convolution of dy with the 180°-rotated kernel, i.e. a convolution with padding R − 1 − PadH).
/// </para>
/// <para>
/// The filter gradient is the other product of the same two matrices, dW (K × C·R·S) = dy (K × N·P·Q) · colsᵀ,
/// its depth the N·P·Q output pixels (<see cref="FilterGradient"/>): each thread owns one tap (c, r, s) of the tile
/// and gathers 8 pixels per stage; the pixels are split across the grid's z and the partial dW summed in order.
/// Groups are handled by neither kernel (the callers take the other routes for grouped convolutions).
/// </para>
/// </summary>
internal static partial class ConvolutionImplicitGemmKernels
{
    /// <summary>Filters per tile: 8 rows of threads with 8 filters each.</summary>
    public const int TileFilters = 64;

    /// <summary>Taps (depth of the GEMM) per shared-memory stage.</summary>
    public const int Depth = 8;

    /// <summary>Rows of threads in a group (the group is Tx × 8).</summary>
    public const int ThreadRows = 8;

    /// <summary>
    /// Floats per depth row of the filter tile: 64 padded by 4, which keeps rows 16-byte aligned and puts the eight
    /// depths that consecutive threads stage for one filter in eight different banks.
    /// </summary>
    private const int FilterRow = TileFilters + 4;

    /// <summary>A thread's second run of four filters starts this far after its first.</summary>
    private const int HalfFilters = TileFilters / 2;

    /// <summary>
    /// Launch: grid (⌈N·P·Q / 8Tx⌉, ⌈K / 64⌉, splits), group (Tx, 8), dynamic shared memory for two stages
    /// (<see cref="Config"/>). <paramref name="y"/> is the output, or the split slices when depthPerSplit &gt; 0.
    /// </summary>
    public static void Forward<TF>(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Conv2dGeometry g, int depthPerSplit,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        int tx = Group.IdxX, ty = Group.IdxY, threadsX = Group.DimX;
        int threads = threadsX * ThreadRows, thread = (ty * threadsX) + tx;
        int depth = g.C * g.R * g.S, pq = g.P * g.Q, columns = g.N * pq;
        int filter0 = Grid.IdxY * TileFilters, column0 = Grid.IdxX * threads;
        bool split = depthPerSplit > 0;
        int kBegin = split ? Grid.IdxZ * depthPerSplit : 0;
        int kEnd = split ? XMath.Min(depth, kBegin + depthPerSplit) : depth;

        // The column this thread gathers: output pixel (n, p, q), whose window starts at (top, left) of image n.
        var window = Pixel.At(column0 + thread, g).Window(g);
        var shared4 = SharedMemory.GetDynamic<Float4>();
        var shared = shared4.Cast<float>();
        int stageSize = Depth * (FilterRow + threads), tileBOffset = Depth * FilterRow;

        var tap = Tap.At(kBegin, g);
        var staged = Gather(x, g, window, tap, kBegin, kEnd);
        PutColumn(shared, tileBOffset, threads, thread, staged.Values);
        StageFilters(w, shared, 0, g.K, depth, filter0, kBegin, kEnd, thread, threads);
        tap = staged.Next;
        Group.Barrier();

        Block8x8 c = default;
        int stage = 0;
        for (int k0 = kBegin; k0 < kEnd; k0 += Depth)
        {
            bool more = k0 + Depth < kEnd;
            if (more)
            {
                staged = Gather(x, g, window, tap, k0 + Depth, kEnd);
                tap = staged.Next;
            }

            c = MultiplyStage(c, shared4, stage * stageSize, tileBOffset, tx, ty, threadsX);
            if (more)
            {
                // The other stage: every thread finished reading it before the previous barrier.
                int other = (stage ^ 1) * stageSize;
                PutColumn(shared, other + tileBOffset, threads, thread, staged.Values);
                StageFilters(w, shared, other, g.K, depth, filter0, k0 + Depth, kEnd, thread, threads);
            }

            Group.Barrier();
            stage ^= 1;
        }

        // Output offsets of this thread's eight pixels (columns 4tx + j and 4Tx + 4tx + j); −1 past the last pixel.
        int low = column0 + (4 * tx), high = low + (4 * threadsX);
        var pixels = new Offsets8
        {
            V0 = OutputOffset(low, g),
            V1 = OutputOffset(low + 1, g),
            V2 = OutputOffset(low + 2, g),
            V3 = OutputOffset(low + 3, g),
            V4 = OutputOffset(high, g),
            V5 = OutputOffset(high + 1, g),
            V6 = OutputOffset(high + 2, g),
            V7 = OutputOffset(high + 3, g),
        };
        var target = split ? y.SubView((long)Grid.IdxZ * g.OutputSize, g.OutputSize) : y;
        bool raw = split; // a split's slice holds the raw partial sum; SumSplits applies the bias and activation
        int filter = filter0 + (4 * ty);
        StoreRow(target, g, filter, pixels, c.R0, bias, epilogue, raw);
        StoreRow(target, g, filter + 1, pixels, c.R1, bias, epilogue, raw);
        StoreRow(target, g, filter + 2, pixels, c.R2, bias, epilogue, raw);
        StoreRow(target, g, filter + 3, pixels, c.R3, bias, epilogue, raw);
        StoreRow(target, g, filter + HalfFilters, pixels, c.R4, bias, epilogue, raw);
        StoreRow(target, g, filter + HalfFilters + 1, pixels, c.R5, bias, epilogue, raw);
        StoreRow(target, g, filter + HalfFilters + 2, pixels, c.R6, bias, epilogue, raw);
        StoreRow(target, g, filter + HalfFilters + 3, pixels, c.R7, bias, epilogue, raw);
    }

    /// <summary>
    /// Launch: grid (⌈C·R·S / 8Tx⌉, ⌈K / 64⌉, splits), group (Tx, 8), the shared memory of <see cref="Config"/>. dW
    /// (K × C·R·S) = Σ over pixels j of dy[k, j]·cols[(c, r, s), j]; with pixelsPerSplit &gt; 0 split z sums pixels
    /// [z·pixelsPerSplit, (z + 1)·pixelsPerSplit) into slice z of <paramref name="dw"/> (K·C·R·S floats each), for
    /// <see cref="ReductionKernels.SumSlices"/>.
    /// </summary>
    public static void FilterGradient(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw, Conv2dGeometry g, int pixelsPerSplit)
    {
        int tx = Group.IdxX, ty = Group.IdxY, threadsX = Group.DimX;
        int threads = threadsX * ThreadRows, thread = (ty * threadsX) + tx;
        int taps = g.C * g.R * g.S, pq = g.P * g.Q, pixels = g.N * pq;
        int filter0 = Grid.IdxY * TileFilters, tap0 = Grid.IdxX * threads;
        bool split = pixelsPerSplit > 0;
        int jBegin = split ? Grid.IdxZ * pixelsPerSplit : 0;
        int jEnd = split ? XMath.Min(pixels, jBegin + pixelsPerSplit) : pixels;

        // This thread's tap (its column of the tile) and, for staging dy, the pixel it reads in each stage: j0 + (thread & 7).
        int ownTap = tap0 + thread;
        var tap = ownTap < taps ? Tap.At(ownTap, g) : new Tap(-1, 0, 0);
        var shared4 = SharedMemory.GetDynamic<Float4>();
        var shared = shared4.Cast<float>();
        int stageSize = Depth * (FilterRow + threads), tileBOffset = Depth * FilterRow;
        var cursor = Pixel.At(jBegin, g);
        var dyPixel = Pixel.At(jBegin + (thread & (Depth - 1)), g);

        var staged = GatherPixels(x, g, tap, cursor, jBegin, jEnd);
        PutColumn(shared, tileBOffset, threads, thread, staged.Values);
        StageGradients(dy, shared, 0, g, filter0, dyPixel, jBegin + (thread & (Depth - 1)) < jEnd, thread, threads);
        cursor = staged.Next;
        Group.Barrier();

        Block8x8 c = default;
        int stage = 0;
        for (int j0 = jBegin; j0 < jEnd; j0 += Depth)
        {
            bool more = j0 + Depth < jEnd;
            if (more)
            {
                staged = GatherPixels(x, g, tap, cursor, j0 + Depth, jEnd);
                cursor = staged.Next;
            }

            c = MultiplyStage(c, shared4, stage * stageSize, tileBOffset, tx, ty, threadsX);
            if (more)
            {
                int other = (stage ^ 1) * stageSize;
                PutColumn(shared, other + tileBOffset, threads, thread, staged.Values);
                dyPixel = dyPixel.Advance(Depth, g);
                StageGradients(dy, shared, other, g, filter0, dyPixel, j0 + Depth + (thread & (Depth - 1)) < jEnd, thread, threads);
            }

            Group.Barrier();
            stage ^= 1;
        }

        var target = split ? dw.SubView((long)Grid.IdxZ * g.K * taps, g.K * taps) : dw;
        int column = tap0 + (4 * tx), half = 4 * threadsX, filter = filter0 + (4 * ty);
        StoreTaps(target, g, filter, column, half, c.R0);
        StoreTaps(target, g, filter + 1, column, half, c.R1);
        StoreTaps(target, g, filter + 2, column, half, c.R2);
        StoreTaps(target, g, filter + 3, column, half, c.R3);
        StoreTaps(target, g, filter + HalfFilters, column, half, c.R4);
        StoreTaps(target, g, filter + HalfFilters + 1, column, half, c.R5);
        StoreTaps(target, g, filter + HalfFilters + 2, column, half, c.R6);
        StoreTaps(target, g, filter + HalfFilters + 3, column, half, c.R7);
    }

    /// <summary>Filter-gradient tiles along the taps (x) and the filters (y).</summary>
    public static Index2D FilterGradientTiles(Conv2dGeometry g, int threadsX)
    {
        int taps = threadsX * ThreadRows;
        return new Index2D(((g.C * g.R * g.S) + taps - 1) / taps, (g.K + TileFilters - 1) / TileFilters);
    }

    /// <summary>The launch shape of <see cref="FilterGradient"/>.</summary>
    public static KernelConfig FilterGradientConfig(Conv2dGeometry g, int threadsX, int splits = 1)
    {
        var tiles = FilterGradientTiles(g, threadsX);
        return new KernelConfig(new Index3D(tiles.X, tiles.Y, splits), new Index3D(threadsX, ThreadRows, 1), StageMemory(threadsX));
    }

    /// <summary>The launch shape for groups of <paramref name="threadsX"/> × 8 threads, times <paramref name="splits"/> along z.</summary>
    public static KernelConfig Config(Conv2dGeometry g, int threadsX, int splits = 1)
    {
        var tiles = Tiles(g, threadsX);
        return new KernelConfig(new Index3D(tiles.X, tiles.Y, splits), new Index3D(threadsX, ThreadRows, 1), StageMemory(threadsX));
    }

    /// <summary>Two stages of a filter tile (64 filters, rows padded) and a pixel or tap tile (8·Tx), <see cref="Depth"/> deep.</summary>
    private static SharedMemoryConfig StageMemory(int threadsX) =>
        SharedMemoryConfig.RequestDynamic<Float4>(2 * Depth * (FilterRow + (threadsX * ThreadRows)) / 4);

    /// <summary>Tiles along the output pixels (x) and the filters (y).</summary>
    public static Index2D Tiles(Conv2dGeometry g, int threadsX)
    {
        int pixels = threadsX * ThreadRows;
        return new Index2D(((g.N * g.P * g.Q) + pixels - 1) / pixels, (g.K + TileFilters - 1) / TileFilters);
    }

    /// <summary>y[i] = f(Σ_z partial[z·|y| + i] + b[k]) for i in NCHW with k its channel; slices summed in split order.</summary>
    public static void SumSplits<TF>(Index1D i, ArrayView<float> partial, ArrayView<float> y, Conv2dGeometry g, int splits,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        int size = g.OutputSize;
        float sum = 0f;
        for (int z = 0; z < splits; z++)
        {
            sum += partial[((long)z * size) + i];
        }

        y[i] = epilogue.Apply(sum, bias, i / (g.P * g.Q) % g.K);
    }

    /// <summary>
    /// The stride-1 backward-data geometry: dx (N, C, H, W) = the convolution of dy (N, K, P, Q) with the rotated
    /// kernel (C, K, R, S) at padding R − 1 − PadH (S − 1 − PadW), whose output is H × W.
    /// </summary>
    public static Conv2dGeometry BackwardDataGeometry(Conv2dGeometry g) =>
        new(g.N, g.K, g.P, g.Q, g.C, g.R, g.S, 1, 1, g.R - 1 - g.PadH, g.S - 1 - g.PadW);

    /// <summary>Whether the backward data of <paramref name="g"/> is a forward convolution this kernel runs.</summary>
    public static bool RunsBackwardData(Conv2dGeometry g) =>
        g.IsPlain && g.StrideH == 1 && g.StrideW == 1 && g.PadH <= g.R - 1 && g.PadW <= g.S - 1;

    /// <summary>
    /// One stage of the product: acc[i][j] += Σ_kk tileA[kk, filter i] · tileB[kk, column j] for this thread's filters
    /// 4ty + i, 32 + 4ty + i and columns 4tx + j, 4Tx + 4tx + j (i, j &lt; 4) of the group's 64 filters and 8·Tx pixels
    /// or taps; <paramref name="tileA"/> and <paramref name="tileBOffset"/> in floats.
    /// </summary>
    private static Block8x8 MultiplyStage(Block8x8 acc, ArrayView<Float4> shared, int tileA, int tileBOffset, int tx, int ty, int threadsX)
    {
        int rowB = threadsX * ThreadRows / 4; // Float4s per depth row of the pixel tile
        int filters = (tileA / 4) + ty, columns = ((tileA + tileBOffset) / 4) + tx;
        for (int kk = 0; kk < Depth; kk++)
        {
            acc = Block8x8.MultiplyAdd(acc, shared[filters], shared[filters + (HalfFilters / 4)], Row8.Of(shared[columns], shared[columns + threadsX]));
            filters += FilterRow / 4;
            columns += rowB;
        }

        return acc;
    }

    /// <summary>This thread's tap at the 8 pixels j0 … j0 + 7 (cols[(c, r, s), j]), and the pixel after them.</summary>
    private static StagedPixels GatherPixels(ArrayView<float> x, Conv2dGeometry g, Tap tap, Pixel at, int j0, int jEnd)
    {
        var p1 = at.Next(g);
        var p2 = p1.Next(g);
        var p3 = p2.Next(g);
        var p4 = p3.Next(g);
        var p5 = p4.Next(g);
        var p6 = p5.Next(g);
        var p7 = p6.Next(g);
        return new StagedPixels
        {
            Values = new Row8
            {
                V0 = Load(x, g, at.Window(g), tap, j0 < jEnd && tap.C >= 0),
                V1 = Load(x, g, p1.Window(g), tap, j0 + 1 < jEnd && tap.C >= 0),
                V2 = Load(x, g, p2.Window(g), tap, j0 + 2 < jEnd && tap.C >= 0),
                V3 = Load(x, g, p3.Window(g), tap, j0 + 3 < jEnd && tap.C >= 0),
                V4 = Load(x, g, p4.Window(g), tap, j0 + 4 < jEnd && tap.C >= 0),
                V5 = Load(x, g, p5.Window(g), tap, j0 + 5 < jEnd && tap.C >= 0),
                V6 = Load(x, g, p6.Window(g), tap, j0 + 6 < jEnd && tap.C >= 0),
                V7 = Load(x, g, p7.Window(g), tap, j0 + 7 < jEnd && tap.C >= 0),
            },
            Next = p7.Next(g),
        };
    }

    /// <summary>
    /// tile[kk, m] = dy[n, filter0 + m, p, q] for the pixel j0 + kk (0 outside), 64 × 8 values; a thread's values all
    /// share kk = thread mod 8 (the group has a multiple of 8 threads), so it tracks that one pixel, <paramref name="pixel"/>.
    /// </summary>
    private static void StageGradients(ArrayView<float> dy, ArrayView<float> shared, int at, Conv2dGeometry g, int filter0, Pixel pixel,
        bool inDepth, int thread, int threads)
    {
        int pq = g.P * g.Q, spatial = (pixel.P * g.Q) + pixel.Q;
        for (int i = thread; i < Depth * TileFilters; i += threads)
        {
            int m = i >> 3, kk = i & (Depth - 1);
            int filter = filter0 + m;
            shared[at + (kk * FilterRow) + m] = inDepth && filter < g.K ? dy[(((pixel.N * g.K) + filter) * pq) + spatial] : 0f;
        }
    }

    /// <summary>dW[filter, column + j] and dW[filter, column + half + j] for j &lt; 4 (row-major K × C·R·S), within range.</summary>
    private static void StoreTaps(ArrayView<float> dw, Conv2dGeometry g, int filter, int column, int half, Row8 v)
    {
        int taps = g.C * g.R * g.S;
        if (filter >= g.K)
        {
            return;
        }

        int row = filter * taps;
        StoreTap(dw, row, column, taps, v.V0);
        StoreTap(dw, row, column + 1, taps, v.V1);
        StoreTap(dw, row, column + 2, taps, v.V2);
        StoreTap(dw, row, column + 3, taps, v.V3);
        StoreTap(dw, row, column + half, taps, v.V4);
        StoreTap(dw, row, column + half + 1, taps, v.V5);
        StoreTap(dw, row, column + half + 2, taps, v.V6);
        StoreTap(dw, row, column + half + 3, taps, v.V7);
    }

    private static void StoreTap(ArrayView<float> dw, int row, int column, int taps, float value)
    {
        if (column < taps)
        {
            dw[row + column] = value;
        }
    }

    /// <summary>The eight taps of one stage of this thread's column, and the tap after them.</summary>
    private static Staged Gather(ArrayView<float> x, Conv2dGeometry g, Window window, Tap tap, int k0, int kEnd)
    {
        var t1 = tap.Next(g);
        var t2 = t1.Next(g);
        var t3 = t2.Next(g);
        var t4 = t3.Next(g);
        var t5 = t4.Next(g);
        var t6 = t5.Next(g);
        var t7 = t6.Next(g);
        return new Staged
        {
            Values = new Row8
            {
                V0 = Load(x, g, window, tap, k0 < kEnd),
                V1 = Load(x, g, window, t1, k0 + 1 < kEnd),
                V2 = Load(x, g, window, t2, k0 + 2 < kEnd),
                V3 = Load(x, g, window, t3, k0 + 3 < kEnd),
                V4 = Load(x, g, window, t4, k0 + 4 < kEnd),
                V5 = Load(x, g, window, t5, k0 + 5 < kEnd),
                V6 = Load(x, g, window, t6, k0 + 6 < kEnd),
                V7 = Load(x, g, window, t7, k0 + 7 < kEnd),
            },
            Next = t7.Next(g),
        };
    }

    /// <summary>x[n, c, top + r·Dh, left + s·Dw] for the window's pixel and the tap; 0 in the padding and past the ends.</summary>
    private static float Load(ArrayView<float> x, Conv2dGeometry g, Window window, Tap tap, bool inDepth)
    {
        int h = window.Top + (tap.R * g.DilationH), col = window.Left + (tap.S * g.DilationW);
        if (!inDepth || window.Image < 0 || (uint)h >= (uint)g.H || (uint)col >= (uint)g.W)
        {
            return 0f;
        }

        return x[((((window.Image * g.C) + tap.C) * g.H) + h) * g.W + col];
    }

    /// <summary>Stores a thread's eight gathered taps in its column of the tile: tile[kk, thread].</summary>
    private static void PutColumn(ArrayView<float> shared, int at, int threads, int thread, Row8 v)
    {
        shared[at + thread] = v.V0;
        shared[at + threads + thread] = v.V1;
        shared[at + (2 * threads) + thread] = v.V2;
        shared[at + (3 * threads) + thread] = v.V3;
        shared[at + (4 * threads) + thread] = v.V4;
        shared[at + (5 * threads) + thread] = v.V5;
        shared[at + (6 * threads) + thread] = v.V6;
        shared[at + (7 * threads) + thread] = v.V7;
    }

    /// <summary>
    /// tile[kk, m] = W[filter0 + m, k0 + kk] (0 outside), 64 × 8 values shared by the group's threads; consecutive
    /// threads read consecutive taps of one filter (W is row-major, K × C·R·S).
    /// </summary>
    private static void StageFilters(ArrayView<float> w, ArrayView<float> shared, int at, int filters, int depth, int filter0, int k0,
        int kEnd, int thread, int threads)
    {
        for (int i = thread; i < Depth * TileFilters; i += threads)
        {
            int m = i >> 3, kk = i & (Depth - 1);
            int filter = filter0 + m, tap = k0 + kk;
            shared[at + (kk * FilterRow) + m] = filter < filters && tap < kEnd ? w[(filter * depth) + tap] : 0f;
        }
    }

    /// <summary>Where output pixel <paramref name="column"/> (n·P·Q + p·Q + q) of channel 0 lives in NCHW y; −1 past the last pixel.</summary>
    private static int OutputOffset(int column, Conv2dGeometry g)
    {
        int pq = g.P * g.Q;
        if (column >= g.N * pq)
        {
            return -1;
        }

        int n = column / pq;
        return (n * g.K * pq) + (column - (n * pq));
    }

    private static void StoreRow<TF>(ArrayView<float> y, Conv2dGeometry g, int filter, Offsets8 pixels, Row8 v, ArrayView<float> bias,
        Epilogue<TF> epilogue, bool raw)
        where TF : struct, IActivationFunction
    {
        if (filter >= g.K)
        {
            return;
        }

        int channel = filter * g.P * g.Q;
        StoreOne(y, pixels.V0, channel, v.V0, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V1, channel, v.V1, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V2, channel, v.V2, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V3, channel, v.V3, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V4, channel, v.V4, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V5, channel, v.V5, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V6, channel, v.V6, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V7, channel, v.V7, bias, filter, epilogue, raw);
    }

    private static void StoreOne<TF>(ArrayView<float> y, int pixel, int channel, float value, ArrayView<float> bias, int filter,
        Epilogue<TF> epilogue, bool raw)
        where TF : struct, IActivationFunction
    {
        if (pixel >= 0)
        {
            y[pixel + channel] = raw ? value : epilogue.Apply(value, bias, filter);
        }
    }

    /// <summary>One column of the implicit im2col matrix: image n (−1 past the last image) and its window's top-left corner.</summary>
    private readonly struct Window(int image, int top, int left)
    {
        public int Image { get; } = image;

        public int Top { get; } = top;

        public int Left { get; } = left;
    }

    /// <summary>A tap (c, r, s) of the depth index (c·R + r)·S + s, stepped without divisions.</summary>
    private readonly struct Tap(int c, int r, int s)
    {
        public int C { get; } = c;

        public int R { get; } = r;

        public int S { get; } = s;

        public static Tap At(int index, Conv2dGeometry g)
        {
            int rs = g.R * g.S, c = index / rs, rest = index - (c * rs);
            int r = rest / g.S;
            return new Tap(c, r, rest - (r * g.S));
        }

        public Tap Next(Conv2dGeometry g)
        {
            bool rowEnd = S + 1 == g.S;
            bool channelEnd = rowEnd && R + 1 == g.R;
            return new Tap(channelEnd ? C + 1 : C, channelEnd ? 0 : rowEnd ? R + 1 : R, rowEnd ? 0 : S + 1);
        }
    }

    /// <summary>An output pixel (n, p, q), stepped along n·P·Q + p·Q + q without divisions.</summary>
    private readonly struct Pixel(int n, int p, int q)
    {
        public int N { get; } = n;

        public int P { get; } = p;

        public int Q { get; } = q;

        public static Pixel At(int index, Conv2dGeometry g)
        {
            int pq = g.P * g.Q, n = index / pq, rest = index - (n * pq);
            int p = rest / g.Q;
            return new Pixel(n, p, rest - (p * g.Q));
        }

        public Pixel Next(Conv2dGeometry g)
        {
            bool rowEnd = Q + 1 == g.Q;
            bool imageEnd = rowEnd && P + 1 == g.P;
            return new Pixel(imageEnd ? N + 1 : N, imageEnd ? 0 : rowEnd ? P + 1 : P, rowEnd ? 0 : Q + 1);
        }

        /// <summary>The pixel <paramref name="steps"/> further on (a few row wraps per stage at most).</summary>
        public Pixel Advance(int steps, Conv2dGeometry g)
        {
            int n = N, p = P, q = Q + steps;
            while (q >= g.Q)
            {
                q -= g.Q;
                p++;
                if (p == g.P)
                {
                    p = 0;
                    n++;
                }
            }

            return new Pixel(n, p, q);
        }

        /// <summary>The window of this pixel (image −1 past the last image: loads then read as zero).</summary>
        public Window Window(Conv2dGeometry g) => new(N < g.N ? N : -1, (P * g.StrideH) - g.PadH, (Q * g.StrideW) - g.PadW);
    }

    private struct StagedPixels
    {
        public Row8 Values;
        public Pixel Next;
    }

    private struct Staged
    {
        public Row8 Values;
        public Tap Next;
    }

    private struct Offsets8
    {
        public int V0, V1, V2, V3, V4, V5, V6, V7;
    }
}
