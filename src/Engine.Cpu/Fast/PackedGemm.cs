using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// C (M×N) = α·op(A)·op(B) + β·C on row-major data with leading dimensions, op = identity or transpose.
/// With β = 0, C is only written.
/// </summary>
internal readonly unsafe struct GemmArgs(
    bool transposeA, bool transposeB, int m, int n, int k, float alpha,
    float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
{
    public readonly bool TransposeA = transposeA, TransposeB = transposeB;
    public readonly int M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc;
    public readonly float Alpha = alpha, Beta = beta;
    public readonly float* A = a, B = b, C = c;

    /// <summary>The same product restricted to columns [first, first + count) of C.</summary>
    public GemmArgs Columns(int first, int count) =>
        new(TransposeA, TransposeB, M, count, K, Alpha, A, Lda, TransposeB ? B + (long)first * Ldb : B + first, Ldb, Beta, C + first, Ldc);
}

/// <summary>Produces packed panels of op(B) itself (implicit im2col), instead of the GEMM copying them from a matrix.</summary>
internal unsafe interface IPanelSource
{
    /// <summary>
    /// Writes op(B)[pc … pc+kc, jc … jc+nc] as panels of <paramref name="nr"/> columns, row by row, zero-padded past
    /// nc: panel p (columns jc + p·nr …) starts at destination + p·nr·kc.
    /// </summary>
    void Pack(int pc, int kc, int jc, int nc, int nr, float* destination);
}

/// <summary>
/// A cache-blocked GEMM in the BLIS style: op(B) is packed into KC×NR panels, op(A) into MC×KC blocks of MR-row
/// panels, and a register-blocked MR×NR micro-kernel (6 rows × 2 vectors: 12 accumulators) runs over them. One
/// instance owns its packing buffers and runs on one thread; <see cref="CpuWorkers"/> runs several side by side.
/// </summary>
internal sealed unsafe class PackedGemm : IDisposable
{
    public const int MR = 6;
    private const int KC = 256;
    /// <summary>
    /// Rows of A packed per block (192 × KC floats, 192 KB: in any L2 here): each of B's KC × NR panels is read from
    /// wherever the packed B lies once per block. 96 had gemm-4096 on AVX-512 3–5 % slower (B's 2 MB block beyond the
    /// L2), no difference at 512–1024 or on AVX2 (docs/benchmarks.md, fifteenth session).
    /// </summary>
    private const int MC = 192;
    private const int NC = 2048;

    /// <summary>Floats past the last A panel that <see cref="PackSixRows"/> may write.</summary>
    private const int PackSlack = 8;

    private readonly SimdWidth _width;
    private readonly float* _packA;
    private readonly float* _packB;

    public PackedGemm(SimdWidth width)
    {
        _width = width;
        _packA = (float*)NativeMemory.AlignedAlloc((nuint)((MC * KC + PackSlack) * sizeof(float)), 64);
        _packB = (float*)NativeMemory.AlignedAlloc((nuint)(KC * (NC + 32) * sizeof(float)), 64);
    }

    /// <summary>Bytes of packing buffers held.</summary>
    public static long BufferBytes => (MC * KC + PackSlack + KC * (NC + 32)) * sizeof(float);

    /// <summary>Runs the product; with <paramref name="panels"/>, op(B) comes from it and g.B is not read.</summary>
    public void Run(in GemmArgs g, IPanelSource? panels = null)
    {
        if (g.M <= 0 || g.N <= 0)
        {
            return;
        }

        switch (_width)
        {
            case SimdWidth.Vector512: Run<Vec512, Vector512<float>>(g, panels); break;
            case SimdWidth.Vector256: Run<Vec256, Vector256<float>>(g, panels); break;
            case SimdWidth.Vector128: Run<Vec128, Vector128<float>>(g, panels); break;
            default: Run<Scalar, float>(g, panels); break;
        }
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_packA);
        NativeMemory.AlignedFree(_packB);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]

    private void Run<TOps, TVec>(in GemmArgs g, IPanelSource? panels)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int nr = 2 * TOps.Width; // K ≥ 1: every caller multiplies something

        // α and β reach the micro-kernel through memory: as float arguments they would hold two vector registers
        // through its loop, and with 16 (AVX2) one accumulator would live on the stack instead.
        float* scale = stackalloc float[2];
        scale[0] = g.Alpha;

        for (int jc = 0; jc < g.N; jc += NC)
        {
            int nc = Math.Min(NC, g.N - jc);
            for (int pc = 0; pc < g.K; pc += KC)
            {
                int kc = Math.Min(KC, g.K - pc);
                if (panels is null)
                {
                    PackB(g, pc, kc, jc, nc, nr);
                }
                else
                {
                    panels.Pack(pc, kc, jc, nc, nr, _packB);
                }
                scale[1] = pc == 0 ? g.Beta : 1f;
                for (int ic = 0; ic < g.M; ic += MC)
                {
                    int mc = Math.Min(MC, g.M - ic);
                    PackA(g, ic, mc, pc, kc);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        float* b = _packB + (long)jr * kc;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            float* c = g.C + (long)(ic + ir) * g.Ldc + jc + jr;
                            MicroKernel<TOps, TVec>(kc, _packA + (long)ir * kc, b, c, g.Ldc, scale,
                                Math.Min(MR, mc - ir), Math.Min(nr, nc - jr));
                        }
                    }
                }
            }
        }
    }

    /// <summary>op(B)[pc.., jc..] (kc × nc) → panels of nr columns, row by row, zero-padded: panel p at _packB + p·nr·kc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PackB(in GemmArgs g, int pc, int kc, int jc, int nc, int nr)
    {
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* panel = _packB + (long)jr * kc;
            if (!g.TransposeB && cols == nr)
            {
                // A whole panel: two vectors per row of op(B), no call per 64 bytes.
                float* source = g.B + (long)pc * g.Ldb + jc + jr;
                for (int k = 0; k < kc; k++, source += g.Ldb)
                {
                    Simd.CopyFloats(source, panel + (long)k * nr, nr);
                }

                continue;
            }

            if (g.TransposeB && cols == nr && nr % 8 == 0 && Avx.IsSupported)
            {
                // A whole panel of a transposed op(B): panel row k holds nr floats of column pc + k of B's rows jc + jr
                // …, each eight rows by eight columns one register transpose; the last kc mod 8 rows one float at a
                // time.
                float* rows = g.B + (long)(jc + jr) * g.Ldb + pc;
                int k0 = 0;
                for (; k0 + 8 <= kc; k0 += 8)
                {
                    for (int j0 = 0; j0 < nr; j0 += 8)
                    {
                        Transpose8x8(rows + (long)j0 * g.Ldb + k0, g.Ldb, panel + (long)k0 * nr + j0, nr);
                    }
                }

                for (int k = k0; k < kc; k++)
                {
                    float* row = panel + (long)k * nr;
                    for (int j = 0; j < nr; j++)
                    {
                        row[j] = rows[(long)j * g.Ldb + k];
                    }
                }

                continue;
            }

            for (int k = 0; k < kc; k++)
            {
                float* row = panel + (long)k * nr;
                if (!g.TransposeB)
                {
                    Buffer.MemoryCopy(g.B + (long)(pc + k) * g.Ldb + jc + jr, row, cols * sizeof(float), cols * sizeof(float));
                }
                else
                {
                    float* source = g.B + (long)(jc + jr) * g.Ldb + pc + k;
                    for (int j = 0; j < cols; j++)
                    {
                        row[j] = source[(long)j * g.Ldb];
                    }
                }

                for (int j = cols; j < nr; j++)
                {
                    row[j] = 0f;
                }
            }
        }
    }

    /// <summary>target[i·targetStride + j] = source[j·sourceStride + i] for an 8 × 8 block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* source, int sourceStride, float* target, int targetStride)
    {
        Quadruples(Avx.LoadVector256(source), Avx.LoadVector256(source + sourceStride), Avx.LoadVector256(source + (2 * sourceStride)),
            Avx.LoadVector256(source + (3 * sourceStride)), out var u0, out var u1, out var u2, out var u3);
        Quadruples(Avx.LoadVector256(source + (4 * sourceStride)), Avx.LoadVector256(source + (5 * sourceStride)),
            Avx.LoadVector256(source + (6 * sourceStride)), Avx.LoadVector256(source + (7 * sourceStride)), out var v0, out var v1, out var v2, out var v3);
        StoreColumns(u0, u1, u2, u3, v0, v1, v2, v3, target, targetStride);
    }

    /// <summary>
    /// Four rows interleaved in pairs, then in quadruples of lanes: u_j holds column j (j &lt; 4) of the four rows in
    /// its low half and column j + 4 in its high half.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quadruples(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        out Vector256<float> u0, out Vector256<float> u1, out Vector256<float> u2, out Vector256<float> u3)
    {
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        u0 = Avx.Shuffle(t0, t2, 0x44);
        u1 = Avx.Shuffle(t0, t2, 0xEE);
        u2 = Avx.Shuffle(t1, t3, 0x44);
        u3 = Avx.Shuffle(t1, t3, 0xEE);
    }

    /// <summary>
    /// Column j of an 8 × 8 block — rows 0–3 from u, rows 4–7 from v (<see cref="Quadruples"/>) — as eight floats at
    /// target + j·stride, in order of j (with a stride below 8 each store overwrites the previous one's tail).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreColumns(Vector256<float> u0, Vector256<float> u1, Vector256<float> u2, Vector256<float> u3,
        Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3, float* target, int stride)
    {
        Avx.Store(target, Avx.Permute2x128(u0, v0, 0x20));
        Avx.Store(target + stride, Avx.Permute2x128(u1, v1, 0x20));
        Avx.Store(target + (2 * stride), Avx.Permute2x128(u2, v2, 0x20));
        Avx.Store(target + (3 * stride), Avx.Permute2x128(u3, v3, 0x20));
        Avx.Store(target + (4 * stride), Avx.Permute2x128(u0, v0, 0x31));
        Avx.Store(target + (5 * stride), Avx.Permute2x128(u1, v1, 0x31));
        Avx.Store(target + (6 * stride), Avx.Permute2x128(u2, v2, 0x31));
        Avx.Store(target + (7 * stride), Avx.Permute2x128(u3, v3, 0x31));
    }

    /// <summary>op(A)[ic.., pc..] (mc × kc) → panels of MR rows, column by column, zero-padded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void PackA(in GemmArgs g, int ic, int mc, int pc, int kc)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int rows = Math.Min(MR, mc - ir);
            float* panel = _packA + (long)ir * kc;
            if (!g.TransposeA && rows == MR)
            {
                PackSixRows(g.A + (long)(ic + ir) * g.Lda + pc, g.Lda, kc, panel);
                continue;
            }

            if (g.TransposeA && rows == MR)
            {
                // Column k of the panel is six consecutive floats of A's row pc + k: four and two at a time.
                float* source = g.A + (long)pc * g.Lda + ic + ir;
                for (int k = 0; k < kc; k++, source += g.Lda)
                {
                    Vector128.Store(Vector128.Load(source), panel + (k * MR));
                    *(long*)(panel + (k * MR) + 4) = *(long*)(source + 4);
                }

                continue;
            }

            for (int k = 0; k < kc; k++)
            {
                float* column = panel + (long)k * MR;
                for (int i = 0; i < rows; i++)
                {
                    int row = ic + ir + i, depth = pc + k;
                    column[i] = g.TransposeA ? g.A[(long)depth * g.Lda + row] : g.A[(long)row * g.Lda + depth];
                }

                for (int i = rows; i < MR; i++)
                {
                    column[i] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// Six rows of A (row-major, <paramref name="lda"/> apart) → a panel of kc columns of six: panel[k·6 + i] =
    /// rows[i][k]. Eight columns at a time as an 8 × 8 transpose (rows 6 and 7 zero) in 256-bit registers, each
    /// column stored as eight floats whose last two the next column overwrites: 6 loads and 8 stores per 48 floats
    /// instead of 48 of each (element by element, packing took 2–3 % of gemm-1024 on AVX2). The last column's two
    /// extra floats land in the next panel, packed after this one, or in the buffer's slack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackSixRows(float* first, int lda, int kc, float* panel)
    {
        int k0 = 0;
        if (Avx.IsSupported)
        {
            for (; k0 + 8 <= kc; k0 += 8)
            {
                float* source = first + k0;
                Quadruples(Avx.LoadVector256(source), Avx.LoadVector256(source + lda), Avx.LoadVector256(source + 2 * lda),
                    Avx.LoadVector256(source + 3 * lda), out var u0, out var u1, out var u2, out var u3);

                // Rows 4–5 with rows 6–7 zero: one interleave and shuffles against zero (eight full rows, as in
                // Transpose8x8, cost one AVX2 core 2 % of gemm-1024).
                Vector256<float> r4 = Avx.LoadVector256(source + 4 * lda), r5 = Avx.LoadVector256(source + 5 * lda);
                Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), zero = Vector256<float>.Zero;
                StoreColumns(u0, u1, u2, u3, Avx.Shuffle(t4, zero, 0x44), Avx.Shuffle(t4, zero, 0xEE), Avx.Shuffle(t5, zero, 0x44),
                    Avx.Shuffle(t5, zero, 0xEE), panel + k0 * MR, MR);
            }
        }

        for (int i = 0; i < MR; i++)
        {
            float* source = first + (long)i * lda;
            for (int k = k0; k < kc; k++)
            {
                panel[(k * MR) + i] = source[k];
            }
        }
    }

    /// <summary>
    /// The MR×NR tile of C at <paramref name="c"/> = α·Σ_k a[k]·b[k] + β·C, with α = scale[0] and β = scale[1] (1
    /// after the first K block), where a holds MR values and b NR values per k. Only the top-left rows × cols of the
    /// tile are stored.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void MicroKernel<TOps, TVec>(int kc, float* a, float* b, float* c, int ldc, float* scale, int rows, int cols)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int w = TOps.Width;
        if (Sse.IsSupported)
        {
            // The tile of C is read and written only after the k loop; requested now, its lines (out of cache by then
            // in large products: C is touched once per K block) arrive while the loop runs: gemm-4096 2–4 % faster.
            for (int i = 0; i < MR; i++)
            {
                float* row = c + (long)i * ldc;
                Sse.Prefetch0(row);
                Sse.Prefetch0(row + w);
                Sse.Prefetch0(row + 2 * w - 1);
            }
        }

        TVec c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero, c20 = TOps.Zero, c21 = TOps.Zero;
        TVec c30 = TOps.Zero, c31 = TOps.Zero, c40 = TOps.Zero, c41 = TOps.Zero, c50 = TOps.Zero, c51 = TOps.Zero;
        int k = 0;
        for (; k + 2 <= kc; k += 2)
        {
            TVec b0 = TOps.Load(b), b1 = TOps.Load(b + w);
            TVec a0 = TOps.Broadcast(a[0]);
            c00 = TOps.MultiplyAdd(a0, b0, c00);
            c01 = TOps.MultiplyAdd(a0, b1, c01);
            TVec a1 = TOps.Broadcast(a[1]);
            c10 = TOps.MultiplyAdd(a1, b0, c10);
            c11 = TOps.MultiplyAdd(a1, b1, c11);
            TVec a2 = TOps.Broadcast(a[2]);
            c20 = TOps.MultiplyAdd(a2, b0, c20);
            c21 = TOps.MultiplyAdd(a2, b1, c21);
            TVec a3 = TOps.Broadcast(a[3]);
            c30 = TOps.MultiplyAdd(a3, b0, c30);
            c31 = TOps.MultiplyAdd(a3, b1, c31);
            TVec a4 = TOps.Broadcast(a[4]);
            c40 = TOps.MultiplyAdd(a4, b0, c40);
            c41 = TOps.MultiplyAdd(a4, b1, c41);
            TVec a5 = TOps.Broadcast(a[5]);
            c50 = TOps.MultiplyAdd(a5, b0, c50);
            c51 = TOps.MultiplyAdd(a5, b1, c51);
            b0 = TOps.Load(b + 2 * w);
            b1 = TOps.Load(b + 3 * w);
            a0 = TOps.Broadcast(a[MR]);
            c00 = TOps.MultiplyAdd(a0, b0, c00);
            c01 = TOps.MultiplyAdd(a0, b1, c01);
            a1 = TOps.Broadcast(a[MR + 1]);
            c10 = TOps.MultiplyAdd(a1, b0, c10);
            c11 = TOps.MultiplyAdd(a1, b1, c11);
            a2 = TOps.Broadcast(a[MR + 2]);
            c20 = TOps.MultiplyAdd(a2, b0, c20);
            c21 = TOps.MultiplyAdd(a2, b1, c21);
            a3 = TOps.Broadcast(a[MR + 3]);
            c30 = TOps.MultiplyAdd(a3, b0, c30);
            c31 = TOps.MultiplyAdd(a3, b1, c31);
            a4 = TOps.Broadcast(a[MR + 4]);
            c40 = TOps.MultiplyAdd(a4, b0, c40);
            c41 = TOps.MultiplyAdd(a4, b1, c41);
            a5 = TOps.Broadcast(a[MR + 5]);
            c50 = TOps.MultiplyAdd(a5, b0, c50);
            c51 = TOps.MultiplyAdd(a5, b1, c51);
            a += 2 * MR;
            b += 4 * w;
        }

        for (; k < kc; k++)
        {
            TVec b0 = TOps.Load(b), b1 = TOps.Load(b + w);
            TVec a0 = TOps.Broadcast(a[0]);
            c00 = TOps.MultiplyAdd(a0, b0, c00);
            c01 = TOps.MultiplyAdd(a0, b1, c01);
            TVec a1 = TOps.Broadcast(a[1]);
            c10 = TOps.MultiplyAdd(a1, b0, c10);
            c11 = TOps.MultiplyAdd(a1, b1, c11);
            TVec a2 = TOps.Broadcast(a[2]);
            c20 = TOps.MultiplyAdd(a2, b0, c20);
            c21 = TOps.MultiplyAdd(a2, b1, c21);
            TVec a3 = TOps.Broadcast(a[3]);
            c30 = TOps.MultiplyAdd(a3, b0, c30);
            c31 = TOps.MultiplyAdd(a3, b1, c31);
            TVec a4 = TOps.Broadcast(a[4]);
            c40 = TOps.MultiplyAdd(a4, b0, c40);
            c41 = TOps.MultiplyAdd(a4, b1, c41);
            TVec a5 = TOps.Broadcast(a[5]);
            c50 = TOps.MultiplyAdd(a5, b0, c50);
            c51 = TOps.MultiplyAdd(a5, b1, c51);
            a += MR;
            b += 2 * w;
        }

        float alpha = scale[0], beta = scale[1];
        if (rows == MR && cols == 2 * w)
        {
            TVec va = TOps.Broadcast(alpha);
            StoreRow<TOps, TVec>(c, w, c00, c01, va, beta);
            StoreRow<TOps, TVec>(c + ldc, w, c10, c11, va, beta);
            StoreRow<TOps, TVec>(c + 2 * ldc, w, c20, c21, va, beta);
            StoreRow<TOps, TVec>(c + 3 * ldc, w, c30, c31, va, beta);
            StoreRow<TOps, TVec>(c + 4 * ldc, w, c40, c41, va, beta);
            StoreRow<TOps, TVec>(c + 5 * ldc, w, c50, c51, va, beta);
            return;
        }

        // An edge tile: spill the accumulators and store what lies inside C.
        float* tile = stackalloc float[MR * 2 * 16];
        int nr = 2 * w;
        TOps.Store(tile, c00); TOps.Store(tile + w, c01);
        TOps.Store(tile + nr, c10); TOps.Store(tile + nr + w, c11);
        TOps.Store(tile + 2 * nr, c20); TOps.Store(tile + 2 * nr + w, c21);
        TOps.Store(tile + 3 * nr, c30); TOps.Store(tile + 3 * nr + w, c31);
        TOps.Store(tile + 4 * nr, c40); TOps.Store(tile + 4 * nr + w, c41);
        TOps.Store(tile + 5 * nr, c50); TOps.Store(tile + 5 * nr + w, c51);
        for (int i = 0; i < rows; i++)
        {
            float* row = c + (long)i * ldc;
            for (int j = 0; j < cols; j++)
            {
                float value = alpha * tile[i * nr + j];
                row[j] = beta == 0f ? value : value + beta * row[j];
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<TOps, TVec>(float* c, int w, TVec acc0, TVec acc1, TVec alpha, float beta)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        TVec r0 = TOps.Multiply(alpha, acc0), r1 = TOps.Multiply(alpha, acc1);
        if (beta != 0f)
        {
            TVec vb = TOps.Broadcast(beta);
            r0 = TOps.MultiplyAdd(vb, TOps.Load(c), r0);
            r1 = TOps.MultiplyAdd(vb, TOps.Load(c + w), r1);
        }

        TOps.Store(c, r0);
        TOps.Store(c + w, r1);
    }
}
