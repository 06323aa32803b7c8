using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Direct stride-1 convolution for layers with few input channels (LeNet's first layer: C = 1), where im2col +
/// GEMM would spend its time copying. The image is zero-padded once into scratch; each output row is then a sum of
/// shifted input rows scaled by broadcast weights, vectorised along the row. The filter gradient is the matching
/// sum of row products, reduced per weight.
/// </summary>
internal static unsafe class DirectConvolution
{
    /// <summary>
    /// Whether the direct forward suits this shape better than im2col + GEMM: stride 1 and few input channels
    /// (measured on LeNet: 3.5× faster for C = 1 and C = 6).
    /// </summary>
    public static bool SuitsForward(in Conv2dGeometry g) => g.IsPlain && g.StrideH == 1 && g.StrideW == 1 && g.C <= 8;

    /// <summary>
    /// Whether the direct filter gradient suits this shape: stride 1 and very few input channels (its per-weight
    /// horizontal sums cost more than GEMM's packing once C·R·S grows: slower than GEMM at C = 6).
    /// </summary>
    public static bool SuitsFilterGradient(in Conv2dGeometry g) => g.IsPlain && g.StrideH == 1 && g.StrideW == 1 && g.C <= 4;

    /// <summary>
    /// Whether backward-data can run as a forward convolution: the full convolution of dy, padded by R−1−Ph and
    /// S−1−Pw, with the 180°-rotated kernel (stride 1, padding below the kernel size).
    /// </summary>
    public static bool SuitsFullConvolution(in Conv2dGeometry g) =>
        g.IsPlain && g.StrideH == 1 && g.StrideW == 1 && g.PadH <= g.R - 1 && g.PadW <= g.S - 1;

    /// <summary>The forward geometry of backward-data's full convolution: dy (N,K,P,Q) in, dx (N,C,H,W) out.</summary>
    public static Conv2dGeometry FullConvolution(in Conv2dGeometry g) =>
        new(g.N, g.K, g.P, g.Q, g.C, g.R, g.S, 1, 1, g.R - 1 - g.PadH, g.S - 1 - g.PadW);

    /// <summary>w (K,C,R,S) → wrot (C,K,R,S), wrot[c,k,r,s] = w[k,c,R−1−r,S−1−s].</summary>
    /// <remarks>
    /// Optimised at its first call: run once per layer and batch, it would otherwise stay in tier-0 code with loop
    /// patchpoints until the runtime compiled an on-stack-replacement copy on the training thread, in epoch 2.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RotateKernel(in Conv2dGeometry g, float* w, float* rotated)
    {
        int rs = g.R * g.S;
        for (int k = 0; k < g.K; k++)
        {
            for (int c = 0; c < g.C; c++)
            {
                float* source = w + ((long)k * g.C + c) * rs;
                float* target = rotated + ((long)c * g.K + k) * rs;
                for (int i = 0; i < rs; i++)
                {
                    target[i] = source[rs - 1 - i];
                }
            }
        }
    }

    /// <summary>
    /// Floats of scratch one image needs: the padded input, then the row-padded output gradient (filter gradient) or
    /// four output rows (forward; on the stack they had grown with the width, 16 bytes a column, past a thread's stack).
    /// </summary>
    public static int ScratchLength(in Conv2dGeometry g, int width)
    {
        var (rowLength, paddedHeight, vectorQ) = Layout(g, width);
        return g.C * paddedHeight * rowLength + Math.Max(g.K * g.P, 4) * vectorQ;
    }

    /// <summary>y_n (K,P,Q) = b + conv(x_n) for one image.</summary>
    public static void Forward(SimdWidth width, in Conv2dGeometry g, float* x, float* w, float* b, float* y, float* scratch)
    {
        switch (width)
        {
            case SimdWidth.Vector512: Forward<Vec512, Vector512<float>>(g, x, w, b, y, scratch); break;
            case SimdWidth.Vector256: Forward<Vec256, Vector256<float>>(g, x, w, b, y, scratch); break;
            case SimdWidth.Vector128: Forward<Vec128, Vector128<float>>(g, x, w, b, y, scratch); break;
            default: Forward<Scalar, float>(g, x, w, b, y, scratch); break;
        }
    }

    /// <summary>dw (K,C,R,S) += Σ_{p,q} dy_n[k,p,q]·x_n[c,p+r−Ph,q+s−Pw] for one image.</summary>
    public static void AccumulateFilterGradient(SimdWidth width, in Conv2dGeometry g, float* x, float* dy, float* dw, float* scratch)
    {
        switch (width)
        {
            case SimdWidth.Vector512: FilterGradient<Vec512, Vector512<float>>(g, x, dy, dw, scratch); break;
            case SimdWidth.Vector256: FilterGradient<Vec256, Vector256<float>>(g, x, dy, dw, scratch); break;
            case SimdWidth.Vector128: FilterGradient<Vec128, Vector128<float>>(g, x, dy, dw, scratch); break;
            default: FilterGradient<Scalar, float>(g, x, dy, dw, scratch); break;
        }
    }

    /// <summary>Row length of the padded input (room for the last vector's overrun), its height, and Q rounded up to vectors.</summary>
    private static (int RowLength, int PaddedHeight, int VectorQ) Layout(in Conv2dGeometry g, int width)
    {
        int vectorQ = (g.Q + width - 1) / width * width;
        return (vectorQ + g.S + 3, g.H + 2 * g.PadH, vectorQ); // +3: the filter gradient reads four columns at a time
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]

    private static float* PadInput<TOps, TVec>(in Conv2dGeometry g, float* x, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        var (rowLength, paddedHeight, _) = Layout(g, TOps.Width);
        new Span<float>(scratch, g.C * paddedHeight * rowLength).Clear();
        for (int c = 0; c < g.C; c++)
        {
            for (int h = 0; h < g.H; h++)
            {
                Simd.CopyFloats(x + ((long)c * g.H + h) * g.W, scratch + ((long)c * paddedHeight + h + g.PadH) * rowLength + g.PadW, g.W);
            }
        }

        return scratch;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Forward<TOps, TVec>(in Conv2dGeometry g, float* x, float* w, float* b, float* y, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int width = TOps.Width;
        var (rowLength, paddedHeight, vectorQ) = Layout(g, width);
        float* padded = PadInput<TOps, TVec>(g, x, scratch);
        float* rows = padded + ((long)g.C * paddedHeight * rowLength);
        int outH = g.P, outW = g.Q, channels = g.C, kernelH = g.R, kernelW = g.S, crs = channels * kernelH * kernelW;
        for (int k0 = 0; k0 < g.K; k0 += 4)
        {
            // Four output channels at once: four independent FMA chains that share every input load.
            int kb = Math.Min(4, g.K - k0);
            float* w0 = w + (long)k0 * crs;
            float* w1 = kb > 1 ? w0 + crs : w0;
            float* w2 = kb > 2 ? w0 + 2 * crs : w0;
            float* w3 = kb > 3 ? w0 + 3 * crs : w0;
            TVec b0 = TOps.Broadcast(b == null ? 0f : b[k0]);
            TVec b1 = TOps.Broadcast(b == null || kb < 2 ? 0f : b[k0 + 1]);
            TVec b2 = TOps.Broadcast(b == null || kb < 3 ? 0f : b[k0 + 2]);
            TVec b3 = TOps.Broadcast(b == null || kb < 4 ? 0f : b[k0 + 3]);
            for (int p = 0; p < outH; p++)
            {
                for (int q = 0; q < vectorQ; q += width)
                {
                    TVec acc0 = b0, acc1 = b1, acc2 = b2, acc3 = b3;
                    int weight = 0;
                    for (int c = 0; c < channels; c++)
                    {
                        float* input = padded + ((long)c * paddedHeight + p) * rowLength + q;
                        for (int r = 0; r < kernelH; r++, input += rowLength)
                        {
                            for (int s = 0; s < kernelW; s++, weight++)
                            {
                                TVec v = TOps.Load(input + s);
                                acc0 = TOps.MultiplyAdd(TOps.Broadcast(w0[weight]), v, acc0);
                                acc1 = TOps.MultiplyAdd(TOps.Broadcast(w1[weight]), v, acc1);
                                acc2 = TOps.MultiplyAdd(TOps.Broadcast(w2[weight]), v, acc2);
                                acc3 = TOps.MultiplyAdd(TOps.Broadcast(w3[weight]), v, acc3);
                            }
                        }
                    }

                    TOps.Store(rows + q, acc0);
                    TOps.Store(rows + vectorQ + q, acc1);
                    TOps.Store(rows + 2 * vectorQ + q, acc2);
                    TOps.Store(rows + 3 * vectorQ + q, acc3);
                }

                for (int kk = 0; kk < kb; kk++)
                {
                    Simd.CopyFloats(rows + kk * vectorQ, y + ((long)(k0 + kk) * outH + p) * outW, outW);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FilterGradient<TOps, TVec>(in Conv2dGeometry g, float* x, float* dy, float* dw, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int width = TOps.Width;
        var (rowLength, paddedHeight, vectorQ) = Layout(g, width);
        float* padded = PadInput<TOps, TVec>(g, x, scratch);

        // dy rows padded with zeros to whole vectors (the tail's input lanes past Q are zeroed too, below).
        float* gradient = scratch + (long)g.C * paddedHeight * rowLength;
        int outH = g.P, outW = g.Q, kernelW = g.S; // locals: P and Q are computed (a division each), and g is read through a reference
        for (int kp = 0; kp < g.K * outH; kp++)
        {
            float* target = gradient + (long)kp * vectorQ;
            Simd.CopyFloats(dy + (long)kp * outW, target, outW);
            new Span<float>(target + outW, vectorQ - outW).Clear();
        }

        // Two filters at a time share each input load (2 gradient and 4 input loads feed 8 FMAs, where one filter took
        // 5 loads for 4: LeNet's first layer's filter gradient ran at 70 GFLOP/s, an eighth of the FMA peak); an odd
        // last filter alone. Every weight's sum takes the same terms in the same order either way: the same bits.
        long filterStride = (long)g.C * g.R * kernelW;
        for (int c = 0; c < g.C; c++)
        {
            for (int r = 0; r < g.R; r++)
            {
                long weight = ((long)c * g.R + r) * kernelW;
                int k = 0;
                for (; k + 2 <= g.K; k += 2)
                {
                    float* gradRows = gradient + (long)k * outH * vectorQ;
                    float* inputRows = padded + ((long)c * paddedHeight + r) * rowLength;
                    if (kernelW == 5)
                    {
                        // LeNet's 5×5 kernels in one block of five columns (blocks of four computed 8 for 5: 0.73× the time).
                        Columns2<TOps, TVec, Five>(gradRows, (long)outH * vectorQ, vectorQ, inputRows, rowLength, outH, outW,
                            dw + (k * filterStride) + weight, filterStride, kernelW);
                        continue;
                    }

                    for (int s0 = 0; s0 < kernelW; s0 += 4)
                    {
                        Columns2<TOps, TVec, Four>(gradRows, (long)outH * vectorQ, vectorQ, inputRows + s0, rowLength, outH, outW,
                            dw + (k * filterStride) + weight + s0, filterStride, kernelW - s0);
                    }
                }

                for (; k < g.K; k++)
                {
                    float* gradRows = gradient + (long)k * outH * vectorQ;
                    float* inputRows = padded + ((long)c * paddedHeight + r) * rowLength;
                    for (int s0 = 0; s0 < kernelW; s0 += 4)
                    {
                        Columns1<TOps, TVec>(gradRows, vectorQ, inputRows + s0, rowLength, outH, outW, dw + (k * filterStride) + weight + s0, kernelW - s0);
                    }
                }
            }
        }
    }

    /// <summary>
    /// target[0 … min(4, columns)) += Σ_p Σ_q dy[p, q]·input[p, q + j]: four kernel columns at once, four chains sharing
    /// each gradient load. Columns past S read valid padded memory and are discarded.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns1<TOps, TVec>(float* gradRows, int gradStride, float* inputRows, int rowLength, int outH, int outW,
        float* target, int columns)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int width = TOps.Width;
        TVec acc0 = TOps.Zero, acc1 = TOps.Zero, acc2 = TOps.Zero, acc3 = TOps.Zero;
        for (int p = 0; p < outH; p++)
        {
            float* gradRow = gradRows + ((long)p * gradStride);
            float* inputRow = inputRows + ((long)p * rowLength);
            int q = 0;
            for (; q + width <= outW; q += width)
            {
                TVec d = TOps.Load(gradRow + q);
                acc0 = TOps.MultiplyAdd(d, TOps.Load(inputRow + q), acc0);
                acc1 = TOps.MultiplyAdd(d, TOps.Load(inputRow + q + 1), acc1);
                acc2 = TOps.MultiplyAdd(d, TOps.Load(inputRow + q + 2), acc2);
                acc3 = TOps.MultiplyAdd(d, TOps.Load(inputRow + q + 3), acc3);
            }

            if (q < outW)
            {
                // The tail: lanes past Q read real pixels of the row (or of the next kernel column); zero them rather
                // than rely on dy's zero lanes, since 0·NaN and 0·∞ are NaN.
                int valid = outW - q;
                TVec d = TOps.Load(gradRow + q);
                acc0 = TOps.MultiplyAdd(d, TOps.KeepFirst(TOps.Load(inputRow + q), valid), acc0);
                acc1 = TOps.MultiplyAdd(d, TOps.KeepFirst(TOps.Load(inputRow + q + 1), valid), acc1);
                acc2 = TOps.MultiplyAdd(d, TOps.KeepFirst(TOps.Load(inputRow + q + 2), valid), acc2);
                acc3 = TOps.MultiplyAdd(d, TOps.KeepFirst(TOps.Load(inputRow + q + 3), valid), acc3);
            }
        }

        AddSums<TOps, TVec>(target, columns, acc0, acc1, acc2, acc3);
    }

    /// <summary>
    /// <see cref="Columns1"/> for two filters at once (their gradient rows <paramref name="filterGradStride"/> apart,
    /// their weights <paramref name="filterStride"/> apart), each input load feeding both; four kernel columns at a
    /// time (any kernel width, in blocks: the last one's columns past S computed and dropped), or five (a 5-wide kernel
    /// in one block): <typeparamref name="TBlock"/>, fixed when the JIT compiles it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns2<TOps, TVec, TBlock>(float* gradRows, long filterGradStride, int gradStride, float* inputRows, int rowLength,
        int outH, int outW, float* target, long filterStride, int columns)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TBlock : struct, IConstant
    {
        int width = TOps.Width;
        TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero, a4 = TOps.Zero;
        TVec b0 = TOps.Zero, b1 = TOps.Zero, b2 = TOps.Zero, b3 = TOps.Zero, b4 = TOps.Zero;
        for (int p = 0; p < outH; p++)
        {
            float* gradRow = gradRows + ((long)p * gradStride);
            float* inputRow = inputRows + ((long)p * rowLength);
            int q = 0;
            for (; q + width <= outW; q += width)
            {
                TVec d = TOps.Load(gradRow + q), e = TOps.Load(gradRow + filterGradStride + q);
                TVec x = TOps.Load(inputRow + q);
                a0 = TOps.MultiplyAdd(d, x, a0);
                b0 = TOps.MultiplyAdd(e, x, b0);
                x = TOps.Load(inputRow + q + 1);
                a1 = TOps.MultiplyAdd(d, x, a1);
                b1 = TOps.MultiplyAdd(e, x, b1);
                x = TOps.Load(inputRow + q + 2);
                a2 = TOps.MultiplyAdd(d, x, a2);
                b2 = TOps.MultiplyAdd(e, x, b2);
                x = TOps.Load(inputRow + q + 3);
                a3 = TOps.MultiplyAdd(d, x, a3);
                b3 = TOps.MultiplyAdd(e, x, b3);
                if (TBlock.Value == 5)
                {
                    x = TOps.Load(inputRow + q + 4);
                    a4 = TOps.MultiplyAdd(d, x, a4);
                    b4 = TOps.MultiplyAdd(e, x, b4);
                }
            }

            if (q < outW)
            {
                int valid = outW - q; // as in Columns1: input lanes past Q zeroed
                TVec d = TOps.Load(gradRow + q), e = TOps.Load(gradRow + filterGradStride + q);
                TVec x = TOps.KeepFirst(TOps.Load(inputRow + q), valid);
                a0 = TOps.MultiplyAdd(d, x, a0);
                b0 = TOps.MultiplyAdd(e, x, b0);
                x = TOps.KeepFirst(TOps.Load(inputRow + q + 1), valid);
                a1 = TOps.MultiplyAdd(d, x, a1);
                b1 = TOps.MultiplyAdd(e, x, b1);
                x = TOps.KeepFirst(TOps.Load(inputRow + q + 2), valid);
                a2 = TOps.MultiplyAdd(d, x, a2);
                b2 = TOps.MultiplyAdd(e, x, b2);
                x = TOps.KeepFirst(TOps.Load(inputRow + q + 3), valid);
                a3 = TOps.MultiplyAdd(d, x, a3);
                b3 = TOps.MultiplyAdd(e, x, b3);
                if (TBlock.Value == 5)
                {
                    x = TOps.KeepFirst(TOps.Load(inputRow + q + 4), valid);
                    a4 = TOps.MultiplyAdd(d, x, a4);
                    b4 = TOps.MultiplyAdd(e, x, b4);
                }
            }
        }

        AddSums<TOps, TVec>(target, columns, a0, a1, a2, a3);
        AddSums<TOps, TVec>(target + filterStride, columns, b0, b1, b2, b3);
        if (TBlock.Value == 5)
        {
            target[4] += TOps.Sum(a4);
            target[filterStride + 4] += TOps.Sum(b4);
        }
    }

    /// <summary>target[j] += the lanes of acc_j summed, for the first min(4, <paramref name="columns"/>) columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddSums<TOps, TVec>(float* target, int columns, TVec acc0, TVec acc1, TVec acc2, TVec acc3)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        BlockedConvolution.AddSums<TOps, TVec>(target, columns, acc0, acc1, acc2);
        if (columns > 3)
        {
            target[3] += TOps.Sum(acc3);
        }
    }
}
