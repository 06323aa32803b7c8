using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// Fused softmax + cross-entropy, mean over the batch. One thread per sample writes that sample's loss and its
/// row of the logits gradient; one thread then sums the per-sample losses in order (no atomics). See docs/04-loss.md.
/// </summary>
public static class LossKernels
{
    /// <summary>
    /// For row n of logits z (N, classes) with label t: m = max z, lse = m + log Σ e^(z−m),
    /// perSample[n] = lse − z[t], dz[n,j] = (e^(z_j − lse) − [j = t]) / N.
    /// </summary>
    public static void SoftmaxCrossEntropyRows(Index1D n, ArrayView<float> logits, ArrayView<int> labels,
        ArrayView<float> dlogits, ArrayView<float> perSample, int classes, int batch)
    {
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

        float lse = max + XMath.Log(total);
        int label = labels[n];
        float scale = 1f / batch;
        for (int j = 0; j < classes; j++)
        {
            float softmax = XMath.Exp(logits[row + j] - lse);
            dlogits[row + j] = (j == label ? softmax - 1f : softmax) * scale;
        }

        perSample[n] = lse - logits[row + label];
    }

    /// <summary>
    /// The whole fused loss in one launch of one group: thread t handles rows t, t + T, …, writing each row's loss
    /// and gradient; after a barrier, thread 0 sums the per-sample losses in index order (no atomics) into loss[0].
    /// </summary>
    public static void SoftmaxCrossEntropyBatch(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> dlogits,
        ArrayView<float> perSample, ArrayView<float> loss, int classes, int batch)
    {
        for (int n = Group.IdxX; n < batch; n += Group.DimX)
        {
            SoftmaxCrossEntropyRows(n, logits, labels, dlogits, perSample, classes, batch);
        }

        Group.Barrier();
        if (Group.IdxX == 0)
        {
            MeanInOrder(0, perSample, loss, batch);
        }
    }

    /// <summary>loss[0] = Σ_n perSample[n] / N, summed in index order by a single thread.</summary>
    public static void MeanInOrder(Index1D index, ArrayView<float> perSample, ArrayView<float> loss, int batch)
    {
        float sum = 0f;
        for (int n = 0; n < batch; n++)
        {
            sum += perSample[n];
        }

        loss[index] = sum / batch;
    }
}
