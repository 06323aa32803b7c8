using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>The loss's sizes and PyTorch's label_smoothing ε (0: plain cross-entropy).</summary>
public readonly record struct LossShape(int Classes, int Batch, float LabelSmoothing);

/// <summary>
/// Fused softmax + cross-entropy, mean over the batch. One thread per sample (a group per sample for many classes)
/// writes that sample's loss and its row of the logits gradient; one thread then sums the per-sample losses in order
/// (no atomics). See docs/04-loss.md.
/// </summary>
internal static class LossKernels
{
    /// <summary>
    /// For row n of logits z (N, K classes) with label t and target q_j = (1 − ε)·[j = t] + ε/K: m = max z,
    /// S = Σ e^(z−m), perSample[n] = Σ_j q_j·((m − z_j) + log S) (term by term, in the CPU backend's order),
    /// dz[n,j] = (e^(z_j − m)/S − q_j) / N — PyTorch's log_softmax order: m + log S would round log S away at huge logits.
    /// </summary>
    public static void SoftmaxCrossEntropyRows(Index1D n, ArrayView<float> logits, ArrayView<int> labels,
        ArrayView<float> dlogits, ArrayView<float> perSample, LossShape s)
    {
        int classes = s.Classes;
        int row = n * classes;
        float max = logits[row];
        for (int j = 1; j < classes; j++)
        {
            max = XMath.Max(max, logits[row + j]);
        }

        float total = 0f;
        for (int j = 0; j < classes; j++)
        {
            total += XMath.Exp(logits[row + j] - max);
        }

        float logTotal = XMath.Log(total), inverse = 1f / total;
        int label = labels[n];
        if ((uint)label >= (uint)classes)
        {
            // A device cannot throw: an outside label gives NaN, read nowhere outside the row (Backend.SoftmaxCrossEntropy).
            for (int j = 0; j < classes; j++)
            {
                dlogits[row + j] = float.NaN;
            }

            perSample[n] = float.NaN;
            return;
        }

        float scale = 1f / s.Batch, spread = s.LabelSmoothing / classes, onLabel = 1f - s.LabelSmoothing + spread;
        for (int j = 0; j < classes; j++)
        {
            float softmax = XMath.Exp(logits[row + j] - max) * inverse;
            dlogits[row + j] = (softmax - (j == label ? onLabel : spread)) * scale;
        }

        // Σ_j q_j·((m − z_j) + log S), each term scaled as it is added (as the reference and the CPU backend: Σ_j (m − z_j)
        // first overflowed float for logits of ±1e38 and gave +∞ where the loss is 1.95e38); only the label's term without
        // smoothing (an infinite logit elsewhere gives no NaN).
        float rowLoss = onLabel * ((max - logits[row + label]) + logTotal);
        if (spread != 0f)
        {
            for (int j = 0; j < classes; j++)
            {
                rowLoss += j == label ? 0f : spread * ((max - logits[row + j]) + logTotal);
            }
        }

        perSample[n] = rowLoss;
    }

    /// <summary>
    /// The whole fused loss in one launch of one group: thread t handles rows t, t + T, …, writing each row's loss
    /// and gradient; after a barrier, thread 0 sums the per-sample losses in index order (no atomics) into loss[0].
    /// </summary>
    public static void SoftmaxCrossEntropyBatch(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dlogits,
        ArrayView<float> perSample, ArrayView<float> loss, LossShape s)
    {
        for (int n = Group.IdxX; n < s.Batch; n += Group.DimX)
        {
            SoftmaxCrossEntropyRows(n, logits, labels, dlogits, perSample, s);
        }

        Group.Barrier();
        if (Group.IdxX == 0)
        {
            MeanInOrder(0, perSample, loss, s.Batch);
        }
    }

    /// <summary>
    /// <see cref="SoftmaxCrossEntropyRows"/> for rows of many classes, one group a row (grid: the batch; a power-of-two
    /// group with as many floats of dynamic shared memory): thread t takes classes t, t + T, …, and fixed trees over the
    /// group give the row's max, Σ e^(z−m) and the smoothing terms' sum, so a 1,000-class head runs on every
    /// multiprocessor rather than one thread's loop a row. The same formulas; the sums in a tree's order.
    /// </summary>
    public static void SoftmaxCrossEntropyRowGroups(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dlogits,
        ArrayView<float> perSample, LossShape s)
    {
        int n = Grid.IdxX, t = Group.IdxX, threads = Group.DimX, classes = s.Classes;
        int row = n * classes;
        float max = float.NegativeInfinity;
        for (int j = t; j < classes; j += threads)
        {
            max = XMath.Max(max, logits[row + j]);
        }

        max = ReductionKernels.GroupMax(max);
        Group.Barrier(); // every thread has read the max before the sum's tree overwrites the shared memory
        float total = 0f;
        for (int j = t; j < classes; j += threads)
        {
            total += XMath.Exp(logits[row + j] - max);
        }

        total = ReductionKernels.GroupSum(total);
        Group.Barrier();
        float logTotal = XMath.Log(total), inverse = 1f / total;
        int label = labels[n];
        if ((uint)label >= (uint)classes)
        {
            for (int j = t; j < classes; j += threads)
            {
                dlogits[row + j] = float.NaN;
            }

            if (t == 0)
            {
                perSample[n] = float.NaN;
            }

            return;
        }

        float scale = 1f / s.Batch, spread = s.LabelSmoothing / classes, onLabel = 1f - s.LabelSmoothing + spread;
        float smoothing = 0f;
        for (int j = t; j < classes; j += threads)
        {
            float z = logits[row + j];
            float softmax = XMath.Exp(z - max) * inverse;
            dlogits[row + j] = (softmax - (j == label ? onLabel : spread)) * scale;
            smoothing += j == label || spread == 0f ? 0f : spread * ((max - z) + logTotal);
        }

        // As the row kernel: each smoothing term scaled as it is added, only the label's term without smoothing.
        smoothing = ReductionKernels.GroupSum(smoothing);
        if (t == 0)
        {
            perSample[n] = (onLabel * ((max - logits[row + label]) + logTotal)) + smoothing;
        }
    }

    /// <summary>
    /// loss[0] = Σ_n perSample[n] / N, summed in index order by a single thread, compensated: a plain float sum of
    /// 100,000 rows' losses lost 8e-4 of their mean (PyTorch: 5e-7), and float is what every device has.
    /// </summary>
    public static void MeanInOrder(Index1D index, ArrayView<float> perSample, ArrayView<float> loss, int batch)
    {
        var sum = default(CompensatedSum);
        for (int n = 0; n < batch; n++)
        {
            sum.Add(perSample[n]);
        }

        loss[index] = sum.Value / batch;
    }
}
