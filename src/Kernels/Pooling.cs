using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// Max and average pooling, one thread per output (forward) or per input element (backward: a gather over the
/// windows that contain the element, so overlapping windows add up without atomics, in a fixed order).
/// Shapes: x/dx (N,C,H,W), y/dy/switches (N,C,P,Q). See docs/03-pooling.md.
/// </summary>
internal static class PoolingKernels
{
    /// <summary>
    /// y = max over the window; switches = the arg-max's flat index h·W + w in its input plane (PyTorch's
    /// return_indices). Ties keep the first maximum in row-major window order; every NaN is taken, so the last NaN of a window wins (PyTorch's rule) and propagates.
    /// </summary>
    public static void MaxForward(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<int> switches,
        Pool2dGeometry g)
    {
        int q = index % g.Q;
        int p = index / g.Q % g.P;
        int plane = index / (g.Q * g.P);
        int h0 = p * g.StrideH - g.PadH, w0 = q * g.StrideW - g.PadW;
        float best = float.NegativeInfinity;
        int bestAt = -1;
        for (int r = 0; r < g.KernelH; r++)
        {
            int h = h0 + r;
            if (h < 0 || h >= g.H)
            {
                continue;
            }

            for (int s = 0; s < g.KernelW; s++)
            {
                int col = w0 + s;
                if (col < 0 || col >= g.W)
                {
                    continue;
                }

                float v = x[(plane * g.H + h) * g.W + col];
                if (bestAt < 0 || v > best || float.IsNaN(v)) // PyTorch: every NaN is taken, so the last one wins
                {
                    best = v;
                    bestAt = h * g.W + col;
                }
            }
        }

        y[index] = best;
        switches[index] = bestAt;
    }

    /// <summary>
    /// Whether every input element lies in exactly one window: 2×2 windows at stride 2, no padding, even planes — most
    /// CNNs' pooling, which the *Halving kernels run a thread per window.
    /// </summary>
    public static bool Halves(in Pool2dGeometry g) =>
        g.KernelH == 2 && g.KernelW == 2 && g.StrideH == 2 && g.StrideW == 2 && g.PadH == 0 && g.PadW == 0 && g.H % 2 == 0 && g.W % 2 == 0;

    /// <summary>
    /// Output <paramref name="index"/>'s window in a <see cref="Halves"/> geometry: its top-left element's index within
    /// its plane (h·W + w, as a switch), and where that plane starts in x.
    /// </summary>
    private static int HalvingWindow(int index, Pool2dGeometry g, out int planeStart)
    {
        int q = index % g.Q, rows = index / g.Q;
        int p = rows % g.P, plane = rows / g.P;
        planeStart = plane * g.H * g.W;
        return (2 * p * g.W) + (2 * q);
    }

    /// <summary>
    /// <see cref="MaxForward"/> for <see cref="Halves"/> geometries, one thread per output: its window's four values in
    /// row-major order, the same rule for ties and NaN, without the general kernel's bounds tests and window loops.
    /// </summary>
    public static void MaxForwardHalving(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<int> switches,
        Pool2dGeometry g)
    {
        int first = HalvingWindow(index, g, out int planeStart);
        float best = x[planeStart + first];
        int bestAt = first;
        for (int i = 1; i < 4; i++)
        {
            int at = first + ((i >> 1) * g.W) + (i & 1);
            float v = x[planeStart + at];
            if (v > best || float.IsNaN(v)) // as MaxForward: the first maximum stays, every NaN is taken
            {
                best = v;
                bestAt = at;
            }
        }

        y[index] = best;
        switches[index] = bestAt;
    }

    /// <summary>
    /// <see cref="MaxBackward"/> for <see cref="Halves"/> geometries, one thread per output: its window's four elements
    /// of dx, dy at the switch and 0 elsewhere (0 + dy, as the general kernel's sum from 0: the same bits).
    /// </summary>
    public static void MaxBackwardHalving(Index1D index, ArrayView<float> dy, ArrayView<int> switches, ArrayView<float> dx,
        Pool2dGeometry g)
    {
        int first = HalvingWindow(index, g, out int planeStart), at = switches[index];
        float gradient = 0f + dy[index];
        dx[planeStart + first] = at == first ? gradient : 0f;
        dx[planeStart + first + 1] = at == first + 1 ? gradient : 0f;
        dx[planeStart + first + g.W] = at == first + g.W ? gradient : 0f;
        dx[planeStart + first + g.W + 1] = at == first + g.W + 1 ? gradient : 0f;
    }

    /// <summary>dx[n,c,h,w] = Σ dy[n,c,p,q] over the windows (p,q) that contain (h,w) and whose switch is h·W + w.</summary>
    public static void MaxBackward(Index1D index, ArrayView<float> dy, ArrayView<int> switches, ArrayView<float> dx,
        Pool2dGeometry g)
    {
        int col = index % g.W;
        int h = index / g.W % g.H;
        int plane = index / (g.W * g.H);
        int self = h * g.W + col;
        WindowRange(h + g.PadH, g.KernelH, g.StrideH, g.P, out int p0, out int p1);
        WindowRange(col + g.PadW, g.KernelW, g.StrideW, g.Q, out int q0, out int q1);
        float sum = 0f;
        for (int p = p0; p <= p1; p++)
        {
            for (int q = q0; q <= q1; q++)
            {
                int o = (plane * g.P + p) * g.Q + q;
                if (switches[o] == self)
                {
                    sum += dy[o];
                }
            }
        }

        dx[index] = sum;
    }

    /// <summary>
    /// y = the window's sum / its area (KernelH·KernelW but where ceil mode cuts the last window), zero padding counted
    /// (PyTorch's count_include_pad).
    /// </summary>
    public static void AverageForward(Index1D index, ArrayView<float> x, ArrayView<float> y, Pool2dGeometry g)
    {
        int q = index % g.Q;
        int p = index / g.Q % g.P;
        int plane = index / (g.Q * g.P);
        int h0 = p * g.StrideH - g.PadH, w0 = q * g.StrideW - g.PadW;
        float sum = 0f;
        for (int r = 0; r < g.KernelH; r++)
        {
            int h = h0 + r;
            if (h < 0 || h >= g.H)
            {
                continue;
            }

            for (int s = 0; s < g.KernelW; s++)
            {
                int col = w0 + s;
                if (col >= 0 && col < g.W)
                {
                    sum += x[(plane * g.H + h) * g.W + col];
                }
            }
        }

        y[index] = sum / g.WindowArea(p, q);
    }

    /// <summary>
    /// <see cref="AverageForward"/> for a window that is the whole plane (<see cref="Pool2dGeometry.IsGlobal"/>), one
    /// thread per plane: the plane's sum in double, rounded to float, then divided, as the reference.
    /// </summary>
    public static void GlobalAverageForward(Index1D plane, ArrayView<float> x, ArrayView<float> y, Pool2dGeometry g)
    {
        int area = g.H * g.W;
        double sum = 0;
        for (int i = 0; i < area; i++)
        {
            sum += x[(plane * area) + i];
        }

        y[plane] = (float)sum / area;
    }

    /// <summary>
    /// <see cref="AverageForward"/> for <see cref="Halves"/> geometries, one thread per output: its four values
    /// added in the same order from 0 and divided by 4, without the bounds tests and window loops.
    /// </summary>
    public static void AverageForwardHalving(Index1D index, ArrayView<float> x, ArrayView<float> y, Pool2dGeometry g)
    {
        int first = HalvingWindow(index, g, out int planeStart);
        first += planeStart;
        float sum = 0f;
        sum += x[first];
        sum += x[first + 1];
        sum += x[first + g.W];
        sum += x[first + g.W + 1];
        y[index] = sum / 4;
    }

    /// <summary>
    /// <see cref="AverageBackward"/> for <see cref="Halves"/> geometries, one thread per output: its window's four
    /// elements of dx, each (0 + dy) / 4 — the general kernel's sum over the one window that holds each.
    /// </summary>
    public static void AverageBackwardHalving(Index1D index, ArrayView<float> dy, ArrayView<float> dx, Pool2dGeometry g)
    {
        int first = HalvingWindow(index, g, out int planeStart);
        first += planeStart;
        float share = (0f + dy[index]) / 4;
        dx[first] = share;
        dx[first + 1] = share;
        dx[first + g.W] = share;
        dx[first + g.W + 1] = share;
    }

    /// <summary>
    /// dx[n,c,h,w] = Σ (dy[n,c,p,q] / area of (p,q)) over the windows (p,q) that contain (h,w), in window order from
    /// 0: each share divided, then added, as PyTorch and the reference do (a sum divided once rounds otherwise).
    /// </summary>
    public static void AverageBackward(Index1D index, ArrayView<float> dy, ArrayView<float> dx, Pool2dGeometry g)
    {
        int col = index % g.W;
        int h = index / g.W % g.H;
        int plane = index / (g.W * g.H);
        WindowRange(h + g.PadH, g.KernelH, g.StrideH, g.P, out int p0, out int p1);
        WindowRange(col + g.PadW, g.KernelW, g.StrideW, g.Q, out int q0, out int q1);
        float sum = 0f;
        for (int p = p0; p <= p1; p++)
        {
            for (int q = q0; q <= q1; q++)
            {
                sum += dy[(plane * g.P + p) * g.Q + q] / g.WindowArea(p, q);
            }
        }

        dx[index] = sum;
    }

    /// <summary>The output positions o with o·stride ≤ padded ≤ o·stride + kernel − 1, clipped to [0, outSize).</summary>
    private static void WindowRange(int padded, int kernel, int stride, int outSize, out int first, out int last)
    {
        int lowest = padded - kernel + 1;
        first = lowest <= 0 ? 0 : ((lowest - 1) / stride) + 1; // ⌈lowest / stride⌉ without lowest + stride − 1, which a huge stride wraps
        last = padded / stride;
        if (last > outSize - 1)
        {
            last = outSize - 1;
        }
    }
}
