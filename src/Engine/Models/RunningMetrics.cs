using GpuCnn.Kernels;

namespace GpuCnn.Models;

/// <summary>
/// The trainer's running sums on the device — the epoch's summed loss, its correct predictions and the first batch
/// whose loss was not finite — read back once per epoch. Their layout in the buffer is the trainer's choice, passed
/// to the backend with every call (<see cref="MetricSlots"/>); the backend API does not fix it.
/// </summary>
internal sealed class RunningMetrics(Backend backend) : IDisposable
{
    private static readonly MetricSlots Slots = new(LossSum: 0, Correct: 1, FirstNonFinite: 2);

    private readonly DeviceTensor<float> _buffer = backend.Allocate<float>([(int)Slots.Length]);

    /// <summary>Starts the sums at the given values (a resumed epoch continues its own), with no divergence seen.</summary>
    public void Reset(float lossSum, float correct)
    {
        Span<float> values = stackalloc float[(int)Slots.Length];
        values[Slots.LossSum] = lossSum;
        values[Slots.Correct] = correct;
        values[Slots.FirstNonFinite] = -1f;
        backend.Upload<float>(values, _buffer);
    }

    /// <summary>Adds one batch (on the device; nothing is downloaded).</summary>
    public void Accumulate(DeviceTensor<float> logits, DeviceTensor<int> labels, DeviceTensor<float> loss, int batchIndex) =>
        backend.AccumulateMetrics(logits, labels, loss, _buffer, Slots, batchIndex);

    /// <summary>Downloads the sums.</summary>
    public Sums Read()
    {
        float[] values = backend.DownloadArray(_buffer);
        float diverged = values[Slots.FirstNonFinite];
        return new Sums(values[Slots.LossSum], values[Slots.Correct], diverged >= 0f ? (int)diverged : null);
    }

    public void Dispose() => _buffer.Dispose();

    /// <summary>The sums read back: summed loss, correct predictions, and the first non-finite batch (1-based) if any.</summary>
    public readonly record struct Sums(float LossSum, float Correct, int? DivergedAtBatch);
}
