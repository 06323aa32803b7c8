using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>
/// What the backends whose "device" is host memory share (the reference and the fast CPU backend): tensors are
/// arrays (from 4 KB on pinned, their values on a cache line: <see cref="HostTensor{T}"/>), every operation is synchronous,
/// batch gathering is a row copy, and the small per-batch loops (loss, metrics, arg-max, Adam — a few thousand
/// elements) run the reference's code in both.
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

    /// <summary>A tensor finalized undisposed: no longer counted, and counted among <see cref="Backend.TensorsForgotten"/>.</summary>
    internal void OnForgotten(long bytes)
    {
        OnReleased(bytes);
        Forgotten();
    }

    /// <inheritdoc/>
    protected override DeviceTensor<T> AllocateCore<T>(Shape shape)
    {
        HostTensor<T> tensor;
        try
        {
            tensor = new HostTensor<T>(this, shape);
        }
        catch (Exception e) when (e is OutOfMemoryException or OverflowException)
        {
            // As the devices say it (the CLI's hint to use smaller batches hangs on it): past .NET's array limit, or no memory.
            throw new DeviceOutOfMemoryException(
                $"{Name}: out of memory allocating {typeof(T).Name}{shape} ({FormatBytes((long)shape.Size * Unsafe.SizeOf<T>())}) with {FormatBytes(BytesAllocated)} in use; use smaller batches.", e);
        }

        Interlocked.Add(ref _bytes, tensor.Bytes);
        return tensor;
    }

    /// <inheritdoc/>
    protected override void UploadCore<T>(ReadOnlySpan<T> source, DeviceTensor<T> destination) => source.CopyTo(Data(destination));

    /// <inheritdoc/>
    protected override void DownloadCore<T>(DeviceTensor<T> source, Span<T> destination) => Data(source).CopyTo(destination);

    /// <inheritdoc/>
    protected override void FillCore(DeviceTensor<float> tensor, float value) => Data(tensor).Fill(value);

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
        var values = Data(labels);
        Checks.Labels("SoftmaxCrossEntropy", values, classes);
        Data(loss)[0] = ReferenceMath.SoftmaxCrossEntropy<float>(Data(logits), values, Data(dlogits), logits.Shape[0], classes, labelSmoothing);
    }

    /// <inheritdoc/>
    protected override void ArgmaxCore(DeviceTensor<float> logits, DeviceTensor<int> predictions, int offset) =>
        ReferenceMath.Argmax<float>(Data(logits), Data(predictions)[offset..], logits.Shape[0], logits.Shape[1]);

    /// <inheritdoc/>
    protected override void AdamUpdateCore(AdamParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> firstMoment, DeviceTensor<float> secondMoment) =>
        ReferenceMath.AdamUpdate<float>(h.StepSize, h.SqrtCorrection2, h.Beta1, h.OneMinusBeta1, h.Beta2, h.OneMinusBeta2, h.Epsilon, h.WeightDecay, h.DecayFactor,
            Data(parameter), Data(gradient), Data(firstMoment), Data(secondMoment));

    /// <summary>
    /// The values of a tensor of this backend (a view's: its own length, from the same first value). Kernels and jobs
    /// that run on other threads take their addresses inside a <c>fixed</c> statement around the whole call: small
    /// tensors' arrays are not pinned otherwise, and the pin also keeps the tensor alive while the team runs.
    /// </summary>
    protected static Span<T> Data<T>(DeviceTensor<T> tensor)
        where T : unmanaged => ((HostTensor<T>)tensor).Values;
}

/// <summary>
/// A "device" tensor of a host backend (views share its storage). The values of a tensor of 4 KB or more start on a
/// 64-byte cache line, as PyTorch's and oneDNN's allocations do: an array's own data starts 16 bytes into its object
/// (24 bytes past a line on .NET 10's large-object heap), so every 64-byte vector load or store of a tensor split across
/// two lines, and a 32-byte one every other time. Such a tensor is a pinned array one line longer than its values (the
/// pinned-object heap never moves it). Smaller tensors — losses, labels, biases, a batch's logits — stay plain arrays:
/// on the pinned-object heap, which only a full collection frees, allocating and dropping tensors of 2.5 and 21 KB in a
/// loop ran 4.7× slower, with a generation-2 collection every few hundred allocations.
/// </summary>
internal sealed unsafe class HostTensor<T> : DeviceTensor<T>
    where T : unmanaged
{
    private const int LineBytes = 64;

    /// <summary>Tensors of at least this many bytes start on a cache line.</summary>
    public const int AlignedBytes = 4096;

    private readonly HostBackend _backend;
    private readonly T[] _storage;
    private readonly int _offset;
    private readonly bool _pinned;

    public HostTensor(HostBackend backend, Shape shape, HostTensor<T>? viewOf = null)
        : base(backend, shape, viewOf)
    {
        _backend = backend;
        if (viewOf is not null)
        {
            (_storage, _offset, _pinned) = (viewOf._storage, viewOf._offset, viewOf._pinned);
            return;
        }

        if ((long)shape.Size * sizeof(T) < AlignedBytes || LineBytes % sizeof(T) != 0)
        {
            _storage = GC.AllocateUninitializedArray<T>(shape.Size);
            return;
        }

        _storage = GC.AllocateUninitializedArray<T>(checked(shape.Size + (LineBytes / sizeof(T))), pinned: true);
        _pinned = true;
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_storage));
        _offset = (int)(((LineBytes - (start % LineBytes)) % LineBytes) / sizeof(T));
    }

    /// <summary>The tensor's values.</summary>
    public Span<T> Values => _storage.AsSpan(_offset, Shape.Size);

    /// <summary>Where the values start now (for good where <see cref="IsPinned"/>).</summary>
    public nint Address => (nint)Unsafe.AsPointer(ref _storage[_offset]);

    /// <summary>Whether the storage is pinned and the values start on a cache line.</summary>
    public bool IsPinned => _pinned;

    public long Bytes => (long)Shape.Size * sizeof(T);

    protected override DeviceTensor<T> CreateView(Shape shape) => new HostTensor<T>(_backend, shape, this);

    protected override void Release() => _backend.OnReleased(Bytes);

    private protected override void Forget()
    {
        if (_storage is not null) // null: the constructor threw (out of memory), and nothing was counted
        {
            _backend.OnForgotten(Bytes);
        }
    }
}
