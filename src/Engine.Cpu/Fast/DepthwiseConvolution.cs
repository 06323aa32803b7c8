using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Depthwise convolution (a 2-D kernel per filter over one channel; K / C filters a channel): one plane's forward and
/// backward data, each vector of outputs' taps summed in a register and stored once, and one filter's gradient. The plane is first laid out in scratch with its zeros, so that
/// every tap of every output is one load:
/// <list type="bullet">
/// <item>forward: x zero-padded, split into Sw column phases (phase k holds padded columns k, k + Sw, …), so that tap
/// (r, s) of output row p reads row p·Sh + r·Dh of phase (s·Dw) mod Sw from column q + ⌊s·Dw / Sw⌋ on — contiguous in q
/// at any stride;</item>
/// <item>backward data: dy spread to rows p·Sh + (R−1)·Dh − Ph and columns q·Sw + (S−1)·Dw − Pw of a zero plane of
/// (H + (R−1)·Dh) × (W + (S−1)·Dw), then correlated at stride 1 with the kernel rotated by 180° — the full convolution
/// of the padded error with the rotated kernel (docs/02-convolution.md), zeros where the stride skipped positions.</item>
/// </list>
/// The sums run from the bias (or 0) over the taps in order with fused multiply-adds at every width, so a plane's bits
/// do not depend on the vector width or the thread count. Adding each tap's row into the output through memory, as
/// this backend did before, ran at the mercy of where the tensors lay (most likely 4K aliasing: loads of one row
/// waiting on stores to another a multiple of 4 KB away): a 64-channel 28×28 layer's backward took 30–31 ms a batch of
/// 16 on one thread, reproducibly, where this route takes 2.6–2.7 ms.
/// </summary>
internal static unsafe class DepthwiseConvolution
{
    /// <summary>Floats of scratch one plane's forward pass needs (its phases, then the taps' offsets and weights).</summary>
    public static int ForwardScratch(in Conv2dGeometry g) => ForwardLayout(g).Length + (2 * g.R * g.S);

    /// <summary>Floats of scratch one plane's backward-data pass needs (a dy plane per filter of its channel, then the taps).</summary>
    public static int BackwardDataScratch(in Conv2dGeometry g)
    {
        long floats = (long)g.K / g.C * (BackwardLayout(g).Length + (2L * g.R * g.S));
        return floats <= int.MaxValue / 2 ? (int)floats
            : throw new NotSupportedException($"A depthwise layer's {g.K / g.C} filters a channel need {floats} floats of scratch; the CPU backend takes at most {int.MaxValue / 2}.");
    }

    /// <summary>
    /// Floats of scratch one channel's filter gradient needs: the forward's, a double per tap, then dy's rows at a pitch of
    /// whole vectors, and a vector of slack for the masked tails' reads past the plane.
    /// </summary>
    public static int FilterGradientScratch(in Conv2dGeometry g)
    {
        long floats = ForwardScratch(g) + 1L + (2L * g.R * g.S) + 15 + ((long)g.P * GradientPitch(g.Q)) + 16;
        return floats <= int.MaxValue / 2 ? (int)floats
            : throw new NotSupportedException($"A depthwise filter gradient over {g.P}×{g.Q} outputs needs {floats} floats of scratch; the CPU backend takes at most {int.MaxValue / 2}.");
    }

    /// <summary>y (P×Q) = f(b + Σ_{r,s} w[r,s]·x[p·Sh + r·Dh − Ph, q·Sw + s·Dw − Pw]) for one plane (f applied by the caller).</summary>
    public static void Forward(SimdWidth width, in Conv2dGeometry g, float* x, float* w, float bias, float* y, float* scratch)
    {
        var layout = ForwardLayout(g);
        layout.Spread(x, g.H, g.W, g.PadH, g.PadW, 1, 1, scratch);
        var taps = new Taps(layout, g.R, g.S, g.DilationH, g.DilationW, 1, scratch + layout.Length);
        taps.Set(w, rotated: false);
        Correlate(width, scratch, layout.Width, taps, g.StrideH, bias, y, g.P, g.Q);
    }

    /// <summary>
    /// dx (H×W) of one input plane = Σ over its K / C filters m and the windows that hold each input of
    /// w_m[r,s]·dy_m[p,q]; the filters' dy planes and kernels lie one after another from <paramref name="dy"/> and
    /// <paramref name="w"/>.
    /// </summary>
    public static void BackwardData(SimdWidth width, in Conv2dGeometry g, float* dy, float* w, float* dx, float* scratch)
    {
        var layout = BackwardLayout(g);
        int planes = g.K / g.C;
        for (int m = 0; m < planes; m++)
        {
            layout.Spread(dy + ((long)m * g.P * g.Q), g.P, g.Q, ((g.R - 1) * g.DilationH) - g.PadH, ((g.S - 1) * g.DilationW) - g.PadW, g.StrideH,
                g.StrideW, scratch + ((long)m * layout.Length));
        }

        var taps = new Taps(layout, g.R, g.S, g.DilationH, g.DilationW, planes, scratch + ((long)planes * layout.Length));
        taps.Set(w, rotated: true);
        Correlate(width, scratch, layout.Width, taps, 1, 0f, dx, g.H, g.W);
    }

    /// <summary>
    /// dw (R×S) of one channel = Σ_n Σ_{p,q} dy_n[p,q]·x_n[p·Sh + r·Dh − Ph, q·Sw + s·Dw − Pw], x_n and dy_n the channel's
    /// planes of image n (<paramref name="x"/> + n·<paramref name="xImage"/>, likewise dy). Each image's plane is laid out
    /// as the forward's and its dy rows copied to whole vectors; each tap's products over it are summed in vector lanes
    /// (four taps at a time, four independent chains) — a row in one width, the widest whose vector is at most twice
    /// the row, its last vector's lanes past the row masked after the multiply (so whatever lies there, NaN included,
    /// adds nothing) — the lanes then summed in order, and the images' sums in double.
    /// </summary>
    public static void FilterGradient(SimdWidth width, in Conv2dGeometry g, float* x, long xImage, float* dy, long dyImage, float* dw,
        float* scratch)
    {
        var layout = ForwardLayout(g);
        var taps = new Taps(layout, g.R, g.S, g.DilationH, g.DilationW, 1, scratch + layout.Length);
        taps.Set(null, rotated: false);
        double* totals = (double*)(scratch + ((layout.Length + (2 * taps.Count) + 1) & ~1));
        float* gradientRows = (float*)(((nint)(totals + taps.Count) + 63) & ~(nint)63); // rows on cache lines (scratch starts on one)
        int pitch = GradientPitch(g.Q);
        new Span<double>(totals, taps.Count).Clear();
        // Whole vectors where a width divides the row (8 columns: one 8-lane vector), else the widest vector at most
        // twice the row with its tail masked (14 columns: one 16-lane vector, not 8 + 4 + 2 singly).
        var rowWidth = Simd.WidestFitting(width, g.Q);
        if (g.Q % (int)rowWidth != 0)
        {
            rowWidth = Simd.WidestFitting(width, 2 * g.Q);
        }

        for (int n = 0; n < g.N; n++)
        {
            layout.Spread(x + (n * xImage), g.H, g.W, g.PadH, g.PadW, 1, 1, scratch);
            for (int p = 0; p < g.P; p++)
            {
                Simd.CopyFloats(dy + (n * dyImage) + ((long)p * g.Q), gradientRows + ((long)p * pitch), g.Q);
            }

            switch (rowWidth)
            {
                case SimdWidth.Vector512: AddTapSums<Vec512, Vector512<float>>(scratch, layout.Width, taps, g.StrideH, gradientRows, pitch, g.P, g.Q, totals); break;
                case SimdWidth.Vector256: AddTapSums<Vec256, Vector256<float>>(scratch, layout.Width, taps, g.StrideH, gradientRows, pitch, g.P, g.Q, totals); break;
                case SimdWidth.Vector128: AddTapSums<Vec128, Vector128<float>>(scratch, layout.Width, taps, g.StrideH, gradientRows, pitch, g.P, g.Q, totals); break;
                default: AddTapSums<Scalar, float>(scratch, layout.Width, taps, g.StrideH, gradientRows, pitch, g.P, g.Q, totals); break;
            }
        }

        for (int t = 0; t < taps.Count; t++)
        {
            dw[t] = (float)totals[t];
        }
    }

    /// <summary>dy's rows in the filter gradient's scratch: the row rounded up to whole 16-float vectors.</summary>
    private static int GradientPitch(int columns) => (columns + 15) & ~15;

    /// <summary>
    /// totals[t] += Σ_p Σ_q dy[p·pitch + q]·plane[p·rowStride·width + offset[t] + q] over the rows × columns of one image,
    /// four taps at a time; the last vector of a row past <paramref name="columns"/> keeps only its first lanes' products.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddTapSums<TOps, TVec>(float* plane, int planeWidth, Taps taps, int rowStride, float* dy, int pitch, int rows,
        int columns, double* totals)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int step = TOps.Width, whole = columns / step * step, tail = columns - whole;
        for (int t0 = 0; t0 < taps.Count; t0 += 4)
        {
            // Taps past the last repeat it; their sums are not kept.
            int o0 = taps.Offsets[t0], o1 = taps.Offsets[Math.Min(t0 + 1, taps.Count - 1)];
            int o2 = taps.Offsets[Math.Min(t0 + 2, taps.Count - 1)], o3 = taps.Offsets[Math.Min(t0 + 3, taps.Count - 1)];
            TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero;
            for (int p = 0; p < rows; p++)
            {
                float* row = plane + ((long)p * rowStride * planeWidth), gradient = dy + ((long)p * pitch);
                for (int q = 0; q < whole; q += step)
                {
                    TVec d = TOps.Load(gradient + q);
                    a0 = TOps.MultiplyAdd(d, TOps.Load(row + o0 + q), a0);
                    a1 = TOps.MultiplyAdd(d, TOps.Load(row + o1 + q), a1);
                    a2 = TOps.MultiplyAdd(d, TOps.Load(row + o2 + q), a2);
                    a3 = TOps.MultiplyAdd(d, TOps.Load(row + o3 + q), a3);
                }

                if (tail > 0)
                {
                    TVec d = TOps.Load(gradient + whole);
                    a0 = TOps.Add(a0, TOps.KeepFirst(TOps.Multiply(d, TOps.Load(row + o0 + whole)), tail));
                    a1 = TOps.Add(a1, TOps.KeepFirst(TOps.Multiply(d, TOps.Load(row + o1 + whole)), tail));
                    a2 = TOps.Add(a2, TOps.KeepFirst(TOps.Multiply(d, TOps.Load(row + o2 + whole)), tail));
                    a3 = TOps.Add(a3, TOps.KeepFirst(TOps.Multiply(d, TOps.Load(row + o3 + whole)), tail));
                }
            }

            totals[t0] += TOps.Sum(a0);
            if (t0 + 1 < taps.Count)
            {
                totals[t0 + 1] += TOps.Sum(a1);
            }

            if (t0 + 2 < taps.Count)
            {
                totals[t0 + 2] += TOps.Sum(a2);
            }

            if (t0 + 3 < taps.Count)
            {
                totals[t0 + 3] += TOps.Sum(a3);
            }
        }
    }

    private static PlaneLayout ForwardLayout(in Conv2dGeometry g) => PlaneLayout.Padded(g.H, g.W, g.PadH, g.PadW, g.StrideW);

    private static PlaneLayout BackwardLayout(in Conv2dGeometry g)
    {
        int fullWidth = g.W + ((g.S - 1) * g.DilationW);
        return new PlaneLayout(1, g.H + ((g.R - 1) * g.DilationH), fullWidth, fullWidth);
    }

    /// <summary>
    /// Each tap's offset from an output's first read (row p·rowStride, column q of phase 0) and its weight, in (plane,
    /// r, s) order over <paramref name="planes"/> planes laid out one after another (backward data with a channel
    /// multiplier: a channel's m filters' dy planes).
    /// </summary>
    private readonly struct Taps(PlaneLayout layout, int r, int s, int dilationH, int dilationW, int planes, float* storage)
    {
        public readonly int Count = planes * r * s;
        public readonly int* Offsets = (int*)storage;
        public readonly float* Weights = storage + (planes * r * s);

        /// <summary>
        /// Tap (i, j) of plane m reads m·Length on, row i·Dh down and column j·Dw across, in phase (j·Dw) mod Sw;
        /// weights w[m, i, j], or w[m, R−1−i, S−1−j] rotated (none without w: the filter gradient reads only the offsets).
        /// </summary>
        public void Set(float* w, bool rotated)
        {
            for (int m = 0, t = 0; m < planes; m++)
            {
                float* kernel = w == null ? null : w + (m * r * s);
                for (int i = 0; i < r; i++)
                {
                    for (int j = 0; j < s; j++, t++)
                    {
                        Offsets[t] = (m * layout.Length) + layout.ColumnOffset(j * dilationW) + (i * dilationH * layout.Width);
                        Weights[t] = kernel == null ? 0f : rotated ? kernel[((r - 1 - i) * s) + (s - 1 - j)] : kernel[(i * s) + j];
                    }
                }
            }
        }
    }

    /// <summary>
    /// out (rows × columns) = start + Σ_t weight[t]·plane[p·rowStride·width + offset[t] + q], a vector of q at a time at
    /// the widest width that fits a row (a row's last vector ends at its end, computing a few outputs again to the
    /// same values), one at a time below four.
    /// </summary>
    private static void Correlate(SimdWidth width, float* plane, int planeWidth, Taps taps, int rowStride, float start, float* output,
        int rows, int columns)
    {
        switch (Simd.WidestFitting(width, columns))
        {
            case SimdWidth.Vector512: Correlate<Vec512, Vector512<float>>(plane, planeWidth, taps, rowStride, start, output, rows, columns); break;
            case SimdWidth.Vector256: Correlate<Vec256, Vector256<float>>(plane, planeWidth, taps, rowStride, start, output, rows, columns); break;
            case SimdWidth.Vector128: Correlate<Vec128, Vector128<float>>(plane, planeWidth, taps, rowStride, start, output, rows, columns); break;
            default: Correlate<Scalar, float>(plane, planeWidth, taps, rowStride, start, output, rows, columns); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Correlate<TOps, TVec>(float* plane, int planeWidth, Taps taps, int rowStride, float start, float* output, int rows,
        int columns)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        int step = TOps.Width, count = taps.Count;
        int* offsets = taps.Offsets;
        float* weights = taps.Weights;
        var first = TOps.Broadcast(start);
        for (int p = 0; p < rows; p++)
        {
            float* row = plane + ((long)p * rowStride * planeWidth), target = output + ((long)p * columns);
            for (int q = 0; ; q += step)
            {
                q = Math.Min(q, columns - step);
                float* origin = row + q;
                var sum = first;
                for (int t = 0; t < count; t++)
                {
                    sum = TOps.MultiplyAdd(TOps.Broadcast(weights[t]), TOps.Load(origin + offsets[t]), sum);
                }

                TOps.Store(target + q, sum);
                if (q + step == columns)
                {
                    break;
                }
            }
        }
    }
}
