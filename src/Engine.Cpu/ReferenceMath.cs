using GpuCnn.Kernels;
using System.Numerics;
using CommunityToolkit.HighPerformance;

namespace GpuCnn.Cpu;

/// <summary>
/// The naive reference: every operation as nested loops over flat row-major arrays, mirroring the formulas of
/// docs/02-convolution.md … docs/05-optimizers.md. Generic over the number type so the same code runs in float
/// (the reference backend) and in double (the finite-difference gradient checks). Slow by design; read, don't time.
/// </summary>
internal static partial class ReferenceMath
{
    // ------------------------------------------------------------------ convolution

    /// <summary>
    /// x (N,C,H,W), w (K,C/G,R,S), b (K) or empty -> y (N,K,P,Q): y = b + Σ_{c,r,s} x[.., p·Sh+r·Dh−Ph, q·Sw+s·Dw−Pw]·w,
    /// c over the input channels of k's group.
    /// </summary>
    public static void Conv2dForward<T>(Conv2dGeometry g, ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> b, Span<T> y)
        where T : IFloatingPointIeee754<T>
    {
        for (int n = 0; n < g.N; n++)
        {
            for (int k = 0; k < g.K; k++)
            {
                for (int p = 0; p < g.P; p++)
                {
                    for (int q = 0; q < g.Q; q++)
                    {
                        T sum = b.IsEmpty ? T.Zero : b[k];
                        int first = k / g.GroupFilters * g.GroupChannels; // the group's first input channel
                        for (int c = 0; c < g.GroupChannels; c++)
                        {
                            for (int r = 0; r < g.R; r++)
                            {
                                for (int s = 0; s < g.S; s++)
                                {
                                    int h = p * g.StrideH + r * g.DilationH - g.PadH;
                                    int col = q * g.StrideW + s * g.DilationW - g.PadW;
                                    if (h >= 0 && h < g.H && col >= 0 && col < g.W)
                                    {
                                        sum += x[Index4(n, first + c, h, col, g.C, g.H, g.W)] * w[Index4(k, c, r, s, g.GroupChannels, g.R, g.S)];
                                    }
                                }
                            }
                        }

                        y[Index4(n, k, p, q, g.K, g.P, g.Q)] = sum;
                    }
                }
            }
        }
    }

    /// <summary>
    /// dy (N,K,P,Q) -> E (N,K,H+ExtentH−1,W+ExtentW−1): dy dilated by the stride (Sh−1 zero rows between rows, Sw−1
    /// zero columns between columns), then placed ExtentH−1−Ph rows down and ExtentW−1−Pw columns right in a zero
    /// field (ExtentH = Dh·(R−1)+1, the rows the dilated kernel spans; R for an undilated one).
    /// </summary>
    public static T[] DilateAndPad<T>(Conv2dGeometry g, ReadOnlySpan<T> dy)
        where T : IFloatingPointIeee754<T>
    {
        int eh = g.H + g.ExtentH - 1, ew = g.W + g.ExtentW - 1;
        var e = new T[g.N * g.K * eh * ew];
        Array.Fill(e, T.Zero);
        for (int n = 0; n < g.N; n++)
        {
            for (int k = 0; k < g.K; k++)
            {
                for (int p = 0; p < g.P; p++)
                {
                    for (int q = 0; q < g.Q; q++)
                    {
                        int i = p * g.StrideH + (g.ExtentH - 1 - g.PadH);
                        int j = q * g.StrideW + (g.ExtentW - 1 - g.PadW);
                        if (i >= 0 && i < eh && j >= 0 && j < ew)
                        {
                            e[Index4(n, k, i, j, g.K, eh, ew)] = dy[Index4(n, k, p, q, g.K, g.P, g.Q)];
                        }
                    }
                }
            }
        }

        return e;
    }

    /// <summary>
    /// w (K,C/G,R,S) -> wrot (C,K/G,R,S): the kernel rotated by 180° with the channel roles swapped within each group,
    /// wrot[c,j,r,s] = w[k,c′,R−1−r,S−1−s] for k = the group's j-th output channel and c′ = c's index in the group
    /// (plain: wrot[c,k,r,s] = w[k,c,R−1−r,S−1−s]).
    /// </summary>
    public static T[] RotateKernel180<T>(Conv2dGeometry g, ReadOnlySpan<T> w)
        where T : IFloatingPointIeee754<T>
    {
        var rotated = new T[g.WeightSize];
        for (int k = 0; k < g.K; k++)
        {
            int group = k / g.GroupFilters, j = k % g.GroupFilters;
            for (int c = 0; c < g.GroupChannels; c++)
            {
                for (int r = 0; r < g.R; r++)
                {
                    for (int s = 0; s < g.S; s++)
                    {
                        rotated[Index4((group * g.GroupChannels) + c, j, r, s, g.GroupFilters, g.R, g.S)] =
                            w[Index4(k, c, g.R - 1 - r, g.S - 1 - s, g.GroupChannels, g.R, g.S)];
                    }
                }
            }
        }

        return rotated;
    }

    /// <summary>
    /// dy (N,K,P,Q), w (K,C/G,R,S) -> dx (N,C,H,W): the full convolution of the dilated, padded dy with the rotated
    /// kernel, dx[n,c,h,x] = Σ_{j,r,s} E[n,k_j,h+r·Dh,x+s·Dw]·wrot[c,j,r,s] over the output channels k_j of c's group.
    /// </summary>
    public static void Conv2dBackwardData<T>(Conv2dGeometry g, ReadOnlySpan<T> dy, ReadOnlySpan<T> w, Span<T> dx)
        where T : IFloatingPointIeee754<T>
    {
        T[] e = DilateAndPad(g, dy);
        T[] rotated = RotateKernel180(g, w);
        int eh = g.H + g.ExtentH - 1, ew = g.W + g.ExtentW - 1;
        for (int n = 0; n < g.N; n++)
        {
            for (int c = 0; c < g.C; c++)
            {
                int first = c / g.GroupChannels * g.GroupFilters; // the group's first output channel
                for (int h = 0; h < g.H; h++)
                {
                    for (int col = 0; col < g.W; col++)
                    {
                        T sum = T.Zero;
                        for (int j = 0; j < g.GroupFilters; j++)
                        {
                            for (int r = 0; r < g.R; r++)
                            {
                                for (int s = 0; s < g.S; s++)
                                {
                                    sum += e[Index4(n, first + j, h + (r * g.DilationH), col + (s * g.DilationW), g.K, eh, ew)] *
                                        rotated[Index4(c, j, r, s, g.GroupFilters, g.R, g.S)];
                                }
                            }
                        }

                        dx[Index4(n, c, h, col, g.C, g.H, g.W)] = sum;
                    }
                }
            }
        }
    }

    /// <summary>
    /// x (N,C,H,W), dy (N,K,P,Q) -> dw (K,C/G,R,S) = Σ_{n,p,q} x[n,c,p·Sh+r·Dh−Ph,q·Sw+s·Dw−Pw]·dy[n,k,p,q]
    /// (valid correlation of x with dy; c the group's input channel); db (K) = Σ_{n,p,q} dy, when db is not empty.
    /// </summary>
    public static void Conv2dBackwardFilter<T>(Conv2dGeometry g, ReadOnlySpan<T> x, ReadOnlySpan<T> dy, Span<T> dw, Span<T> db)
        where T : IFloatingPointIeee754<T>
    {
        for (int k = 0; k < g.K; k++)
        {
            int first = k / g.GroupFilters * g.GroupChannels; // the group's first input channel
            for (int c = 0; c < g.GroupChannels; c++)
            {
                for (int r = 0; r < g.R; r++)
                {
                    for (int s = 0; s < g.S; s++)
                    {
                        T sum = T.Zero;
                        for (int n = 0; n < g.N; n++)
                        {
                            for (int p = 0; p < g.P; p++)
                            {
                                for (int q = 0; q < g.Q; q++)
                                {
                                    int h = p * g.StrideH + r * g.DilationH - g.PadH;
                                    int col = q * g.StrideW + s * g.DilationW - g.PadW;
                                    if (h >= 0 && h < g.H && col >= 0 && col < g.W)
                                    {
                                        sum += x[Index4(n, first + c, h, col, g.C, g.H, g.W)] * dy[Index4(n, k, p, q, g.K, g.P, g.Q)];
                                    }
                                }
                            }
                        }

                        dw[Index4(k, c, r, s, g.GroupChannels, g.R, g.S)] = sum;
                    }
                }
            }
        }

        if (!db.IsEmpty)
        {
            BiasGradient(dy, db, g.N, g.K, g.P * g.Q);
        }
    }

    // ------------------------------------------------------------------ pooling

    /// <summary>
    /// x (N,C,H,W) -> y, switches (N,C,P,Q): the window maximum and its flat index h·W + w in the input plane.
    /// Ties keep the first maximum in row-major window order; every NaN is taken, so the last NaN wins (PyTorch's max_pool2d). Padding never wins.
    /// </summary>
    public static void MaxPool2dForward<T>(Pool2dGeometry g, ReadOnlySpan<T> x, Span<T> y, Span<int> switches)
        where T : IFloatingPointIeee754<T>
    {
        for (int plane = 0; plane < g.N * g.C; plane++)
        {
            for (int p = 0; p < g.P; p++)
            {
                for (int q = 0; q < g.Q; q++)
                {
                    T best = T.NegativeInfinity;
                    int bestAt = -1;
                    for (int r = 0; r < g.KernelH; r++)
                    {
                        for (int s = 0; s < g.KernelW; s++)
                        {
                            int h = p * g.StrideH + r - g.PadH;
                            int col = q * g.StrideW + s - g.PadW;
                            if (h < 0 || h >= g.H || col < 0 || col >= g.W)
                            {
                                continue;
                            }

                            T v = x[(plane * g.H + h) * g.W + col];
                            if (bestAt < 0 || v > best || T.IsNaN(v)) // PyTorch: every NaN is taken, so the last one wins
                            {
                                best = v;
                                bestAt = h * g.W + col;
                            }
                        }
                    }

                    y[(plane * g.P + p) * g.Q + q] = best;
                    switches[(plane * g.P + p) * g.Q + q] = bestAt;
                }
            }
        }
    }

    /// <summary>dy, switches (N,C,P,Q) -> dx (N,C,H,W): dx[plane, switch] += dy for every output (scatter form).</summary>
    public static void MaxPool2dBackward<T>(Pool2dGeometry g, ReadOnlySpan<T> dy, ReadOnlySpan<int> switches, Span<T> dx)
        where T : IFloatingPointIeee754<T>
    {
        dx.Fill(T.Zero);
        for (int plane = 0; plane < g.N * g.C; plane++)
        {
            for (int o = 0; o < g.P * g.Q; o++)
            {
                int at = switches[plane * g.P * g.Q + o];
                if (at < 0 || at >= g.H * g.W)
                {
                    throw Checks.SwitchOutsidePlane(g, (long)plane * g.P * g.Q + o, at); // it would land in another plane, or outside dx
                }

                dx[plane * g.H * g.W + at] += dy[plane * g.P * g.Q + o];
            }
        }
    }

    /// <summary>
    /// x (N,C,H,W) -> y (N,C,P,Q): the window sum / its area (KernelH·KernelW, less what ceil mode's last window runs
    /// past the padded input: <see cref="Pool2dGeometry.WindowArea"/>), padding counted as zeros.
    /// </summary>
    public static void AvgPool2dForward<T>(Pool2dGeometry g, ReadOnlySpan<T> x, Span<T> y)
        where T : IFloatingPointIeee754<T>
    {
        T area = T.CreateChecked(g.KernelH * g.KernelW);
        if (g.IsGlobal)
        {
            // Each plane's mean: its sum in double (PyTorch's mean sums nearly exactly), rounded, then divided.
            for (int plane = 0; plane < g.N * g.C; plane++)
            {
                double sum = 0;
                foreach (T value in x.Slice(plane * g.H * g.W, g.H * g.W))
                {
                    sum += double.CreateChecked(value);
                }

                y[plane] = T.CreateChecked(sum) / area;
            }

            return;
        }

        for (int plane = 0; plane < g.N * g.C; plane++)
        {
            for (int p = 0; p < g.P; p++)
            {
                for (int q = 0; q < g.Q; q++)
                {
                    T sum = T.Zero;
                    for (int r = 0; r < g.KernelH; r++)
                    {
                        for (int s = 0; s < g.KernelW; s++)
                        {
                            int h = p * g.StrideH + r - g.PadH;
                            int col = q * g.StrideW + s - g.PadW;
                            if (h >= 0 && h < g.H && col >= 0 && col < g.W)
                            {
                                sum += x[(plane * g.H + h) * g.W + col];
                            }
                        }
                    }

                    y[(plane * g.P + p) * g.Q + q] = sum / T.CreateChecked(g.WindowArea(p, q));
                }
            }
        }
    }

    /// <summary>dy (N,C,P,Q) -> dx (N,C,H,W): every window position receives dy / the window's area (scatter form).</summary>
    public static void AvgPool2dBackward<T>(Pool2dGeometry g, ReadOnlySpan<T> dy, Span<T> dx)
        where T : IFloatingPointIeee754<T>
    {
        dx.Fill(T.Zero);
        for (int plane = 0; plane < g.N * g.C; plane++)
        {
            for (int p = 0; p < g.P; p++)
            {
                for (int q = 0; q < g.Q; q++)
                {
                    T share = dy[(plane * g.P + p) * g.Q + q] / T.CreateChecked(g.WindowArea(p, q));
                    for (int r = 0; r < g.KernelH; r++)
                    {
                        for (int s = 0; s < g.KernelW; s++)
                        {
                            int h = p * g.StrideH + r - g.PadH;
                            int col = q * g.StrideW + s - g.PadW;
                            if (h >= 0 && h < g.H && col >= 0 && col < g.W)
                            {
                                dx[(plane * g.H + h) * g.W + col] += share;
                            }
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ dense algebra

    /// <summary>A (M×K or K×M), B (K×N or N×K) -> C (M×N) = α·op(A)·op(B) + β·C; with β = 0, C is not read.</summary>
    public static void Gemm<T>(bool transposeA, bool transposeB, int m, int n, int k, T alpha, ReadOnlySpan<T> a,
        ReadOnlySpan<T> b, T beta, Span<T> c)
        where T : IFloatingPointIeee754<T>
    {
        var matrixA = transposeA ? ReadOnlySpan2D<T>.DangerousCreate(a[0], k, m, 0) : ReadOnlySpan2D<T>.DangerousCreate(a[0], m, k, 0);
        var matrixB = transposeB ? ReadOnlySpan2D<T>.DangerousCreate(b[0], n, k, 0) : ReadOnlySpan2D<T>.DangerousCreate(b[0], k, n, 0);
        var matrixC = Span2D<T>.DangerousCreate(ref c[0], m, n, 0);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                T sum = T.Zero;
                for (int l = 0; l < k; l++)
                {
                    T av = transposeA ? matrixA[l, i] : matrixA[i, l];
                    T bv = transposeB ? matrixB[j, l] : matrixB[l, j];
                    sum += av * bv;
                }

                matrixC[i, j] = T.IsZero(beta) ? alpha * sum : alpha * sum + beta * matrixC[i, j];
            }
        }
    }

    /// <summary>y (N, C, L) += b (C).</summary>
    public static void BiasAdd<T>(Span<T> y, ReadOnlySpan<T> b, int batch, int channels, int inner)
        where T : IFloatingPointIeee754<T>
    {
        for (int n = 0; n < batch; n++)
        {
            for (int c = 0; c < channels; c++)
            {
                for (int l = 0; l < inner; l++)
                {
                    y[(n * channels + c) * inner + l] += b[c];
                }
            }
        }
    }

    /// <summary>dy (N, C, L) -> db (C) = Σ_{n,l} dy[n,c,l].</summary>
    public static void BiasGradient<T>(ReadOnlySpan<T> dy, Span<T> db, int batch, int channels, int inner)
        where T : IFloatingPointIeee754<T>
    {
        for (int c = 0; c < channels; c++)
        {
            double sum = 0; // in double: a million rows of 0.1 added in float came to 1 % too much
            for (int n = 0; n < batch; n++)
            {
                for (int l = 0; l < inner; l++)
                {
                    sum += double.CreateChecked(dy[(n * channels + c) * inner + l]);
                }
            }

            db[c] = T.CreateChecked(sum);
        }
    }

    // ------------------------------------------------------------------ activations and loss

    /// <summary>y = f(x) elementwise, f evaluated in double (for T = float the result is f rounded once).</summary>
    public static void ActivationForward<T, TF>(TF f, ReadOnlySpan<T> x, Span<T> y)
        where T : IFloatingPointIeee754<T>
        where TF : struct, IActivationFunction
    {
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = T.CreateChecked(f.Forward(double.CreateChecked(x[i])));
        }
    }

    /// <summary>dx = dy·f′(x), from the input x and the output y = f(x).</summary>
    public static void ActivationBackward<T, TF>(TF f, ReadOnlySpan<T> x, ReadOnlySpan<T> y, ReadOnlySpan<T> dy, Span<T> dx)
        where T : IFloatingPointIeee754<T>
        where TF : struct, IActivationFunction
    {
        for (int i = 0; i < x.Length; i++)
        {
            dx[i] = T.CreateChecked(f.Backward(double.CreateChecked(x[i]), double.CreateChecked(y[i]), double.CreateChecked(dy[i])));
        }
    }

    /// <summary>dx = dy·f′ from the output y alone.</summary>
    public static void ActivationBackwardFromOutput<T, TF>(TF f, ReadOnlySpan<T> y, ReadOnlySpan<T> dy, Span<T> dx)
        where T : IFloatingPointIeee754<T>
        where TF : struct, IDerivativeFromOutput
    {
        for (int i = 0; i < y.Length; i++)
        {
            dx[i] = T.CreateChecked(f.BackwardFromOutput(double.CreateChecked(y[i]), double.CreateChecked(dy[i])));
        }
    }

    /// <summary>
    /// logits (N, K classes), labels (N) -> dlogits (N, K), returns the mean loss against the smoothed target
    /// q = (1 − ε)·onehot(t) + ε/K (PyTorch's label_smoothing; ε = 0 is plain cross-entropy):
    /// loss = (1/N) Σ_n Σ_j q_j·(logsumexp(z_n) − z_n[j]); dz = (softmax(z) − q) / N. Max-shifted for stability, and
    /// taken as PyTorch's log_softmax is, (z − max) − log Σ e^(z − max): max + log Σ would round the log away at huge
    /// logits (two tied at 10³⁰ gave a loss of 0 and a softmax of [1, 0]).
    /// </summary>
    public static T SoftmaxCrossEntropy<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> labels, Span<T> dlogits, int batch, int classes,
        double labelSmoothing = 0)
        where T : IFloatingPointIeee754<T>
    {
        T smoothing = T.CreateChecked(labelSmoothing), spread = smoothing / T.CreateChecked(classes);
        double total = 0; // the loss's terms added in double: in float, 100,000 rows' losses lost 8e-4 of their mean
        T count = T.CreateChecked(batch);
        for (int n = 0; n < batch; n++)
        {
            var z = logits.Slice(n * classes, classes);
            T max = z[0];
            for (int j = 1; j < classes; j++)
            {
                max = T.Max(max, z[j]);
            }

            T sumExp = T.Zero;
            for (int j = 0; j < classes; j++)
            {
                sumExp += T.Exp(z[j] - max);
            }

            T logSum = T.Log(sumExp);
            for (int j = 0; j < classes; j++)
            {
                T target = (j == labels[n] ? T.One - smoothing : T.Zero) + spread;
                T softmax = T.Exp(z[j] - max) / sumExp;
                dlogits[n * classes + j] = (softmax - target) / count;
                if (target != T.Zero)
                {
                    total += double.CreateChecked(target * ((max - z[j]) + logSum)); // skipped at 0: without smoothing, only the label's term (an infinite logit elsewhere gives no NaN)
                }
            }
        }

        return T.CreateChecked(total / batch);
    }

    // ------------------------------------------------------------------ batches

    /// <summary>source (rows, L), indices -> destination (M, L): destination[i] = source[indices[offset + i]]; bad indices give zeros.</summary>
    public static void GatherRows<T>(ReadOnlySpan<T> source, ReadOnlySpan<int> indices, int offset, Span<T> destination,
        int rows, int rowLength)
        where T : unmanaged
    {
        int sourceRows = source.Length / rowLength;
        for (int i = 0; i < rows; i++)
        {
            int from = indices[offset + i];
            var target = destination.Slice(i * rowLength, rowLength);
            if (from >= 0 && from < sourceRows)
            {
                source.Slice(from * rowLength, rowLength).CopyTo(target);
            }
            else
            {
                target.Clear();
            }
        }
    }

    /// <summary>logits (N, classes) -> predictions (N): each row's <see cref="RowArgmax"/>.</summary>
    public static void Argmax<T>(ReadOnlySpan<T> logits, Span<int> predictions, int batch, int classes)
        where T : IFloatingPointIeee754<T>
    {
        for (int n = 0; n < batch; n++)
        {
            predictions[n] = RowArgmax(logits.Slice(n * classes, classes));
        }
    }

    /// <summary>
    /// The index of <paramref name="row"/>'s maximum as torch.argmax gives it: the first NaN if there is one (NaN ranks
    /// above every number), else the first of equal maxima.
    /// </summary>
    public static int RowArgmax<T>(ReadOnlySpan<T> row)
        where T : IFloatingPointIeee754<T>
    {
        int best = 0;
        for (int j = 1; j < row.Length && !T.IsNaN(row[best]); j++)
        {
            if (row[j] > row[best] || T.IsNaN(row[j]))
            {
                best = j;
            }
        }

        return best;
    }

    /// <summary>
    /// logits (N, classes), labels (N), loss (1) -> metrics at the caller's slots: LossSum += loss·N; Correct += rows
    /// whose <see cref="RowArgmax"/> equals the label; FirstNonFinite = batchIndex if still negative and the loss is not finite.
    /// </summary>
    public static void AccumulateMetrics(ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, float loss, Span<float> metrics,
        MetricSlots slots, int batch, int classes, int batchIndex)
    {
        int correct = 0;
        for (int n = 0; n < batch; n++)
        {
            correct += RowArgmax(logits.Slice(n * classes, classes)) == labels[n] ? 1 : 0;
        }

        metrics[slots.LossSum] += loss * batch;
        metrics[slots.Correct] += correct;
        if (metrics[slots.FirstNonFinite] < 0f && !float.IsFinite(loss))
        {
            metrics[slots.FirstNonFinite] = batchIndex;
        }
    }

    // ------------------------------------------------------------------ optimizers

    /// <summary>
    /// torch.optim.SGD on one tensor: g = grad + λp (when λ ≠ 0); v = g (first step) or μv + (1−d)g; p −= lr·(g + μv
    /// or v). <paramref name="oneMinusDampening"/> is 1 − d, formed by the caller as PyTorch forms it. Rounded as
    /// PyTorch's CPU kernels round it: each <c>x.add(y, alpha=a)</c> is one fused multiply-add (a·y + x), and
    /// <c>buf.mul_(μ)</c> a rounded product (docs/05-optimizers.md).
    /// </summary>
    public static void SgdUpdate<T>(T lr, T momentum, T oneMinusDampening, T weightDecay, bool nesterov, bool firstStep,
        Span<T> parameter, ReadOnlySpan<T> gradient, Span<T> velocity)
        where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < parameter.Length; i++)
        {
            T g = T.IsZero(weightDecay) ? gradient[i] : T.FusedMultiplyAdd(parameter[i], weightDecay, gradient[i]);
            if (!T.IsZero(momentum))
            {
                velocity[i] = firstStep ? g : T.FusedMultiplyAdd(g, oneMinusDampening, velocity[i] * momentum);
                g = nesterov ? T.FusedMultiplyAdd(velocity[i], momentum, g) : velocity[i];
            }

            parameter[i] = T.FusedMultiplyAdd(g, -lr, parameter[i]);
        }
    }

    /// <summary>
    /// torch.optim.Adam / AdamW on one tensor: p ← decayFactor·p (AdamW's decoupled decay, 1 − lr·λ; 1 for Adam);
    /// g = grad + weightDecay·p (Adam's L2 term, when not 0; 0 for AdamW); m = β1m + (1−β1)g; v = β2v + (1−β2)g²;
    /// p −= stepSize·m / (√v / √c2 + ε) with stepSize = lr / (1 − β1^t), c2 = 1 − β2^t. The 1 − β are the caller's,
    /// formed as PyTorch forms them. Rounded as PyTorch's CPU kernels round it: <c>add(x, alpha=a)</c> and
    /// <c>addcmul</c> fused (a·y + x, (a·y)·z + x), every other product, quotient and sum rounded on its own
    /// (<c>addcdiv</c>: p + (−stepSize·m) / denominator).
    /// </summary>
    public static void AdamUpdate<T>(T stepSize, T sqrtCorrection2, T beta1, T oneMinusBeta1, T beta2, T oneMinusBeta2, T epsilon,
        T weightDecay, T decayFactor, Span<T> parameter, ReadOnlySpan<T> gradient, Span<T> m, Span<T> v)
        where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < parameter.Length; i++)
        {
            parameter[i] *= decayFactor;
            T g = T.IsZero(weightDecay) ? gradient[i] : T.FusedMultiplyAdd(parameter[i], weightDecay, gradient[i]);
            m[i] = T.FusedMultiplyAdd(g, oneMinusBeta1, m[i] * beta1);
            v[i] = T.FusedMultiplyAdd(oneMinusBeta2 * g, g, v[i] * beta2);
            parameter[i] += -stepSize * m[i] / ((T.Sqrt(v[i]) / sqrtCorrection2) + epsilon);
        }
    }

    private static int Index4(int a, int b, int c, int d, int bSize, int cSize, int dSize) =>
        ((a * bSize + b) * cSize + c) * dSize + d;
}
