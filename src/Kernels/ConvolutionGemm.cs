using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// Convolution lowered to the tiled GEMM, for a chunk of <c>count</c> images starting at image <c>first</c>.
/// Column matrix: cols[(c·R + r)·S + s, j] with j = (n − first)·P·Q + p·Q + q, so that y = W · cols is laid out
/// (K, count·P·Q); the permute kernels move between that layout and NCHW. See docs/02-convolution.md.
/// </summary>
public static class ConvolutionGemmKernels
{
    /// <summary>cols[crs, j] = x[n, c, p·Sh + r − Ph, q·Sw + s − Pw] (0 outside); one thread per element of cols.</summary>
    public static void Im2Col(Index1D index, ArrayView<float> x, ArrayView<float> cols, Conv2dGeometry g, int first, int count)
    {
        int pq = g.P * g.Q, width = count * pq;
        int j = index % width, crs = index / width;
        int n = first + j / pq, spatial = j % pq;
        int p = spatial / g.Q, q = spatial % g.Q;
        int s = crs % g.S, r = crs / g.S % g.R, c = crs / (g.S * g.R);
        int h = p * g.StrideH + r - g.PadH, w = q * g.StrideW + s - g.PadW;
        cols[index] = h >= 0 && h < g.H && w >= 0 && w < g.W ? x[((n * g.C + c) * g.H + h) * g.W + w] : 0f;
    }

    /// <summary>y[n, k, pq] = f(product[k, (n − first)·P·Q + pq] + b[k]) (bias and activation fused into the permute).</summary>
    public static void ToNchwWithBias(Index1D index, ArrayView<float> product, ArrayView<float> b, ArrayView<float> y,
        Conv2dGeometry g, int first, int count, Epilogue epilogue)
    {
        int pq = g.P * g.Q, width = count * pq;
        int j = index % width, k = index / width;
        int n = first + j / pq, spatial = j % pq;
        y[(n * g.K + k) * pq + spatial] = epilogue.Apply(product[index], b, k);
    }

    /// <summary>dyT[k, (n − first)·P·Q + pq] = dy[n, k, pq]; one thread per element.</summary>
    public static void FromNchw(Index1D index, ArrayView<float> dy, ArrayView<float> dyT, Conv2dGeometry g, int first, int count)
    {
        int pq = g.P * g.Q, width = count * pq;
        int j = index % width, k = index / width;
        int n = first + j / pq, spatial = j % pq;
        dyT[index] = dy[(n * g.K + k) * pq + spatial];
    }

    /// <summary>
    /// col2im as a gather (no atomics): dx[n, c, h, w] = Σ_{r,s} dcols[(c·R + r)·S + s, (n − first)·P·Q + p·Q + q]
    /// over the (r, s) whose output (p, q) = ((h + Ph − r)/Sh, (w + Pw − s)/Sw) is exact and in range.
    /// </summary>
    public static void Col2Im(Index1D index, ArrayView<float> dcols, ArrayView<float> dx, Conv2dGeometry g, int first, int count)
    {
        int w = index % g.W, h = index / g.W % g.H, c = index / (g.W * g.H) % g.C, local = index / (g.W * g.H * g.C);
        int pq = g.P * g.Q, width = count * pq;
        float sum = 0f;
        for (int r = 0; r < g.R; r++)
        {
            int ph = h + g.PadH - r;
            if (ph < 0 || ph % g.StrideH != 0 || ph / g.StrideH >= g.P)
            {
                continue;
            }

            for (int s = 0; s < g.S; s++)
            {
                int qw = w + g.PadW - s;
                if (qw < 0 || qw % g.StrideW != 0 || qw / g.StrideW >= g.Q)
                {
                    continue;
                }

                sum += dcols[((c * g.R + r) * g.S + s) * width + local * pq + ph / g.StrideH * g.Q + qw / g.StrideW];
            }
        }

        dx[((first + local) * g.C + c) * g.H * g.W + h * g.W + w] = sum;
    }
}
