using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>
/// What the backends whose "device" is host memory share (the reference and the fast CPU backend): tensors are
/// plain arrays, every operation is synchronous, batch gathering is a row copy, and the small per-batch loops
/// (loss, metrics, arg-max, Adam — a few thousand elements) run the reference's code in both.
/// </summary>
public abstract partial class HostBackend : Backend
{
    private long _bytes;

    /// <inheritdoc/>
    public override long BytesAllocated => Interlocked.Read(ref _bytes) + ScratchBytes;

    /// <summary>Bytes of scratch memory (workspaces) the backend holds besides tensors.</summary>
    protected virtual long ScratchBytes => 0;

    /// <inheritdoc/>
    protected override void SynchronizeCore()
    {
    }

    internal void OnReleased(long bytes) => Interlocked.Add(ref _bytes, -bytes);

    /// <inheritdoc/>
    protected override DeviceTensor<T> AllocateCore<T>(Shape shape)
    {
        var tensor = new HostTensor<T>(this, shape);
        Interlocked.Add(ref _bytes, tensor.Bytes);
        return tensor;
    }

    /// <inheritdoc/>
    protected override void UploadCore<T>(ReadOnlySpan<T> source, DeviceTensor<T> destination) => source.CopyTo(Data(destination));

    /// <inheritdoc/>
    protected override void DownloadCore<T>(DeviceTensor<T> source, Span<T> destination) => Data(source).CopyTo(destination);

    /// <inheritdoc/>
    protected override void FillCore(DeviceTensor<float> tensor, float value) => Data(tensor).AsSpan().Fill(value);

    /// <inheritdoc/>
    protected override void GatherRowsCore<T>(DeviceTensor<T> source, DeviceTensor<int> indices, int offset,
        DeviceTensor<T> destination, int rows, int rowLength) =>
        ReferenceMath.GatherRows<T>(Data(source), Data(indices), offset, Data(destination), rows, rowLength);

    /// <inheritdoc/>
    protected override void AccumulateMetricsCore(DeviceTensor<float> logits, DeviceTensor<int> labels,
        DeviceTensor<float> loss, DeviceTensor<float> metrics, MetricSlots slots, int batchIndex) =>
        ReferenceMath.AccumulateMetrics(Data(logits), Data(labels), Data(loss)[0], Data(metrics), slots, logits.Shape[0], logits.Shape[1], batchIndex);

    /// <inheritdoc/>
    protected override void SoftmaxCrossEntropyCore(DeviceTensor<float> logits, DeviceTensor<int> labels,
        DeviceTensor<float> dlogits, DeviceTensor<float> loss, float labelSmoothing)
    {
        // The labels are at hand here, so an outside one is an error, as in PyTorch (a GPU writes NaN instead).
        int classes = logits.Shape[1];
        int[] values = Data(labels);
        Checks.Labels("SoftmaxCrossEntropy", values, classes);
        Data(loss)[0] = ReferenceMath.SoftmaxCrossEntropy<float>(Data(logits), values, Data(dlogits), logits.Shape[0], classes, labelSmoothing);
    }

    /// <inheritdoc/>
    protected override void ArgmaxCore(DeviceTensor<float> logits, DeviceTensor<int> predictions, int offset) =>
        ReferenceMath.Argmax<float>(Data(logits), Data(predictions).AsSpan(offset), logits.Shape[0], logits.Shape[1]);

    /// <inheritdoc/>
    protected override void AdamUpdateCore(AdamParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> firstMoment, DeviceTensor<float> secondMoment) =>
        ReferenceMath.AdamUpdate<float>(h.StepSize, h.SqrtCorrection2, h.Beta1, h.Beta2, h.Epsilon, h.WeightDecay, h.DecayFactor,
            Data(parameter), Data(gradient), Data(firstMoment), Data(secondMoment));

    /// <summary>The array behind a tensor of this backend.</summary>
    protected static T[] Data<T>(DeviceTensor<T> tensor)
        where T : unmanaged => ((HostTensor<T>)tensor).Values;
}

/// <summary>A "device" tensor of a host backend: a plain array (views share it).</summary>
internal sealed class HostTensor<T>(HostBackend backend, Shape shape, HostTensor<T>? viewOf = null)
    : DeviceTensor<T>(backend, shape, viewOf)
    where T : unmanaged
{
    public T[] Values { get; } = viewOf?.Values ?? GC.AllocateUninitializedArray<T>(shape.Size);

    public long Bytes => (long)Values.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();

    protected override DeviceTensor<T> CreateView(Shape shape) => new HostTensor<T>(backend, shape, this);

    protected override void Release() => backend.OnReleased(Bytes);
}
