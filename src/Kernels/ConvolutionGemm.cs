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
    /// over the (r, s) whose output (p, q) = ((h + Ph − r)/Sh, (w + Pw − s)/Sw) is exact and in range. Those are
    /// r ≡ h + Ph (mod Sh) and s ≡ w + Pw (mod Sw), and p (q) falls by one per step of Sh (Sw) in r (s): one division
    /// and one remainder per axis and thread instead of one per tap (integer division is a long instruction sequence
    /// on GPUs), and only the contributing taps are visited, in the same order as before.
    /// </summary>
    public static void Col2Im(Index1D index, ArrayView<float> dcols, ArrayView<float> dx, Conv2dGeometry g, int first, int count)
    {
        int w = index % g.W, h = index / g.W % g.H, c = index / (g.W * g.H) % g.C, local = index / (g.W * g.H * g.C);
        int pq = g.P * g.Q, width = count * pq, column0 = local * pq;
        int rowOffset = h + g.PadH, columnOffset = w + g.PadW;
        int firstR = rowOffset % g.StrideH, firstS = columnOffset % g.StrideW;
        int firstP = rowOffset / g.StrideH, firstQ = columnOffset / g.StrideW;
        float sum = 0f;
        for (int r = firstR, p = firstP; r < g.R && p >= 0; r += g.StrideH, p--)
        {
            if (p >= g.P)
            {
                continue;
            }

            for (int s = firstS, q = firstQ; s < g.S && q >= 0; s += g.StrideW, q--)
            {
                if (q < g.Q)
                {
                    sum += dcols[(((c * g.R) + r) * g.S + s) * width + column0 + (p * g.Q) + q];
                }
            }
        }

        dx[((first + local) * g.C + c) * g.H * g.W + h * g.W + w] = sum;
    }
}
