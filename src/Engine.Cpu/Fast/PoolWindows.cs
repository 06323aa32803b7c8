using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Max and average pooling over any window, stride and padding (2×2 at stride 2 has <see cref="Pool2x2"/>), eight
/// outputs of a row at a time: the plane is laid out in scratch zero-padded and split into StrideW column phases
/// (<see cref="PlaneLayout"/>), so that each tap of eight outputs is one 256-bit load. The same results as the generic
/// loops (<c>PlaneJob</c>), bit for bit: max pooling takes, tap by tap in window order, a value that is greater, NaN,
/// or the first real one — padding columns are masked out lane by lane and padding rows skipped, so padding never
/// wins — and records its index; average pooling adds the taps in window order from 0 (a padding zero added to a
/// sum that started at +0 changes no bit) and divides by KH·KW, as PyTorch does; its gradient at stride 1 gathers each input's
/// shares from a zero-padded dy. A row's last vector ends at its end, computing a few outputs again to the same values.
/// </summary>
internal static unsafe class PoolWindows
{
    /// <summary>
    /// Whether a plane takes this route: 256-bit vectors and output rows of at least eight, every window inside the
    /// padded plane (not ceil mode's last ones that run past it).
    /// </summary>
    public static bool Suits(in Pool2dGeometry g, SimdWidth width) => width >= SimdWidth.Vector256 && g.Q >= 8 && !g.WindowsOverhang;

    /// <summary>Whether average pooling takes this route: as <see cref="Suits"/>, every window divided by KernelH·KernelW.</summary>
    public static bool SuitsAverage(in Pool2dGeometry g, SimdWidth width) => Suits(g, width) && g.UniformWindowArea;

    /// <summary>Floats of scratch one plane needs: the spread plane, then the window's column offsets (not on the stack, where a wide window would overflow it).</summary>
    public static int ScratchLength(in Pool2dGeometry g) => Layout(g).Length + g.KernelW;

    /// <summary>y (P×Q) and switches (indices into the H×W plane) of one plane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MaxPlane(in Pool2dGeometry g, float* x, float* y, int* switches, float* scratch)
    {
        var layout = Layout(g);
        layout.Spread(x, g.H, g.W, g.PadH, g.PadW, 1, 1, scratch);
        int outH = g.P, outW = g.Q, height = g.H, width = g.W, kh = g.KernelH, kw = g.KernelW, sh = g.StrideH, sw = g.StrideW;
        var lanes = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * sw;
        var columns = Vector256.Create((uint)width);
        int* offsets = (int*)(scratch + layout.Length);
        ColumnOffsets(layout, kw, offsets);
        for (int p = 0; p < outH; p++)
        {
            for (int q = 0; ; q += 8)
            {
                q = Math.Min(q, outW - 8);
                var best = Vector256.Create(float.NegativeInfinity);
                var at = Vector256.Create(-1);
                for (int r = 0; r < kh; r++)
                {
                    int h = (p * sh) + r - g.PadH;
                    if ((uint)h >= (uint)height)
                    {
                        continue; // a padding row: never taken
                    }

                    float* row = scratch + ((long)((p * sh) + r) * layout.Width) + q;
                    for (int s = 0; s < kw; s++)
                    {
                        var v = Vector256.Load(row + offsets[s]);
                        var column = Vector256.Create((q * sw) + s - g.PadW) + lanes;
                        var real = Vector256.LessThan(column.AsUInt32(), columns).AsInt32();
                        // a real value greater than the best, NaN, or the window's first real one
                        var take = real & ((Vector256.GreaterThan(v, best) | ~Vector256.Equals(v, v)).AsInt32() | Vector256.LessThan(at, Vector256<int>.Zero));
                        best = Vector256.ConditionalSelect(take.AsSingle(), v, best);
                        at = Vector256.ConditionalSelect(take, Vector256.Create(h * width) + column, at);
                    }
                }

                best.Store(y + ((long)p * outW) + q);
                at.Store(switches + ((long)p * outW) + q);
                if (q + 8 == outW)
                {
                    break;
                }
            }
        }
    }

    /// <summary>y (P×Q) of one plane: each window's sum in window order from 0, over KH·KW (padding counted).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AveragePlane(in Pool2dGeometry g, float* x, float* y, float* scratch)
    {
        var layout = Layout(g);
        layout.Spread(x, g.H, g.W, g.PadH, g.PadW, 1, 1, scratch);
        int outH = g.P, outW = g.Q, kh = g.KernelH, kw = g.KernelW, sh = g.StrideH;
        var area = Vector256.Create((float)(kh * kw)); // divided by, as PyTorch does: times 1/9 is an ulp off 17/9
        int* offsets = (int*)(scratch + layout.Length);
        ColumnOffsets(layout, kw, offsets);
        for (int p = 0; p < outH; p++)
        {
            for (int q = 0; ; q += 8)
            {
                q = Math.Min(q, outW - 8);
                var sum = Vector256<float>.Zero;
                for (int r = 0; r < kh; r++)
                {
                    float* row = scratch + ((long)((p * sh) + r) * layout.Width) + q;
                    for (int s = 0; s < kw; s++)
                    {
                        sum += Vector256.Load(row + offsets[s]);
                    }
                }

                (sum / area).Store(y + ((long)p * outW) + q);
                if (q + 8 == outW)
                {
                    break;
                }
            }
        }
    }

    /// <summary>
    /// Whether average pooling's gradient takes this route: stride 1, padding within the window, input rows of at
    /// least eight, 256-bit vectors.
    /// </summary>
    public static bool SuitsAverageBackward(in Pool2dGeometry g, SimdWidth width) =>
        width >= SimdWidth.Vector256 && g.StrideH == 1 && g.StrideW == 1 && g.PadH < g.KernelH && g.PadW < g.KernelW && g.W >= 8
        && g.UniformWindowArea; // (at stride 1 ceil mode adds no window; uncounted padding gives windows their own divisors)

    /// <summary>Floats of scratch one plane's average-pooling gradient needs.</summary>
    public static int AverageBackwardScratchLength(in Pool2dGeometry g) => BackwardLayout(g).Length;

    /// <summary>
    /// dx (H×W) of one plane at stride 1, gathered: dx[h, w] = Σ_a Σ_b dy'[h + a, w + b] / (KH·KW) for a &lt; KH, b &lt; KW,
    /// dy' being dy with KH−1−PH zero rows above and KW−1−PW zero columns before it — the windows (p, q) that hold
    /// (h, w) in ascending order, each share dy/(KH·KW) added from 0 as the generic scatter adds them (a padding
    /// zero's share changes no bit).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AverageBackwardPlane(in Pool2dGeometry g, float* dy, float* dx, float* scratch)
    {
        var layout = BackwardLayout(g);
        layout.Spread(dy, g.P, g.Q, g.KernelH - 1 - g.PadH, g.KernelW - 1 - g.PadW, 1, 1, scratch);
        int height = g.H, width = g.W, kh = g.KernelH, kw = g.KernelW;
        // Each share dy / (KH·KW) once, in place (a division a tap would cost a vdivps per add): the padding's zeros stay 0.
        float area = kh * kw;
        for (long i = 0; i < layout.Length; i++)
        {
            scratch[i] /= area;
        }

        for (int h = 0; h < height; h++)
        {
            for (int w = 0; ; w += 8)
            {
                w = Math.Min(w, width - 8);
                var sum = Vector256<float>.Zero;
                for (int a = 0; a < kh; a++)
                {
                    float* row = scratch + ((long)(h + a) * layout.Width) + w;
                    for (int b = 0; b < kw; b++)
                    {
                        sum += Vector256.Load(row + b); // a share, added as the scatter adds it
                    }
                }

                sum.Store(dx + ((long)h * width) + w);
                if (w + 8 == width)
                {
                    break;
                }
            }
        }
    }

    /// <summary>
    /// Each window column's offset in the layout (its phase and column), worked out once a plane: a division per tap
    /// and vector had cost the forward passes most of their time.
    /// </summary>
    private static void ColumnOffsets(PlaneLayout layout, int kernelW, int* offsets)
    {
        for (int s = 0; s < kernelW; s++)
        {
            offsets[s] = layout.ColumnOffset(s);
        }
    }

    private static PlaneLayout Layout(in Pool2dGeometry g) => PlaneLayout.Padded(g.H, g.W, g.PadH, g.PadW, g.StrideW);

    private static PlaneLayout BackwardLayout(in Pool2dGeometry g) => new(1, g.H + g.KernelH - 1, g.W + g.KernelW - 1, g.W + g.KernelW - 1);
}
