using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuCnn.Kernels;

/// <summary>
/// The third rung of the GEMM ladder: 8×8 register blocking with double-buffered staging. A square group of T × T
/// threads (a power of two; 16 × 16 on GPUs, 8 × 8 with smaller tile groups) computes an 8T × 8T tile of C, so each pair of values read from shared
/// memory feeds 4 multiply-adds instead of the 4×4 kernel's 2. Thread (tx, ty) owns rows 4ty + i and 4T + 4ty + i
/// and columns 4tx + j and 4T + 4tx + j (i, j &lt; 4): its operands of one depth step are four runs of four
/// consecutive floats, read from shared memory as four 16-byte loads (<see cref="Float4"/>; with scalar loads the
/// address arithmetic of 16 loads per 64 multiply-adds kept the integer pipe the busiest, and gemm-4096 took 6.77 ms
/// on an H100 against 3.96 since). Tiles of op(A)
/// and op(B), T/2 deep (4T·T values each, four per thread), go through two shared-memory buffers: each thread loads
/// its values of the next tile into registers, computes the current tile, then stores them into the other buffer, so
/// the global-memory latency hides behind the arithmetic and one barrier per tile suffices. Global reads run along
/// each matrix's contiguous axis; index arithmetic is shifts and masks; rows are padded by four floats, which keeps
/// them 16-byte aligned and the transposing stores free of bank conflicts. Out-of-range elements load as zero,
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
        var shared4 = SharedMemory.GetDynamic<Float4>();
        var shared = shared4.Cast<float>();
        int thread = (ty * side) + tx;

        bool split = s.DepthPerSplit > 0;
        int kBegin = split ? Grid.IdxZ * s.DepthPerSplit : 0;
        int kEnd = split ? XMath.Min(s.K, kBegin + s.DepthPerSplit) : s.K;
        // op(A) is M × K, A stored row-major M × K (along k) or, transposed, K × M; likewise op(B) K × N from N × K or K × N.
        var stagerA = new Stager(t, thread, s.TransposeA == 0, row0, s.M, s.TransposeA == 0 ? s.K : s.M);
        var stagerB = new Stager(t, thread, s.TransposeB != 0, col0, s.N, s.TransposeB != 0 ? s.K : s.N);
        var nextA = stagerA.Fetch(a, kBegin, kEnd);
        var nextB = stagerB.Fetch(b, kBegin, kEnd);
        stagerA.Put(shared, 0, nextA);
        stagerB.Put(shared, t.Depth * t.Stride, nextB);
        Group.Barrier();

        Block8x8 acc = default;
        int stage = 0;
        for (int k0 = kBegin; k0 < kEnd; k0 += t.Depth)
        {
            bool more = k0 + t.Depth < kEnd;
            if (more)
            {
                nextA = stagerA.Fetch(a, k0 + t.Depth, kEnd);
                nextB = stagerB.Fetch(b, k0 + t.Depth, kEnd);
            }

            // In units of Float4: this thread's first four rows of op(A) and first four columns of op(B) at kk = 0.
            int rowA = (stage * t.StageSize / 4) + ty, columnB = rowA - ty + (t.Depth * t.Stride / 4) + tx;
            for (int kk = 0; kk < t.Depth; kk++)
            {
                acc = Block8x8.MultiplyAdd(acc, shared4[rowA], shared4[rowA + side], Row8.Of(shared4[columnB], shared4[columnB + side]));
                rowA += t.Stride / 4;
                columnB += t.Stride / 4;
            }

            if (more)
            {
                // The other buffer: every thread finished reading it before the previous barrier.
                int other = (stage ^ 1) * t.StageSize;
                stagerA.Put(shared, other, nextA);
                stagerB.Put(shared, other + (t.Depth * t.Stride), nextB);
            }

            Group.Barrier();
            stage ^= 1;
        }

        // A split stores its raw partial product in its own slice; SumSplits applies α, β and the epilogue.
        if (split)
        {
            var slice = c.SubView((long)Grid.IdxZ * s.M * s.N, (long)s.M * s.N);
            StoreBlock(slice, new GemmShape(s.M, s.N, s.K, 0, 0, 1f, 0f), row0 + (4 * ty), col0 + (4 * tx), 4 * side, acc, bias,
                Epilogue.None);
        }
        else
        {
            StoreBlock(c, s, row0 + (4 * ty), col0 + (4 * tx), 4 * side, acc, bias, epilogue);
        }
    }

    /// <summary>The launch shape for square groups of <paramref name="side"/>² threads (a power of two, at least 2), times <paramref name="splits"/> along z.</summary>
    public static KernelConfig Config(GemmShape s, int side, int splits = 1)
    {
        var grid = Tiles(s, side);
        return new KernelConfig(new Index3D(grid.X, grid.Y, splits), new Index3D(side, side, 1),
            SharedMemoryConfig.RequestDynamic<Float4>(new Tiling(side).StageSize * 2 / 4));
    }

    /// <summary>Tiles of C along N (x) and M (y) for square groups of <paramref name="side"/>² threads.</summary>
    public static Index2D Tiles(GemmShape s, int side)
    {
        int tile = side * Block;
        return new Index2D((s.N + tile - 1) / tile, (s.M + tile - 1) / tile);
    }

    /// <summary>
    /// Where a thread's four values of each staged tile of one operand come from and go, worked out once per thread:
    /// tile[kk, position] = op(A)[start + position, k0 + kk] (or op(B)[k0 + kk, start + position]). The thread's values
    /// share one depth kk and sit at positions p, p + 2T, p + 4T, p + 6T, so a value's global offset and shared slot
    /// are the first one's plus a multiple of a per-thread constant. Consecutive threads read the stored matrix along
    /// its contiguous axis: T/2 consecutive depths, then the next position, when it runs along k (row-major A,
    /// transposed B); 2T consecutive positions, then the next depth, otherwise.
    /// </summary>
    private readonly struct Stager
    {
        public Stager(Tiling t, int thread, bool alongK, int start, int limit, int leadingDimension)
        {
            Depth = alongK ? thread & (t.Depth - 1) : thread >> (t.LogSide + 1);
            int position = alongK ? thread >> (t.LogSide - 1) : thread & ((2 * t.Side) - 1);
            Spacing = 2 * t.Side;
            Position = start + position;
            Limit = limit;
            Base = alongK ? (Position * leadingDimension) + Depth : (Depth * leadingDimension) + Position;
            DepthStride = alongK ? 1 : leadingDimension;
            OffsetSpacing = alongK ? Spacing * leadingDimension : Spacing;
            Slot = (Depth * t.Stride) + position;
        }

        /// <summary>This thread's depth kk within a tile.</summary>
        private int Depth { get; }

        /// <summary>The row of op(A) or column of op(B) of the thread's first value; the others follow at multiples of <see cref="Spacing"/>.</summary>
        private int Position { get; }

        private int Spacing { get; }

        /// <summary>M for op(A), N for op(B): positions from here on load as zero.</summary>
        private int Limit { get; }

        /// <summary>The stored offset of the first value at depth 0.</summary>
        private int Base { get; }

        /// <summary>Stored offset per unit of depth: 1 along k, the leading dimension otherwise.</summary>
        private int DepthStride { get; }

        /// <summary>Stored offset between the thread's consecutive values.</summary>
        private int OffsetSpacing { get; }

        /// <summary>Where the first value goes in a tile; the others follow at multiples of <see cref="Spacing"/>.</summary>
        private int Slot { get; }

        /// <summary>The thread's four values of the tile at depth <paramref name="k0"/>; zero past <paramref name="kEnd"/> or the last position.</summary>
        public Row4 Fetch(ArrayView<float> m, int k0, int kEnd)
        {
            bool inDepth = k0 + Depth < kEnd;
            int at = Base + (k0 * DepthStride);
            return new Row4
            {
                V0 = Load(m, inDepth && Position < Limit, at),
                V1 = Load(m, inDepth && Position + Spacing < Limit, at + OffsetSpacing),
                V2 = Load(m, inDepth && Position + (2 * Spacing) < Limit, at + (2 * OffsetSpacing)),
                V3 = Load(m, inDepth && Position + (3 * Spacing) < Limit, at + (3 * OffsetSpacing)),
            };
        }

        /// <summary>Stores fetched values into the tile starting at <paramref name="at"/>.</summary>
        public void Put(ArrayView<float> shared, int at, Row4 v)
        {
            int slot = at + Slot;
            shared[slot] = v.V0;
            shared[slot + Spacing] = v.V1;
            shared[slot + (2 * Spacing)] = v.V2;
            shared[slot + (3 * Spacing)] = v.V3;
        }

        private static float Load(ArrayView<float> m, bool inRange, int at) => inRange ? m[at] : 0f;
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

    /// <summary>Stores a thread's 8×8 results: rows r + i and r + half + i, columns q + j and q + half + j (i, j &lt; 4).</summary>
    private static void StoreBlock<TF>(ArrayView<float> c, GemmShape s, int r, int q, int half, Block8x8 v, ArrayView<float> bias,
        Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        StoreRow(c, s, r, q, half, v.R0, bias, epilogue);
        StoreRow(c, s, r + 1, q, half, v.R1, bias, epilogue);
        StoreRow(c, s, r + 2, q, half, v.R2, bias, epilogue);
        StoreRow(c, s, r + 3, q, half, v.R3, bias, epilogue);
        StoreRow(c, s, r + half, q, half, v.R4, bias, epilogue);
        StoreRow(c, s, r + half + 1, q, half, v.R5, bias, epilogue);
        StoreRow(c, s, r + half + 2, q, half, v.R6, bias, epilogue);
        StoreRow(c, s, r + half + 3, q, half, v.R7, bias, epilogue);
    }

    private static void StoreRow<TF>(ArrayView<float> c, GemmShape s, int row, int col, int half, Row8 v, ArrayView<float> bias,
        Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        if (row >= s.M)
        {
            return;
        }

        GemmTiledKernels.StoreOne(c, s, row, col, v.V0, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + 1, v.V1, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + 2, v.V2, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + 3, v.V3, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + half, v.V4, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + half + 1, v.V5, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + half + 2, v.V6, bias, epilogue);
        GemmTiledKernels.StoreOne(c, s, row, col + half + 3, v.V7, bias, epilogue);
    }

    /// <summary>
    /// The tile geometry of a square group of Side² threads: 8·Side × 8·Side tiles of C, staged Side/2 deep, rows
    /// padded by four floats (16-byte aligned; a transposing store's eight depths land in eight different banks).
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

        public int Tile => Side * Block;

        public int Depth => Side >> 1;

        public int Stride => Tile + 4;

        /// <summary>Floats of one stage: a tile of op(A) and a tile of op(B).</summary>
        public int StageSize => 2 * Depth * Stride;
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

        /// <summary>
        /// acc + a ⊗ b: row i of the block gains a_i · b, where the eight a_i come as two runs of four (a thread's rows
        /// 4ty + i and 4T + 4ty + i) and b holds its eight columns.
        /// </summary>
        public static Block8x8 MultiplyAdd(Block8x8 acc, Float4 low, Float4 high, Row8 b) => new(
            Row8.MultiplyAdd(acc.R0, low.X, b),
            Row8.MultiplyAdd(acc.R1, low.Y, b),
            Row8.MultiplyAdd(acc.R2, low.Z, b),
            Row8.MultiplyAdd(acc.R3, low.W, b),
            Row8.MultiplyAdd(acc.R4, high.X, b),
            Row8.MultiplyAdd(acc.R5, high.Y, b),
            Row8.MultiplyAdd(acc.R6, high.Z, b),
            Row8.MultiplyAdd(acc.R7, high.W, b));
    }

    /// <summary>
    /// Four consecutive floats of shared memory, loaded as one: ILGPU 1.5.3 emits a 16-byte load (<c>ld.shared.v4.f32</c>)
    /// for a structure of four floats at a 16-byte-aligned address, which a shared-memory buffer of this type is.
    /// </summary>
    internal struct Float4
    {
        public float X, Y, Z, W;
    }

    /// <summary>Eight floats a thread keeps in registers (ILGPU 1.5.3 neither unrolls loops nor keeps indexed arrays in registers).</summary>
    internal struct Row8
    {
        public float V0, V1, V2, V3, V4, V5, V6, V7;

        /// <summary>The eight floats of <paramref name="low"/> then <paramref name="high"/>.</summary>
        public static Row8 Of(Float4 low, Float4 high) => new()
        {
            V0 = low.X,
            V1 = low.Y,
            V2 = low.Z,
            V3 = low.W,
            V4 = high.X,
            V5 = high.Y,
            V6 = high.Z,
            V7 = high.W,
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
