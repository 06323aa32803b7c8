using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Direct convolution of one image as a register-blocked micro-kernel that reads the image in place — an implicit
/// GEMM with nothing packed. Outputs are computed in rows of length L: output (p, q) sits at o = p·L + q, and tap
/// (c, r, s) of every output reads input o + offset(c, r, s), so a vector of consecutive o is one contiguous load per
/// tap — in the zero-padded image (L its padded width, the columns of o past Q dropped when the rows are copied out),
/// or in S copies shifted by a column each (L = Q, nothing dropped); see <see cref="Layout"/>. A stride-2 axis is first
/// split into its even and odd phases (polyphase): then tap r reads phase r mod 2 at row p + ⌊r/2⌋, again one
/// contiguous load. Each step multiplies two vectors of o by eight output channels: 2 loads and 8 broadcasts feed 16
/// FMAs into 16 accumulators, against 5 loads per 4 FMAs in <see cref="DirectConvolution"/>, and nothing is written
/// twice as in im2col + GEMM.
/// </summary>
internal static unsafe partial class BlockedConvolution
{
    internal const int Filters = 8; // output channels per block: 16 accumulators with two vectors of o

    /// <summary>
    /// Plain convolutions with strides of 1 or 2, a kernel larger than 1×1 (a 1×1 layer is a GEMM as it stands), 4 to
    /// 256 output channels (with fewer, most of the eight filter lanes would idle: LeNet's one-channel backward-data
    /// ran 15 % slower than the direct kernel) and a padded image of at most 1 MB, which stays in the processor's
    /// caches while the filters pass over it. Until the third session the bounds were 64 channels and 256 KB; measured
    /// beyond them against im2col + GEMM (2-core Zen 5, forward and stride-1 backward-data, GFLOP/s, AVX-512): 418–448
    /// against 221–311 up to 128 channels and 640 KB, 432 / 401 against 239 / 217 for 256 → 256, 338 against 258 for
    /// an image of 860 KB; on the AVX2 path, with <see cref="CorrelateFour"/>, conv3x3-64 and -128 forward 0.81–0.83×
    /// the GEMM's time (docs/benchmarks.md).
    /// </summary>
    public static bool Suits(in Conv2dGeometry g) =>
        g.IsPlain && g.StrideH is 1 or 2 && g.StrideW is 1 or 2 && g.R * g.S > 1 && g.K is >= 4 and <= 256 && g.C * g.R * g.S <= 4096 &&
        (long)g.C * (g.H + 2 * g.PadH) * (g.W + 2 * g.PadW) <= 1 << 18;

    /// <summary>
    /// Floats of scratch one image's forward pass needs: the image's planes (with slack for the last vectors' reads),
    /// then one block of output rows.
    /// </summary>
    public static int ScratchLength(in Conv2dGeometry g, int width)
    {
        var layout = new Layout(g, width);
        return layout.PaddedLength + (Filters * layout.Span);
    }

    /// <summary>
    /// The image's layout, in one of two forms. Output o = p·L + q for rows of length L, and tap (c, r, s) reads input
    /// o + Offset(c, r, s), so a vector of consecutive o is one contiguous load per tap. Row strides of 2 split the
    /// rows into even and odd phase planes: tap r then reads phase r mod 2 at row p + ⌊r/2⌋.
    /// <list type="bullet">
    /// <item><b>Padded</b>: one zero-padded copy of each channel (column strides of 2 split into phase planes too), L
    /// the padded width; tap s reads ⌊s/Sw⌋ columns in. The L − Q columns of o past Q in each row are not outputs.</item>
    /// <item><b>Shifted</b>: S copies of each channel, copy s holding padded column Sw·q + s at column q, so L = Q: no
    /// column of o is wasted and with Q a multiple of the vector width every load is aligned, for S times the copying
    /// and cache. Chosen when the padded form would waste at least a tenth of its columns: LeNet's 10-wide second layer
    /// (37 %) ran 0.76×, conv3x3-128's 16 of 18 columns 0.89× the padded form's time; conv3x3-64's 32 of 34 ran
    /// 1.05× slower shifted (its 836 KB of copies spill the 1 MB L2 the padded 296 KB fits in).</item>
    /// </list>
    /// Span is the extent of o (P·L) rounded up to whole vectors.
    /// </summary>
    private readonly struct Layout
    {
        public Layout(in Conv2dGeometry g, int width)
        {
            PaddedWidth = g.W + 2 * g.PadW;
            int paddedRow = (PaddedWidth + g.StrideW - 1) / g.StrideW;
            Shifted = g.Q * 10 <= paddedRow * 9;
            RowLength = Shifted ? g.Q : paddedRow;
            ColumnPlanes = Shifted ? g.S : g.StrideW;
            Rows = (g.H + 2 * g.PadH + g.StrideH - 1) / g.StrideH;
            Plane = Rows * RowLength;
            ChannelFloats = g.StrideH * ColumnPlanes * Plane;
            Outputs = g.P * g.Q;
            Span = (g.P * RowLength + width - 1) / width * width;
            Staging = (g.C * ChannelFloats) + (2 * width) + RowLength;
            PaddedLength = Staging + ((g.H + 2 * g.PadH) * PaddedWidth) + width;
        }

        public bool Shifted { get; }

        /// <summary>L: the length of a plane's rows and of o's.</summary>
        public int RowLength { get; }

        /// <summary>Planes per row phase: S shifted copies, or Sw column phases.</summary>
        public int ColumnPlanes { get; }

        public int Rows { get; }

        public int Plane { get; }

        public int ChannelFloats { get; }

        public int Outputs { get; }

        public int Span { get; }

        public int PaddedWidth { get; }

        /// <summary>
        /// Where one zero-padded channel is staged while its planes are cut from it: after the planes and their zeroed
        /// slack (vectors past the last output read up to 2 vectors and a row beyond the last plane's rows).
        /// </summary>
        public int Staging { get; }

        /// <summary>The planes, slack and staging area (with room for a vector read past its end).</summary>
        public int PaddedLength { get; }

        /// <summary>Whether o's extent holds more than the outputs (columns past Q, or vectors past P·Q).</summary>
        public bool HasSlack => Span != Outputs;

        /// <summary>Where tap (c, r, s) of output o = 0 reads: its plane, ⌊r/Sh⌋ rows and (padded form) ⌊s/Sw⌋ columns in.</summary>
        public int Offset(in Conv2dGeometry g, int c, int r, int s) =>
            (c * ChannelFloats) + ((((r % g.StrideH) * ColumnPlanes) + (Shifted ? s : s % g.StrideW)) * Plane) + (r / g.StrideH * RowLength) +
            (Shifted ? 0 : s / g.StrideW);
    }

    /// <summary>
    /// How many images the blocked filter gradient sums together (0: it does not suit this layer): more than 4 input
    /// channels (fewer keep <see cref="DirectConvolution"/>'s filter gradient), at most 16 output channels (more always
    /// take <see cref="FilterGradientByFilters"/>: conv3x3-128's filter gradient ran 7.6 ms here against 5.4 there, on
    /// AVX-512; which of the two takes 16 is <see cref="FilterGradientByFilters.Preferred"/>'s choice), a kernel of
    /// at least 4 taps, planes of at least 64 outputs (ResNet-8's 7×7 planes measured 8 % slower than the GEMM even
    /// summed 8 at a time; LeNet's 10×10 second layer 0.72× the GEMM's time on AVX-512, 0.60× on AVX2), and enough
    /// images that the sums over o are long (~1,024 outputs) before their lanes are added — at most 8, and their dy
    /// at most 512 KB (read once per input channel, it should stay in L2).
    /// </summary>
    public static int FilterGradientGroup(in Conv2dGeometry g, int width)
    {
        var layout = new Layout(g, width);
        if (!Suits(g) || g.K > 16 || g.C <= 4 || g.R * g.S < 4 || layout.Outputs < 64)
        {
            return 0;
        }

        return Math.Clamp(Math.Min((1024 + layout.Span - 1) / layout.Span, (1 << 17) / (g.K * layout.Span)), 1, 8);
    }

    /// <summary>Floats of filter-gradient scratch per image: its padded planes, then its dy in the same row layout.</summary>
    private static int ImageFloats(in Conv2dGeometry g, in Layout layout) => layout.PaddedLength + (g.K * layout.Span);

    /// <summary>Floats of scratch for a filter gradient over <paramref name="images"/> images.</summary>
    public static int FilterGradientScratch(in Conv2dGeometry g, int width, int images) => images * ImageFloats(g, new Layout(g, width));

    /// <summary>
    /// Whether the filter gradient multiplies pixels by the zeros of o's slack (columns past Q, vectors past P·Q): then
    /// 0 · NaN or 0 · ∞ would put a NaN where PyTorch has none, and images holding either must take the GEMM path.
    /// </summary>
    public static bool ReadsPastOutputs(in Conv2dGeometry g, int width) => new Layout(g, width).HasSlack;

    /// <summary>
    /// dw (K,C,R,S) += Σ_n Σ_{p,q} dy_n[k,p,q]·x_n[c,p+r−Ph,q+s−Pw] over <paramref name="images"/> consecutive images
    /// with finite values.
    /// </summary>
    public static void AccumulateFilterGradient(SimdWidth width, in Conv2dGeometry g, float* x, float* dy, int images, float* dw, float* scratch)
    {
        switch (width)
        {
            case SimdWidth.Vector512: FilterGradient<Vec512, Vector512<float>>(g, x, dy, images, dw, scratch); break;
            case SimdWidth.Vector256: FilterGradient<Vec256, Vector256<float>>(g, x, dy, images, dw, scratch); break;
            case SimdWidth.Vector128: FilterGradient<Vec128, Vector128<float>>(g, x, dy, images, dw, scratch); break;
            default: FilterGradient<Scalar, float>(g, x, dy, images, dw, scratch); break;
        }
    }

    /// <summary>y_n (K,P,Q) = b + conv(x_n) for one image (b may be null).</summary>
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Forward<TOps, TVec>(in Conv2dGeometry g, float* x, float* w, float* b, float* y, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        var layout = new Layout(g, TOps.Width);
        int span = layout.Span, outputs = layout.Outputs, crs = g.C * g.R * g.S;
        float* padded = Pad<TOps, TVec>(g, layout, x, scratch);
        float* rows = padded + layout.PaddedLength;

        // Where each tap reads, in the weights' (c, r, s) order: channel 0's R·S taps (Offset divides by the strides,
        // which per tap of a 150-tap layer cost a third of an image's time), then the same shifted by a channel each.
        int* offsets = stackalloc int[crs];
        int kernelTaps = g.R * g.S;
        for (int t = 0; t < kernelTaps; t++)
        {
            offsets[t] = layout.Offset(g, 0, t / g.S, t % g.S);
        }

        for (int t = kernelTaps; t < crs; t++)
        {
            offsets[t] = offsets[t - kernelTaps] + layout.ChannelFloats;
        }

        // Where o's extent is exactly the outputs (shifted layout, P·Q whole vectors) a full block of filters writes
        // straight into y, its sums starting at the bias: no copy-out (conv3x3-128's forward 0.98–0.99× the time).
        // Otherwise the rows are copied out with the bias added (starting LeNet's first layer's sums of 25 taps at the
        // bias cost it 3–7 %: 16 broadcasts per 400 multiply-adds).
        float* bias = stackalloc float[Filters];
        bool straight = !layout.HasSlack;
        for (int k0 = 0; k0 < g.K; k0 += Filters)
        {
            int kb = Math.Min(Filters, g.K - k0);
            float* block = y + ((long)k0 * outputs);
            if (straight && kb == Filters)
            {
                for (int f = 0; f < Filters; f++)
                {
                    bias[f] = b == null ? 0f : b[k0 + f];
                }

                Correlate<TOps, TVec, StartAtValues>(padded, offsets, crs, w + (long)k0 * crs, kb, span, block, bias);
                continue;
            }

            Correlate<TOps, TVec>(padded, offsets, crs, w + (long)k0 * crs, kb, span, rows);

            // Copy out the real outputs (the first Q of each row of L; all P·Q at once when L = Q), adding the bias.
            int runs = layout.Shifted ? 1 : g.P, run = layout.Shifted ? outputs : g.Q;
            for (int kk = 0; kk < kb; kk++)
            {
                float biasValue = b == null ? 0f : b[k0 + kk];
                for (int p = 0; p < runs; p++)
                {
                    Simd.CopyAdding(rows + ((long)kk * span) + ((long)p * layout.RowLength), block + ((long)kk * outputs) + ((long)p * run), run, biasValue);
                }
            }
        }
    }

    /// <summary>
    /// The micro-kernel: rows[f·span + o] = Σ_t weights[f·taps + t] · padded[o + offsets[t]] for up to eight filters f
    /// and every o in [0, span), two vectors of o at a time. Filters past <paramref name="filters"/> repeat the first
    /// and their rows are written but never read. With 512-bit vectors all eight filters in one pass (16 accumulators
    /// of the 32 registers); with narrower ones two passes of four (8 accumulators): AVX2 has 16 registers, and 16
    /// accumulators with their two loads and a broadcast spilled, which ran 3×3 layers at half the GEMM's speed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Correlate<TOps, TVec>(float* padded, int* offsets, int taps, float* weights, int filters, int span, float* rows)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged => Correlate<TOps, TVec, StartAtZero>(padded, offsets, taps, weights, filters, span, rows, null);

    /// <summary>
    /// <see cref="Correlate{TOps, TVec}"/> with each filter's sums starting at <paramref name="initial"/>[f] when
    /// <typeparamref name="TStart"/> says so (a compile-time choice: starting short sums of 25 taps from memory instead
    /// of cleared registers cost LeNet's first layer 3–7 %).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Correlate<TOps, TVec, TStart>(float* padded, int* offsets, int taps, float* weights, int filters, int span, float* rows,
        float* initial)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TStart : struct, ISumStart
    {
        int width = TOps.Width;
        float* w0 = weights;
        float* w1 = filters > 1 ? w0 + taps : w0, w2 = filters > 2 ? w0 + 2 * taps : w0, w3 = filters > 3 ? w0 + 3 * taps : w0;
        float* w4 = filters > 4 ? w0 + 4 * taps : w0, w5 = filters > 5 ? w0 + 5 * taps : w0, w6 = filters > 6 ? w0 + 6 * taps : w0;
        float* w7 = filters > 7 ? w0 + 7 * taps : w0;
        int pairs = span / (2 * width) * (2 * width);
        if (pairs < span)
        {
            CorrelateLastVector<TOps, TVec, TStart>(padded + pairs, offsets, taps, w0, w1, w2, w3, w4, w5, w6, w7, span, rows + pairs, initial);
        }

        if (width < 16)
        {
            // Three vectors of o at a time, then pairs (an even number of vectors: six at a time go to triples).
            int triples = pairs / (6 * width) * (6 * width);
            float* upper = initial == null ? null : initial + 4;
            CorrelateFourTriples<TOps, TVec, TStart>(padded, offsets, taps, w0, w1, w2, w3, triples, span, rows, initial);
            CorrelateFourTriples<TOps, TVec, TStart>(padded, offsets, taps, w4, w5, w6, w7, triples, span, rows + 4L * span, upper);
            CorrelateFour<TOps, TVec, TStart>(padded + triples, offsets, taps, w0, w1, w2, w3, pairs - triples, span, rows + triples, initial);
            CorrelateFour<TOps, TVec, TStart>(
                padded + triples, offsets, taps, w4, w5, w6, w7, pairs - triples, span, rows + triples + 4L * span, upper);
            return;
        }

        for (int o = 0; o < pairs; o += 2 * width)
        {
            TVec a0 = Start<TOps, TVec, TStart>(initial, 0), a1 = Start<TOps, TVec, TStart>(initial, 1);
            TVec a2 = Start<TOps, TVec, TStart>(initial, 2), a3 = Start<TOps, TVec, TStart>(initial, 3);
            TVec a4 = Start<TOps, TVec, TStart>(initial, 4), a5 = Start<TOps, TVec, TStart>(initial, 5);
            TVec a6 = Start<TOps, TVec, TStart>(initial, 6), a7 = Start<TOps, TVec, TStart>(initial, 7);
            TVec c0 = a0, c1 = a1, c2 = a2, c3 = a3, c4 = a4, c5 = a5, c6 = a6, c7 = a7;
            float* origin = padded + o;
            for (int tap = 0; tap < taps; tap++)
            {
                float* input = origin + offsets[tap];
                TVec v = TOps.Load(input), u = TOps.Load(input + width);
                TVec f = TOps.Broadcast(w0[tap]);
                a0 = TOps.MultiplyAdd(f, v, a0);
                c0 = TOps.MultiplyAdd(f, u, c0);
                f = TOps.Broadcast(w1[tap]);
                a1 = TOps.MultiplyAdd(f, v, a1);
                c1 = TOps.MultiplyAdd(f, u, c1);
                f = TOps.Broadcast(w2[tap]);
                a2 = TOps.MultiplyAdd(f, v, a2);
                c2 = TOps.MultiplyAdd(f, u, c2);
                f = TOps.Broadcast(w3[tap]);
                a3 = TOps.MultiplyAdd(f, v, a3);
                c3 = TOps.MultiplyAdd(f, u, c3);
                f = TOps.Broadcast(w4[tap]);
                a4 = TOps.MultiplyAdd(f, v, a4);
                c4 = TOps.MultiplyAdd(f, u, c4);
                f = TOps.Broadcast(w5[tap]);
                a5 = TOps.MultiplyAdd(f, v, a5);
                c5 = TOps.MultiplyAdd(f, u, c5);
                f = TOps.Broadcast(w6[tap]);
                a6 = TOps.MultiplyAdd(f, v, a6);
                c6 = TOps.MultiplyAdd(f, u, c6);
                f = TOps.Broadcast(w7[tap]);
                a7 = TOps.MultiplyAdd(f, v, a7);
                c7 = TOps.MultiplyAdd(f, u, c7);
            }

            float* row = rows + o;
            TOps.Store(row, a0);
            TOps.Store(row + width, c0);
            TOps.Store(row + span, a1);
            TOps.Store(row + span + width, c1);
            TOps.Store(row + 2 * span, a2);
            TOps.Store(row + 2 * span + width, c2);
            TOps.Store(row + 3 * span, a3);
            TOps.Store(row + 3 * span + width, c3);
            TOps.Store(row + 4 * span, a4);
            TOps.Store(row + 4 * span + width, c4);
            TOps.Store(row + 5 * span, a5);
            TOps.Store(row + 5 * span + width, c5);
            TOps.Store(row + 6 * span, a6);
            TOps.Store(row + 6 * span + width, c6);
            TOps.Store(row + 7 * span, a7);
            TOps.Store(row + 7 * span + width, c7);
        }
    }

    /// <summary>Filter f's starting sums: initial[f] in every lane, or cleared.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec Start<TOps, TVec, TStart>(float* initial, int f)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TStart : struct, ISumStart => TStart.AtValues ? TOps.Broadcast(initial[f]) : TOps.Zero;

    /// <summary>
    /// The last, odd vector of o for all eight filters (8 accumulators): Span is rounded to whole vectors, not pairs —
    /// LeNet's 100-output second layer computes 112 outputs instead of 128.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CorrelateLastVector<TOps, TVec, TStart>(float* origin, int* offsets, int taps, float* w0, float* w1, float* w2, float* w3,
        float* w4, float* w5, float* w6, float* w7, int span, float* row, float* initial)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TStart : struct, ISumStart
    {
        TVec a0 = Start<TOps, TVec, TStart>(initial, 0), a1 = Start<TOps, TVec, TStart>(initial, 1);
        TVec a2 = Start<TOps, TVec, TStart>(initial, 2), a3 = Start<TOps, TVec, TStart>(initial, 3);
        TVec a4 = Start<TOps, TVec, TStart>(initial, 4), a5 = Start<TOps, TVec, TStart>(initial, 5);
        TVec a6 = Start<TOps, TVec, TStart>(initial, 6), a7 = Start<TOps, TVec, TStart>(initial, 7);
        for (int tap = 0; tap < taps; tap++)
        {
            TVec v = TOps.Load(origin + offsets[tap]);
            a0 = TOps.MultiplyAdd(TOps.Broadcast(w0[tap]), v, a0);
            a1 = TOps.MultiplyAdd(TOps.Broadcast(w1[tap]), v, a1);
            a2 = TOps.MultiplyAdd(TOps.Broadcast(w2[tap]), v, a2);
            a3 = TOps.MultiplyAdd(TOps.Broadcast(w3[tap]), v, a3);
            a4 = TOps.MultiplyAdd(TOps.Broadcast(w4[tap]), v, a4);
            a5 = TOps.MultiplyAdd(TOps.Broadcast(w5[tap]), v, a5);
            a6 = TOps.MultiplyAdd(TOps.Broadcast(w6[tap]), v, a6);
            a7 = TOps.MultiplyAdd(TOps.Broadcast(w7[tap]), v, a7);
        }

        TOps.Store(row, a0);
        TOps.Store(row + span, a1);
        TOps.Store(row + 2 * span, a2);
        TOps.Store(row + 3 * span, a3);
        TOps.Store(row + 4 * span, a4);
        TOps.Store(row + 5 * span, a5);
        TOps.Store(row + 6 * span, a6);
        TOps.Store(row + 7 * span, a7);
    }

    /// <summary><see cref="CorrelateFour"/> three vectors of o at a time: 12 accumulators, 3 loads and a broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CorrelateFourTriples<TOps, TVec, TStart>(float* padded, int* offsets, int taps, float* w0, float* w1, float* w2, float* w3,
        int count, int span, float* rows, float* initial)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TStart : struct, ISumStart
    {
        int width = TOps.Width;
        for (int o = 0; o < count; o += 3 * width)
        {
            TVec a0 = Start<TOps, TVec, TStart>(initial, 0), a1 = Start<TOps, TVec, TStart>(initial, 1);
            TVec a2 = Start<TOps, TVec, TStart>(initial, 2), a3 = Start<TOps, TVec, TStart>(initial, 3);
            TVec c0 = a0, c1 = a1, c2 = a2, c3 = a3;
            TVec d0 = a0, d1 = a1, d2 = a2, d3 = a3;
            float* origin = padded + o;
            for (int tap = 0; tap < taps; tap++)
            {
                float* input = origin + offsets[tap];
                TVec v = TOps.Load(input), u = TOps.Load(input + width), z = TOps.Load(input + 2 * width);
                TVec f = TOps.Broadcast(w0[tap]);
                a0 = TOps.MultiplyAdd(f, v, a0);
                c0 = TOps.MultiplyAdd(f, u, c0);
                d0 = TOps.MultiplyAdd(f, z, d0);
                f = TOps.Broadcast(w1[tap]);
                a1 = TOps.MultiplyAdd(f, v, a1);
                c1 = TOps.MultiplyAdd(f, u, c1);
                d1 = TOps.MultiplyAdd(f, z, d1);
                f = TOps.Broadcast(w2[tap]);
                a2 = TOps.MultiplyAdd(f, v, a2);
                c2 = TOps.MultiplyAdd(f, u, c2);
                d2 = TOps.MultiplyAdd(f, z, d2);
                f = TOps.Broadcast(w3[tap]);
                a3 = TOps.MultiplyAdd(f, v, a3);
                c3 = TOps.MultiplyAdd(f, u, c3);
                d3 = TOps.MultiplyAdd(f, z, d3);
            }

            float* row = rows + o;
            TOps.Store(row, a0);
            TOps.Store(row + width, c0);
            TOps.Store(row + 2 * width, d0);
            TOps.Store(row + span, a1);
            TOps.Store(row + span + width, c1);
            TOps.Store(row + span + 2 * width, d1);
            TOps.Store(row + 2 * span, a2);
            TOps.Store(row + 2 * span + width, c2);
            TOps.Store(row + 2 * span + 2 * width, d2);
            TOps.Store(row + 3 * span, a3);
            TOps.Store(row + 3 * span + width, c3);
            TOps.Store(row + 3 * span + 2 * width, d3);
        }
    }

    /// <summary>
    /// <see cref="Correlate{TOps, TVec, TStart}"/> for four filters (weights <paramref name="w0"/> … <paramref name="w3"/>,
    /// rows f·span of <paramref name="rows"/>) over the first <paramref name="pairs"/> outputs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CorrelateFour<TOps, TVec, TStart>(float* padded, int* offsets, int taps, float* w0, float* w1, float* w2, float* w3,
        int pairs, int span, float* rows, float* initial)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
        where TStart : struct, ISumStart
    {
        int width = TOps.Width;
        for (int o = 0; o < pairs; o += 2 * width)
        {
            TVec a0 = Start<TOps, TVec, TStart>(initial, 0), a1 = Start<TOps, TVec, TStart>(initial, 1);
            TVec a2 = Start<TOps, TVec, TStart>(initial, 2), a3 = Start<TOps, TVec, TStart>(initial, 3);
            TVec c0 = a0, c1 = a1, c2 = a2, c3 = a3;
            float* origin = padded + o;
            for (int tap = 0; tap < taps; tap++)
            {
                float* input = origin + offsets[tap];
                TVec v = TOps.Load(input), u = TOps.Load(input + width);
                TVec f = TOps.Broadcast(w0[tap]);
                a0 = TOps.MultiplyAdd(f, v, a0);
                c0 = TOps.MultiplyAdd(f, u, c0);
                f = TOps.Broadcast(w1[tap]);
                a1 = TOps.MultiplyAdd(f, v, a1);
                c1 = TOps.MultiplyAdd(f, u, c1);
                f = TOps.Broadcast(w2[tap]);
                a2 = TOps.MultiplyAdd(f, v, a2);
                c2 = TOps.MultiplyAdd(f, u, c2);
                f = TOps.Broadcast(w3[tap]);
                a3 = TOps.MultiplyAdd(f, v, a3);
                c3 = TOps.MultiplyAdd(f, u, c3);
            }

            float* row = rows + o;
            TOps.Store(row, a0);
            TOps.Store(row + width, c0);
            TOps.Store(row + span, a1);
            TOps.Store(row + span + width, c1);
            TOps.Store(row + 2 * span, a2);
            TOps.Store(row + 2 * span + width, c2);
            TOps.Store(row + 3 * span, a3);
            TOps.Store(row + 3 * span + width, c3);
        }
    }

    /// <summary>
    /// The image in <see cref="Layout"/>'s planes (padded or shifted), zeros where a tap reads padding, then zeroed slack. A padded
    /// layer's channel is first staged zero-padded (an unpadded one is read in place); the plane rows are then cut from
    /// its rows in address order, whole vectors at a time: a vector past a row's end writes into the next row before
    /// that row is written (or into the slack, cleared last). No call per row: a Buffer.MemoryCopy or
    /// <see cref="Span{T}.Clear"/> per row of a few floats made this a fifth of LeNet's second layer's time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float* Pad<TOps, TVec>(in Conv2dGeometry g, in Layout layout, float* x, float* padded)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        Debug.Assert(g.StrideH is 1 or 2 && g.StrideW is 1 or 2, "Suits admits strides of 1 and 2; the phase counts below assume them");
        int width = TOps.Width, rows = layout.Rows, rowLength = layout.RowLength, strideW = g.StrideW, paddedW = layout.PaddedWidth;
        int paddedH = g.H + 2 * g.PadH;
        long imageFloats = (long)g.C * g.H * g.W;
        bool staged = g.PadH > 0 || g.PadW > 0;

        // Stride 1, padded form: a channel's one plane is its zero-padded copy, row for row (the staging layout), so
        // the rows go there directly — one copy where staging and cutting made two (a 3×3 layer of ResNet-8 spent 6 %
        // of a training step padding).
        if (staged && g.StrideH == 1 && strideW == 1 && !layout.Shifted)
        {
            PadInPlace(g, layout, x, padded);
            return padded;
        }

        float* staging = padded + layout.Staging;
        if (staged)
        {
            new Span<float>(staging, paddedH * paddedW).Clear(); // the borders stay zero; every channel rewrites the interior
        }

        var zero = TOps.Zero;
        for (int c = 0; c < g.C; c++)
        {
            float* channel = x + ((long)c * g.H * g.W);
            long readable = imageFloats - ((long)c * g.H * g.W); // floats from the channel's start to the image's end
            if (staged)
            {
                for (int h = 0; h < g.H; h++)
                {
                    Simd.CopyFloats(channel + ((long)h * g.W), staging + ((h + g.PadH) * paddedW) + g.PadW, g.W);
                }

                channel = staging;
                readable = ((long)paddedH * paddedW) + width;
            }

            // Plane (phase, j) row i: padded row Sh·i + phase from column j (the shift s, or the column phase), every Sw-th.
            // Rows are written whole vectors at a time while their reads stay inside the channel's floats; the rest
            // (the image's last rows read in place, or a column phase) one float at a time; rows past the padded
            // height (a row phase's last) are zero.
            float* target = padded + (long)c * layout.ChannelFloats;
            int vectorLength = (rowLength + width - 1) / width * width;
            long rowStep = (long)g.StrideH * paddedW;
            for (int phase = 0; phase < g.StrideH; phase++)
            {
                int valid = Math.Min(rows, g.StrideH == 1 ? paddedH : (paddedH - phase + 1) / 2); // strides are 1 or 2 (Suits)
                for (int j = 0; j < layout.ColumnPlanes; j++, target += (long)rows * rowLength)
                {
                    float* source = channel + ((long)phase * paddedW) + j;
                    int vectorRows = 0;
                    if (strideW == 1)
                    {
                        vectorRows = valid;
                        while (vectorRows > 0 && ((long)phase * paddedW) + j + ((vectorRows - 1) * rowStep) + vectorLength > readable)
                        {
                            vectorRows--;
                        }
                    }

                    int i = 0;
                    if (vectorLength == width)
                    {
                        float* from = source, to = target;
                        for (; i < vectorRows; i++, from += rowStep, to += rowLength)
                        {
                            TOps.Store(to, TOps.Load(from));
                        }
                    }
                    else
                    {
                        for (; i < vectorRows; i++)
                        {
                            for (int q = 0; q < rowLength; q += width)
                            {
                                TOps.Store(target + ((long)i * rowLength) + q, TOps.Load(source + (i * rowStep) + q));
                            }
                        }
                    }

                    // The last column phase of an odd padded width is one column short: zero there.
                    // (No division: one per plane was a fifth of LeNet's second layer's padding, 30 planes an image.)
                    int columns = Math.Min(rowLength, strideW == 1 ? paddedW - j : (paddedW - j + 1) / 2);
                    for (; i < valid; i++)
                    {
                        float* from = source + (i * rowStep), to = target + ((long)i * rowLength);
                        int q = 0;
                        if (strideW == 2 && Vector256.IsHardwareAccelerated)
                        {
                            var evenLanes = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
                            // Every other column: eight at a time, the even lanes of two vectors (ResNet-8's stride-2
                            // layers spent more on this copy, one float and one bounds check at a time, than on their
                            // multiply-adds). The last eight may run past the row's columns, as the vectors above run
                            // past rows: what they write there is overwritten below or by the rows and planes after.
                            long readableHere = readable - ((long)phase * paddedW) - j - (i * rowStep);
                            for (; q < columns && (2 * q) + 16 <= readableHere; q += 8)
                            {
                                var low = Vector256.Load(from + (2 * q));
                                var high = Vector256.Load(from + (2 * q) + 8);
                                Vector256.Create(Vector256.Shuffle(low, evenLanes).GetLower(), Vector256.Shuffle(high, evenLanes).GetLower()).Store(to + q);
                            }
                        }

                        for (; q < columns; q++)
                        {
                            to[q] = from[strideW * q];
                        }

                        for (q = columns; q < rowLength; q++)
                        {
                            to[q] = 0f;
                        }
                    }

                    for (; i < rows; i++)
                    {
                        for (int q = 0; q < rowLength; q += width)
                        {
                            TOps.Store(target + ((long)i * rowLength) + q, zero);
                        }
                    }
                }
            }
        }

        new Span<float>(padded + (long)g.C * layout.ChannelFloats, (2 * width) + rowLength).Clear();
        return padded;
    }

    /// <summary>
    /// <see cref="Pad{TOps, TVec}"/> for a stride-1 layer in the padded form: each channel's plane is its zero-padded
    /// image (rows of <see cref="Layout.PaddedWidth"/>), written in place — the border columns zeroed float by float
    /// (one call per row for a float or two had cost more than the copy), the top and bottom rows cleared whole.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PadInPlace(in Conv2dGeometry g, in Layout layout, float* x, float* padded)
    {
        int paddedW = layout.PaddedWidth, bottom = layout.Rows - g.PadH - g.H, right = paddedW - g.PadW - g.W;
        for (int c = 0; c < g.C; c++)
        {
            float* channel = x + ((long)c * g.H * g.W), plane = padded + ((long)c * layout.ChannelFloats);
            new Span<float>(plane, g.PadH * paddedW).Clear();
            float* row = plane + ((long)g.PadH * paddedW);
            for (int h = 0; h < g.H; h++, row += paddedW)
            {
                for (int q = 0; q < g.PadW; q++)
                {
                    row[q] = 0f;
                }

                Simd.CopyFloats(channel + ((long)h * g.W), row + g.PadW, g.W);
                for (int q = paddedW - right; q < paddedW; q++)
                {
                    row[q] = 0f;
                }
            }

            new Span<float>(row, bottom * paddedW).Clear();
        }

        // The slack after the last plane, which the last vectors of o read (as Pad clears it).
        new Span<float>(padded + ((long)g.C * layout.ChannelFloats), layout.Staging - (g.C * layout.ChannelFloats)).Clear();
    }

    /// <summary>
    /// The filter gradient in the same layout: dw[k,c,r,s] accumulates Σ_n Σ_o dy_n[k,o]·x_n[c,o + offset(r,s)] in
    /// vector accumulators over a group of images, summed across lanes once per group. dy is read where it lies when
    /// P·Q fills whole steps; otherwise it is copied with zeros up to Span.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FilterGradient<TOps, TVec>(in Conv2dGeometry g, float* x, float* dy, int images, float* dw, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int width = TOps.Width;
        var layout = new Layout(g, width);
        int span = layout.Span, outputs = layout.Outputs, plane = layout.ChannelFloats, channels = g.C, kernelW = g.S, taps = g.R * g.S;
        int filters = g.K, paddedLength = layout.PaddedLength;
        for (int n = 0; n < images; n++)
        {
            Pad<TOps, TVec>(g, layout, x + (long)n * channels * g.H * g.W, scratch + (long)n * paddedLength);
        }

        // dy in o's row layout, zeros in the columns past Q and past the last row; read in place when that is dy's own.
        float* gradients = dy;
        if (layout.HasSlack)
        {
            gradients = scratch + (long)images * paddedLength;
            new Span<float>(gradients, images * filters * span).Clear();
            int rowLength = layout.RowLength, outW = g.Q;
            for (long map = 0; map < (long)images * filters; map++)
            {
                for (int p = 0; p < g.P; p++)
                {
                    Simd.CopyFloats(dy + (map * outputs) + ((long)p * outW), gradients + (map * span) + ((long)p * rowLength), outW);
                }
            }
        }

        var planes = new Planes(scratch, paddedLength, gradients, (long)filters * span);

        // Where tap t = r·S + s reads within a channel's (phase) planes; past the last tap, tap 0's place.
        int* offsets = stackalloc int[taps + 3];
        for (int t = 0; t < taps + 3; t++)
        {
            offsets[t] = t < taps ? layout.Offset(g, 0, t / kernelW, t % kernelW) : 0;
        }

        if (width < 16)
        {
            FilterGradientTwoTaps<TOps, TVec>(g, layout, offsets, images, dw, planes);
            return;
        }

        // Three taps of one channel times four filters in twelve vector accumulators (4 + 3 loads per 12 FMAs), summed
        // over the group's images before their lanes are added; a chunk past the last tap repeats tap 0 and a filter
        // past K repeats the block's first, neither stored.
        for (int c = 0; c < channels; c++)
        {
            for (int k0 = 0; k0 < filters; k0 += 4)
            {
                long f1 = k0 + 1 < filters ? span : 0, f2 = k0 + 2 < filters ? 2L * span : 0, f3 = k0 + 3 < filters ? 3L * span : 0;
                for (int t0 = 0; t0 < taps; t0 += 3)
                {
                    int o0 = offsets[t0], o1 = offsets[t0 + 1], o2 = offsets[t0 + 2];
                    TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, b0 = TOps.Zero, b1 = TOps.Zero, b2 = TOps.Zero;
                    TVec c0 = TOps.Zero, c1 = TOps.Zero, c2 = TOps.Zero, d0 = TOps.Zero, d1 = TOps.Zero, d2 = TOps.Zero;
                    for (int n = 0; n < images; n++)
                    {
                        float* input = planes.Image(n) + (long)c * plane;
                        float* e0p = planes.Gradient(n) + (long)k0 * span;
                        float* e1p = e0p + f1, e2p = e0p + f2, e3p = e0p + f3;
                        for (int o = 0; o < span; o += width)
                        {
                            TVec e0 = TOps.Load(e0p + o), e1 = TOps.Load(e1p + o), e2 = TOps.Load(e2p + o), e3 = TOps.Load(e3p + o);
                            TVec v = TOps.Load(input + o + o0);
                            a0 = TOps.MultiplyAdd(e0, v, a0);
                            b0 = TOps.MultiplyAdd(e1, v, b0);
                            c0 = TOps.MultiplyAdd(e2, v, c0);
                            d0 = TOps.MultiplyAdd(e3, v, d0);
                            v = TOps.Load(input + o + o1);
                            a1 = TOps.MultiplyAdd(e0, v, a1);
                            b1 = TOps.MultiplyAdd(e1, v, b1);
                            c1 = TOps.MultiplyAdd(e2, v, c1);
                            d1 = TOps.MultiplyAdd(e3, v, d1);
                            v = TOps.Load(input + o + o2);
                            a2 = TOps.MultiplyAdd(e0, v, a2);
                            b2 = TOps.MultiplyAdd(e1, v, b2);
                            c2 = TOps.MultiplyAdd(e2, v, c2);
                            d2 = TOps.MultiplyAdd(e3, v, d2);
                        }
                    }

                    AddFourFilters<TOps, TVec>(dw + ((long)k0 * channels + c) * taps + t0, (long)channels * taps, Math.Min(3, taps - t0),
                        filters - k0, a0, a1, a2, b0, b1, b2, c0, c1, c2, d0, d1, d2);
                }
            }
        }
    }

    /// <summary>
    /// The accumulation of <see cref="FilterGradient"/> below 512-bit vectors: two taps times four filters in eight
    /// accumulators (4 + 2 loads per 8 FMAs), 13 registers of AVX2's 16 — three taps' twelve accumulators and five
    /// loads spilled there.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FilterGradientTwoTaps<TOps, TVec>(in Conv2dGeometry g, in Layout layout, int* offsets, int images, float* dw, Planes planes)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int width = TOps.Width, span = layout.Span, plane = layout.ChannelFloats, channels = g.C, taps = g.R * g.S, filters = g.K;
        long filterStride = (long)channels * taps;
        for (int c = 0; c < channels; c++)
        {
            for (int k0 = 0; k0 < filters; k0 += 4)
            {
                long f1 = k0 + 1 < filters ? span : 0, f2 = k0 + 2 < filters ? 2L * span : 0, f3 = k0 + 3 < filters ? 3L * span : 0;
                for (int t0 = 0; t0 < taps; t0 += 2)
                {
                    int o0 = offsets[t0], o1 = offsets[t0 + 1];
                    TVec a0 = TOps.Zero, a1 = TOps.Zero, b0 = TOps.Zero, b1 = TOps.Zero;
                    TVec c0 = TOps.Zero, c1 = TOps.Zero, d0 = TOps.Zero, d1 = TOps.Zero;
                    for (int n = 0; n < images; n++)
                    {
                        float* input = planes.Image(n) + (long)c * plane;
                        float* e0p = planes.Gradient(n) + (long)k0 * span;
                        float* e1p = e0p + f1, e2p = e0p + f2, e3p = e0p + f3;
                        for (int o = 0; o < span; o += width)
                        {
                            TVec e0 = TOps.Load(e0p + o), e1 = TOps.Load(e1p + o), e2 = TOps.Load(e2p + o), e3 = TOps.Load(e3p + o);
                            TVec v = TOps.Load(input + o + o0);
                            a0 = TOps.MultiplyAdd(e0, v, a0);
                            b0 = TOps.MultiplyAdd(e1, v, b0);
                            c0 = TOps.MultiplyAdd(e2, v, c0);
                            d0 = TOps.MultiplyAdd(e3, v, d0);
                            v = TOps.Load(input + o + o1);
                            a1 = TOps.MultiplyAdd(e0, v, a1);
                            b1 = TOps.MultiplyAdd(e1, v, b1);
                            c1 = TOps.MultiplyAdd(e2, v, c1);
                            d1 = TOps.MultiplyAdd(e3, v, d1);
                        }
                    }

                    var none = TOps.Zero;
                    AddFourFilters<TOps, TVec>(dw + ((long)k0 * channels + c) * taps + t0, filterStride, Math.Min(2, taps - t0),
                        filters - k0, a0, a1, none, b0, b1, none, c0, c1, none, d0, d1, none);
                }
            }
        }
    }

    /// <summary>Where the filter gradient finds image n's shifted planes and its dy rows (Span apart).</summary>
    private readonly struct Planes(float* images, long imageStride, float* gradients, long gradientStride)
    {
        public float* Image(int n) => images + (n * imageStride);

        public float* Gradient(int n) => gradients + (n * gradientStride);
    }

    /// <summary>
    /// Four filters' tap sums (a… for filter k0, b… k0 + 1, c…, d…; <paramref name="count"/> taps each, dw rows
    /// <paramref name="filterStride"/> apart) added into dw, for the filters that exist (<paramref name="filters"/>
    /// from k0 on: the kernels' lanes past K repeat the block's first filter and are dropped here).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddFourFilters<TOps, TVec>(float* first, long filterStride, int count, int filters, TVec a0, TVec a1, TVec a2,
        TVec b0, TVec b1, TVec b2, TVec c0, TVec c1, TVec c2, TVec d0, TVec d1, TVec d2)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        AddSums<TOps, TVec>(first, count, a0, a1, a2);
        if (filters > 1)
        {
            AddSums<TOps, TVec>(first + filterStride, count, b0, b1, b2);
        }

        if (filters > 2)
        {
            AddSums<TOps, TVec>(first + (2 * filterStride), count, c0, c1, c2);
        }

        if (filters > 3)
        {
            AddSums<TOps, TVec>(first + (3 * filterStride), count, d0, d1, d2);
        }
    }

    /// <summary>target[j] += the lanes of s_j summed, for the first min(3, <paramref name="count"/>) columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AddSums<TOps, TVec>(float* target, int count, TVec s0, TVec s1, TVec s2)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        target[0] += TOps.Sum(s0);
        if (count > 1)
        {
            target[1] += TOps.Sum(s1);
        }

        if (count > 2)
        {
            target[2] += TOps.Sum(s2);
        }
    }

    /// <summary>
    /// Whether a strided layer's backward-data may run as <see cref="BackwardData"/>: strides of 1 or 2, at least one
    /// of them 2, and at least 4 input channels (the correlation's filters).
    /// </summary>
    public static bool SuitsBackwardData(in Conv2dGeometry g) =>
        g.IsPlain && g.StrideH is 1 or 2 && g.StrideW is 1 or 2 && (g.StrideH == 2 || g.StrideW == 2) && g.R * g.S > 1 && g.C >= 4 &&
        g.K * ((g.R + 1) / 2) * ((g.S + 1) / 2) <= 4096 && (long)g.K * (g.H + g.R) * (g.W + g.S) <= 1 << 16;

    /// <summary>
    /// dy in the plan's padded layout: row p at row p + TapsH − 1, column q at column q + TapsW − 1, zeros elsewhere.
    /// Optimised from its first call: at tier 0 its row copies ran ResNet-8's bench step 1.3–1.6× slower.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PadGradient(TransposedPlan plan, float* dy, float* padded)
    {
        var g = plan.Geometry;
        new Span<float>(padded, plan.PaddedLength).Clear();
        for (int k = 0; k < g.K; k++)
        {
            for (int p = 0; p < g.P; p++)
            {
                Simd.CopyFloats(dy + ((long)k * g.P + p) * g.Q, padded + (long)k * plan.Plane + (p + plan.TapsH - 1) * plan.RowLength + plan.TapsW - 1, g.Q);
            }
        }
    }

    /// <summary>dx_n (C,H,W) = the input gradient of one image from dy_n (K,P,Q), phase by phase (see <see cref="TransposedPlan"/>).</summary>
    public static void BackwardData(SimdWidth width, TransposedPlan plan, float* dy, float* dx, float* scratch)
    {
        if (plan.ByFilterVectors)
        {
            fixed (float* packed = plan.PackedWeights)
            {
                FilterVectorConvolution.BackwardData(width, plan, packed, dy, dx, scratch);
            }

            return;
        }

        switch (width)
        {
            case SimdWidth.Vector512: BackwardData<Vec512, Vector512<float>>(plan, dy, dx, scratch); break;
            case SimdWidth.Vector256: BackwardData<Vec256, Vector256<float>>(plan, dy, dx, scratch); break;
            case SimdWidth.Vector128: BackwardData<Vec128, Vector128<float>>(plan, dy, dx, scratch); break;
            default: BackwardData<Scalar, float>(plan, dy, dx, scratch); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardData<TOps, TVec>(TransposedPlan plan, float* dy, float* dx, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        var g = plan.Geometry;
        int rowLength = plan.RowLength, span = plan.Span;
        float* padded = scratch;
        PadGradient(plan, dy, padded);

        float* rows = padded + plan.PaddedLength;
        fixed (float* weights = plan.Weights)
        {
            for (int index = 0; index < plan.Phases.Length; index++) // indexed: a foreach over an interface would allocate per image
            {
                var phase = plan.Phases[index];
                fixed (int* offsets = phase.Offsets)
                {
                    for (int c0 = 0; c0 < g.C; c0 += Filters)
                    {
                        int cb = Math.Min(Filters, g.C - c0);
                        if (phase.Taps > 0)
                        {
                            Correlate<TOps, TVec>(padded, offsets, phase.Taps, weights + phase.WeightStart + (long)c0 * phase.Taps, cb, span, rows);
                        }

                        // Each dx element belongs to exactly one phase: row h = Sh·i + φh − Ph, column x = Sw·j + φw − Pw;
                        // the j whose x lies in [0, W) are a contiguous range, found once.
                        int strideW = g.StrideW, firstJ = 0;
                        while (firstJ < plan.ColumnsOut && (strideW * firstJ) + phase.ColumnPhase - g.PadW < 0)
                        {
                            firstJ++;
                        }

                        int lastJ = firstJ;
                        while (lastJ < plan.ColumnsOut && (strideW * lastJ) + phase.ColumnPhase - g.PadW < g.W)
                        {
                            lastJ++;
                        }

                        int firstX = (strideW * firstJ) + phase.ColumnPhase - g.PadW;
                        for (int cc = 0; cc < cb; cc++)
                        {
                            for (int i = 0; i < plan.RowsOut; i++)
                            {
                                int h = (g.StrideH * i) + phase.RowPhase - g.PadH;
                                if ((uint)h >= (uint)g.H)
                                {
                                    continue;
                                }

                                float* source = rows + (long)cc * span + i * rowLength;
                                float* target = dx + ((long)(c0 + cc) * g.H + h) * g.W;
                                if (phase.Taps == 0)
                                {
                                    for (int j = firstJ, x = firstX; j < lastJ; j++, x += strideW)
                                    {
                                        target[x] = 0f;
                                    }

                                    continue;
                                }

                                for (int j = firstJ, x = firstX; j < lastJ; j++, x += strideW)
                                {
                                    target[x] = source[j];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// <summary>
/// A strided layer's backward-data as Sh·Sw stride-1 correlations. Input row h takes dy[p]·w[r] for
/// Sh·p + r − Ph = h, so only the taps r ≡ h + Ph (mod Sh) reach it: with φ = (h + Ph) mod Sh and
/// i = (h + Ph − φ)/Sh, dx[h] = Σ_j dy[i − j]·w[φ + Sh·j] — a stride-1 correlation of dy (padded by J − 1 in
/// front, J = ⌈R/Sh⌉) with the phase's taps reversed, the same for columns. Each phase (φh, φw) is one
/// <see cref="BlockedConvolution"/> correlation over the padded dy: no zeros of the stride-dilated dy are
/// multiplied, and no columns are packed. Offsets depend on the geometry only; the weights are regrouped per call.
/// </summary>
internal sealed class TransposedPlan : IBackwardDataPlan
{
    /// <summary>Plans a geometry for vectors of <paramref name="width"/> lanes.</summary>
    public TransposedPlan(in Conv2dGeometry g, int width)
    {
        Geometry = g;
        TapsH = (g.R + g.StrideH - 1) / g.StrideH;
        TapsW = (g.S + g.StrideW - 1) / g.StrideW;
        RowsOut = ((g.H - 1 + g.PadH) / g.StrideH) + 1;
        ColumnsOut = ((g.W - 1 + g.PadW) / g.StrideW) + 1;
        int rows = Math.Max(RowsOut, g.P) + TapsH;
        RowLength = Math.Max(ColumnsOut, g.Q) + TapsW;
        Plane = rows * RowLength;
        Span = (RowsOut * RowLength + 2 * width - 1) / (2 * width) * (2 * width);
        PaddedLength = (g.K * Plane) + (2 * width) + (TapsH * RowLength);
        var phases = new List<Phase>();
        int weightStart = 0;
        for (int a = 0; a < g.StrideH; a++)
        {
            for (int b = 0; b < g.StrideW; b++)
            {
                int jh = a < g.R ? (g.R - a + g.StrideH - 1) / g.StrideH : 0, jw = b < g.S ? (g.S - b + g.StrideW - 1) / g.StrideW : 0;
                var offsets = new int[g.K * jh * jw];
                for (int k = 0, t = 0; k < g.K; k++)
                {
                    for (int i = 0; i < jh; i++)
                    {
                        for (int j = 0; j < jw; j++, t++)
                        {
                            offsets[t] = (k * Plane) + ((TapsH - 1 - i) * RowLength) + (TapsW - 1 - j);
                        }
                    }
                }

                phases.Add(new Phase(a, b, jh, jw, offsets, weightStart));
                weightStart += g.C * offsets.Length;
            }
        }

        Phases = [.. phases];
        Weights = new float[weightStart];
        Width = (SimdWidth)width;
        ByFilterVectors = CpuBackend.FilterVectorsFromEnvironment() && FilterVectorConvolution.SuitsPhases(g, Width);
        PackedWeights = ByFilterVectors ? new float[weightStart] : [];
    }

    private SimdWidth Width { get; }

    /// <summary>Whether the phases run vectorised across input channels (<see cref="FilterVectorConvolution.SuitsPhases"/>).</summary>
    public bool ByFilterVectors { get; }

    /// <summary><see cref="Weights"/> packed per phase in blocks of input channels, when <see cref="ByFilterVectors"/>.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1819", Justification = "Pinned by the kernel; written per call.")]
    public float[] PackedWeights { get; }

    /// <summary>One phase's taps: their reads in the padded dy, and where its weights start in <see cref="Weights"/>.</summary>
    public sealed record Phase(int RowPhase, int ColumnPhase, int TapsH, int TapsW, int[] Offsets, int WeightStart)
    {
        /// <summary>K·TapsH·TapsW taps (0 when the kernel has no tap of this phase).</summary>
        public int Taps => Offsets.Length;
    }

    public Conv2dGeometry Geometry { get; }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1819", Justification = "Indexed in the per-image loop without an enumerator.")]
    public Phase[] Phases { get; }

    /// <summary>Per phase, per input channel c, its taps' weights: w[k, c, φh + Sh·i, φw + Sw·j] at tap (k, i, j).</summary>
    public float[] Weights { get; }

    /// <summary>⌈R/Sh⌉ and ⌈S/Sw⌉: the most taps of a phase per axis, and dy's padding in front.</summary>
    public int TapsH { get; }

    public int TapsW { get; }

    /// <summary>The output rows i and columns j computed per phase (some map outside dx and are skipped).</summary>
    public int RowsOut { get; }

    public int ColumnsOut { get; }

    public int RowLength { get; }

    public int Plane { get; }

    public int Span { get; }

    public int PaddedLength { get; }

    /// <summary>Floats of scratch per image: padded dy and one block of output rows (or of runs' sums).</summary>
    public int ScratchFloats => PaddedLength + (ByFilterVectors ? FilterVectorConvolution.PhaseScratch(Width) : BlockedConvolution.Filters * Span);

    public unsafe void Run(SimdWidth width, float* dy, float* dx, float* scratch) => BlockedConvolution.BackwardData(width, this, dy, dx, scratch);

    /// <summary>Regroups w (K,C,R,S) into <see cref="Weights"/> for this call.</summary>
    public unsafe void SetWeights(float* w)
    {
        var g = Geometry;
        foreach (var phase in Phases)
        {
            for (int c = 0; c < g.C; c++)
            {
                int t = phase.WeightStart + (c * phase.Taps);
                for (int k = 0; k < g.K; k++)
                {
                    for (int i = 0; i < phase.TapsH; i++)
                    {
                        for (int j = 0; j < phase.TapsW; j++, t++)
                        {
                            Weights[t] = w[((((k * g.C) + c) * g.R) + phase.RowPhase + (g.StrideH * i)) * g.S + phase.ColumnPhase + (g.StrideW * j)];
                        }
                    }
                }
            }
        }

        if (ByFilterVectors)
        {
            fixed (float* weights = Weights, packed = PackedWeights)
            {
                FilterVectorConvolution.PackPhases(this, Width, weights, packed);
            }
        }
    }
}

/// <summary>Where the blocked kernels' sums start, fixed when the JIT compiles them.</summary>
internal interface ISumStart
{
    static abstract bool AtValues { get; }
}

/// <summary>Sums start at zero (cleared registers).</summary>
internal readonly struct StartAtZero : ISumStart
{
    public static bool AtValues => false;
}

/// <summary>Sums start at one value per filter (the bias), broadcast.</summary>
internal readonly struct StartAtValues : ISumStart
{
    public static bool AtValues => true;
}
