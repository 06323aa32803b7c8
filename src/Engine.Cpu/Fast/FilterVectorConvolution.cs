using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Direct convolution vectorised across filters: each accumulator holds one output pixel of 16 consecutive filters,
/// each step broadcasts one input value and multiplies it by the weights of those filters. Nothing is wasted on a
/// small plane (a 7×7 plane is 49 outputs, which vectors of pixels round up to 64). Two runs of seven pixels by two
/// vectors of filters: 28 accumulators, two weight loads and 14 broadcasts per 28 FMAs (AVX-512's 32 registers).
/// </summary>
internal static unsafe class FilterVectorConvolution
{
    /// <summary>Pixels of an output row computed together (a run); two runs per step.</summary>
    public const int RunLength = 7;

    /// <summary>Filters per block: two 16-float vectors.</summary>
    public const int BlockFilters = 32;

    /// <summary>
    /// Plain layers with blocks of 32 filters, strides of 1 or 2, a kernel larger than 1×1 and planes of at most 256
    /// outputs, whose rows split into runs of seven with at most one pixel in nine computed and dropped (a row of at
    /// most seven is one run): 7, 13–14 or 20–21 columns, or up to 7. On AVX-512 only: the step needs 31 of its 32
    /// vector registers.
    /// </summary>
    public static bool Suits(in Conv2dGeometry g, SimdWidth width) =>
        width == SimdWidth.Vector512 && Avx512F.VL.IsSupported && g.Groups == 1 && g.K % BlockFilters == 0 &&
        g.StrideH is 1 or 2 && g.StrideW is 1 or 2 && g.DilationH == 1 && g.DilationW == 1 && g.R * g.S > 1 &&
        g.P * g.Q <= 256 && (g.Q <= RunLength || RunsPerRow(g) * RunLength * 8 <= g.Q * 9) &&
        (long)g.C * g.R * g.S <= 8192 && (long)g.C * PaddedPlane(g) <= 1 << 20;

    /// <summary>
    /// Where it was measured faster than the route the layer would take otherwise (docs/benchmarks.md, nineteenth
    /// session): against the blocked direct kernel and im2col + GEMM everywhere it suits; against Winograd up to 64 input channels
    /// (ResNet-8's 64 → 64 at 7×7: 0.6–0.7× its time), not beyond (256 → 256 at 7×7: 0.9–1.3×), where the input
    /// planes no longer stay in L1 while each block of filters passes over them.
    /// </summary>
    public static bool Pays(in Conv2dGeometry g, bool winograd) => !winograd || g.C <= 64;

    /// <summary>Floats of the packed weights: [K / 32][C·R·S][32].</summary>
    public static int PackedWeightsLength(in Conv2dGeometry g) => g.K * g.C * g.R * g.S;

    /// <summary>
    /// packed[kb][t][j] = w[kb·32 + j][t] for t = (c, r, s) in the weights' order: eight taps by eight filters at a time
    /// as one register transpose (a float at a time, packing 64 → 64 filters of 3×3 took as long as the layer's whole
    /// forward pass on one image).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackWeights(in Conv2dGeometry g, float* w, float* packed)
    {
        int taps = g.C * g.R * g.S, wholeTaps = taps / 8 * 8;
        for (int kb = 0; kb < g.K / BlockFilters; kb++)
        {
            float* block = packed + ((long)kb * taps * BlockFilters), filters = w + ((long)kb * BlockFilters * taps);
            for (int t = 0; t < wholeTaps; t += 8)
            {
                for (int j = 0; j < BlockFilters; j += 8)
                {
                    PackedGemm.Transpose8x8(filters + ((long)j * taps) + t, taps, block + (t * BlockFilters) + j, BlockFilters);
                }
            }

            for (int t = wholeTaps; t < taps; t++)
            {
                for (int j = 0; j < BlockFilters; j++)
                {
                    block[(t * BlockFilters) + j] = filters[((long)j * taps) + t];
                }
            }
        }
    }

    private static int PaddedWidth(in Conv2dGeometry g) => g.W + (2 * g.PadW);

    private static int PaddedPlane(in Conv2dGeometry g) => (g.H + (2 * g.PadH)) * PaddedWidth(g);

    /// <summary>Runs of seven pixels over the output rows.</summary>
    private static int RunsPerRow(in Conv2dGeometry g) => (g.Q + RunLength - 1) / RunLength;

    /// <summary>Floats of scratch one image needs: its padded planes with slack, the tap offsets, a tile of sums (with an eighth pixel's row the transpose reads).</summary>
    public static int ScratchLength(in Conv2dGeometry g) =>
        (g.C * PaddedPlane(g)) + Slack(g) + (g.C * g.R * g.S) + (((2 * RunLength) + 1) * BlockFilters);

    /// <summary>
    /// Floats past the planes that are read or written: a run hanging past Q reads at most six pixels (at the column
    /// stride) past the last plane's last column, and the padding's last vector writes up to 15 floats past it. What
    /// lies there only ever reaches the sums of dropped pixels.
    /// </summary>
    private static int Slack(in Conv2dGeometry g) => Math.Max(16, RunLength * g.StrideW);

    /// <summary>
    /// y (K, P, Q) = b + conv(x) for one image, filter blocks firstBlock … firstBlock + blocks − 1 only (b may be null;
    /// packed from <see cref="PackWeights"/>).
    /// </summary>
    public static void Forward(in Conv2dGeometry g, float* x, float* packed, float* b, float* y, float* scratch, int firstBlock, int blocks)
    {
        if (g.StrideW == 1)
        {
            Forward<One>(g, x, packed, b, y, scratch, firstBlock, blocks);
        }
        else
        {
            Forward<Two>(g, x, packed, b, y, scratch, firstBlock, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Forward<TStride>(in Conv2dGeometry g, float* x, float* packed, float* b, float* y, float* scratch, int firstBlock, int blocks)
        where TStride : struct, IConstant
    {
        int paddedW = PaddedWidth(g), plane = PaddedPlane(g), taps = g.C * g.R * g.S, pq = g.P * g.Q;
        float* padded = scratch;
        int* offsets = (int*)(padded + (g.C * plane) + Slack(g));
        float* tile = (float*)(offsets + taps);
        Pad(g, x, padded);
        for (int c = 0, t = 0; c < g.C; c++)
        {
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++, t++)
                {
                    offsets[t] = (c * plane) + (r * paddedW) + s;
                }
            }
        }

        int runsPerRow = RunsPerRow(g), runs = g.P * runsPerRow;
        for (int kb = firstBlock; kb < firstBlock + blocks; kb++)
        {
            float* weights = packed + ((long)kb * taps * BlockFilters);
            var bias0 = b == null ? Vector512<float>.Zero : Vector512.Load(b + (kb * BlockFilters));
            var bias1 = b == null ? Vector512<float>.Zero : Vector512.Load(b + (kb * BlockFilters) + 16);
            float* block = y + ((long)kb * BlockFilters * pq);
            for (int run = 0; run < runs; run += 2)
            {
                int pA = run / runsPerRow, qA = run % runsPerRow * RunLength;
                float* originA = padded + (pA * g.StrideH * paddedW) + (qA * TStride.Value);
                if (run + 1 == runs)
                {
                    Accumulate<TStride, One>(originA, originA, offsets, taps, weights, bias0, bias1, tile);
                    Scatter(tile, block, pq, (pA * g.Q) + qA, Math.Min(RunLength, g.Q - qA));
                    break;
                }

                int pB = (run + 1) / runsPerRow, qB = (run + 1) % runsPerRow * RunLength;
                float* originB = padded + (pB * g.StrideH * paddedW) + (qB * TStride.Value);
                Accumulate<TStride, Two>(originA, originB, offsets, taps, weights, bias0, bias1, tile);
                Scatter(tile, block, pq, (pA * g.Q) + qA, Math.Min(RunLength, g.Q - qA));
                Scatter(tile + TileRun, block, pq, (pB * g.Q) + qB, Math.Min(RunLength, g.Q - qB));
            }
        }
    }

    /// <summary>
    /// The image's channels zero-padded, plane after plane (rows of <see cref="PaddedWidth"/>): each padded row is
    /// whole vectors, each a masked load of the input columns it holds (zeros elsewhere, nothing read outside the row)
    /// stored whole; a vector past the row's end writes into the next row, written after it, or into the slack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pad(in Conv2dGeometry g, float* x, float* padded)
    {
        int paddedW = PaddedWidth(g), paddedH = g.H + (2 * g.PadH), vectors = (paddedW + 15) / 16;
        var columns = Vector512<int>.Indices - Vector512.Create(g.PadW);
        for (int c = 0; c < g.C; c++)
        {
            float* channel = x + ((long)c * g.H * g.W) - g.PadW, target = padded + ((long)c * paddedH * paddedW);
            for (int h = 0; h < paddedH; h++, target += paddedW)
            {
                int row = h - g.PadH;
                if ((uint)row >= (uint)g.H)
                {
                    for (int v = 0; v < vectors; v++)
                    {
                        Vector512<float>.Zero.Store(target + (16 * v));
                    }

                    continue;
                }

                float* source = channel + ((long)row * g.W);
                for (int v = 0; v < vectors; v++)
                {
                    var inside = Vector512.GreaterThanOrEqual(columns, Vector512.Create(-16 * v)) &
                        Vector512.LessThan(columns, Vector512.Create(g.W - (16 * v)));
                    Avx512F.MaskLoad(source + (16 * v), inside.AsSingle(), Vector512<float>.Zero).Store(target + (16 * v));
                }
            }
        }
    }

    /// <summary>
    /// tile[i][j] (pixel i of the run, filter j of the block) to y[j][first + i] for the run's first
    /// <paramref name="pixels"/> pixels: eight filters at a time transposed, each filter's pixels one masked store.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scatter(float* tile, float* y, int pq, int first, int pixels)
    {
        float* transposed = stackalloc float[64];
        var mask = Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(pixels)).AsSingle();
        for (int j0 = 0; j0 < BlockFilters; j0 += 8)
        {
            PackedGemm.Transpose8x8(tile + j0, BlockFilters, transposed, 8);
            float* target = y + ((long)j0 * pq) + first;
            for (int j = 0; j < 8; j++)
            {
                Avx512F.VL.MaskStore(target + ((long)j * pq), mask, Vector256.Load(transposed + (8 * j)));
            }
        }
    }

    /// <summary>Floats of one run's sums in the tile: seven pixels (and room for an eighth the transpose reads) × 32 filters.</summary>
    private const int TileRun = RunLength * BlockFilters;

    /// <summary>
    /// tile[i][j] = bias[j] + Σ_t weights[t][j] · origin[offsets[t] + i·stride] for the seven pixels i of run A (and of run
    /// B when <typeparamref name="TRuns"/> is two, its sums after A's): 14 or 28 accumulators.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate<TStride, TRuns>(float* a, float* b, int* offsets, int taps, float* weights, Vector512<float> bias0,
        Vector512<float> bias1, float* tile)
        where TStride : struct, IConstant
        where TRuns : struct, IConstant
    {
        int s = TStride.Value;
        bool pair = TRuns.Value == 2;
        Vector512<float> a00 = bias0, a01 = bias1, a10 = bias0, a11 = bias1, a20 = bias0, a21 = bias1, a30 = bias0, a31 = bias1;
        Vector512<float> a40 = bias0, a41 = bias1, a50 = bias0, a51 = bias1, a60 = bias0, a61 = bias1;
        Vector512<float> b00 = bias0, b01 = bias1, b10 = bias0, b11 = bias1, b20 = bias0, b21 = bias1, b30 = bias0, b31 = bias1;
        Vector512<float> b40 = bias0, b41 = bias1, b50 = bias0, b51 = bias1, b60 = bias0, b61 = bias1;
        for (int t = 0; t < taps; t++, weights += BlockFilters)
        {
            int offset = offsets[t];
            float* xa = a + offset;
            var w0 = Vector512.Load(weights);
            var w1 = Vector512.Load(weights + 16);
            var v = Vector512.Create(xa[0]);
            a00 = Vector512.FusedMultiplyAdd(v, w0, a00);
            a01 = Vector512.FusedMultiplyAdd(v, w1, a01);
            v = Vector512.Create(xa[s]);
            a10 = Vector512.FusedMultiplyAdd(v, w0, a10);
            a11 = Vector512.FusedMultiplyAdd(v, w1, a11);
            v = Vector512.Create(xa[2 * s]);
            a20 = Vector512.FusedMultiplyAdd(v, w0, a20);
            a21 = Vector512.FusedMultiplyAdd(v, w1, a21);
            v = Vector512.Create(xa[3 * s]);
            a30 = Vector512.FusedMultiplyAdd(v, w0, a30);
            a31 = Vector512.FusedMultiplyAdd(v, w1, a31);
            v = Vector512.Create(xa[4 * s]);
            a40 = Vector512.FusedMultiplyAdd(v, w0, a40);
            a41 = Vector512.FusedMultiplyAdd(v, w1, a41);
            v = Vector512.Create(xa[5 * s]);
            a50 = Vector512.FusedMultiplyAdd(v, w0, a50);
            a51 = Vector512.FusedMultiplyAdd(v, w1, a51);
            v = Vector512.Create(xa[6 * s]);
            a60 = Vector512.FusedMultiplyAdd(v, w0, a60);
            a61 = Vector512.FusedMultiplyAdd(v, w1, a61);
            if (pair)
            {
                float* xb = b + offset;
                v = Vector512.Create(xb[0]);
                b00 = Vector512.FusedMultiplyAdd(v, w0, b00);
                b01 = Vector512.FusedMultiplyAdd(v, w1, b01);
                v = Vector512.Create(xb[s]);
                b10 = Vector512.FusedMultiplyAdd(v, w0, b10);
                b11 = Vector512.FusedMultiplyAdd(v, w1, b11);
                v = Vector512.Create(xb[2 * s]);
                b20 = Vector512.FusedMultiplyAdd(v, w0, b20);
                b21 = Vector512.FusedMultiplyAdd(v, w1, b21);
                v = Vector512.Create(xb[3 * s]);
                b30 = Vector512.FusedMultiplyAdd(v, w0, b30);
                b31 = Vector512.FusedMultiplyAdd(v, w1, b31);
                v = Vector512.Create(xb[4 * s]);
                b40 = Vector512.FusedMultiplyAdd(v, w0, b40);
                b41 = Vector512.FusedMultiplyAdd(v, w1, b41);
                v = Vector512.Create(xb[5 * s]);
                b50 = Vector512.FusedMultiplyAdd(v, w0, b50);
                b51 = Vector512.FusedMultiplyAdd(v, w1, b51);
                v = Vector512.Create(xb[6 * s]);
                b60 = Vector512.FusedMultiplyAdd(v, w0, b60);
                b61 = Vector512.FusedMultiplyAdd(v, w1, b61);
            }
        }

        StoreRun(tile, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61);
        if (pair)
        {
            StoreRun(tile + TileRun, b00, b01, b10, b11, b20, b21, b30, b31, b40, b41, b50, b51, b60, b61);
        }
    }

    /// <summary>A run's sums into its tile rows: pixel i's 32 filters at tile + 32·i.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRun(float* tile, Vector512<float> p00, Vector512<float> p01, Vector512<float> p10, Vector512<float> p11,
        Vector512<float> p20, Vector512<float> p21, Vector512<float> p30, Vector512<float> p31, Vector512<float> p40, Vector512<float> p41,
        Vector512<float> p50, Vector512<float> p51, Vector512<float> p60, Vector512<float> p61)
    {
        p00.Store(tile);
        p01.Store(tile + 16);
        p10.Store(tile + 32);
        p11.Store(tile + 48);
        p20.Store(tile + 64);
        p21.Store(tile + 80);
        p30.Store(tile + 96);
        p31.Store(tile + 112);
        p40.Store(tile + 128);
        p41.Store(tile + 144);
        p50.Store(tile + 160);
        p51.Store(tile + 176);
        p60.Store(tile + 192);
        p61.Store(tile + 208);
    }
}
