using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>Batch assembly and metrics kernels that keep a training epoch on the device.</summary>
internal static class DataKernels
{
    /// <summary>
    /// destination[i, j] = source[indices[offset + i], j] for rows of <paramref name="rowLength"/> values. An index
    /// outside [0, sourceRows) yields zeros instead of a fault (the host validates indices before upload).
    /// </summary>
    public static void GatherRows<T>(Index1D index, ArrayView<T> source, ArrayView<int> indices, ArrayView<T> destination,
        int offset, int rowLength, int sourceRows)
        where T : unmanaged
    {
        int row = index / rowLength, column = index % rowLength;
        int from = indices[offset + row];
        destination[index] = from >= 0 && from < sourceRows ? source[from * rowLength + column] : default;
    }

    /// <summary>predictions[offset + n] = row n's <see cref="RowArgmax"/>.</summary>
    public static void Argmax(Index1D n, ArrayView<float> logits, ArrayView<int> predictions, int offset, int classes) =>
        predictions[offset + n] = RowArgmax(logits, n * classes, classes);

    /// <summary>
    /// The index of the maximum of logits[start .. start + classes) as torch.argmax gives it: the first NaN if there is
    /// one (NaN ranks above every number), else the first of equal maxima.
    /// </summary>
    private static int RowArgmax(ArrayView<float> logits, int start, int classes)
    {
        int best = 0;
        for (int j = 1; j < classes && !float.IsNaN(logits[start + best]); j++) // an ILGPU intrinsic
        {
            float value = logits[start + j];
            if (value > logits[start + best] || float.IsNaN(value))
            {
                best = j;
            }
        }

        return best;
    }

    /// <summary>
    /// One group: metrics[slots.LossSum] += loss[0]·N (the batch's summed loss); metrics[slots.Correct] += the number
    /// of rows whose <see cref="RowArgmax"/> equals the label (thread t takes rows t, t + T, …; the counts meet in
    /// <see cref="ReductionKernels.GroupSum"/>, exact as whole numbers); metrics[slots.FirstNonFinite] =
    /// <paramref name="batchIndex"/> if it is still negative and the loss is not finite (so the host learns where
    /// training diverged without a per-batch download). One thread walking the batch's logits had taken 120 µs a step
    /// of ResNet-8 on an H100 (docs/benchmarks.md). Grid: one group of a power-of-two size, a float of shared memory
    /// per thread.
    /// </summary>
    public static void AccumulateMetrics(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> loss,
        ArrayView<float> metrics, MetricSlots slots, int batchIndex)
    {
        int batch = labels.IntLength, classes = logits.IntLength / batch;
        float correct = 0f;
        for (int n = Group.IdxX; n < batch; n += Group.DimX)
        {
            if (RowArgmax(logits, n * classes, classes) == labels[n])
            {
                correct += 1f;
            }
        }

        correct = ReductionKernels.GroupSum(correct);
        if (Group.IdxX != 0)
        {
            return;
        }

        metrics[slots.LossSum] += loss[0] * batch;
        metrics[slots.Correct] += correct;
        if (metrics[slots.FirstNonFinite] < 0f && (float.IsNaN(loss[0]) || float.IsInfinity(loss[0]))) // ILGPU intrinsics
        {
            metrics[slots.FirstNonFinite] = batchIndex;
        }
    }
}

/// <summary>
/// Where <see cref="DataKernels.AccumulateMetrics"/> keeps its running sums in a metrics buffer: the caller (the
/// trainer) owns the layout and passes it with every call.
/// </summary>
public readonly record struct MetricSlots(int LossSum, int Correct, int FirstNonFinite)
{
    /// <summary>The largest slot index plus one: the buffer length these slots need.</summary>
    public long Length => Math.Max(LossSum, Math.Max(Correct, FirstNonFinite)) + 1L; // long: a slot of int.MaxValue needs 2³¹
}
