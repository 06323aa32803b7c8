using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Float4 = GpuCnn.Kernels.GemmTiled8x8Kernels.Float4;

namespace GpuCnn.Kernels;

/// <summary>
/// The implicit GEMM with tiles of 32 filters, for layers of at most 32 (the 64-filter tiles of <see cref="Forward"/>
/// and <see cref="FilterGradient"/> run a 16-filter layer a quarter full). A group of Tx × 4 threads computes 32
/// filters × 4·Tx pixels (or taps): thread (tx, ty) owns filters 4ty + i and 16 + 4ty + i and columns 4tx + j
/// (i, j &lt; 4), 32 accumulators read from shared memory as three 16-byte loads per depth step, so each thread still
/// gathers exactly one column of the tile, as in the 64-filter kernels, whose gather, staging and stepping helpers
/// these share. Kept as separate kernels so that the 64-filter ones compile as they were measured.
/// <see cref="ForwardNarrow16"/> is the forward on tiles of 16 filters (thread (tx, ty) owns filters 4ty + i: 16
/// accumulators, two 16-byte loads per depth step), for layers of at most 16 — one generic body, the thread's block
/// of results (<see cref="INarrowBlock{TSelf}"/>) its type argument.
/// </summary>
internal static partial class ConvolutionImplicitGemmKernels
{
    /// <summary>Filters per narrow tile: 4 rows of threads with 8 filters each.</summary>
    public const int NarrowFilters = 32;

    /// <summary>Rows of threads in a narrow group (the group is Tx × 4).</summary>
    public const int NarrowRows = 4;

    /// <summary>Filters per tile of <see cref="ForwardNarrow16"/>: 4 rows of threads with 4 filters each.</summary>
    public const int Narrow16Filters = 16;

    /// <summary>Floats per depth row of a narrow filter tile of <paramref name="filters"/>: padded by 4 (16-byte rows; eight depths, eight banks).</summary>
    private static int NarrowFilterRow(int filters) => filters + 4;

    /// <summary>A thread's second run of four filters (32-filter tiles) starts this far after its first.</summary>
    private const int NarrowHalf = NarrowFilters / 2;

    /// <summary>
    /// <see cref="Forward"/> on 32-filter tiles. Launch: grid (⌈N·P·Q / 4Tx⌉, ⌈K / 32⌉, splits), group (Tx, 4),
    /// <see cref="NarrowConfig"/>.
    /// </summary>
    public static void ForwardNarrow<TF>(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Conv2dGeometry g, int depthPerSplit,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction =>
        ForwardNarrowTiles<TF, Block8x4>(x, w, y, g, depthPerSplit, bias, epilogue);

    /// <summary>
    /// <see cref="Forward"/> on 16-filter tiles. Launch: grid (⌈N·P·Q / 4Tx⌉, ⌈K / 16⌉, splits), group (Tx, 4),
    /// <see cref="NarrowConfig"/> for 16 filters.
    /// </summary>
    public static void ForwardNarrow16<TF>(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Conv2dGeometry g, int depthPerSplit,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction =>
        ForwardNarrowTiles<TF, Block4x4>(x, w, y, g, depthPerSplit, bias, epilogue);

    /// <summary>The narrow forward, on tiles of <typeparamref name="TBlock"/>'s filters.</summary>
    private static void ForwardNarrowTiles<TF, TBlock>(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Conv2dGeometry g,
        int depthPerSplit, ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
        where TBlock : struct, INarrowBlock<TBlock>
    {
        int tileFilters = default(TBlock).Filters, filterRow = NarrowFilterRow(tileFilters);
        int tx = Group.IdxX, ty = Group.IdxY, threadsX = Group.DimX;
        int threads = threadsX * NarrowRows, thread = (ty * threadsX) + tx;
        int depth = g.C * g.R * g.S;
        int filter0 = Grid.IdxY * tileFilters, column0 = Grid.IdxX * threads;
        bool split = depthPerSplit > 0;
        int kBegin = split ? Grid.IdxZ * depthPerSplit : 0;
        int kEnd = split ? XMath.Min(depth, kBegin + depthPerSplit) : depth;

        var window = Pixel.At(column0 + thread, g).Window(g);
        var shared4 = SharedMemory.GetDynamic<Float4>();
        var shared = shared4.Cast<float>();
        int stageSize = Depth * (filterRow + threads), tileBOffset = Depth * filterRow;

        var tap = Tap.At(kBegin, g);
        var staged = Gather(x, g, window, tap, kBegin, kEnd);
        PutColumn(shared, tileBOffset, threads, thread, staged.Values);
        StageNarrowFilters(w, shared, 0, tileFilters, g.K, depth, filter0, kBegin, kEnd, thread, threads);
        tap = staged.Next;
        Group.Barrier();

        TBlock c = default;
        int stage = 0;
        for (int k0 = kBegin; k0 < kEnd; k0 += Depth)
        {
            bool more = k0 + Depth < kEnd;
            if (more)
            {
                staged = Gather(x, g, window, tap, k0 + Depth, kEnd);
                tap = staged.Next;
            }

            c = MultiplyStage(c, shared4, stage * stageSize, tileBOffset, tx, ty, threads);
            if (more)
            {
                int other = (stage ^ 1) * stageSize;
                PutColumn(shared, other + tileBOffset, threads, thread, staged.Values);
                StageNarrowFilters(w, shared, other, tileFilters, g.K, depth, filter0, k0 + Depth, kEnd, thread, threads);
            }

            Group.Barrier();
            stage ^= 1;
        }

        // Output offsets of this thread's four pixels (columns 4tx + j); −1 past the last pixel.
        int low = column0 + (4 * tx);
        var pixels = new Offsets4
        {
            V0 = OutputOffset(low, g),
            V1 = OutputOffset(low + 1, g),
            V2 = OutputOffset(low + 2, g),
            V3 = OutputOffset(low + 3, g),
        };
        var target = split ? y.SubView((long)Grid.IdxZ * g.OutputSize, g.OutputSize) : y;
        c.StoreRows(target, g, filter0 + (4 * ty), pixels, bias, epilogue, split);
    }

    /// <summary>
    /// <see cref="FilterGradient"/> on 32-filter tiles: dW tiles of 32 filters × 4·Tx taps. Launch: grid
    /// (⌈C·R·S / 4Tx⌉, ⌈K / 32⌉, splits), group (Tx, 4), <see cref="NarrowConfig"/>.
    /// </summary>
    public static void FilterGradientNarrow(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw, Conv2dGeometry g, int pixelsPerSplit)
    {
        int tx = Group.IdxX, ty = Group.IdxY, threadsX = Group.DimX;
        int threads = threadsX * NarrowRows, thread = (ty * threadsX) + tx;
        int taps = g.C * g.R * g.S, pixels = g.N * g.P * g.Q;
        int filter0 = Grid.IdxY * NarrowFilters, tap0 = Grid.IdxX * threads;
        bool split = pixelsPerSplit > 0;
        int jBegin = split ? Grid.IdxZ * pixelsPerSplit : 0;
        int jEnd = split ? XMath.Min(pixels, jBegin + pixelsPerSplit) : pixels;

        int ownTap = tap0 + thread;
        var tap = ownTap < taps ? Tap.At(ownTap, g) : new Tap(-1, 0, 0);
        var shared4 = SharedMemory.GetDynamic<Float4>();
        var shared = shared4.Cast<float>();
        int stageSize = Depth * (NarrowFilterRow(NarrowFilters) + threads), tileBOffset = Depth * NarrowFilterRow(NarrowFilters);
        var cursor = Pixel.At(jBegin, g);
        var dyPixel = Pixel.At(jBegin + (thread & (Depth - 1)), g);

        var staged = GatherPixels(x, g, tap, cursor, jBegin, jEnd);
        PutColumn(shared, tileBOffset, threads, thread, staged.Values);
        StageNarrowGradients(dy, shared, 0, g, filter0, dyPixel, jBegin + (thread & (Depth - 1)) < jEnd, thread, threads);
        cursor = staged.Next;
        Group.Barrier();

        Block8x4 c = default;
        int stage = 0;
        for (int j0 = jBegin; j0 < jEnd; j0 += Depth)
        {
            bool more = j0 + Depth < jEnd;
            if (more)
            {
                staged = GatherPixels(x, g, tap, cursor, j0 + Depth, jEnd);
                cursor = staged.Next;
            }

            c = MultiplyStage(c, shared4, stage * stageSize, tileBOffset, tx, ty, threads);
            if (more)
            {
                int other = (stage ^ 1) * stageSize;
                PutColumn(shared, other + tileBOffset, threads, thread, staged.Values);
                dyPixel = dyPixel.Advance(Depth, g);
                StageNarrowGradients(dy, shared, other, g, filter0, dyPixel, j0 + Depth + (thread & (Depth - 1)) < jEnd, thread, threads);
            }

            Group.Barrier();
            stage ^= 1;
        }

        var target = split ? dw.SubView((long)Grid.IdxZ * g.K * taps, g.K * taps) : dw;
        int column = tap0 + (4 * tx), filter = filter0 + (4 * ty);
        StoreNarrowTaps(target, g, filter, column, c.R0);
        StoreNarrowTaps(target, g, filter + 1, column, c.R1);
        StoreNarrowTaps(target, g, filter + 2, column, c.R2);
        StoreNarrowTaps(target, g, filter + 3, column, c.R3);
        StoreNarrowTaps(target, g, filter + NarrowHalf, column, c.R4);
        StoreNarrowTaps(target, g, filter + NarrowHalf + 1, column, c.R5);
        StoreNarrowTaps(target, g, filter + NarrowHalf + 2, column, c.R6);
        StoreNarrowTaps(target, g, filter + NarrowHalf + 3, column, c.R7);
    }

    /// <summary>Narrow tiles of <paramref name="filters"/> (32 or 16) along the output pixels (x) and the filters (y).</summary>
    public static Index2D NarrowTiles(Conv2dGeometry g, int threadsX, int filters = NarrowFilters)
    {
        int columns = threadsX * NarrowRows;
        return new Index2D(((g.N * g.P * g.Q) + columns - 1) / columns, (g.K + filters - 1) / filters);
    }

    /// <summary>Narrow filter-gradient tiles along the taps (x) and the filters (y).</summary>
    public static Index2D NarrowFilterGradientTiles(Conv2dGeometry g, int threadsX)
    {
        int columns = threadsX * NarrowRows;
        return new Index2D(((g.C * g.R * g.S) + columns - 1) / columns, (g.K + NarrowFilters - 1) / NarrowFilters);
    }

    /// <summary>
    /// The launch shape of the narrow kernels over <paramref name="tiles"/> of <paramref name="filters"/>: groups of
    /// Tx × 4 threads, two stages of shared memory.
    /// </summary>
    public static KernelConfig NarrowConfig(Index2D tiles, int threadsX, int splits = 1, int filters = NarrowFilters) =>
        new(new Index3D(tiles.X, tiles.Y, splits), new Index3D(threadsX, NarrowRows, 1),
            SharedMemoryConfig.RequestDynamic<Float4>(2 * Depth * (NarrowFilterRow(filters) + (threadsX * NarrowRows)) / 4));

    /// <summary>
    /// One stage of a narrow product: acc[i][j] += Σ_kk tileA[kk, filter i] · tileB[kk, column j] for this thread's
    /// filters (from 4ty) and columns 4tx + j; offsets in floats.
    /// </summary>
    private static TBlock MultiplyStage<TBlock>(TBlock acc, ArrayView<Float4> shared, int tileA, int tileBOffset, int tx, int ty, int threads)
        where TBlock : struct, INarrowBlock<TBlock>
    {
        int filters = (tileA / 4) + ty, columns = ((tileA + tileBOffset) / 4) + tx;
        for (int kk = 0; kk < Depth; kk++)
        {
            acc = acc.Step(shared, filters, columns);
            filters += NarrowFilterRow(acc.Filters) / 4;
            columns += threads / 4;
        }

        return acc;
    }

    /// <summary>
    /// tile[kk, m] = W[filter0 + m, k0 + kk] (0 outside), <paramref name="tileFilters"/> × 8 values; consecutive threads
    /// read consecutive taps.
    /// </summary>
    private static void StageNarrowFilters(ArrayView<float> w, ArrayView<float> shared, int at, int tileFilters, int filters, int depth,
        int filter0, int k0, int kEnd, int thread, int threads)
    {
        int row = NarrowFilterRow(tileFilters);
        for (int i = thread; i < Depth * tileFilters; i += threads)
        {
            int m = i >> 3, kk = i & (Depth - 1);
            int filter = filter0 + m, tap = k0 + kk;
            shared[at + (kk * row) + m] = filter < filters && tap < kEnd ? w[(filter * depth) + tap] : 0f;
        }
    }

    /// <summary>tile[kk, m] = dy[n, filter0 + m, p, q] for the pixel j0 + kk (0 outside), 32 × 8 values; kk = thread mod 8, as <see cref="StageGradients"/>.</summary>
    private static void StageNarrowGradients(ArrayView<float> dy, ArrayView<float> shared, int at, Conv2dGeometry g, int filter0, Pixel pixel,
        bool inDepth, int thread, int threads)
    {
        int pq = g.P * g.Q, spatial = (pixel.P * g.Q) + pixel.Q;
        for (int i = thread; i < Depth * NarrowFilters; i += threads)
        {
            int m = i >> 3, kk = i & (Depth - 1);
            int filter = filter0 + m;
            shared[at + (kk * NarrowFilterRow(NarrowFilters)) + m] = inDepth && filter < g.K ? dy[(((pixel.N * g.K) + filter) * pq) + spatial] : 0f;
        }
    }

    private static void StoreNarrowRow<TF>(ArrayView<float> y, Conv2dGeometry g, int filter, Offsets4 pixels, Float4 v, ArrayView<float> bias,
        Epilogue<TF> epilogue, bool raw)
        where TF : struct, IActivationFunction
    {
        if (filter >= g.K)
        {
            return;
        }

        int channel = filter * g.P * g.Q;
        StoreOne(y, pixels.V0, channel, v.X, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V1, channel, v.Y, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V2, channel, v.Z, bias, filter, epilogue, raw);
        StoreOne(y, pixels.V3, channel, v.W, bias, filter, epilogue, raw);
    }

    /// <summary>dW[filter, column + j] for j &lt; 4 (row-major K × C·R·S), within range.</summary>
    private static void StoreNarrowTaps(ArrayView<float> dw, Conv2dGeometry g, int filter, int column, Float4 v)
    {
        int taps = g.C * g.R * g.S;
        if (filter >= g.K)
        {
            return;
        }

        int row = filter * taps;
        StoreTap(dw, row, column, taps, v.X);
        StoreTap(dw, row, column + 1, taps, v.Y);
        StoreTap(dw, row, column + 2, taps, v.Z);
        StoreTap(dw, row, column + 3, taps, v.W);
    }

    private struct Offsets4
    {
        public int V0, V1, V2, V3;
    }

    /// <summary>
    /// What the narrow kernels need of a thread's block of results: its tile's filters, a depth step's products (the
    /// stage loop is <see cref="MultiplyStage{TBlock}"/>), the forward's stores.
    /// </summary>
    private interface INarrowBlock<TSelf>
        where TSelf : struct, INarrowBlock<TSelf>
    {
        /// <summary>Filters per tile (4 rows of threads).</summary>
        int Filters { get; }

        /// <summary>
        /// This block plus one depth step: acc[i][j] += tileA[filter i] · tileB[column j] for this thread's filters, the
        /// first four at Float4 <paramref name="filters"/> of <paramref name="shared"/>, and its four columns at Float4
        /// <paramref name="columns"/>.
        /// </summary>
        TSelf Step(ArrayView<Float4> shared, int filters, int columns);

        /// <summary>Stores the block's rows, the first of them filter <paramref name="filter"/> (4ty of the tile).</summary>
        void StoreRows<TF>(ArrayView<float> y, Conv2dGeometry g, int filter, Offsets4 pixels, ArrayView<float> bias, Epilogue<TF> epilogue, bool raw)
            where TF : struct, IActivationFunction;
    }

    /// <summary>A thread's 8 × 4 results of a 32-filter tile: row i of its eight filters, four columns each.</summary>
    private readonly struct Block8x4(Float4 r0, Float4 r1, Float4 r2, Float4 r3, Float4 r4, Float4 r5, Float4 r6, Float4 r7)
        : INarrowBlock<Block8x4>
    {
        public Float4 R0 { get; } = r0;

        public Float4 R1 { get; } = r1;

        public Float4 R2 { get; } = r2;

        public Float4 R3 { get; } = r3;

        public Float4 R4 { get; } = r4;

        public Float4 R5 { get; } = r5;

        public Float4 R6 { get; } = r6;

        public Float4 R7 { get; } = r7;

        public int Filters => NarrowFilters;

        /// <summary>Filters 4ty + i and 16 + 4ty + i.</summary>
        public Block8x4 Step(ArrayView<Float4> shared, int filters, int columns) =>
            MultiplyAdd(this, shared[filters], shared[filters + (NarrowHalf / 4)], shared[columns]);

        /// <summary>The two runs of four filters, each as a <see cref="Block4x4"/> stores its rows.</summary>
        public void StoreRows<TF>(ArrayView<float> y, Conv2dGeometry g, int filter, Offsets4 pixels, ArrayView<float> bias, Epilogue<TF> epilogue, bool raw)
            where TF : struct, IActivationFunction
        {
            new Block4x4(R0, R1, R2, R3).StoreRows(y, g, filter, pixels, bias, epilogue, raw);
            new Block4x4(R4, R5, R6, R7).StoreRows(y, g, filter + NarrowHalf, pixels, bias, epilogue, raw);
        }

        /// <summary>acc + a ⊗ b: row i gains a_i · b, the eight a_i as two runs of four (filters 4ty + i and 16 + 4ty + i).</summary>
        public static Block8x4 MultiplyAdd(Block8x4 acc, Float4 low, Float4 high, Float4 b) => new(
            AddScaled(acc.R0, low.X, b),
            AddScaled(acc.R1, low.Y, b),
            AddScaled(acc.R2, low.Z, b),
            AddScaled(acc.R3, low.W, b),
            AddScaled(acc.R4, high.X, b),
            AddScaled(acc.R5, high.Y, b),
            AddScaled(acc.R6, high.Z, b),
            AddScaled(acc.R7, high.W, b));
    }

    /// <summary>A thread's 4 × 4 results of a 16-filter tile: row i of filters 4ty + i, four columns each.</summary>
    private readonly struct Block4x4(Float4 r0, Float4 r1, Float4 r2, Float4 r3) : INarrowBlock<Block4x4>
    {
        public Float4 R0 { get; } = r0;

        public Float4 R1 { get; } = r1;

        public Float4 R2 { get; } = r2;

        public Float4 R3 { get; } = r3;

        public int Filters => Narrow16Filters;

        public Block4x4 Step(ArrayView<Float4> shared, int filters, int columns)
        {
            Float4 a = shared[filters], b = shared[columns];
            return new(AddScaled(R0, a.X, b), AddScaled(R1, a.Y, b), AddScaled(R2, a.Z, b), AddScaled(R3, a.W, b));
        }

        public void StoreRows<TF>(ArrayView<float> y, Conv2dGeometry g, int filter, Offsets4 pixels, ArrayView<float> bias, Epilogue<TF> epilogue, bool raw)
            where TF : struct, IActivationFunction
        {
            StoreNarrowRow(y, g, filter, pixels, R0, bias, epilogue, raw);
            StoreNarrowRow(y, g, filter + 1, pixels, R1, bias, epilogue, raw);
            StoreNarrowRow(y, g, filter + 2, pixels, R2, bias, epilogue, raw);
            StoreNarrowRow(y, g, filter + 3, pixels, R3, bias, epilogue, raw);
        }
    }

    /// <summary>acc + a·b, lane by lane.</summary>
    private static Float4 AddScaled(Float4 acc, float a, Float4 b) => new()
    {
        X = acc.X + (a * b.X),
        Y = acc.Y + (a * b.Y),
        Z = acc.Z + (a * b.Z),
        W = acc.W + (a * b.W),
    };
}
