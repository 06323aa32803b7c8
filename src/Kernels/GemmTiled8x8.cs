using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuCnn.Kernels;

/// <summary>
/// The third rung of the GEMM ladder: 8×8 register blocking. A group of Tx × Ty threads (powers of two; 16 × 16 on
/// GPUs) computes an (8·Ty) × (8·Tx) tile of C, so each pair of values read from shared memory feeds 4 multiply-adds
/// instead of the 4×4 kernel's 2. Thread (tx, ty) owns rows ty + i·Ty and columns tx + j·Tx (i, j &lt; 8): shared
/// reads are broadcasts along a warp's rows and consecutive along its columns, stores to C are coalesced. Tiles of
/// op(A) and op(B), 8 deep, are staged through shared memory with global reads that run along each matrix's
/// contiguous axis and index arithmetic of shifts and masks only; rows are padded by one float so the transposing
/// stores avoid bank conflicts. Out-of-range elements load as zero, so any M, N, K and both transposes work; the
/// store applies the <see cref="Epilogue"/>, or writes a raw partial product for split-K
/// (<see cref="GemmShape.DepthPerSplit"/>, combined by <see cref="GemmTiledKernels.SumSplits"/>).
/// </summary>
public static class GemmTiled8x8Kernels
{
    /// <summary>Register block per thread (rows and columns).</summary>
    public const int Block = 8;

    /// <summary>Depth of a staged tile.</summary>
    public const int TileK = 8;

    /// <summary>
    /// Launch: grid (⌈N / (8·Tx)⌉, ⌈M / (8·Ty)⌉, splits), group (Tx, Ty), dynamic shared memory
    /// 8·(8·Tx + 1 + 8·Ty + 1) floats (<see cref="Config"/>).
    /// </summary>
    public static void Tiled(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s,
        ArrayView<float> bias, Epilogue epilogue)
    {
        int tx = Group.IdxX, ty = Group.IdxY, threadsX = Group.DimX, threadsY = Group.DimY;
        int tileM = threadsY * Block, tileN = threadsX * Block;
        int logTileM = Log2(tileM), logTileN = Log2(tileN);
        int strideA = tileM + 1, strideB = tileN + 1;
        int row0 = Grid.IdxY * tileM, col0 = Grid.IdxX * tileN;
        var shared = SharedMemory.GetDynamic<float>();
        var tileA = shared.SubView(0, TileK * strideA);
        var tileB = shared.SubView(TileK * strideA, TileK * strideB);
        int thread = (ty * threadsX) + tx, threads = threadsX * threadsY;

        bool split = s.DepthPerSplit > 0;
        int kBegin = split ? Grid.IdxZ * s.DepthPerSplit : 0;
        int kEnd = split ? XMath.Min(s.K, kBegin + s.DepthPerSplit) : s.K;
        Row8 c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        for (int k0 = kBegin; k0 < kEnd; k0 += TileK)
        {
            // tileA[kk, mm] = op(A)[row0 + mm, k0 + kk]; consecutive threads read consecutive addresses of A.
            for (int i = thread; i < TileK * tileM; i += threads)
            {
                int kk = s.TransposeA != 0 ? i >> logTileM : i & (TileK - 1);
                int mm = s.TransposeA != 0 ? i & (tileM - 1) : i >> 3;
                int row = row0 + mm, depth = k0 + kk;
                float v = 0f;
                if (row < s.M && depth < kEnd)
                {
                    v = s.TransposeA != 0 ? a[(depth * s.M) + row] : a[(row * s.K) + depth];
                }

                tileA[(kk * strideA) + mm] = v;
            }

            // tileB[kk, nn] = op(B)[k0 + kk, col0 + nn], likewise along B's contiguous axis.
            for (int i = thread; i < TileK * tileN; i += threads)
            {
                int kk = s.TransposeB != 0 ? i & (TileK - 1) : i >> logTileN;
                int nn = s.TransposeB != 0 ? i >> 3 : i & (tileN - 1);
                int col = col0 + nn, depth = k0 + kk;
                float v = 0f;
                if (col < s.N && depth < kEnd)
                {
                    v = s.TransposeB != 0 ? b[(col * s.K) + depth] : b[(depth * s.N) + col];
                }

                tileB[(kk * strideB) + nn] = v;
            }

            Group.Barrier();
            for (int kk = 0; kk < TileK; kk++)
            {
                var av = Row8.Load(tileA, (kk * strideA) + ty, threadsY);
                var bv = Row8.Load(tileB, (kk * strideB) + tx, threadsX);
                c0 = Row8.MultiplyAdd(c0, av.V0, bv);
                c1 = Row8.MultiplyAdd(c1, av.V1, bv);
                c2 = Row8.MultiplyAdd(c2, av.V2, bv);
                c3 = Row8.MultiplyAdd(c3, av.V3, bv);
                c4 = Row8.MultiplyAdd(c4, av.V4, bv);
                c5 = Row8.MultiplyAdd(c5, av.V5, bv);
                c6 = Row8.MultiplyAdd(c6, av.V6, bv);
                c7 = Row8.MultiplyAdd(c7, av.V7, bv);
            }

            Group.Barrier();
        }

        // A split stores its raw partial product in its own slice; SumSplits applies α, β and the epilogue.
        var target = split ? c.SubView((long)Grid.IdxZ * s.M * s.N, (long)s.M * s.N) : c;
        var store = split ? new GemmShape(s.M, s.N, s.K, 0, 0, 1f, 0f) : s;
        var apply = split ? Epilogue.None : epilogue;
        int r = row0 + ty, q = col0 + tx;
        StoreRow(target, store, r, q, threadsX, c0, bias, apply);
        StoreRow(target, store, r + threadsY, q, threadsX, c1, bias, apply);
        StoreRow(target, store, r + (2 * threadsY), q, threadsX, c2, bias, apply);
        StoreRow(target, store, r + (3 * threadsY), q, threadsX, c3, bias, apply);
        StoreRow(target, store, r + (4 * threadsY), q, threadsX, c4, bias, apply);
        StoreRow(target, store, r + (5 * threadsY), q, threadsX, c5, bias, apply);
        StoreRow(target, store, r + (6 * threadsY), q, threadsX, c6, bias, apply);
        StoreRow(target, store, r + (7 * threadsY), q, threadsX, c7, bias, apply);
    }

    /// <summary>The launch shape for groups of <paramref name="threads"/> (powers of two), times <paramref name="splits"/> along z.</summary>
    public static KernelConfig Config(GemmShape s, Index2D threads, int splits = 1)
    {
        var grid = Tiles(s, threads);
        return new KernelConfig(new Index3D(grid.X, grid.Y, splits), new Index3D(threads.X, threads.Y, 1),
            SharedMemoryConfig.RequestDynamic<float>(TileK * ((Block * threads.X) + 1 + (Block * threads.Y) + 1)));
    }

    /// <summary>Tiles of C along N (x) and M (y) for groups of <paramref name="threads"/>.</summary>
    public static Index2D Tiles(GemmShape s, Index2D threads)
    {
        int tileM = threads.Y * Block, tileN = threads.X * Block;
        return new Index2D((s.N + tileN - 1) / tileN, (s.M + tileM - 1) / tileM);
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

    private static void StoreRow(ArrayView<float> c, GemmShape s, int row, int col, int step, Row8 v, ArrayView<float> bias,
        Epilogue epilogue)
    {
        if (row >= s.M)
        {
            return;
        }

        StoreOne(c, s, row, col, v.V0, bias, epilogue);
        StoreOne(c, s, row, col + step, v.V1, bias, epilogue);
        StoreOne(c, s, row, col + (2 * step), v.V2, bias, epilogue);
        StoreOne(c, s, row, col + (3 * step), v.V3, bias, epilogue);
        StoreOne(c, s, row, col + (4 * step), v.V4, bias, epilogue);
        StoreOne(c, s, row, col + (5 * step), v.V5, bias, epilogue);
        StoreOne(c, s, row, col + (6 * step), v.V6, bias, epilogue);
        StoreOne(c, s, row, col + (7 * step), v.V7, bias, epilogue);
    }

    private static void StoreOne(ArrayView<float> c, GemmShape s, int row, int col, float value, ArrayView<float> bias, Epilogue epilogue)
    {
        if (col < s.N)
        {
            int at = (row * s.N) + col;
            float result = s.Beta == 0f ? s.Alpha * value : (s.Alpha * value) + (s.Beta * c[at]);
            c[at] = epilogue.Apply(result, bias, col);
        }
    }

    /// <summary>Eight floats a thread keeps in registers (ILGPU 1.5.3 neither unrolls loops nor keeps indexed arrays in registers).</summary>
    private struct Row8
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
