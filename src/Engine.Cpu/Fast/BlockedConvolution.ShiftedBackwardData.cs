using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

internal static unsafe partial class BlockedConvolution
{
    /// <summary>dx_n (C,H,W) = the input gradient of one image from dy_n (K,P,Q), kernel column by kernel column (see <see cref="ShiftedPlan"/>).</summary>
    public static void BackwardDataShifted(SimdWidth width, ShiftedPlan plan, float* dy, float* dx, float* scratch)
    {
        switch (width)
        {
            case SimdWidth.Vector512: BackwardDataShifted<Vec512, Vector512<float>>(plan, dy, dx, scratch); break;
            case SimdWidth.Vector256: BackwardDataShifted<Vec256, Vector256<float>>(plan, dy, dx, scratch); break;
            case SimdWidth.Vector128: BackwardDataShifted<Vec128, Vector128<float>>(plan, dy, dx, scratch); break;
            default: BackwardDataShifted<Scalar, float>(plan, dy, dx, scratch); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardDataShifted<TOps, TVec>(ShiftedPlan plan, float* dy, float* dx, float* scratch)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        var g = plan.Geometry;
        int outputs = g.P * g.Q, span = plan.Span, taps = g.K * g.R, rowsBefore = g.R - 1;

        // dy with R − 1 zero rows above and below each plane (and zeroed slack): rows only, no zero columns.
        float* padded = scratch;
        new Span<float>(padded, plan.PaddedLength).Clear();
        for (int k = 0; k < g.K; k++)
        {
            Buffer.MemoryCopy(dy + ((long)k * outputs), padded + ((long)k * plan.GradientPlane) + (rowsBefore * g.Q), outputs * sizeof(float), outputs * sizeof(float));
        }

        float* rows = padded + plan.PaddedLength;
        new Span<float>(dx, g.C * g.H * g.W).Clear();
        fixed (int* offsets = plan.Offsets)
        fixed (float* weights = plan.Weights)
        {
            for (int s = 0; s < g.S; s++)
            {
                // dx column w takes Z_s column q = w + Pw − s; the w whose q lies in [0, Q) are one contiguous run.
                int firstW = Math.Max(0, s - g.PadW), lastW = Math.Min(g.W, g.Q + s - g.PadW);
                for (int c0 = 0; c0 < g.C; c0 += Filters)
                {
                    int cb = Math.Min(Filters, g.C - c0);
                    Correlate<TOps, TVec>(padded, offsets, taps, weights + ((((long)s * g.C) + c0) * taps), cb, span, rows);
                    for (int cc = 0; cc < cb; cc++)
                    {
                        for (int h = 0; h < g.H; h++)
                        {
                            float* source = rows + ((long)cc * span) + ((h + g.PadH) * g.Q) + g.PadW - s;
                            float* target = dx + ((((long)(c0 + cc) * g.H) + h) * g.W);
                            Simd.AddFloats(source + firstW, target + firstW, lastW - firstW);
                        }
                    }
                }
            }
        }
    }
}

/// <summary>A layer's backward-data planned once per shape, run one image at a time.</summary>
internal interface IBackwardDataPlan
{
    Conv2dGeometry Geometry { get; }

    /// <summary>Floats of scratch one image needs.</summary>
    int ScratchFloats { get; }

    /// <summary>Regroups w (K,C,R,S) for this call.</summary>
    unsafe void SetWeights(float* w);

    /// <summary>dx_n (C,H,W) from dy_n (K,P,Q) with the weights last set.</summary>
    unsafe void Run(SimdWidth width, float* dy, float* dx, float* scratch);
}

/// <summary>
/// A stride-1 layer's backward-data as S correlations, one per kernel column s:
/// dx[c,h,w] = Σ_s Z_s[c, h + Ph, w + Pw − s], Z_s[c,i,q] = Σ_{k,r} w[k,c,r,s]·dy[k, i − r, q] for i in [0, P + R − 1).
/// Each Z_s is a <see cref="BlockedConvolution"/> correlation over dy padded by R − 1 zero rows only: the full
/// convolution's zero columns (S − 1 − Pw each side) are never multiplied. For layers without padding ("valid"), where
/// the full convolution reads dy padded by R − 1 all round: LeNet's second layer multiplies 5·80 taps over 14 × 10
/// outputs instead of 400 taps over 14 × 14.
/// </summary>
internal sealed class ShiftedPlan : IBackwardDataPlan
{
    /// <summary>Plans a geometry for vectors of <paramref name="width"/> lanes.</summary>
    public ShiftedPlan(in Conv2dGeometry g, int width)
    {
        Geometry = g;
        int rowsOut = g.P + g.R - 1;
        GradientPlane = (g.P + 2 * (g.R - 1)) * g.Q;
        Span = ((rowsOut * g.Q) + width - 1) / width * width;
        PaddedLength = (g.K * GradientPlane) + (2 * width);
        Offsets = new int[g.K * g.R];
        for (int k = 0; k < g.K; k++)
        {
            for (int r = 0; r < g.R; r++)
            {
                Offsets[(k * g.R) + r] = (k * GradientPlane) + ((g.R - 1 - r) * g.Q);
            }
        }

        Weights = new float[g.S * g.C * g.K * g.R];
    }

    /// <summary>
    /// Plain stride-1 layers (padding below the kernel), at least 4 input channels (the correlation's filters) and
    /// padded dy planes of at most 256 KB, where Z's rows (P + R − 1 of Q) hold at most 0.85 of the full convolution's
    /// H·W outputs per tap: same-padded 3×3 layers keep the full convolution.
    /// </summary>
    public static bool Suits(in Conv2dGeometry g) =>
        g.IsPlain && g.StrideH == 1 && g.StrideW == 1 && g.PadH <= g.R - 1 && g.PadW <= g.S - 1 && g.S > 1 && g.C >= 4 && g.K * g.R <= 4096 &&
        (long)g.K * (g.P + 2 * (g.R - 1)) * g.Q <= 1 << 16 && (g.P + g.R - 1) * g.Q * 20 <= g.H * g.W * 17;

    public Conv2dGeometry Geometry { get; }

    /// <summary>Floats per dy plane with its zero rows.</summary>
    public int GradientPlane { get; }

    /// <summary>(P + R − 1)·Q rounded up to whole vectors.</summary>
    public int Span { get; }

    public int PaddedLength { get; }

    /// <summary>Where tap (k, r) reads relative to output i·Q + q: plane k, R − 1 − r rows in.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1819", Justification = "Pinned in the per-image loop.")]
    public int[] Offsets { get; }

    /// <summary>Per kernel column s and input channel c, its taps' weights: w[k, c, r, s] at tap k·R + r.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1819", Justification = "Pinned in the per-image loop.")]
    public float[] Weights { get; }

    /// <summary>Floats of scratch per image: padded dy and one block of Z rows.</summary>
    public int ScratchFloats => PaddedLength + (BlockedConvolution.Filters * Span);

    public unsafe void Run(SimdWidth width, float* dy, float* dx, float* scratch) => BlockedConvolution.BackwardDataShifted(width, this, dy, dx, scratch);

    /// <summary>Regroups w (K,C,R,S) into <see cref="Weights"/> for this call.</summary>
    public unsafe void SetWeights(float* w)
    {
        var g = Geometry;
        for (int s = 0, t = 0; s < g.S; s++)
        {
            for (int c = 0; c < g.C; c++)
            {
                for (int k = 0; k < g.K; k++)
                {
                    for (int r = 0; r < g.R; r++, t++)
                    {
                        Weights[t] = w[((((k * g.C) + c) * g.R) + r) * g.S + s];
                    }
                }
            }
        }
    }
}
