using System.Runtime.CompilerServices;
namespace GpuCnn.Cpu.Fast;

/// <summary>
/// The column matrix of one image: cols[(c·R + r)·S + s, p·Q + q] = x[c, p·Sh + r − Ph, q·Sw + s − Pw] (0 outside),
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
                        int h = op * g.StrideH + r - g.PadH;
                        float* target = row + (long)op * q;
                        if (h < 0 || h >= g.H)
                        {
                            new Span<float>(target, q).Clear();
                            continue;
                        }

                        float* source = x + ((long)c * g.H + h) * g.W;
                        ValidRange(g.W, g.StrideW, s - g.PadW, q, out int first, out int last);
                        for (int oq = 0; oq < first; oq++)
                        {
                            target[oq] = 0f;
                        }

                        if (g.StrideW == 1)
                        {
                            int count = last - first;
                            if (count > 0)
                            {
                                Buffer.MemoryCopy(source + first + s - g.PadW, target + first, count * sizeof(float), count * sizeof(float));
                            }
                        }
                        else
                        {
                            for (int oq = first; oq < last; oq++)
                            {
                                target[oq] = source[oq * g.StrideW + s - g.PadW];
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
                        int h = op * g.StrideH + r - g.PadH;
                        if (h < 0 || h >= g.H)
                        {
                            continue;
                        }

                        float* source = row + (long)op * q;
                        float* target = dx + ((long)c * g.H + h) * g.W + s - g.PadW;
                        ValidRange(g.W, g.StrideW, s - g.PadW, q, out int first, out int last);
                        for (int oq = first; oq < last; oq++)
                        {
                            target[oq * g.StrideW] += source[oq];
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// x (C,H,W) of one image → colsᵀ (P·Q, C·R·S): for each output pixel, its receptive field in (c, r, s) order.
    /// The filter gradient dy · colsᵀ then needs no transposed operand, and this layout writes contiguously.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ExpandTransposed(in Conv2dGeometry g, float* x, float* colsT)
    {
        int outH = g.P, outW = g.Q, channels = g.C, kernelH = g.R, kernelW = g.S, height = g.H, width = g.W;
        int crs = channels * kernelH * kernelW;
        for (int p = 0; p < outH; p++)
        {
            for (int q = 0; q < outW; q++)
            {
                float* target = colsT + ((long)p * outW + q) * crs;
                int h0 = p * g.StrideH - g.PadH, w0 = q * g.StrideW - g.PadW;
                bool inside = h0 >= 0 && w0 >= 0 && h0 + kernelH <= height && w0 + kernelW <= width;
                for (int c = 0; c < channels; c++)
                {
                    float* plane = x + (long)c * height * width;
                    for (int r = 0; r < kernelH; r++)
                    {
                        int h = h0 + r;
                        float* row = plane + (long)h * width + w0;
                        if (inside)
                        {
                            for (int s = 0; s < kernelW; s++)
                            {
                                target[s] = row[s];
                            }
                        }
                        else
                        {
                            for (int s = 0; s < kernelW; s++)
                            {
                                int w = w0 + s;
                                target[s] = (uint)h < (uint)height && (uint)w < (uint)width ? row[s] : 0f;
                            }
                        }

                        target += kernelW;
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
