using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// The filter gradient as outer products, vectorised over the output channels: dwᵀ[t, k] += Σ_o x_pad[o + offset(t)]·dyᵀ[o, k]
/// for taps t = (c, r, s), with o running over each output (p, q) of each image and x_pad read at row Sh·p + r, column
/// Sw·q + s. Per output, two vectors of dyᵀ (2·width filters) and one broadcast pixel per tap feed two FMAs per tap into
/// accumulators that stay in registers over every output of an image: no lanes to add at the end, no row padding in o,
/// and every product is a term of the true sum (a NaN pixel reaches exactly the weights it should). With 512-bit vectors
/// twelve taps at a time (24 accumulators, 2 loads and 12 broadcasts per 24 FMAs: the forward kernel's ratio; with at
/// most 16 filters one vector, 12 accumulators); below, six (12 accumulators in AVX2's 16 registers).
/// <see cref="BlockedConvolution"/>'s filter gradient, vectorised over o, sums dot products and adds their lanes per
/// group of images; its 4 filters × 3 taps read 7 vectors per 12 FMAs and ran conv3x3-128's filter gradient at ~59 % of
/// the FMA peak.
/// </summary>
internal static unsafe class FilterGradientByFilters
{
    /// <summary>
    /// Plain layers with at least 16 output channels (two 256-bit vectors, or one 512-bit vector: with 512-bit vectors,
    /// layers of at most 16 channels take one vector a step, still twelve taps) and a padded image of at most 1 MB, whose
    /// kernel is larger than 1×1 or has fewer than 32 taps: a 1×1 layer's filter gradient is otherwise a GEMM per image
    /// with C columns, which fill the GEMM's 32-column micro-tiles from 32 channels on (a 16 → 16 1×1 layer's filter gradient
    /// at 28×28: 0.35–0.39× the GEMM's time here, ResNet-8's 16 → 32 shortcut's whole backward 0.74–0.77×, both vector
    /// paths; 32 channels and more within noise of it).
    /// </summary>
    public static bool Suits(in Conv2dGeometry g) =>
        g.IsPlain && (g.R * g.S > 1 || g.C < 32) && g.K >= 16 && (long)g.C * (g.H + 2 * g.PadH) * (g.W + 2 * g.PadW) <= 1 << 18 &&
        g.C * g.R * g.S <= 4096;

    /// <summary>
    /// Whether this kernel runs a layer's filter gradient: where it suits, but not layers of at most 4 input channels
    /// (the direct kernel: ResNet-8's 1 → 16 stem ran 0.60 ms here against 0.51). Layers of at most 16 filters on
    /// 512-bit vectors take one vector of filters a step; until the nineteenth session they ran two 256-bit ones, and
    /// those on planes of 192 or more outputs went to <see cref="BlockedConvolution"/>'s kernel (ResNet-8's 16 → 16 at
    /// 28×28: 2.41 ms here against its 1.81 then; one 512-bit vector: 0.78× its time, ten paired rounds at batch 128).
    /// </summary>
    public static bool Preferred(in Conv2dGeometry g) =>
        Suits(g) && !(g.C <= 4 && DirectConvolution.SuitsFilterGradient(g));

    /// <summary>Floats of scratch for <see cref="Accumulate"/>: the padded image, dyᵀ of one image and dwᵀ.</summary>
    public static int ScratchLength(in Conv2dGeometry g, SimdWidth width)
    {
        var layout = Plan(g, width);
        return layout.Image + layout.Gradient + (layout.TapsPadded * layout.FiltersPadded);
    }

    /// <summary>The vector width, vectors of filters a step and tap chunk a layer runs with (see <see cref="Suits"/>).</summary>
    private static Layout Plan(in Conv2dGeometry g, SimdWidth width) => width switch
    {
        SimdWidth.Vector512 when g.K <= 16 => new Layout(g, 16, 12, 1),
        SimdWidth.Vector512 => new Layout(g, 16, 12, 2),
        _ => new Layout(g, (int)width, 6, 2),
    };

    /// <summary>dw (K,C,R,S) += Σ_n Σ_{p,q} dy_n[k,p,q]·x_n[c,Sh·p+r−Ph,Sw·q+s−Pw] over <paramref name="images"/> consecutive images.</summary>
    public static void Accumulate(SimdWidth width, in Conv2dGeometry g, float* x, float* dy, int images, float* dw, float* scratch)
    {
        var layout = Plan(g, width);
        switch (layout.Width)
        {
            case 16: Accumulate<Vec512, Vector512<float>>(g, layout, x, dy, images, dw, scratch); break;
            case 8: Accumulate<Vec256, Vector256<float>>(g, layout, x, dy, images, dw, scratch); break;
            case 4: Accumulate<Vec128, Vector128<float>>(g, layout, x, dy, images, dw, scratch); break;
            default: Accumulate<Scalar, float>(g, layout, x, dy, images, dw, scratch); break;
        }
    }

    /// <summary>Sizes: K rounded up to blocks of two vectors, C·R·S to whole tap chunks, and the scratch regions (cache-line multiples).</summary>
    private readonly struct Layout
    {
        public Layout(in Conv2dGeometry g, int width, int tapChunk, int vectors)
        {
            Width = width;
            Vectors = vectors;
            FiltersPadded = (g.K + vectors * width - 1) / (vectors * width) * (vectors * width);
            TapChunk = tapChunk;
            TapsPadded = (g.C * g.R * g.S + TapChunk - 1) / TapChunk * TapChunk;
            PaddedWidth = g.W + 2 * g.PadW;
            ChannelFloats = (g.H + 2 * g.PadH) * PaddedWidth;
            Image = ((g.C * ChannelFloats) + 15) / 16 * 16;
            Gradient = ((g.P * g.Q * FiltersPadded) + 15) / 16 * 16;
        }

        public int Width { get; }

        /// <summary>Vectors of filters each output's step multiplies: two, or one where 16 filters fill a 512-bit vector.</summary>
        public int Vectors { get; }

        public int FiltersPadded { get; }

        public int TapChunk { get; }

        public int TapsPadded { get; }

        public int PaddedWidth { get; }

        public int ChannelFloats { get; }

        public int Image { get; }

        public int Gradient { get; }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate<TOps, TVec>(in Conv2dGeometry g, in Layout layout, float* x, float* dy, int images, float* dw, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int width = TOps.Width;
        int kp = layout.FiltersPadded, taps = g.C * g.R * g.S, outputs = g.P * g.Q, paddedW = layout.PaddedWidth;
        float* image = scratch, gradient = scratch + layout.Image, sums = gradient + layout.Gradient;
        new Span<float>(image, layout.Image).Clear(); // the borders stay zero; each image rewrites the interior
        new Span<float>(gradient, layout.Gradient).Clear(); // filters past K stay zero
        new Span<float>(sums, layout.TapsPadded * kp).Clear();

        // Where tap t = (c, r, s) reads relative to output (p, q)'s corner; taps past C·R·S read the corner, unused.
        long* offsets = stackalloc long[layout.TapsPadded];
        for (int t = 0; t < layout.TapsPadded; t++)
        {
            offsets[t] = t < taps ? ((long)t / (g.R * g.S) * layout.ChannelFloats) + (t / g.S % g.R * paddedW) + (t % g.S) : 0;
        }

        for (int n = 0; n < images; n++)
        {
            float* xn = x + ((long)n * g.C * g.H * g.W), dyn = dy + ((long)n * g.K * outputs);
            for (int c = 0; c < g.C; c++)
            {
                for (int h = 0; h < g.H; h++)
                {
                    Simd.CopyFloats(xn + (((long)c * g.H + h) * g.W), image + ((long)c * layout.ChannelFloats) + ((h + g.PadH) * paddedW) + g.PadW, g.W);
                }
            }

            Transpose(dyn, g.K, outputs, gradient, kp);

            for (int k0 = 0; k0 < kp; k0 += layout.Vectors * width)
            {
                for (int t0 = 0; t0 < layout.TapsPadded; t0 += layout.TapChunk)
                {
                    if (layout.TapChunk == 12 && layout.Vectors == 1)
                    {
                        TwelveTaps<TOps, TVec, One>(g, image, gradient + k0, kp, offsets + t0, sums + ((long)t0 * kp) + k0, paddedW);
                    }
                    else if (layout.TapChunk == 12)
                    {
                        TwelveTaps<TOps, TVec, Two>(g, image, gradient + k0, kp, offsets + t0, sums + ((long)t0 * kp) + k0, paddedW);
                    }
                    else
                    {
                        SixTaps<TOps, TVec>(g, image, gradient + k0, kp, offsets + t0, sums + ((long)t0 * kp) + k0, paddedW);
                    }
                }
            }
        }

        for (int k = 0; k < g.K; k++)
        {
            for (int t = 0; t < taps; t++)
            {
                dw[((long)k * taps) + t] += sums[((long)t * kp) + k];
            }
        }
    }

    /// <summary>
    /// gradient[o·kp + k] = dy[k·outputs + o] (dyᵀ): 8 × 8 blocks by register transposes where AVX has them, the rest
    /// one float at a time. One float at a time throughout, writing kp floats apart, it had been about 60 % of a 7×7
    /// stride-2 stem's filter gradient (1 → 32 channels at 28×28).
    /// </summary>
    private static void Transpose(float* dy, int filters, int outputs, float* gradient, int kp)
    {
        int k0 = 0, blockedOutputs = System.Runtime.Intrinsics.X86.Avx.IsSupported ? outputs / 8 * 8 : 0;
        for (; blockedOutputs > 0 && k0 + 8 <= filters; k0 += 8)
        {
            for (int o0 = 0; o0 < blockedOutputs; o0 += 8)
            {
                PackedGemm.Transpose8x8(dy + ((long)k0 * outputs) + o0, outputs, gradient + ((long)o0 * kp) + k0, kp);
            }

            for (int k = k0; k < k0 + 8; k++)
            {
                for (int o = blockedOutputs; o < outputs; o++)
                {
                    gradient[((long)o * kp) + k] = dy[((long)k * outputs) + o];
                }
            }
        }

        for (int k = k0; k < filters; k++)
        {
            for (int o = 0; o < outputs; o++)
            {
                gradient[((long)o * kp) + k] = dy[((long)k * outputs) + o];
            }
        }
    }

    /// <summary>
    /// sums[t·kp + j] += Σ_{p,q} image[(Sh·p)·Wp + Sw·q + offsets[t]]·gradient[(p·Q + q)·kp + j] for twelve taps t and
    /// the filters j of this block: one or two vectors of them (<typeparamref name="TVectors"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TwelveTaps<TOps, TVec, TVectors>(in Conv2dGeometry g, float* image, float* gradient, int kp, long* offsets, float* sums, int paddedW)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TVectors : struct, IConstant
    {
        bool pair = TVectors.Value == 2;
        int width = TOps.Width, strideW = g.StrideW, outW = g.Q, outH = g.P; // P and Q once: through `in g` the JIT divides again each row
        long rowStep = (long)g.StrideH * paddedW;
        long t0 = offsets[0], t1 = offsets[1], t2 = offsets[2], t3 = offsets[3], t4 = offsets[4], t5 = offsets[5];
        long t6 = offsets[6], t7 = offsets[7], t8 = offsets[8], t9 = offsets[9], t10 = offsets[10], t11 = offsets[11];
        TVec a0 = TOps.Load(sums), a1 = TOps.Load(sums + kp), a2 = TOps.Load(sums + 2 * kp), a3 = TOps.Load(sums + 3 * kp);
        TVec a4 = TOps.Load(sums + 4 * kp), a5 = TOps.Load(sums + 5 * kp), a6 = TOps.Load(sums + 6 * kp), a7 = TOps.Load(sums + 7 * kp);
        TVec a8 = TOps.Load(sums + 8 * kp), a9 = TOps.Load(sums + 9 * kp), a10 = TOps.Load(sums + 10 * kp), a11 = TOps.Load(sums + 11 * kp);
        float* upper = sums + width;
        TVec b0 = TOps.Zero, b1 = TOps.Zero, b2 = TOps.Zero, b3 = TOps.Zero, b4 = TOps.Zero, b5 = TOps.Zero;
        TVec b6 = TOps.Zero, b7 = TOps.Zero, b8 = TOps.Zero, b9 = TOps.Zero, b10 = TOps.Zero, b11 = TOps.Zero;
        if (pair)
        {
            (b0, b1, b2, b3) = (TOps.Load(upper), TOps.Load(upper + kp), TOps.Load(upper + 2 * kp), TOps.Load(upper + 3 * kp));
            (b4, b5, b6, b7) = (TOps.Load(upper + 4 * kp), TOps.Load(upper + 5 * kp), TOps.Load(upper + 6 * kp), TOps.Load(upper + 7 * kp));
            (b8, b9, b10, b11) = (TOps.Load(upper + 8 * kp), TOps.Load(upper + 9 * kp), TOps.Load(upper + 10 * kp), TOps.Load(upper + 11 * kp));
        }

        float* e = gradient;
        for (int p = 0; p < outH; p++)
        {
            float* pixel = image + (p * rowStep);
            for (int q = 0; q < outW; q++, pixel += strideW, e += kp)
            {
                TVec e0 = TOps.Load(e), e1 = pair ? TOps.Load(e + width) : e0;
                TVec f = TOps.Broadcast(pixel[t0]);
                a0 = TOps.MultiplyAdd(e0, f, a0);
                if (pair)
                {
                    b0 = TOps.MultiplyAdd(e1, f, b0);
                }

                f = TOps.Broadcast(pixel[t1]);
                a1 = TOps.MultiplyAdd(e0, f, a1);
                if (pair)
                {
                    b1 = TOps.MultiplyAdd(e1, f, b1);
                }

                f = TOps.Broadcast(pixel[t2]);
                a2 = TOps.MultiplyAdd(e0, f, a2);
                if (pair)
                {
                    b2 = TOps.MultiplyAdd(e1, f, b2);
                }

                f = TOps.Broadcast(pixel[t3]);
                a3 = TOps.MultiplyAdd(e0, f, a3);
                if (pair)
                {
                    b3 = TOps.MultiplyAdd(e1, f, b3);
                }

                f = TOps.Broadcast(pixel[t4]);
                a4 = TOps.MultiplyAdd(e0, f, a4);
                if (pair)
                {
                    b4 = TOps.MultiplyAdd(e1, f, b4);
                }

                f = TOps.Broadcast(pixel[t5]);
                a5 = TOps.MultiplyAdd(e0, f, a5);
                if (pair)
                {
                    b5 = TOps.MultiplyAdd(e1, f, b5);
                }

                f = TOps.Broadcast(pixel[t6]);
                a6 = TOps.MultiplyAdd(e0, f, a6);
                if (pair)
                {
                    b6 = TOps.MultiplyAdd(e1, f, b6);
                }

                f = TOps.Broadcast(pixel[t7]);
                a7 = TOps.MultiplyAdd(e0, f, a7);
                if (pair)
                {
                    b7 = TOps.MultiplyAdd(e1, f, b7);
                }

                f = TOps.Broadcast(pixel[t8]);
                a8 = TOps.MultiplyAdd(e0, f, a8);
                if (pair)
                {
                    b8 = TOps.MultiplyAdd(e1, f, b8);
                }

                f = TOps.Broadcast(pixel[t9]);
                a9 = TOps.MultiplyAdd(e0, f, a9);
                if (pair)
                {
                    b9 = TOps.MultiplyAdd(e1, f, b9);
                }

                f = TOps.Broadcast(pixel[t10]);
                a10 = TOps.MultiplyAdd(e0, f, a10);
                if (pair)
                {
                    b10 = TOps.MultiplyAdd(e1, f, b10);
                }

                f = TOps.Broadcast(pixel[t11]);
                a11 = TOps.MultiplyAdd(e0, f, a11);
                if (pair)
                {
                    b11 = TOps.MultiplyAdd(e1, f, b11);
                }

            }
        }

        TOps.Store(sums, a0);
        TOps.Store(sums + kp, a1);
        TOps.Store(sums + 2 * kp, a2);
        TOps.Store(sums + 3 * kp, a3);
        TOps.Store(sums + 4 * kp, a4);
        TOps.Store(sums + 5 * kp, a5);
        TOps.Store(sums + 6 * kp, a6);
        TOps.Store(sums + 7 * kp, a7);
        TOps.Store(sums + 8 * kp, a8);
        TOps.Store(sums + 9 * kp, a9);
        TOps.Store(sums + 10 * kp, a10);
        TOps.Store(sums + 11 * kp, a11);
        if (!pair)
        {
            return;
        }

        TOps.Store(upper, b0);
        TOps.Store(upper + kp, b1);
        TOps.Store(upper + 2 * kp, b2);
        TOps.Store(upper + 3 * kp, b3);
        TOps.Store(upper + 4 * kp, b4);
        TOps.Store(upper + 5 * kp, b5);
        TOps.Store(upper + 6 * kp, b6);
        TOps.Store(upper + 7 * kp, b7);
        TOps.Store(upper + 8 * kp, b8);
        TOps.Store(upper + 9 * kp, b9);
        TOps.Store(upper + 10 * kp, b10);
        TOps.Store(upper + 11 * kp, b11);
    }

    /// <summary><see cref="TwelveTaps"/> for six taps: 12 accumulators, two loads and a broadcast in 16 registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SixTaps<TOps, TVec>(in Conv2dGeometry g, float* image, float* gradient, int kp, long* offsets, float* sums, int paddedW)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int width = TOps.Width, strideW = g.StrideW, outW = g.Q, outH = g.P; // P and Q once: through `in g` the JIT divides again each row
        long rowStep = (long)g.StrideH * paddedW;
        long t0 = offsets[0], t1 = offsets[1], t2 = offsets[2], t3 = offsets[3], t4 = offsets[4], t5 = offsets[5];
        float* upper = sums + width;
        TVec a0 = TOps.Load(sums), a1 = TOps.Load(sums + kp), a2 = TOps.Load(sums + 2 * kp);
        TVec a3 = TOps.Load(sums + 3 * kp), a4 = TOps.Load(sums + 4 * kp), a5 = TOps.Load(sums + 5 * kp);
        TVec b0 = TOps.Load(upper), b1 = TOps.Load(upper + kp), b2 = TOps.Load(upper + 2 * kp);
        TVec b3 = TOps.Load(upper + 3 * kp), b4 = TOps.Load(upper + 4 * kp), b5 = TOps.Load(upper + 5 * kp);
        float* e = gradient;
        for (int p = 0; p < outH; p++)
        {
            float* pixel = image + (p * rowStep);
            for (int q = 0; q < outW; q++, pixel += strideW, e += kp)
            {
                TVec e0 = TOps.Load(e), e1 = TOps.Load(e + width);
                TVec f = TOps.Broadcast(pixel[t0]);
                a0 = TOps.MultiplyAdd(e0, f, a0);
                b0 = TOps.MultiplyAdd(e1, f, b0);
                f = TOps.Broadcast(pixel[t1]);
                a1 = TOps.MultiplyAdd(e0, f, a1);
                b1 = TOps.MultiplyAdd(e1, f, b1);
                f = TOps.Broadcast(pixel[t2]);
                a2 = TOps.MultiplyAdd(e0, f, a2);
                b2 = TOps.MultiplyAdd(e1, f, b2);
                f = TOps.Broadcast(pixel[t3]);
                a3 = TOps.MultiplyAdd(e0, f, a3);
                b3 = TOps.MultiplyAdd(e1, f, b3);
                f = TOps.Broadcast(pixel[t4]);
                a4 = TOps.MultiplyAdd(e0, f, a4);
                b4 = TOps.MultiplyAdd(e1, f, b4);
                f = TOps.Broadcast(pixel[t5]);
                a5 = TOps.MultiplyAdd(e0, f, a5);
                b5 = TOps.MultiplyAdd(e1, f, b5);
            }
        }

        TOps.Store(sums, a0);
        TOps.Store(sums + kp, a1);
        TOps.Store(sums + 2 * kp, a2);
        TOps.Store(sums + 3 * kp, a3);
        TOps.Store(sums + 4 * kp, a4);
        TOps.Store(sums + 5 * kp, a5);
        TOps.Store(upper, b0);
        TOps.Store(upper + kp, b1);
        TOps.Store(upper + 2 * kp, b2);
        TOps.Store(upper + 3 * kp, b3);
        TOps.Store(upper + 4 * kp, b4);
        TOps.Store(upper + 5 * kp, b5);
    }
}
