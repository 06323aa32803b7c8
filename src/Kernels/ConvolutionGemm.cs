using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// Convolution lowered to the tiled GEMM, for a chunk of <c>count</c> images starting at image <c>first</c>.
/// Column matrix: cols[(c·R + r)·S + s, j] with j = (n − first)·P·Q + p·Q + q, so that y = W · cols is laid out
/// (K, count·P·Q); the permute kernels move between that layout and NCHW. See docs/02-convolution.md.
/// </summary>
internal static class ConvolutionGemmKernels
{
    /// <summary>
    /// cols[crs, j] = x[n, c, p·Sh + r − Ph, q·Sw + s − Pw] (0 outside). One thread per (c, j) writes the R·S rows of
    /// its channel, so the index arithmetic (divisions) is paid once per R·S elements; consecutive threads write
    /// consecutive columns. Launch C·count·P·Q threads.
    /// </summary>
    public static void Im2Col(Index1D index, ArrayView<float> x, ArrayView<float> cols, Conv2dGeometry g, int first, int count)
    {
        int pq = g.P * g.Q, width = count * pq;
        int c = index / width, j = index - (c * width);
        int local = j / pq, spatial = j - (local * pq);
        int p = spatial / g.Q, q = spatial - (p * g.Q);
        int plane = ((first + local) * g.C + c) * g.H;
        int row = c * g.R * g.S;
        for (int r = 0; r < g.R; r++)
        {
            int h = p * g.StrideH + r - g.PadH;
            bool inside = h >= 0 && h < g.H;
            for (int s = 0; s < g.S; s++)
            {
                int w = q * g.StrideW + s - g.PadW;
                cols[((long)row * width) + j] = inside && w >= 0 && w < g.W ? x[((plane + h) * g.W) + w] : 0f;
                row++;
            }
        }
    }

    /// <summary>y[n, k, pq] = f(product[k, (n − first)·P·Q + pq] + b[k]) (bias and activation fused into the permute).</summary>
    public static void ToNchwWithBias<TF>(Index1D index, ArrayView<float> product, ArrayView<float> b, ArrayView<float> y,
        Conv2dGeometry g, int first, int count, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
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
        bool unitStride = g.StrideH == 1 && g.StrideW == 1; // the same for every thread: no divisions in the loop
        for (int r = 0; r < g.R; r++)
        {
            int ph = h + g.PadH - r;
            if (ph < 0 || (!unitStride && ph % g.StrideH != 0))
            {
                continue;
            }

            int p = unitStride ? ph : ph / g.StrideH;
            if (p >= g.P)
            {
                continue;
            }

            for (int s = 0; s < g.S; s++)
            {
                int qw = w + g.PadW - s;
                if (qw < 0 || (!unitStride && qw % g.StrideW != 0))
                {
                    continue;
                }

                int q = unitStride ? qw : qw / g.StrideW;
                if (q < g.Q)
                {
                    sum += dcols[(((c * g.R) + r) * g.S + s) * width + (local * pq) + (p * g.Q) + q];
                }
            }
        }

        dx[((first + local) * g.C + c) * g.H * g.W + h * g.W + w] = sum;
    }
}
