using GpuCnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>
/// The backend that runs the kernels of GpuCnn.Kernels on one ILGPU accelerator (CUDA, OpenCL or ILGPU's CPU
/// accelerator). Kernels are compiled once per accelerator, on first use, and kept. Every launch goes to the
/// accelerator's default stream, so operations run in issue order; only downloads and <see cref="Synchronize"/> wait.
/// Create instances through <see cref="IlgpuDevices"/>.
/// </summary>
public sealed class IlgpuBackend : Backend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly IlgpuKernelSet _kernels;
    private readonly IlgpuWorkspace _workspace;
    private readonly LaunchCounter _launches = new();
    private long _tensorBytes;

    internal IlgpuBackend(string name, Context context, Accelerator accelerator)
    {
        Name = name;
        _context = context;
        _accelerator = accelerator;
        _kernels = new IlgpuKernelSet(accelerator, _launches);
        _workspace = new IlgpuWorkspace(accelerator);
    }

    /// <inheritdoc/>
    public override string Name { get; }

    /// <inheritdoc/>
    public override string DeviceName => _accelerator.AcceleratorType == AcceleratorType.CPU
        ? $"ILGPU {_accelerator.Name} (emulates GPU threads; for testing kernels)"
        : $"{_accelerator.Name} ({_accelerator.AcceleratorType}, {_accelerator.MemorySize / (1024 * 1024)} MiB)";

    /// <inheritdoc/>
    public override long BytesAllocated => Interlocked.Read(ref _tensorBytes) + _workspace.Bytes;

    /// <summary>The accelerator's memory in bytes.</summary>
    public long DeviceMemoryBytes => _accelerator.AcceleratorType == AcceleratorType.CPU ? 0 : _accelerator.MemorySize;

    /// <summary>The number of kernel launches issued so far (for counting launches per training step).</summary>
    public long LaunchCount => _launches.Count;

    /// <inheritdoc/>
    public override void Synchronize() => Guard("synchronize", _accelerator.Synchronize);

    /// <inheritdoc/>
    protected override DeviceTensor<T> AllocateCore<T>(Shape shape)
    {
        MemoryBuffer1D<T, Stride1D.Dense> buffer;
        try
        {
            buffer = _accelerator.Allocate1D<T>(shape.Size);
        }
        catch (Exception e) when (e is not DeviceFaultException and not ArgumentException)
        {
            long bytes = (long)shape.Size * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
            throw IsOutOfMemory(e)
                ? new DeviceOutOfMemoryException($"{Name}: out of device memory allocating {typeof(T).Name}{shape} ({FormatBytes(bytes)}) with {FormatBytes(BytesAllocated)} in use; try a smaller --batch-size.", e)
                : new DeviceFaultException($"{Name}: allocating {typeof(T).Name}{shape} failed: {e.Message}", e);
        }

        var tensor = new IlgpuTensor<T>(this, shape, buffer);
        Interlocked.Add(ref _tensorBytes, tensor.Bytes);
        return tensor;
    }

    private static bool IsOutOfMemory(Exception e) =>
        e is OutOfMemoryException || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase) ||
        e.Message.Contains("OutOfMemory", StringComparison.Ordinal);

    internal void OnReleased(long bytes) => Interlocked.Add(ref _tensorBytes, -bytes);

    /// <inheritdoc/>
    protected override void UploadCore<T>(ReadOnlySpan<T> source, DeviceTensor<T> destination) =>
        View(destination).CopyFromCPU(source);

    /// <inheritdoc/>
    protected override void DownloadCore<T>(DeviceTensor<T> source, Span<T> destination)
    {
        Synchronize(); // a failed launch surfaces here, as a DeviceFaultException
        View(source).CopyToCPU(destination);
    }

    /// <summary>Runs a device call, turning driver errors (which surface at synchronisation) into <see cref="DeviceFaultException"/>.</summary>
    private void Guard(string what, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is not DeviceFaultException and not ArgumentException and not ObjectDisposedException)
        {
            throw IsOutOfMemory(e)
                ? new DeviceOutOfMemoryException($"{Name}: out of device memory ({what}): {e.Message}", e)
                : new DeviceFaultException($"{Name}: the device failed ({what}): {e.Message}", e);
        }
    }

    /// <inheritdoc/>
    protected override void FillCore(DeviceTensor<float> tensor, float value) =>
        _kernels.Fill.Launch(tensor.Length, View(tensor), value);

    /// <inheritdoc/>
    protected override void Conv2dForwardCore(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w,
        DeviceTensor<float>? b, DeviceTensor<float> y)
    {
        // Without a bias the kernel never reads b; any valid view stands in for it.
        var bias = b is null ? View(w) : View(b);
        _kernels.ConvForward.Launch(g.OutputSize, View(x), View(w), bias, View(y), g, b is null ? 0 : 1);
    }

    /// <inheritdoc/>
    protected override void Conv2dBackwardDataCore(Conv2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> w,
        DeviceTensor<float> dx)
    {
        // The full convolution in three visible steps: dilate + pad dy, rotate the kernel, correlate.
        int paddedSize = g.N * g.K * (g.H + g.R - 1) * (g.W + g.S - 1);
        var padded = _workspace.Get(IlgpuWorkspace.Slot.DilatedGradient, paddedSize);
        var rotated = _workspace.Get(IlgpuWorkspace.Slot.RotatedKernel, g.WeightSize);
        _kernels.DilatePad.Launch(paddedSize, View(dy), padded, g);
        _kernels.RotateKernel.Launch(g.WeightSize, View(w), rotated, g);
        _kernels.FullConvolution.Launch(g.InputSize, padded, rotated, View(dx), g);
    }

    /// <inheritdoc/>
    protected override void Conv2dBackwardFilterCore(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> dw, DeviceTensor<float>? db)
    {
        _kernels.ConvBackwardFilter.Launch(g.WeightSize, View(x), View(dy), View(dw), g);
        if (db is not null)
        {
            _kernels.BiasGradient.Launch(g.K, View(dy), View(db), g.N, g.K, g.P * g.Q);
        }
    }

    /// <inheritdoc/>
    protected override void MaxPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<int> switches) =>
        _kernels.MaxPoolForward.Launch(g.OutputSize, View(x), View(y), View(switches), g);

    /// <inheritdoc/>
    protected override void MaxPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<int> switches,
        DeviceTensor<float> dx) =>
        _kernels.MaxPoolBackward.Launch(g.InputSize, View(dy), View(switches), View(dx), g);

    /// <inheritdoc/>
    protected override void AvgPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y) =>
        _kernels.AvgPoolForward.Launch(g.OutputSize, View(x), View(y), g);

    /// <inheritdoc/>
    protected override void AvgPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        _kernels.AvgPoolBackward.Launch(g.InputSize, View(dy), View(dx), g);

    /// <inheritdoc/>
    protected override void GemmCore(GemmShape shape, DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> c) =>
        _kernels.Gemm.Launch(shape.M * shape.N, View(a), View(b), View(c), shape);

    /// <inheritdoc/>
    protected override void BiasAddCore(DeviceTensor<float> y, DeviceTensor<float> b, int batch, int channels, int inner) =>
        _kernels.BiasAdd.Launch(y.Length, View(y), View(b), channels, inner);

    /// <inheritdoc/>
    protected override void BiasGradientCore(DeviceTensor<float> dy, DeviceTensor<float> db, int batch, int channels,
        int inner) =>
        _kernels.BiasGradient.Launch(channels, View(dy), View(db), batch, channels, inner);

    /// <inheritdoc/>
    protected override void ActivationForwardCore(Activation f, float alpha, DeviceTensor<float> x, DeviceTensor<float> y) =>
        _kernels.ActivationForward.Launch(x.Length, View(x), View(y), (int)f, alpha);

    /// <inheritdoc/>
    protected override void ActivationBackwardCore(Activation f, float alpha, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        _kernels.ActivationBackward.Launch(x.Length, View(x), View(y), View(dy), View(dx), (int)f, alpha);

    /// <inheritdoc/>
    protected override void SoftmaxCrossEntropyCore(DeviceTensor<float> logits, DeviceTensor<int> labels,
        DeviceTensor<float> dlogits, DeviceTensor<float> loss)
    {
        int batch = logits.Shape[0], classes = logits.Shape[1];
        var perSample = _workspace.Get(IlgpuWorkspace.Slot.PerSampleLoss, batch);
        _kernels.SoftmaxCrossEntropyRows.Launch(batch, View(logits), View(labels), View(dlogits), perSample, classes, batch);
        _kernels.MeanInOrder.Launch(1, perSample, View(loss), batch);
    }

    /// <inheritdoc/>
    protected override void GatherRowsCore<T>(DeviceTensor<T> source, DeviceTensor<int> indices, int offset,
        DeviceTensor<T> destination, int rows, int rowLength)
    {
        if (typeof(T) == typeof(float))
        {
            _kernels.GatherFloatRows.Launch(destination.Length, View((DeviceTensor<float>)(object)source), View(indices),
                View((DeviceTensor<float>)(object)destination), offset, rowLength, source.Shape[0]);
        }
        else if (typeof(T) == typeof(int))
        {
            _kernels.GatherIntRows.Launch(destination.Length, View((DeviceTensor<int>)(object)source), View(indices),
                View((DeviceTensor<int>)(object)destination), offset, rowLength, source.Shape[0]);
        }
        else
        {
            throw new NotSupportedException($"GatherRows: element type {typeof(T).Name} is not supported on {Name}; use float or int.");
        }
    }

    /// <inheritdoc/>
    protected override void ArgmaxCore(DeviceTensor<float> logits, DeviceTensor<int> predictions, int offset) =>
        _kernels.Argmax.Launch(logits.Shape[0], View(logits), View(predictions), offset, logits.Shape[1]);

    /// <inheritdoc/>
    protected override void AccumulateMetricsCore(DeviceTensor<float> logits, DeviceTensor<int> labels,
        DeviceTensor<float> loss, DeviceTensor<float> metrics, int batchIndex) =>
        _kernels.AccumulateMetrics.Launch(1, View(logits), View(labels), View(loss), View(metrics), logits.Shape[0],
            logits.Shape[1], batchIndex);

    /// <inheritdoc/>
    protected override void SgdUpdateCore(SgdParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> velocity) =>
        _kernels.Sgd.Launch(parameter.Length, View(parameter), View(gradient), View(velocity), h);

    /// <inheritdoc/>
    protected override void AdamUpdateCore(AdamParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> firstMoment, DeviceTensor<float> secondMoment) =>
        _kernels.Adam.Launch(parameter.Length, View(parameter), View(gradient), View(firstMoment), View(secondMoment), h);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _workspace.Dispose();
            _accelerator.Dispose();
            _context.Dispose();
        }

        base.Dispose(disposing);
    }

    private static ArrayView<T> View<T>(DeviceTensor<T> tensor)
        where T : unmanaged => ((IlgpuTensor<T>)tensor).Memory;
}
