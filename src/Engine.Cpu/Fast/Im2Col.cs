using System.Runtime.CompilerServices;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// colsᵀ (P·Q × C·R·S) of one image produced straight into the GEMM's packed panels (implicit im2col): the filter
/// gradient dy · colsᵀ reads the image once instead of writing colsᵀ and then copying it into panels.
/// </summary>
internal sealed unsafe class TransposedColumns : IPanelSource
{
    private int[] _offset = [], _r = [], _s = [];
    private Conv2dGeometry _g;
    private float* _x;

    /// <summary>Points the source at one image; the per-column tables are rebuilt only when the geometry changes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Set(in Conv2dGeometry g, float* x)
    {
        _x = x;
        if (g == _g)
        {
            return;
        }

        _g = g;
        int crs = g.C * g.R * g.S;
        if (_offset.Length < crs)
        {
            (_offset, _r, _s) = (new int[crs], new int[crs], new int[crs]);
        }

        for (int i = 0; i < crs; i++)
        {
            int c = i / (g.R * g.S), r = i / g.S % g.R, s = i % g.S;
            (_offset[i], _r[i], _s[i]) = ((c * g.H + (r * g.DilationH)) * g.W + (s * g.DilationW), r * g.DilationH, s * g.DilationW);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(int pc, int kc, int jc, int nc, int nr, float* destination)
    {
        var g = _g;
        int outW = g.Q, height = g.H, width = g.W;
        fixed (int* offset = _offset, rs = _r, ss = _s)
        {
            for (int jr = 0; jr < nc; jr += nr)
            {
                int cols = Math.Min(nr, nc - jr);
                float* panel = destination + (long)jr * kc;
                int* off = offset + jc + jr, rr = rs + jc + jr, sc = ss + jc + jr;
                for (int k = 0; k < kc; k++)
                {
                    int pq = pc + k, p = pq / outW, q = pq - p * outW;
                    int h0 = p * g.StrideH - g.PadH, w0 = q * g.StrideW - g.PadW;
                    float* row = panel + (long)k * nr;
                    float* origin = _x + (long)h0 * width + w0;
                    if (h0 >= 0 && w0 >= 0 && h0 + g.ExtentH <= height && w0 + g.ExtentW <= width)
                    {
                        for (int j = 0; j < cols; j++)
                        {
                            row[j] = origin[off[j]];
                        }
                    }
                    else
                    {
                        for (int j = 0; j < cols; j++)
                        {
                            int h = h0 + rr[j], w = w0 + sc[j];
                            row[j] = (uint)h < (uint)height && (uint)w < (uint)width ? origin[off[j]] : 0f;
                        }
                    }

                    for (int j = cols; j < nr; j++)
                    {
                        row[j] = 0f;
                    }
                }
            }
        }
    }
}

/// <summary>
/// The column matrix of one image: cols[(c·R + r)·S + s, p·Q + q] = x[c, p·Sh + r·Dh − Ph, q·Sw + s·Dw − Pw] (0 outside),
/// so that convolution is W (K × C·R·S) · cols (C·R·S × P·Q). <see cref="Accumulate"/> is its transpose (col2im).
/// </summary>
internal static unsafe class Im2Col
{
    /// <summary>x (C,H,W) of one image → cols (C·R·S, P·Q).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Expand(in Conv2dGeometry g, float* x, float* cols)
    {
        int p = g.P, q = g.Q;
        for (int c = 0; c < g.C; c++)
        {
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++)
                {
                    float* row = cols + (long)((c * g.R + r) * g.S + s) * p * q;
                    for (int op = 0; op < p; op++)
                    {
                        int h = op * g.StrideH + (r * g.DilationH) - g.PadH;
                        float* target = row + (long)op * q;
                        if (h < 0 || h >= g.H)
                        {
                            new Span<float>(target, q).Clear();
                            continue;
                        }

                        float* source = x + ((long)c * g.H + h) * g.W;
                        int offset = (s * g.DilationW) - g.PadW;
                        ValidRange(g.W, g.StrideW, offset, q, out int first, out int last);
                        for (int oq = 0; oq < first; oq++)
                        {
                            target[oq] = 0f;
                        }

                        if (g.StrideW == 1)
                        {
                            int count = last - first;
                            if (count > 0)
                            {
                                Buffer.MemoryCopy(source + first + offset, target + first, count * sizeof(float), count * sizeof(float));
                            }
                        }
                        else
                        {
                            for (int oq = first; oq < last; oq++)
                            {
                                target[oq] = source[oq * g.StrideW + offset];
                            }
                        }

                        for (int oq = Math.Max(first, last); oq < q; oq++)
                        {
                            target[oq] = 0f;
                        }
                    }
                }
            }
        }
    }

    /// <summary>dx (C,H,W) of one image += the columns folded back: the transpose of <see cref="Expand"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(in Conv2dGeometry g, float* cols, float* dx)
    {
        int p = g.P, q = g.Q;
        for (int c = 0; c < g.C; c++)
        {
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++)
                {
                    float* row = cols + (long)((c * g.R + r) * g.S + s) * p * q;
                    for (int op = 0; op < p; op++)
                    {
                        int h = op * g.StrideH + (r * g.DilationH) - g.PadH;
                        if (h < 0 || h >= g.H)
                        {
                            continue;
                        }

                        float* source = row + (long)op * q;
                        int offset = (s * g.DilationW) - g.PadW;
                        float* target = dx + ((long)c * g.H + h) * g.W + offset;
                        ValidRange(g.W, g.StrideW, offset, q, out int first, out int last);
                        for (int oq = first; oq < last; oq++)
                        {
                            target[oq * g.StrideW] += source[oq];
                        }
                    }
                }
            }
        }
    }

    /// <summary>The output columns [first, last) whose input column oq·stride + offset lies inside [0, width).</summary>
    private static void ValidRange(int width, int stride, int offset, int outputs, out int first, out int last)
    {
        first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
        last = Math.Min(outputs, (width - 1 - offset) / stride + 1);
        if (width - 1 - offset < 0)
        {
            last = 0;
        }

        first = Math.Min(first, outputs);
    }
}
