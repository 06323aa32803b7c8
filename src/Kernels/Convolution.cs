using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// Direct convolution kernels, one thread per output element (the first rung of the kernel ladder).
/// Every sum is accumulated by one thread in a fixed order, so results are bitwise reproducible.
/// Shapes: x (N,C,H,W), w (K,C/G,R,S), b (K), y/dy (N,K,P,Q). These kernels also take grouped and dilated
/// geometries (the GEMM paths take plain ones). See docs/02-convolution.md.
/// </summary>
internal static class ConvolutionKernels
{
    /// <summary>
    /// y[n,k,p,q] = f(b[k] + Σ_{c,r,s} x[n,c,p·Sh+r·Dh−Ph, q·Sw+s·Dw−Pw] · w[k,c′,r,s]) (zero outside x; c over k's
    /// group, c′ its index there), with the bias and activation f of the epilogue.
    /// </summary>
    public static void Forward<TF>(Index1D index, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b,
        ArrayView<float> y, Conv2dGeometry g, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        int p = g.P, q = g.Q;
        int oq = index % q;
        int op = index / q % p;
        int k = index / (q * p) % g.K;
        int n = index / (q * p * g.K);
        int channels = g.GroupChannels, first = k / g.GroupFilters * channels;
        float sum = 0f;
        for (int c = 0; c < channels; c++)
        {
            for (int r = 0; r < g.R; r++)
            {
                int h = op * g.StrideH + r * g.DilationH - g.PadH;
                if (h < 0 || h >= g.H)
                {
                    continue;
                }

                for (int s = 0; s < g.S; s++)
                {
                    int col = oq * g.StrideW + s * g.DilationW - g.PadW;
                    if (col < 0 || col >= g.W)
                    {
                        continue;
                    }

                    sum += x[((n * g.C + first + c) * g.H + h) * g.W + col] * w[((k * channels + c) * g.R + r) * g.S + s];
                }
            }
        }

        y[index] = epilogue.Apply(sum, b, k);
    }

    /// <summary>
    /// Backward-data step 1: E (N,K,H+Eh−1,W+Ew−1) holds dy dilated by the stride (Sh−1 zeros between rows) and
    /// shifted by Eh−1−Ph rows / Ew−1−Pw columns, zeros elsewhere (Eh = Dh·(R−1)+1, the rows the dilated kernel
    /// spans): E[n,k,i,j] = dy[n,k,(i−Eh+1+Ph)/Sh,(j−Ew+1+Pw)/Sw] where those divisions are exact and in range.
    /// </summary>
    public static void DilatePad(Index1D index, ArrayView<float> dy, ArrayView<float> e, Conv2dGeometry g)
    {
        int eh = g.H + g.ExtentH - 1, ew = g.W + g.ExtentW - 1;
        int j = index % ew;
        int i = index / ew % eh;
        int nk = index / (ew * eh);
        int di = i - (g.ExtentH - 1 - g.PadH);
        int dj = j - (g.ExtentW - 1 - g.PadW);
        float value = 0f;
        if (di >= 0 && dj >= 0 && di % g.StrideH == 0 && dj % g.StrideW == 0)
        {
            int p = di / g.StrideH, q = dj / g.StrideW;
            if (p < g.P && q < g.Q)
            {
                value = dy[(nk * g.P + p) * g.Q + q];
            }
        }

        e[index] = value;
    }

    /// <summary>
    /// Backward-data step 2: the 180°-rotated kernel with the channel roles swapped within each group, wrot (C,K/G,R,S):
    /// wrot[c,j,r,s] = w[k,c′,R−1−r,S−1−s] for k the j-th output channel of c's group and c′ c's index in it.
    /// </summary>
    public static void RotateKernel(Index1D index, ArrayView<float> w, ArrayView<float> wrot, Conv2dGeometry g)
    {
        int filters = g.GroupFilters, channels = g.GroupChannels;
        int s = index % g.S;
        int r = index / g.S % g.R;
        int j = index / (g.S * g.R) % filters;
        int c = index / (g.S * g.R * filters);
        int k = (c / channels * filters) + j;
        wrot[index] = w[((k * channels + (c % channels)) * g.R + (g.R - 1 - r)) * g.S + (g.S - 1 - s)];
    }

    /// <summary>
    /// A 1×1 layer's backward data at stride (Sh, Sw), padding 0: dx[n,c,h,w] = z[n,c,h/Sh,w/Sw] where Sh divides h
    /// and Sw divides w, else 0 (those inputs met no filter), z (N,C,P,Q) being the stride-1 backward data of dy. One
    /// thread per dx element, so dx needs no fill first.
    /// </summary>
    public static void ScatterOntoStride(Index1D index, ArrayView<float> z, ArrayView<float> dx, Conv2dGeometry g)
    {
        int w = index % g.W;
        int h = index / g.W % g.H;
        int plane = index / (g.W * g.H); // n·C + c
        dx[index] = h % g.StrideH == 0 && w % g.StrideW == 0 ? z[((plane * g.P) + (h / g.StrideH)) * g.Q + (w / g.StrideW)] : 0f;
    }

    /// <summary>
    /// Backward-data step 3, the full convolution: dx[n,c,h,x] = Σ_{j,r,s} E[n,k_j,h+r·Dh,x+s·Dw] · wrot[c,j,r,s]
    /// over the output channels k_j of c's group, a valid correlation of the dilated, padded output gradient with the
    /// rotated kernel.
    /// </summary>
    public static void FullConvolution(Index1D index, ArrayView<float> e, ArrayView<float> wrot, ArrayView<float> dx,
        Conv2dGeometry g)
    {
        int eh = g.H + g.ExtentH - 1, ew = g.W + g.ExtentW - 1, filters = g.GroupFilters;
        int col = index % g.W;
        int h = index / g.W % g.H;
        int c = index / (g.W * g.H) % g.C;
        int n = index / (g.W * g.H * g.C);
        int first = c / g.GroupChannels * filters;
        float sum = 0f;
        for (int j = 0; j < filters; j++)
        {
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++)
                {
                    sum += e[((n * g.K + first + j) * eh + h + r * g.DilationH) * ew + col + s * g.DilationW] *
                        wrot[((c * filters + j) * g.R + r) * g.S + s];
                }
            }
        }

        dx[index] = sum;
    }

    /// <summary>dw[k,c′,r,s] = Σ_{n,p,q} x[n,c,p·Sh+r·Dh−Ph, q·Sw+s·Dw−Pw] · dy[n,k,p,q]: valid correlation of x with dy (c′ = c's index in k's group).</summary>
    public static void BackwardFilter(Index1D index, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw,
        Conv2dGeometry g) =>
        dw[index] = FilterSum(x, dy, g, index, 0, g.N * g.P);

    /// <summary>
    /// One chunk of the filter (and bias) gradient: the same sums as <see cref="BackwardFilter"/>, split so that every
    /// weight gets many threads. Thread (chunk, i) sums over the output rows (n, p) of its chunk, rows
    /// chunk·rowsPerChunk … (chunk + 1)·rowsPerChunk − 1 of the N·P: partial[chunk, i] = Σ x·dy for a weight
    /// (i &lt; WeightSize) or Σ dy for the bias of channel i − WeightSize. <see cref="ReductionKernels.SumChunks"/> adds
    /// the chunks in order, so the result is the same on every run.
    /// </summary>
    public static void BackwardFilterChunk(Index1D index, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partial,
        Conv2dGeometry g, int outputs, int rowsPerChunk)
    {
        int chunk = index / outputs, i = index - (chunk * outputs);
        int first = chunk * rowsPerChunk, last = XMath.Min(first + rowsPerChunk, g.N * g.P);
        int pp = g.P, qq = g.Q;
        float sum = 0f;
        if (i >= g.WeightSize)
        {
            int channel = i - g.WeightSize;
            for (int row = first; row < last; row++)
            {
                int n = row / pp, p = row - (n * pp);
                int start = ((n * g.K + channel) * pp + p) * qq;
                for (int q = 0; q < qq; q++)
                {
                    sum += dy[start + q];
                }
            }

            partial[index] = sum;
            return;
        }

        partial[index] = FilterSum(x, dy, g, i, first, last);
    }

    /// <summary>Σ x·dy for weight <paramref name="i"/> over the output rows (n, p) first … last − 1 of the N·P.</summary>
    private static float FilterSum(ArrayView<float> x, ArrayView<float> dy, Conv2dGeometry g, int i, int first, int last)
    {
        int pp = g.P, qq = g.Q;
        float sum = 0f;
        int channels = g.GroupChannels;
        int s = i % g.S;
        int r = i / g.S % g.R;
        int k = i / (g.S * g.R * channels);
        int c = (k / g.GroupFilters * channels) + (i / (g.S * g.R) % channels);
        for (int row = first; row < last; row++)
        {
            int n = row / pp, p = row - (n * pp);
            int h = p * g.StrideH + r * g.DilationH - g.PadH;
            if (h < 0 || h >= g.H)
            {
                continue;
            }

            int xRow = ((n * g.C + c) * g.H + h) * g.W, dyRow = ((n * g.K + k) * pp + p) * qq;
            for (int q = 0; q < qq; q++)
            {
                int col = q * g.StrideW + s * g.DilationW - g.PadW;
                if (col >= 0 && col < g.W)
                {
                    sum += x[xRow + col] * dy[dyRow + q];
                }
            }
        }

        return sum;
    }
}
