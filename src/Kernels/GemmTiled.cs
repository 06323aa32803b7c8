using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuCnn.Kernels;

/// <summary>
/// The second rung of the GEMM ladder: shared-memory tiles with 4×4 register blocking. A group of Tx × Ty threads
/// computes a (4·Ty) × (4·Tx) tile of C; thread (tx, ty) owns rows ty + i·Ty and columns tx + j·Tx (i, j &lt; 4),
/// so shared-memory reads are broadcasts along a warp's rows and consecutive along its columns (no bank
/// conflicts) and stores to C are coalesced. Tiles of op(A) and op(B), TileK deep, are staged through dynamic
/// shared memory; out-of-range elements load as zero, so any M, N, K and both transposes work. The store applies
/// the <see cref="Epilogue"/> (a dense layer's bias and activation). ILGPU 1.5.3 does not unroll loops: the 4×4
/// update is written out.
/// </summary>
internal static class GemmTiledKernels
{
    /// <summary>Register block per thread (rows and columns).</summary>
    public const int Block = 4;

    /// <summary>Launch: grid (⌈N / (4·Tx)⌉, ⌈M / (4·Ty)⌉), group (Tx, Ty), dynamic shared memory TileK·4·(Tx + Ty) floats.</summary>
    public static void Tiled<TF>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s, int tileK,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        int tx = Group.IdxX, ty = Group.IdxY, threadsX = Group.DimX, threadsY = Group.DimY;
        int tileM = threadsY * Block, tileN = threadsX * Block;
        int row0 = Grid.IdxY * tileM, col0 = Grid.IdxX * tileN;
        var shared = SharedMemory.GetDynamic<float>();
        var tileA = shared.SubView(0, tileK * tileM);
        var tileB = shared.SubView(tileK * tileM, tileK * tileN);
        int thread = ty * threadsX + tx, threads = threadsX * threadsY;

        bool split = s.DepthPerSplit > 0;
        int kBegin = split ? Grid.IdxZ * s.DepthPerSplit : 0;
        int kEnd = split ? XMath.Min(s.K, kBegin + s.DepthPerSplit) : s.K;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f, c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f, c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int k0 = kBegin; k0 < kEnd; k0 += tileK)
        {
            // Stage tileA[kk, mm] = op(A)[row0 + mm, k0 + kk] and tileB[kk, nn] = op(B)[k0 + kk, col0 + nn].
            for (int i = thread; i < tileK * tileM; i += threads)
            {
                int kk = i / tileM, mm = i - kk * tileM;
                int row = row0 + mm, depth = k0 + kk;
                float v = 0f;
                if (row < s.M && depth < kEnd)
                {
                    v = s.TransposeA != 0 ? a[depth * s.M + row] : a[row * s.K + depth];
                }

                tileA[i] = v;
            }

            for (int i = thread; i < tileK * tileN; i += threads)
            {
                int kk = i / tileN, nn = i - kk * tileN;
                int col = col0 + nn, depth = k0 + kk;
                float v = 0f;
                if (col < s.N && depth < kEnd)
                {
                    v = s.TransposeB != 0 ? b[col * s.K + depth] : b[depth * s.N + col];
                }

                tileB[i] = v;
            }

            Group.Barrier();
            for (int kk = 0; kk < tileK; kk++)
            {
                int ra = kk * tileM + ty, rb = kk * tileN + tx;
                float a0 = tileA[ra], a1 = tileA[ra + threadsY], a2 = tileA[ra + 2 * threadsY], a3 = tileA[ra + 3 * threadsY];
                float b0 = tileB[rb], b1 = tileB[rb + threadsX], b2 = tileB[rb + 2 * threadsX], b3 = tileB[rb + 3 * threadsX];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }

            Group.Barrier();
        }

        int r0 = row0 + ty, q0 = col0 + tx;
        if (split)
        {
            // A raw partial product in this split's slice; SumSplits applies α, β and the epilogue.
            var slice = c.SubView((long)Grid.IdxZ * s.M * s.N, (long)s.M * s.N);
            var raw = new GemmShape(s.M, s.N, s.K, 0, 0, 1f, 0f);
            Store(slice, raw, r0, q0, threadsX, c00, c01, c02, c03, bias, Epilogue.None);
            Store(slice, raw, r0 + threadsY, q0, threadsX, c10, c11, c12, c13, bias, Epilogue.None);
            Store(slice, raw, r0 + 2 * threadsY, q0, threadsX, c20, c21, c22, c23, bias, Epilogue.None);
            Store(slice, raw, r0 + 3 * threadsY, q0, threadsX, c30, c31, c32, c33, bias, Epilogue.None);
            return;
        }

        Store(c, s, r0, q0, threadsX, c00, c01, c02, c03, bias, epilogue);
        Store(c, s, r0 + threadsY, q0, threadsX, c10, c11, c12, c13, bias, epilogue);
        Store(c, s, r0 + 2 * threadsY, q0, threadsX, c20, c21, c22, c23, bias, epilogue);
        Store(c, s, r0 + 3 * threadsY, q0, threadsX, c30, c31, c32, c33, bias, epilogue);
    }

    /// <summary>
    /// The launch shape for a GEMM with groups of <paramref name="threads"/>: one group per tile of C, times
    /// <paramref name="splits"/> along z when the depth is split (<see cref="GemmShape.DepthPerSplit"/>).
    /// </summary>
    public static KernelConfig Config(GemmShape s, Index2D threads, int tileK, int splits = 1)
    {
        var grid = Tiles(s, threads);
        return new KernelConfig(new Index3D(grid.X, grid.Y, splits), new Index3D(threads.X, threads.Y, 1),
            SharedMemoryConfig.RequestDynamic<float>(tileK * Block * (threads.X + threads.Y)));
    }

    /// <summary>Tiles of C along N (x) and M (y) for groups of <paramref name="threads"/>.</summary>
    public static Index2D Tiles(GemmShape s, Index2D threads)
    {
        int tileM = threads.Y * Block, tileN = threads.X * Block;
        return new Index2D((s.N + tileN - 1) / tileN, (s.M + tileM - 1) / tileM);
    }

    /// <summary>
    /// Combines split-K partial products in split order (the same result every run): C[i] = f(α·Σ_z partial[z·M·N + i]
    /// + β·C[i] + bias), with C only written when β = 0.
    /// </summary>
    public static void SumSplits<TF>(Index1D i, ArrayView<float> partial, ArrayView<float> c, GemmShape s, int splits,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        long size = (long)s.M * s.N;
        float sum = 0f;
        for (int z = 0; z < splits; z++)
        {
            sum += partial[(z * size) + i];
        }

        float result = s.Beta == 0f ? s.Alpha * sum : (s.Alpha * sum) + (s.Beta * c[i]);
        c[i] = epilogue.Apply(result, bias, i % s.N);
    }

    private static void Store<TF>(ArrayView<float> c, GemmShape s, int row, int col, int step, float v0, float v1, float v2, float v3,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        if (row >= s.M)
        {
            return;
        }

        StoreOne(c, s, row, col, v0, bias, epilogue);
        StoreOne(c, s, row, col + step, v1, bias, epilogue);
        StoreOne(c, s, row, col + 2 * step, v2, bias, epilogue);
        StoreOne(c, s, row, col + 3 * step, v3, bias, epilogue);
    }

    /// <summary>c[row, col] = epilogue(α·value + β·c[row, col]) where col lies inside C (shared by the 8×8 rung).</summary>
    internal static void StoreOne<TF>(ArrayView<float> c, GemmShape s, int row, int col, float value, ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        if (col < s.N)
        {
            int at = row * s.N + col;
            float result = s.Beta == 0f ? s.Alpha * value : s.Alpha * value + s.Beta * c[at];
            c[at] = epilogue.Apply(result, bias, col);
        }
    }
}
