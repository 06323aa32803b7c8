using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Direct convolution vectorised across filters: each accumulator holds one output pixel of consecutive filters, each
/// step broadcasts one input value and multiplies it by the weights of those filters. Nothing is wasted on a small
/// plane (a 7×7 plane is 49 outputs, which vectors of pixels round up to 64). Two runs of seven pixels by a block of
/// filters: on AVX-512 two 16-float vectors (32 filters, 28 accumulators: two weight loads and 14 broadcasts per 28
/// FMAs in 31 of the 32 registers), on AVX2 one 8-float vector (8 filters, 14 accumulators: one weight load and 14
/// broadcasts per 14 FMAs in all 16 registers).
/// </summary>
internal static unsafe class FilterVectorConvolution
{
    /// <summary>Pixels of an output row computed together (a run); two runs per step.</summary>
    public const int RunLength = 7;

    /// <summary>Filters per block: two 16-float vectors on AVX-512, one 8-float vector on AVX2.</summary>
    public static int BlockFilters(SimdWidth width) => width == SimdWidth.Vector512 ? 32 : 8;

    /// <summary>
    /// Plain layers with whole blocks of filters, strides of 1 or 2, a kernel larger than 1×1 and planes of at most
    /// 256 outputs, whose rows split into runs of seven with at most one pixel in nine computed and dropped (a row of at
    /// most seven is one run): 7, 13–14 or 20–21 columns, or up to 7. On the AVX-512 and AVX2 paths.
    /// </summary>
    public static bool Suits(in Conv2dGeometry g, SimdWidth width) =>
        RunsOn(width) && g.Groups == 1 && g.K % BlockFilters(width) == 0 &&
        g.StrideH is 1 or 2 && g.StrideW is 1 or 2 && g.DilationH == 1 && g.DilationW == 1 && g.R * g.S > 1 &&
        g.P * g.Q <= 256 && RunsFit(g.Q) &&
        (long)g.C * g.R * g.S <= 8192 && (long)g.C * PaddedPlane(g) <= 1 << 20;

    /// <summary>
    /// Where it was measured faster than the route the layer would take otherwise (docs/benchmarks.md, nineteenth
    /// session): against the blocked direct kernel and im2col + GEMM everywhere it suits (ResNet-8's layers: 0.67–0.82×
    /// their time on AVX-512, 0.83–0.90× on AVX2); against Winograd on AVX-512 up to 64 input channels (ResNet-8's
    /// 64 → 64 at 7×7: 0.77×), not beyond (256 → 256 at 7×7: 0.9–1.3×: the input planes no longer stay in L1 while each
    /// block of filters passes over them), and never on AVX2 (64 → 64 at 7×7: 0.98×, within noise).
    /// </summary>
    public static bool Pays(in Conv2dGeometry g, SimdWidth width, bool winograd) => !winograd || (width == SimdWidth.Vector512 && g.C <= 64);

    /// <summary>Floats of the packed weights: [K / F][C·R·S][F] for blocks of F filters.</summary>
    public static int PackedWeightsLength(in Conv2dGeometry g) => g.K * g.C * g.R * g.S;

    /// <summary>
    /// packed[kb][t][j] = w[kb·F + j][t] for blocks of F filters and t = (c, r, s) in the weights' order: eight taps by
    /// eight filters at a time as one register transpose (a float at a time, packing 64 → 64 filters of 3×3 took as
    /// long as the layer's whole forward pass on one image).
    /// </summary>
    public static void PackWeights(in Conv2dGeometry g, SimdWidth width, float* w, float* packed) =>
        PackBlocks(w, g.K, g.C * g.R * g.S, width, packed);

    /// <summary>
    /// packed[kb][t][j] = source[kb·F + j][t]: <paramref name="filters"/> rows of <paramref name="taps"/> floats (a
    /// multiple of F rows) in blocks of F.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBlocks(float* source, int filters, int taps, SimdWidth width, float* packed)
    {
        int wholeTaps = taps / 8 * 8, size = BlockFilters(width);
        for (int kb = 0; kb < filters / size; kb++)
        {
            float* block = packed + ((long)kb * taps * size), rows = source + ((long)kb * size * taps);
            for (int t = 0; t < wholeTaps; t += 8)
            {
                for (int j = 0; j < size; j += 8)
                {
                    PackedGemm.Transpose8x8(rows + ((long)j * taps) + t, taps, block + (t * size) + j, size);
                }
            }

            for (int t = wholeTaps; t < taps; t++)
            {
                for (int j = 0; j < size; j++)
                {
                    block[(t * size) + j] = rows[((long)j * taps) + t];
                }
            }
        }
    }

    /// <summary>
    /// Whether a strided layer's backward-data (<see cref="TransposedPlan"/>: a stride-1 correlation of dy per phase of
    /// dx) runs here, vectorised across input channels: whole blocks of them, and in every phase runs of seven dx
    /// columns that drop at most one pixel in nine (the phase grid at most 256 outputs).
    /// </summary>
    public static bool SuitsPhases(in Conv2dGeometry g, SimdWidth width)
    {
        if (!RunsOn(width) || g.C % BlockFilters(width) != 0)
        {
            return false;
        }

        int wide = (g.W + g.StrideW - 1) / g.StrideW, narrow = g.W / g.StrideW, rows = (g.H + g.StrideH - 1) / g.StrideH;
        return RunsFit(wide) && RunsFit(narrow) && (long)rows * wide <= 256;
    }

    /// <summary>The AVX-512 path (with 256-bit masked stores) and the AVX2 + FMA path.</summary>
    private static bool RunsOn(SimdWidth width) =>
        width == SimdWidth.Vector512 ? Avx512F.VL.IsSupported : width == SimdWidth.Vector256 && Avx2.IsSupported && Fma.IsSupported;

    private static bool RunsFit(int columns) => columns > 0 && (columns <= RunLength || RunsPerRow(columns) * RunLength * 8 <= columns * 9);

    /// <summary>The plan's weights (per phase, per input channel, its taps) packed per phase in blocks of input channels.</summary>
    public static void PackPhases(TransposedPlan plan, SimdWidth width, float* weights, float* packed)
    {
        foreach (var phase in plan.Phases)
        {
            PackBlocks(weights + phase.WeightStart, plan.Geometry.C, phase.Taps, width, packed + phase.WeightStart);
        }
    }

    /// <summary>Floats of scratch the phases need past the padded dy: one pair of runs' sums, and a row to spare.</summary>
    public static int PhaseScratch(SimdWidth width) => ((2 * RunLength) + 1) * BlockFilters(width);

    private static int PaddedWidth(in Conv2dGeometry g) => g.W + (2 * g.PadW);

    private static int PaddedPlane(in Conv2dGeometry g) => (g.H + (2 * g.PadH)) * PaddedWidth(g);

    /// <summary>Runs of seven pixels over the output rows.</summary>
    private static int RunsPerRow(in Conv2dGeometry g) => RunsPerRow(g.Q);

    private static int RunsPerRow(int columns) => (columns + RunLength - 1) / RunLength;

    /// <summary>
    /// Floats of scratch one image needs: its padded planes with slack, the tap offsets, a pair of runs' sums (and an
    /// eighth pixel's row, which the transpose reads and drops).
    /// </summary>
    public static int ScratchLength(in Conv2dGeometry g, SimdWidth width) =>
        (g.C * PaddedPlane(g)) + Slack(g) + (g.C * g.R * g.S) + (((2 * RunLength) + 1) * BlockFilters(width));

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
    public static void Forward(in Conv2dGeometry g, SimdWidth width, float* x, float* packed, float* b, float* y, float* scratch,
        int firstBlock, int blocks)
    {
        switch (width, g.StrideW)
        {
            case (SimdWidth.Vector512, 1): Forward<Vec512, Vector512<float>, Two, One>(g, x, packed, b, y, scratch, firstBlock, blocks); break;
            case (SimdWidth.Vector512, _): Forward<Vec512, Vector512<float>, Two, Two>(g, x, packed, b, y, scratch, firstBlock, blocks); break;
            case (_, 1): Forward<Vec256, Vector256<float>, One, One>(g, x, packed, b, y, scratch, firstBlock, blocks); break;
            default: Forward<Vec256, Vector256<float>, One, Two>(g, x, packed, b, y, scratch, firstBlock, blocks); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Forward<TOps, TVec, TVectors, TStride>(in Conv2dGeometry g, float* x, float* packed, float* b, float* y, float* scratch,
        int firstBlock, int blocks)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TVectors : struct, IConstant
        where TStride : struct, IConstant
    {
        int paddedW = PaddedWidth(g), plane = PaddedPlane(g), taps = g.C * g.R * g.S, pq = g.P * g.Q;
        int size = TVectors.Value * TOps.Width, tileRun = RunLength * size;
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
            float* weights = packed + ((long)kb * taps * size);
            var bias0 = b == null ? TOps.Zero : TOps.Load(b + (kb * size));
            var bias1 = b == null || TVectors.Value == 1 ? TOps.Zero : TOps.Load(b + (kb * size) + TOps.Width);
            float* block = y + ((long)kb * size * pq);
            for (int run = 0; run < runs; run += 2)
            {
                int pA = run / runsPerRow, qA = run % runsPerRow * RunLength;
                float* originA = padded + (pA * g.StrideH * paddedW) + (qA * TStride.Value);
                if (run + 1 == runs)
                {
                    Accumulate<TOps, TVec, TVectors, TStride, One>(originA, originA, offsets, taps, weights, bias0, bias1, tile);
                    Scatter(tile, size, block, pq, (pA * g.Q) + qA, Math.Min(RunLength, g.Q - qA));
                    break;
                }

                int pB = (run + 1) / runsPerRow, qB = (run + 1) % runsPerRow * RunLength;
                float* originB = padded + (pB * g.StrideH * paddedW) + (qB * TStride.Value);
                Accumulate<TOps, TVec, TVectors, TStride, Two>(originA, originB, offsets, taps, weights, bias0, bias1, tile);
                Scatter(tile, size, block, pq, (pA * g.Q) + qA, Math.Min(RunLength, g.Q - qA));
                Scatter(tile + tileRun, size, block, pq, (pB * g.Q) + qB, Math.Min(RunLength, g.Q - qB));
            }
        }
    }

    /// <summary>
    /// dx_n (C,H,W) of a strided layer, phase by phase (<see cref="TransposedPlan"/>): dy is padded as the blocked
    /// kernel pads it (<see cref="BlockedConvolution.PadGradient"/>), and each phase's dx pixels, in runs of seven along
    /// its columns, sum their taps for a block of input channels at a time; each sum is stored once, at the stride.
    /// </summary>
    public static void BackwardData(SimdWidth width, TransposedPlan plan, float* packed, float* dy, float* dx, float* scratch)
    {
        if (width == SimdWidth.Vector512)
        {
            BackwardData<Vec512, Vector512<float>, Two>(plan, packed, dy, dx, scratch);
        }
        else
        {
            BackwardData<Vec256, Vector256<float>, One>(plan, packed, dy, dx, scratch);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardData<TOps, TVec, TVectors>(TransposedPlan plan, float* packed, float* dy, float* dx, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TVectors : struct, IConstant
    {
        var g = plan.Geometry;
        int size = TVectors.Value * TOps.Width, planeDx = g.H * g.W;
        float* padded = scratch, tile = scratch + plan.PaddedLength;
        BlockedConvolution.PadGradient(plan, dy, padded);
        for (int index = 0; index < plan.Phases.Length; index++)
        {
            var phase = plan.Phases[index];

            // The phase's dx rows h = Sh·i + φh − Ph and columns x = Sw·j + φw − Pw inside dx: i in [firstI, endI), j in [firstJ, endJ).
            int firstI = Math.Max(0, (g.PadH - phase.RowPhase + g.StrideH - 1) / g.StrideH);
            int endI = Math.Min(plan.RowsOut, CountUpTo(g.H - 1 + g.PadH - phase.RowPhase, g.StrideH));
            int firstJ = Math.Max(0, (g.PadW - phase.ColumnPhase + g.StrideW - 1) / g.StrideW);
            int endJ = Math.Min(plan.ColumnsOut, CountUpTo(g.W - 1 + g.PadW - phase.ColumnPhase, g.StrideW));
            if (endI <= firstI || endJ <= firstJ)
            {
                continue;
            }

            int firstH = (g.StrideH * firstI) + phase.RowPhase - g.PadH, firstX = (g.StrideW * firstJ) + phase.ColumnPhase - g.PadW;
            if (phase.Taps == 0)
            {
                for (int c = 0; c < g.C; c++)
                {
                    for (int i = firstI, h = firstH; i < endI; i++, h += g.StrideH)
                    {
                        for (int j = firstJ, x = firstX; j < endJ; j++, x += g.StrideW)
                        {
                            dx[((long)c * planeDx) + (h * g.W) + x] = 0f;
                        }
                    }
                }

                continue;
            }

            int runsPerRow = RunsPerRow(endJ - firstJ), runs = (endI - firstI) * runsPerRow;
            fixed (int* offsets = phase.Offsets)
            {
                for (int cb = 0; cb < g.C / size; cb++)
                {
                    float* weights = packed + phase.WeightStart + ((long)cb * size * phase.Taps), block = dx + ((long)cb * size * planeDx);
                    for (int run = 0; run < runs; run += 2)
                    {
                        int iA = firstI + (run / runsPerRow), jA = firstJ + (run % runsPerRow * RunLength);
                        float* originA = padded + (iA * plan.RowLength) + jA;
                        int hA = (g.StrideH * iA) + phase.RowPhase - g.PadH, xA = (g.StrideW * jA) + phase.ColumnPhase - g.PadW;
                        if (run + 1 == runs)
                        {
                            Accumulate<TOps, TVec, TVectors, One, One>(originA, originA, offsets, phase.Taps, weights, TOps.Zero, TOps.Zero, tile);
                            StoreStrided(tile, size, block, planeDx, (hA * g.W) + xA, g.StrideW, Math.Min(RunLength, endJ - jA));
                            break;
                        }

                        int iB = firstI + ((run + 1) / runsPerRow), jB = firstJ + ((run + 1) % runsPerRow * RunLength);
                        float* originB = padded + (iB * plan.RowLength) + jB;
                        int hB = (g.StrideH * iB) + phase.RowPhase - g.PadH, xB = (g.StrideW * jB) + phase.ColumnPhase - g.PadW;
                        Accumulate<TOps, TVec, TVectors, One, Two>(originA, originB, offsets, phase.Taps, weights, TOps.Zero, TOps.Zero, tile);
                        StoreStrided(tile, size, block, planeDx, (hA * g.W) + xA, g.StrideW, Math.Min(RunLength, endJ - jA));
                        StoreStrided(tile + (RunLength * size), size, block, planeDx, (hB * g.W) + xB, g.StrideW, Math.Min(RunLength, endJ - jB));
                    }
                }
            }
        }
    }

    /// <summary>
    /// How many i ≥ 0 have stride·i ≤ <paramref name="last"/>: 0 when it is negative (a phase wholly past dx's last row,
    /// as the second row phase of a one-row image: C#'s division rounds −1/2 to 0, which had counted one row).
    /// </summary>
    private static int CountUpTo(int last, int stride) => last < 0 ? 0 : (last / stride) + 1;

    /// <summary>tile[i][f] (pixel i of a run, channel f of the block) to dx[f][first + i·stride] for the run's first <paramref name="pixels"/> pixels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreStrided(float* tile, int size, float* dx, int plane, int first, int stride, int pixels)
    {
        for (int f = 0; f < size; f++)
        {
            float* target = dx + ((long)f * plane) + first;
            for (int i = 0; i < pixels; i++)
            {
                target[i * stride] = tile[(i * size) + f];
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
        int paddedW = PaddedWidth(g), paddedH = g.H + (2 * g.PadH), width = Avx512F.IsSupported ? 16 : 8;
        int vectors = (paddedW + width - 1) / width;
        for (int c = 0; c < g.C; c++)
        {
            float* channel = x + ((long)c * g.H * g.W) - g.PadW, target = padded + ((long)c * paddedH * paddedW);
            for (int h = 0; h < paddedH; h++, target += paddedW)
            {
                int row = h - g.PadH;
                float* source = channel + ((long)row * g.W);
                for (int v = 0; v < vectors; v++)
                {
                    // Lane i holds input column v·width + i − PadW of this row, where that column exists.
                    int first = (v * width) - g.PadW;
                    if (width == 16)
                    {
                        var columns = Vector512<int>.Indices + Vector512.Create(first);
                        var inside = ((uint)row < (uint)g.H ? Vector512<int>.AllBitsSet : Vector512<int>.Zero) &
                            Vector512.GreaterThanOrEqual(columns, Vector512<int>.Zero) & Vector512.LessThan(columns, Vector512.Create(g.W));
                        Avx512F.MaskLoad(source + (v * width), inside.AsSingle(), Vector512<float>.Zero).Store(target + (v * width));
                    }
                    else
                    {
                        var columns = Vector256<int>.Indices + Vector256.Create(first);
                        var inside = ((uint)row < (uint)g.H ? Vector256<int>.AllBitsSet : Vector256<int>.Zero) &
                            Vector256.GreaterThanOrEqual(columns, Vector256<int>.Zero) & Vector256.LessThan(columns, Vector256.Create(g.W));
                        Avx.MaskLoad(source + (v * width), inside.AsSingle()).Store(target + (v * width));
                    }
                }
            }
        }
    }

    /// <summary>
    /// tile[i][j] (pixel i of the run, filter j of its <paramref name="size"/>) to y[j][first + i] for the run's first
    /// <paramref name="pixels"/> pixels: eight filters at a time transposed, each filter's pixels one masked store.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // not inlined (its stackalloc): optimised from the first call
    private static void Scatter(float* tile, int size, float* y, int pq, int first, int pixels)
    {
        float* transposed = stackalloc float[64];
        var mask = Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(pixels)).AsSingle();
        for (int j0 = 0; j0 < size; j0 += 8)
        {
            PackedGemm.Transpose8x8(tile + j0, size, transposed, 8);
            float* target = y + ((long)j0 * pq) + first;
            for (int j = 0; j < 8; j++)
            {
                if (Avx512F.VL.IsSupported)
                {
                    Avx512F.VL.MaskStore(target + ((long)j * pq), mask, Vector256.Load(transposed + (8 * j)));
                }
                else
                {
                    Avx.MaskStore(target + ((long)j * pq), mask, Vector256.Load(transposed + (8 * j)));
                }
            }
        }
    }

    /// <summary>
    /// tile[i][j] = bias[j] + Σ_t weights[t][j] · origin[offsets[t] + i·stride] for the seven pixels i of run A (and of run
    /// B when <typeparamref name="TRuns"/> is two, its sums after A's) and the block's filters j, one or two vectors of
    /// them (<typeparamref name="TVectors"/>): 7 to 28 accumulators.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate<TOps, TVec, TVectors, TStride, TRuns>(float* a, float* b, int* offsets, int taps, float* weights, TVec bias0,
        TVec bias1, float* tile)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TVectors : struct, IConstant
        where TStride : struct, IConstant
        where TRuns : struct, IConstant
    {
        int s = TStride.Value, width = TOps.Width, size = TVectors.Value * width;
        bool pair = TRuns.Value == 2, two = TVectors.Value == 2;
        TVec a00 = bias0, a01 = bias1, a10 = bias0, a11 = bias1, a20 = bias0, a21 = bias1, a30 = bias0, a31 = bias1;
        TVec a40 = bias0, a41 = bias1, a50 = bias0, a51 = bias1, a60 = bias0, a61 = bias1;
        TVec b00 = bias0, b01 = bias1, b10 = bias0, b11 = bias1, b20 = bias0, b21 = bias1, b30 = bias0, b31 = bias1;
        TVec b40 = bias0, b41 = bias1, b50 = bias0, b51 = bias1, b60 = bias0, b61 = bias1;
        for (int t = 0; t < taps; t++, weights += size)
        {
            int offset = offsets[t];
            float* xa = a + offset;
            var w0 = TOps.Load(weights);
            var w1 = two ? TOps.Load(weights + width) : w0;
            Step<TOps, TVec>(two, TOps.Broadcast(xa[0]), w0, w1, ref a00, ref a01);
            Step<TOps, TVec>(two, TOps.Broadcast(xa[s]), w0, w1, ref a10, ref a11);
            Step<TOps, TVec>(two, TOps.Broadcast(xa[2 * s]), w0, w1, ref a20, ref a21);
            Step<TOps, TVec>(two, TOps.Broadcast(xa[3 * s]), w0, w1, ref a30, ref a31);
            Step<TOps, TVec>(two, TOps.Broadcast(xa[4 * s]), w0, w1, ref a40, ref a41);
            Step<TOps, TVec>(two, TOps.Broadcast(xa[5 * s]), w0, w1, ref a50, ref a51);
            Step<TOps, TVec>(two, TOps.Broadcast(xa[6 * s]), w0, w1, ref a60, ref a61);
            if (pair)
            {
                float* xb = b + offset;
                Step<TOps, TVec>(two, TOps.Broadcast(xb[0]), w0, w1, ref b00, ref b01);
                Step<TOps, TVec>(two, TOps.Broadcast(xb[s]), w0, w1, ref b10, ref b11);
                Step<TOps, TVec>(two, TOps.Broadcast(xb[2 * s]), w0, w1, ref b20, ref b21);
                Step<TOps, TVec>(two, TOps.Broadcast(xb[3 * s]), w0, w1, ref b30, ref b31);
                Step<TOps, TVec>(two, TOps.Broadcast(xb[4 * s]), w0, w1, ref b40, ref b41);
                Step<TOps, TVec>(two, TOps.Broadcast(xb[5 * s]), w0, w1, ref b50, ref b51);
                Step<TOps, TVec>(two, TOps.Broadcast(xb[6 * s]), w0, w1, ref b60, ref b61);
            }
        }

        StoreRun<TOps, TVec>(two, tile, size, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61);
        if (pair)
        {
            StoreRun<TOps, TVec>(two, tile + (RunLength * size), size, b00, b01, b10, b11, b20, b21, b30, b31, b40, b41, b50, b51, b60, b61);
        }
    }

    /// <summary>One pixel's step: its broadcast input times the block's one or two weight vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<TOps, TVec>(bool two, TVec pixel, TVec w0, TVec w1, ref TVec sum0, ref TVec sum1)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        sum0 = TOps.MultiplyAdd(pixel, w0, sum0);
        if (two)
        {
            sum1 = TOps.MultiplyAdd(pixel, w1, sum1);
        }
    }

    /// <summary>A run's sums into its tile rows: pixel i's filters at tile + size·i.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRun<TOps, TVec>(bool two, float* tile, int size, TVec p00, TVec p01, TVec p10, TVec p11, TVec p20, TVec p21,
        TVec p30, TVec p31, TVec p40, TVec p41, TVec p50, TVec p51, TVec p60, TVec p61)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        TOps.Store(tile, p00);
        TOps.Store(tile + size, p10);
        TOps.Store(tile + (2 * size), p20);
        TOps.Store(tile + (3 * size), p30);
        TOps.Store(tile + (4 * size), p40);
        TOps.Store(tile + (5 * size), p50);
        TOps.Store(tile + (6 * size), p60);
        if (two)
        {
            int width = TOps.Width;
            TOps.Store(tile + width, p01);
            TOps.Store(tile + size + width, p11);
            TOps.Store(tile + (2 * size) + width, p21);
            TOps.Store(tile + (3 * size) + width, p31);
            TOps.Store(tile + (4 * size) + width, p41);
            TOps.Store(tile + (5 * size) + width, p51);
            TOps.Store(tile + (6 * size) + width, p61);
        }
    }
}
