using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuCnn.Kernels;

/// <summary>
/// The third rung of the GEMM ladder: 8×8 register blocking with double-buffered staging. A square group of T × T
/// threads (a power of two; 16 × 16 on GPUs) computes an 8T × 8T tile of C, so each pair of values read from shared
/// memory feeds 4 multiply-adds instead of the 4×4 kernel's 2. Thread (tx, ty) owns rows ty + i·T and columns
/// tx + j·T (i, j &lt; 8): shared reads are broadcasts along a warp's rows and consecutive along its columns, stores
/// to C are coalesced. Tiles of op(A) and op(B), T/2 deep (4T·T values each, four per thread), go through two
/// shared-memory buffers: each thread loads its values of the next tile into registers, computes the current tile,
/// then stores them into the other buffer, so the global-memory latency hides behind the arithmetic and one barrier
/// per tile suffices. Global reads run along each matrix's contiguous axis; index arithmetic is shifts and masks;
/// rows are padded by one float so the transposing stores avoid bank conflicts. Out-of-range elements load as zero,
/// so any M, N, K and both transposes work; the store applies the <see cref="Epilogue"/>, or writes a raw partial
/// product for split-K (<see cref="GemmShape.DepthPerSplit"/>, combined by <see cref="GemmTiledKernels.SumSplits"/>).
/// </summary>
internal static class GemmTiled8x8Kernels
{
    /// <summary>Register block per thread (rows and columns).</summary>
    public const int Block = 8;

    /// <summary>
    /// Launch: grid (⌈N / 8T⌉, ⌈M / 8T⌉, splits), group (T, T), dynamic shared memory for two stages of two
    /// (T/2) × (8T + 1) tiles (<see cref="Config"/>).
    /// </summary>
    public static void Tiled<TF>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        // The group's side is read at run time: passing it as an ILGPU SpecializedValue (a compile-time constant)
        // measured 12% slower on an H200 (docs/benchmarks.md).
        int tx = Group.IdxX, ty = Group.IdxY, side = Group.DimX;
        var t = new Tiling(side);
        int row0 = Grid.IdxY * t.Tile, col0 = Grid.IdxX * t.Tile;
        var shared = SharedMemory.GetDynamic<float>();
        int thread = (ty * side) + tx;

        bool split = s.DepthPerSplit > 0;
        int kBegin = split ? Grid.IdxZ * s.DepthPerSplit : 0;
        int kEnd = split ? XMath.Min(s.K, kBegin + s.DepthPerSplit) : s.K;
        var nextA = FetchA(a, s, t, thread, row0, kBegin, kEnd);
        var nextB = FetchB(b, s, t, thread, col0, kBegin, kEnd);
        Put(shared, 0, nextA, t, thread, s.TransposeA == 0);
        Put(shared, t.Depth * t.Stride, nextB, t, thread, s.TransposeB != 0);
        Group.Barrier();

        Row8 c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        int stage = 0;
        for (int k0 = kBegin; k0 < kEnd; k0 += t.Depth)
        {
            bool more = k0 + t.Depth < kEnd;
            if (more)
            {
                nextA = FetchA(a, s, t, thread, row0, k0 + t.Depth, kEnd);
                nextB = FetchB(b, s, t, thread, col0, k0 + t.Depth, kEnd);
            }

            int tileA = stage * t.StageSize, tileB = tileA + (t.Depth * t.Stride);
            for (int kk = 0; kk < t.Depth; kk++)
            {
                var av = Row8.Load(shared, tileA + (kk * t.Stride) + ty, side);
                var bv = Row8.Load(shared, tileB + (kk * t.Stride) + tx, side);
                c0 = Row8.MultiplyAdd(c0, av.V0, bv);
                c1 = Row8.MultiplyAdd(c1, av.V1, bv);
                c2 = Row8.MultiplyAdd(c2, av.V2, bv);
                c3 = Row8.MultiplyAdd(c3, av.V3, bv);
                c4 = Row8.MultiplyAdd(c4, av.V4, bv);
                c5 = Row8.MultiplyAdd(c5, av.V5, bv);
                c6 = Row8.MultiplyAdd(c6, av.V6, bv);
                c7 = Row8.MultiplyAdd(c7, av.V7, bv);
            }

            if (more)
            {
                // The other buffer: every thread finished reading it before the previous barrier.
                int other = (stage ^ 1) * t.StageSize;
                Put(shared, other, nextA, t, thread, s.TransposeA == 0);
                Put(shared, other + (t.Depth * t.Stride), nextB, t, thread, s.TransposeB != 0);
            }

            Group.Barrier();
            stage ^= 1;
        }

        // A split stores its raw partial product in its own slice; SumSplits applies α, β and the epilogue.
        var block = new Block8x8(c0, c1, c2, c3, c4, c5, c6, c7);
        if (split)
        {
            var slice = c.SubView((long)Grid.IdxZ * s.M * s.N, (long)s.M * s.N);
            StoreBlock(slice, new GemmShape(s.M, s.N, s.K, 0, 0, 1f, 0f), row0 + ty, col0 + tx, side, block, bias, Epilogue.None);
        }
        else
        {
            StoreBlock(c, s, row0 + ty, col0 + tx, side, block, bias, epilogue);
        }
    }

    /// <summary>The launch shape for square groups of <paramref name="side"/>² threads (a power of two, at least 2), times <paramref name="splits"/> along z.</summary>
    public static KernelConfig Config(GemmShape s, int side, int splits = 1)
    {
        var grid = Tiles(s, side);
        return new KernelConfig(new Index3D(grid.X, grid.Y, splits), new Index3D(side, side, 1),
            SharedMemoryConfig.RequestDynamic<float>(new Tiling(side).StageSize * 2));
    }

    /// <summary>Tiles of C along N (x) and M (y) for square groups of <paramref name="side"/>² threads.</summary>
    public static Index2D Tiles(GemmShape s, int side)
    {
        int tile = side * Block;
        return new Index2D((s.N + tile - 1) / tile, (s.M + tile - 1) / tile);
    }

    /// <summary>
    /// A thread's four values of the next tile of op(A), tile[kk, mm] = op(A)[row0 + mm, k0 + kk], in the order the
    /// group reads A's memory contiguously: along k for row-major A, along m for transposed A.
    /// </summary>
    private static Row4 FetchA(ArrayView<float> a, GemmShape s, Tiling t, int thread, int row0, int k0, int kEnd) => new()
    {
        V0 = LoadA(a, s, t, thread, row0, k0, kEnd),
        V1 = LoadA(a, s, t, thread + t.Threads, row0, k0, kEnd),
        V2 = LoadA(a, s, t, thread + (2 * t.Threads), row0, k0, kEnd),
        V3 = LoadA(a, s, t, thread + (3 * t.Threads), row0, k0, kEnd),
    };

    /// <summary>The same for op(B): tile[kk, nn] = op(B)[k0 + kk, col0 + nn], along n for row-major B, along k for transposed B.</summary>
    private static Row4 FetchB(ArrayView<float> b, GemmShape s, Tiling t, int thread, int col0, int k0, int kEnd) => new()
    {
        V0 = LoadB(b, s, t, thread, col0, k0, kEnd),
        V1 = LoadB(b, s, t, thread + t.Threads, col0, k0, kEnd),
        V2 = LoadB(b, s, t, thread + (2 * t.Threads), col0, k0, kEnd),
        V3 = LoadB(b, s, t, thread + (3 * t.Threads), col0, k0, kEnd),
    };

    private static float LoadA(ArrayView<float> a, GemmShape s, Tiling t, int i, int row0, int k0, int kEnd)
    {
        bool alongK = s.TransposeA == 0;
        int row = row0 + t.PositionOf(i, alongK), depth = k0 + t.DepthOf(i, alongK);
        if (row >= s.M || depth >= kEnd)
        {
            return 0f;
        }

        return alongK ? a[(row * s.K) + depth] : a[(depth * s.M) + row];
    }

    private static float LoadB(ArrayView<float> b, GemmShape s, Tiling t, int i, int col0, int k0, int kEnd)
    {
        bool alongK = s.TransposeB != 0;
        int col = col0 + t.PositionOf(i, alongK), depth = k0 + t.DepthOf(i, alongK);
        if (col >= s.N || depth >= kEnd)
        {
            return 0f;
        }

        return alongK ? b[(col * s.K) + depth] : b[(depth * s.N) + col];
    }

    /// <summary>Stores a thread's four fetched values at tile[kk, position] of the tile starting at <paramref name="at"/>.</summary>
    private static void Put(ArrayView<float> shared, int at, Row4 v, Tiling t, int thread, bool alongK)
    {
        shared[at + t.Slot(thread, alongK)] = v.V0;
        shared[at + t.Slot(thread + t.Threads, alongK)] = v.V1;
        shared[at + t.Slot(thread + (2 * t.Threads), alongK)] = v.V2;
        shared[at + t.Slot(thread + (3 * t.Threads), alongK)] = v.V3;
    }

    /// <summary>log₂ of a power of two (once per thread; the staging loops then shift and mask instead of dividing).</summary>
    private static int Log2(int powerOfTwo)
    {
        int log = 0;
        while ((1 << log) < powerOfTwo)
        {
            log++;
        }

        return log;
    }

    /// <summary>Stores a thread's 8×8 results: rows r + i·step, columns q + j·step.</summary>
    private static void StoreBlock<TF>(ArrayView<float> c, GemmShape s, int r, int q, int step, Block8x8 v, ArrayView<float> bias,
        Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        StoreRow(c, s, r, q, step, v.R0, bias, epilogue);
        StoreRow(c, s, r + step, q, step, v.R1, bias, epilogue);
        StoreRow(c, s, r + (2 * step), q, step, v.R2, bias, epilogue);
        StoreRow(c, s, r + (3 * step), q, step, v.R3, bias, epilogue);
        StoreRow(c, s, r + (4 * step), q, step, v.R4, bias, epilogue);
        StoreRow(c, s, r + (5 * step), q, step, v.R5, bias, epilogue);
        StoreRow(c, s, r + (6 * step), q, step, v.R6, bias, epilogue);
        StoreRow(c, s, r + (7 * step), q, step, v.R7, bias, epilogue);
    }

    private static void StoreRow<TF>(ArrayView<float> c, GemmShape s, int row, int col, int step, Row8 v, ArrayView<float> bias,
        Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        if (row >= s.M)
        {
            return;
        }

        GemmTiledKernels.StoreOne(c, s, row, col, v.V0, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + step, v.V1, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + (2 * step), v.V2, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + (3 * step), v.V3, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + (4 * step), v.V4, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + (5 * step), v.V5, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + (6 * step), v.V6, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + (7 * step), v.V7, bias, epilogue);
    }

    /// <summary>
    /// The tile geometry of a square group of Side² threads: 8·Side × 8·Side tiles of C, staged Side/2 deep, rows
    /// padded by one float, and where staged value number i (0 … 4·Side² − 1) goes, by shifts and masks.
    /// </summary>
    private readonly struct Tiling
    {
        public Tiling(int side)
        {
            Side = side;
            LogSide = Log2(side);
        }

        public int Side { get; }

        public int LogSide { get; }

        public int Threads => Side * Side;

        public int Tile => Side * Block;

        public int Depth => Side >> 1;

        public int Stride => Tile + 1;

        /// <summary>Floats of one stage: a tile of op(A) and a tile of op(B).</summary>
        public int StageSize => 2 * Depth * Stride;

        /// <summary>The row (of op(A)) or column (of op(B)) of staged value i; <paramref name="alongK"/>: consecutive values run along k.</summary>
        public int PositionOf(int i, bool alongK) => alongK ? i >> (LogSide - 1) : i & (Tile - 1);

        /// <summary>The depth (kk) of staged value i.</summary>
        public int DepthOf(int i, bool alongK) => alongK ? i & (Depth - 1) : i >> (LogSide + 3);

        /// <summary>Where staged value i lives in its tile: tile[kk, position].</summary>
        public int Slot(int i, bool alongK) => (DepthOf(i, alongK) * Stride) + PositionOf(i, alongK);
    }

    /// <summary>Four floats a thread keeps in registers: its share of the next staged tile.</summary>
    private struct Row4
    {
        public float V0, V1, V2, V3;
    }

    /// <summary>A thread's 64 results, row by row.</summary>
    internal readonly struct Block8x8(Row8 r0, Row8 r1, Row8 r2, Row8 r3, Row8 r4, Row8 r5, Row8 r6, Row8 r7)
    {
        public Row8 R0 { get; } = r0;

        public Row8 R1 { get; } = r1;

        public Row8 R2 { get; } = r2;

        public Row8 R3 { get; } = r3;

        public Row8 R4 { get; } = r4;

        public Row8 R5 { get; } = r5;

        public Row8 R6 { get; } = r6;

        public Row8 R7 { get; } = r7;
    }

    /// <summary>Eight floats a thread keeps in registers (ILGPU 1.5.3 neither unrolls loops nor keeps indexed arrays in registers).</summary>
    internal struct Row8
    {
        public float V0, V1, V2, V3, V4, V5, V6, V7;

        /// <summary>tile[at + i·step] for i &lt; 8.</summary>
        public static Row8 Load(ArrayView<float> tile, int at, int step) => new()
        {
            V0 = tile[at],
            V1 = tile[at + step],
            V2 = tile[at + (2 * step)],
            V3 = tile[at + (3 * step)],
            V4 = tile[at + (4 * step)],
            V5 = tile[at + (5 * step)],
            V6 = tile[at + (6 * step)],
            V7 = tile[at + (7 * step)],
        };

        /// <summary>acc + a·b, element by element.</summary>
        public static Row8 MultiplyAdd(Row8 acc, float a, Row8 b) => new()
        {
            V0 = acc.V0 + (a * b.V0),
            V1 = acc.V1 + (a * b.V1),
            V2 = acc.V2 + (a * b.V2),
            V3 = acc.V3 + (a * b.V3),
            V4 = acc.V4 + (a * b.V4),
            V5 = acc.V5 + (a * b.V5),
            V6 = acc.V6 + (a * b.V6),
            V7 = acc.V7 + (a * b.V7),
        };
    }
}
