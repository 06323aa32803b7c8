using GpuCnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>
/// The backend that runs the kernels of GpuCnn.Kernels on one ILGPU accelerator (CUDA, OpenCL or ILGPU's CPU
/// accelerator). Kernels are compiled once per accelerator, on first use, and kept. Every launch goes to the
/// accelerator's default stream, so operations run in issue order; only downloads and <see cref="Backend.Synchronize"/> wait.
/// Create instances through <see cref="IlgpuDevices"/>.
/// </summary>
public sealed partial class IlgpuBackend : Backend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly KernelLauncher _launch;
    private readonly IlgpuWorkspace _workspace;
    private readonly DeviceGuard _guard;
    private long _tensorBytes;
    private readonly bool _float64;

    internal IlgpuBackend(string name, Context context, Accelerator accelerator)
    {
        Name = name;
        _context = context;
        _accelerator = accelerator;
        // An OpenCL device without cl_khr_fp64 (many Intel and mobile GPUs) cannot compile a kernel that adds doubles.
        _float64 = accelerator.Capabilities is not ILGPU.Runtime.OpenCL.CLCapabilityContext { Float64: false };
        _profile = new DeviceProfile(accelerator.AcceleratorType != AcceleratorType.CPU, accelerator.NumMultiprocessors,
            accelerator.MaxNumThreadsPerMultiprocessor, accelerator.MaxNumThreadsPerGroup);
        _guard = new DeviceGuard(name);
        _launch = new KernelLauncher(accelerator, _guard);
        _workspace = new IlgpuWorkspace(accelerator, _guard);
        InjectFaultIfAsked();
        // For measuring one kernel against another (gpucnn bench); a misspelt value is refused, as the other settings' are,
        // never silently measured as the default.
        if (Setting<GemmAlgorithm>("GPUCNN_GEMM_ALGORITHM") is { } gemm)
        {
            GemmAlgorithm = gemm;
        }

        if (Setting<ConvolutionAlgorithm>("GPUCNN_CONV_ALGORITHM") is { } conv)
        {
            ConvolutionAlgorithm = conv;
        }

        if (IntegerSetting("GPUCNN_DEPTH_SPLITS", 1) is { } splits)
        {
            GemmDepthSplits = splits;
        }

        if (IntegerSetting("GPUCNN_SPLIT_MINIMUM_GROUPS", 0) is { } minimumGroups) // 0: no floor, the default (check.sh times both)
        {
            SplitMinimumGroups = minimumGroups;
        }

        string? filters = Environment.GetEnvironmentVariable("GPUCNN_IMPLICIT_GEMM_FILTERS");
        if (!string.IsNullOrWhiteSpace(filters))
        {
            ImplicitGemmFilters = int.TryParse(filters, out int count) && count is 64 or ConvolutionImplicitGemmKernels.NarrowFilters
                or ConvolutionImplicitGemmKernels.Narrow16Filters
                ? count
                : throw new SettingException($"GPUCNN_IMPLICIT_GEMM_FILTERS is '{filters}'; expected 64, 32 or 16.");
        }

        if (IntegerSetting("GPUCNN_FEW_TAPS_FILTER_GRADIENT", 0, expected: "the most taps (C·R·S) it takes, 0 for none") is { } fewTaps)
        {
            FewTapsFilterGradient = fewTaps;
        }

        if (IntegerSetting("GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT", 0, expected: "the most taps (C·R·S) it takes, 0 for none") is { } blockedTaps)
        {
            BlockedFewTapsFilterGradient = blockedTaps;
        }

        if (IntegerSetting("GPUCNN_BLOCKED_FEW_TAPS_CHUNKS", 1, MaxBlockedFewTapsChunksPerMultiprocessor,
                $"the chunks a multiprocessor, 1 to {MaxBlockedFewTapsChunksPerMultiprocessor}") is { } perMultiprocessor)
        {
            BlockedFewTapsChunksPerMultiprocessor = perMultiprocessor;
        }

        string? stagedMerge = Environment.GetEnvironmentVariable("GPUCNN_BATCH_NORM_STAGED_MERGE");
        if (!string.IsNullOrWhiteSpace(stagedMerge))
        {
            StagedBatchNormMerge = stagedMerge.Trim() switch
            {
                "1" => true,
                "0" => false,
                _ => throw new SettingException(
                    $"GPUCNN_BATCH_NORM_STAGED_MERGE is '{stagedMerge}'; expected 1 (merge each channel's chunks from shared memory) or 0 (from memory)."),
            };
        }

        string? lists = Environment.GetEnvironmentVariable("GPUCNN_TENSOR_LISTS");
        if (!string.IsNullOrWhiteSpace(lists))
        {
            TensorListLaunches = lists.Trim() switch
            {
                "1" => true,
                "0" => false,
                _ => throw new SettingException($"GPUCNN_TENSOR_LISTS is '{lists}'; expected 1 (a launch per 32 tensors) or 0 (a launch per tensor)."),
            };
        }

        string? groupThreads = Environment.GetEnvironmentVariable("GPUCNN_TILE_GROUP_THREADS");
        if (!string.IsNullOrWhiteSpace(groupThreads))
        {
            TileGroupThreads = int.TryParse(groupThreads, out int threads) && IsTileGroupThreads(threads)
                ? threads
                : throw new SettingException($"GPUCNN_TILE_GROUP_THREADS is '{groupThreads}'; expected 256, 128 or 64.");
        }
    }

    private DeviceProfile _profile;

    /// <summary>
    /// Threads per group of the tiled kernels on GPUs — the 4×4 and 8×8 GEMMs and the implicit-GEMM convolution: 256
    /// (the default), 128 or 64. Smaller groups compute smaller tiles of the same 4×4 or 8×8 register blocks, so a
    /// product makes more of them and a multiprocessor holds more at once (<see cref="GroupsPerMultiprocessor"/>);
    /// each group stages its operands for fewer threads. 4×4 GEMM groups: 16 × 16, 16 × 8 or 8 × 8 threads; 8×8 GEMM
    /// groups are square, 16 × 16 at 256 and 8 × 8 below; implicit-GEMM groups are (threads / 8) × 8.
    /// GPUCNN_TILE_GROUP_THREADS sets it for a process. ILGPU's CPU accelerator keeps its 16-thread groups.
    /// </summary>
    public int TileGroupThreads
    {
        get;
        set => field = IsTileGroupThreads(value)
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "Tile groups have 256, 128 or 64 threads.");
    } = 256;

    private static bool IsTileGroupThreads(int threads) => threads is 256 or 128 or 64;

    // Groups of the 4×4 GEMM: 64×64 tiles at 16×16 threads; the CPU accelerator's default device runs at most 16
    // threads per group (and one OS thread per simulated thread).
    private Index2D _gemmGroup => _profile.MaxGroupThreads < 256 ? new Index2D(4, 4) : TileGroupThreads switch
    {
        256 => new Index2D(16, 16),
        128 => new Index2D(16, 8),
        _ => new Index2D(8, 8),
    };

    // The side of the 8×8 GEMM's square groups: 128×128 tiles at 16, 64×64 at 8.
    private int _gemm8x8Side => _profile.MaxGroupThreads < 256 ? 4 : TileGroupThreads == 256 ? 16 : 8;

    /// <summary>
    /// Resident threads of the register-blocked kernels per multiprocessor: at 107–124 registers a thread, two groups
    /// of 256 fit one (65,536 registers), and as many threads in smaller groups.
    /// </summary>
    private const int BlockedThreadsPerMultiprocessor = 512;

    /// <summary>
    /// Groups of <paramref name="groupThreads"/> threads of the register-blocked kernels one multiprocessor runs at once
    /// (at most 32, Hopper's limit of resident groups).
    /// </summary>
    public static int GroupsPerMultiprocessor(long groupThreads) => (int)Math.Clamp(BlockedThreadsPerMultiprocessor / groupThreads, 1, 32);

    private int _gemmTileK => _profile.MaxGroupThreads >= 256 ? 16 : 8;

    /// <summary>The group size the launch report assumes for implicitly grouped kernels (ILGPU picks its own per device).</summary>
    public const int AutoGroupAssumed = KernelLauncher.AutoGroup;

    /// <summary>The device the launch decisions are made for (this accelerator's own properties).</summary>
    public DeviceProfile Profile => _profile;

    /// <summary>What the launch decisions (groups, splits, chunks, kernel choice) are made for.</summary>
    public readonly record struct DeviceProfile(bool IsGpu, int Multiprocessors, int ThreadsPerMultiprocessor, int MaxGroupThreads)
    {
        /// <summary>An NVIDIA H100/H200: 132 multiprocessors of 2,048 threads, groups of up to 1,024.</summary>
        public static DeviceProfile Hopper => new(true, 132, 2048, 1024);
    }

    /// <summary>Told the kernel method of every launch from this backend while set (for tests: which kernels an operation reaches).</summary>
    internal Action<System.Reflection.MethodInfo>? LaunchObserver
    {
        get => _launch.Observer;
        set => _launch.Observer = value;
    }

    /// <summary>
    /// Records every launch that <paramref name="body"/> would make on a device of <paramref name="profile"/> — grid,
    /// group, shared memory, longest serial loop per thread — without running a kernel (the launch report of
    /// `gpucnn bench --launches`). The outputs of the body are left unwritten.
    /// <paramref name="body"/> runs holding the backend's operation lock: it must not wait for another thread that
    /// uses this backend.
    /// </summary>
    public IReadOnlyList<LaunchRecord> PlanLaunches(DeviceProfile profile, Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        using var operation = EnterOperation(); // no other thread's launch may run, or be recorded, while planning
        var saved = _profile;
        var records = new List<LaunchRecord>();
        (_profile, _launch.Recorder, _launch.DryRun) = (profile, records, true);
        try
        {
            body();
        }
        finally
        {
            (_profile, _launch.Recorder, _launch.DryRun) = (saved, null, false);
        }

        return records;
    }

    /// <summary>Which GEMM kernel runs (Auto: tiled on GPUs, the simple kernel on the CPU accelerator).</summary>
    public GemmAlgorithm GemmAlgorithm
    {
        get => _gemmAlgorithm;
        set => _gemmAlgorithm = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "GemmAlgorithm: not one of its named values.");
    }

    private GemmAlgorithm _gemmAlgorithm;

    /// <summary>Which convolution kernels run (Auto: on GPUs the GEMM routes for ungrouped layers, direct for grouped ones; direct on the CPU accelerator; depthwise layers their own kernels under every setting but Direct).</summary>
    public ConvolutionAlgorithm ConvolutionAlgorithm
    {
        get => _convolutionAlgorithm;
        set => _convolutionAlgorithm = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "ConvolutionAlgorithm: not one of its named values.");
    }

    private ConvolutionAlgorithm _convolutionAlgorithm;

    /// <summary>Floats of workspace the im2col route may use per chunk of images (default 64 Mi floats = 256 MiB).</summary>
    public long ConvolutionWorkspaceFloats { get; set; } = 64L << 20;

    private bool IsCpuAccelerator => !_profile.IsGpu;

    /// <inheritdoc/>
    public override string Name { get; }

    /// <inheritdoc/>
    public override string DeviceName => _accelerator.AcceleratorType == AcceleratorType.CPU
        ? $"ILGPU {_accelerator.Name} (emulates GPU threads; for testing kernels)"
        : $"{_accelerator.Name} ({_accelerator.AcceleratorType}, {_accelerator.MemorySize / (1024 * 1024)} MiB)";

    /// <inheritdoc/>
    public override long BytesAllocated => Interlocked.Read(ref _tensorBytes) + _workspace.Bytes;

    /// <summary>The part of <see cref="BytesAllocated"/> held by the grow-only scratch workspaces.</summary>
    public long WorkspaceBytes => _workspace.Bytes;

    /// <summary>The accelerator's memory in bytes.</summary>
    public long DeviceMemoryBytes => _accelerator.AcceleratorType == AcceleratorType.CPU ? 0 : _accelerator.MemorySize;

    /// <summary>The number of kernel launches issued so far (for counting launches per training step).</summary>
    public long LaunchCount => _guard.Count;

    /// <inheritdoc/>
    protected override void SynchronizeCore() => Guard("synchronize", _accelerator.Synchronize);

    /// <summary>Whether this is a real accelerator (not ILGPU's CPU emulation), where device events time work.</summary>
    public bool IsGpu => _accelerator.AcceleratorType != AcceleratorType.CPU;

    /// <summary>
    /// Milliseconds the device spent from before to after the work <paramref name="body"/> issues, measured with
    /// device events on the stream (as CUDA events time PyTorch), so host-side launch cost before the first kernel
    /// is left out but gaps between kernels count. Synchronises.
    /// <paramref name="body"/> runs holding the backend's operation lock (the events bracket its work alone): it must
    /// not wait for another thread that uses this backend.
    /// </summary>
    public double DeviceMilliseconds(Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        using var operation = EnterOperation(); // the events must bracket this body's work alone
        ProfilingMarker? start = null, end = null;
        try
        {
            Guard("recording a start event", () => start = _accelerator.AddProfilingMarker());
            body();
            Guard("recording an end event", () => end = _accelerator.AddProfilingMarker());
            double ms = 0;
            Guard("reading device events", () =>
            {
                end!.Synchronize();
                ms = end.MeasureFrom(start!).TotalMilliseconds;
            });
            return ms;
        }
        finally
        {
            start?.Dispose();
            end?.Dispose();
        }
    }

    /// <inheritdoc/>
    protected override DeviceTensor<T> AllocateCore<T>(Shape shape)
    {
        MemoryBuffer1D<T, Stride1D.Dense> buffer;
        try
        {
            buffer = _accelerator.Allocate1D<T>(shape.Size);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            long bytes = (long)shape.Size * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
            throw DeviceGuard.IsOutOfMemory(e)
                ? new DeviceOutOfMemoryException($"{Name}: out of device memory allocating {typeof(T).Name}{shape} ({FormatBytes(bytes)}) with {FormatBytes(BytesAllocated)} in use; use smaller batches.", e)
                : _guard.Fail($"allocating {typeof(T).Name}{shape}", e);
        }

        var tensor = new IlgpuTensor<T>(this, shape, buffer);
        Interlocked.Add(ref _tensorBytes, tensor.Bytes);
        return tensor;
    }

    /// <summary>A tensor finalized undisposed (its buffer frees itself): no longer counted, and counted among <see cref="Backend.TensorsForgotten"/>.</summary>
    internal void Forget(long bytes)
    {
        Interlocked.Add(ref _tensorBytes, -bytes);
        Forgotten();
    }

    /// <summary>
    /// Frees a tensor's buffer under the operation lock (no other thread's operation is between its launches then;
    /// ILGPU binds the context for the free itself), also after the backend was disposed, when the accelerator has
    /// freed its buffers already.
    /// </summary>
    internal void Free(MemoryBuffer buffer)
    {
        using var operation = EnterRelease();
        Interlocked.Add(ref _tensorBytes, -buffer.LengthInBytes);
        if (_accelerator.IsDisposed)
        {
            return;
        }

        try
        {
            buffer.Dispose();
        }
        catch (Exception) when (Faulted)
        {
            // A faulted CUDA context refuses to free memory; the driver reclaims it with the context.
        }
    }

    /// <inheritdoc/>
    protected override void UploadCore<T>(ReadOnlySpan<T> source, DeviceTensor<T> destination)
    {
        try
        {
            View(destination).CopyFromCPU(source);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw _guard.Fail($"uploading {typeof(T).Name}{destination.Shape}", e);
        }
    }

    /// <inheritdoc/>
    protected override void DownloadCore<T>(DeviceTensor<T> source, Span<T> destination)
    {
        Synchronize(); // a failed launch surfaces here, as a DeviceFaultException
        try
        {
            View(source).CopyToCPU(destination);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw _guard.Fail($"downloading {typeof(T).Name}{source.Shape}", e);
        }
    }

    /// <summary>Runs a device call, turning driver errors (which surface at synchronisation) into <see cref="DeviceFaultException"/>.</summary>
    private void Guard(string what, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw _guard.Fail(what, e);
        }
    }

    /// <summary>Whether a device call has failed: the context may be unusable, so releasing memory must not throw.</summary>
    internal bool Faulted => _guard.Faulted;

    /// <summary>
    /// The test hook behind GPUCNN_INJECT_FAULT_AT_LAUNCH=N (GPUs only): launch N first runs a kernel that writes far
    /// outside its buffer, a real illegal-address fault, to exercise the recovery path (auto's fallback to the CPU) on
    /// real hardware. ILGPU's CPU accelerator would crash the process instead, so it ignores the variable.
    /// </summary>
    private void InjectFaultIfAsked()
    {
        string? setting = Environment.GetEnvironmentVariable("GPUCNN_INJECT_FAULT_AT_LAUNCH");
        if (setting is null || !IsGpu || !long.TryParse(setting, out long launch) || launch <= 0)
        {
            return;
        }

        ArrayView<float> target = _accelerator.Allocate1D<float>(1).View;
        _guard.InjectFault(launch, () => _launch.Run(DiagnosticKernels.WriteOutOfBounds, 1, target, 1L << 40));
    }

    /// <inheritdoc/>
    protected override void FillCore(DeviceTensor<float> tensor, float value) =>
        _launch.Run(ElementwiseKernels.Fill, tensor.Length, View(tensor), value);

    /// <inheritdoc/>
    protected override void Conv2dForwardCore<TF>(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w,
        DeviceTensor<float>? b, DeviceTensor<float> y, TF activation)
    {
        var epilogue = new Epilogue<TF>(b is null ? 0 : 1, activation);
        // Without a bias the kernels never read b; any valid view stands in for it.
        var bias = b is null ? View(w) : View(b);
        if (UseImplicitGemm(g))
        {
            RunImplicitGemm(g, View(x), View(w), View(y), bias, epilogue);
            return;
        }

        if (UseDepthwise(g) && DepthwiseKernels.Plan(g, backwardData: false, DepthwiseGroupThreads) is { } depthwise)
        {
            _launch.NextSerial((long)g.R * g.S * DepthwiseKernels.RowsPerThread);
            _launch.Run(DepthwiseKernels.Correlate, DepthwiseKernels.Config(depthwise), View(x), View(w), bias, View(y), depthwise, epilogue);
            return;
        }

        if (!UseIm2Col(g))
        {
            _launch.NextSerial(g.GroupChannels * g.R * g.S);
            _launch.Run(ConvolutionKernels.Forward, g.OutputSize, View(x), View(w), bias, View(y), g, epilogue);
            return;
        }

        // y = f(W (K × C·R·S) · cols (C·R·S × n·P·Q) + b) per chunk of images, permuted to NCHW as bias and f apply.
        int crs = g.C * g.R * g.S, pq = g.P * g.Q, chunk = ChunkImages(g);
        for (int first = 0; first < g.N; first += chunk)
        {
            int count = Math.Min(chunk, g.N - first);
            var cols = _workspace.Get(IlgpuWorkspace.Slot.Columns, crs * count * pq);
            var product = _workspace.Get(IlgpuWorkspace.Slot.Product, g.K * count * pq);
            _launch.NextSerial(g.R * g.S);
            _launch.Run(ConvolutionGemmKernels.Im2Col, g.C * count * pq, View(x), cols, g, first, count);
            RunGemm(new GemmShape(g.K, count * pq, crs, 0, 0, 1f, 0f), View(w), cols, product);
            _launch.Run(ConvolutionGemmKernels.ToNchwWithBias, g.K * count * pq, product, bias, View(y), g, first, count, epilogue);
        }
    }

    /// <inheritdoc/>
    protected override void Conv2dBackwardDataCore(Conv2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> w,
        DeviceTensor<float> dx)
    {
        if (UseImplicitGemm(g) && ConvolutionImplicitGemmKernels.RunsBackwardData(g))
        {
            // dx = the stride-1 convolution of dy with the rotated, channel-swapped kernel (C, K, R, S).
            var swapped = _workspace.Get(IlgpuWorkspace.Slot.RotatedKernel, g.WeightSize);
            _launch.Run(ConvolutionKernels.RotateKernel, g.WeightSize, View(w), swapped, g);
            RunImplicitGemm(ConvolutionImplicitGemmKernels.BackwardDataGeometry(g), View(dy), swapped, View(dx), swapped, Epilogue.None);
            return;
        }

        if (UseDepthwise(g) && DepthwiseKernels.Plan(g, backwardData: true, DepthwiseGroupThreads) is { } depthwise)
        {
            // dx = the stride-1 correlation of the spread, padded dy with the rotated kernel (C, m, R, S): the forward
            // pass's kernel, each dx plane summing its m filters' dy planes (no bias: the kernel stands in for one).
            var rotatedKernel = _workspace.Get(IlgpuWorkspace.Slot.RotatedKernel, g.WeightSize);
            _launch.Run(ConvolutionKernels.RotateKernel, g.WeightSize, View(w), rotatedKernel, g);
            _launch.NextSerial((long)g.GroupFilters * g.R * g.S * DepthwiseKernels.RowsPerThread);
            _launch.Run(DepthwiseKernels.Correlate, DepthwiseKernels.Config(depthwise), View(dy), rotatedKernel, rotatedKernel, View(dx),
                depthwise, Epilogue.None);
            return;
        }

        if (UseImplicitGemm(g) && g.IsPlain && g.R == 1 && g.S == 1 && g.PadH == 0 && g.PadW == 0)
        {
            // A strided 1×1 layer (ResNet's shortcut): the stride-1 backward data on the stride's grid — one implicit
            // GEMM of dy with the transposed kernel (C, K) — then scattered onto it, zeros elsewhere. With col2im here,
            // an H200 spent 3–5× a shortcut's forward pass on its whole backward (docs/benchmarks.md).
            var onGrid = g with { H = g.P, W = g.Q, StrideH = 1, StrideW = 1 };
            var transposed = _workspace.Get(IlgpuWorkspace.Slot.RotatedKernel, g.WeightSize);
            var z = _workspace.Get(IlgpuWorkspace.Slot.Product, onGrid.InputSize);
            _launch.Run(ConvolutionKernels.RotateKernel, g.WeightSize, View(w), transposed, g);
            RunImplicitGemm(ConvolutionImplicitGemmKernels.BackwardDataGeometry(onGrid), View(dy), transposed, z, transposed, Epilogue.None);
            _launch.Run(ConvolutionKernels.ScatterOntoStride, g.InputSize, z, View(dx), g);
            return;
        }

        if (UseIm2Col(g))
        {
            // dx = col2im(Wᵀ · dy): the GEMM form of the same full convolution (docs/02-convolution.md).
            int crs = g.C * g.R * g.S, pq = g.P * g.Q, chunk = ChunkImages(g);
            for (int first = 0; first < g.N; first += chunk)
            {
                int count = Math.Min(chunk, g.N - first);
                var dyT = _workspace.Get(IlgpuWorkspace.Slot.Product, g.K * count * pq);
                var dcols = _workspace.Get(IlgpuWorkspace.Slot.Columns, crs * count * pq);
                _launch.Run(ConvolutionGemmKernels.FromNchw, g.K * count * pq, View(dy), dyT, g, first, count);
                RunGemm(new GemmShape(crs, count * pq, g.K, 1, 0, 1f, 0f), View(w), dyT, dcols);
                _launch.NextSerial(g.R * g.S);
                _launch.Run(ConvolutionGemmKernels.Col2Im, count * g.C * g.H * g.W, dcols, View(dx), g, first, count);
            }

            return;
        }

        // The full convolution in three visible steps: dilate + pad dy, rotate the kernel, correlate.
        int paddedSize = GeometryChecks.Elements("Conv2dBackwardData", "dilated, padded dy (use smaller batches)",
            (long)g.N * g.K * ((long)g.H + g.ExtentH - 1) * ((long)g.W + g.ExtentW - 1)); // larger than dy by the stride², or the dilation's rim
        var padded = _workspace.Get(IlgpuWorkspace.Slot.DilatedGradient, paddedSize);
        var rotated = _workspace.Get(IlgpuWorkspace.Slot.RotatedKernel, g.WeightSize);
        _launch.Run(ConvolutionKernels.DilatePad, paddedSize, View(dy), padded, g);
        _launch.Run(ConvolutionKernels.RotateKernel, g.WeightSize, View(w), rotated, g);
        _launch.NextSerial((long)g.GroupFilters * g.R * g.S); // each input element sums its group's filters only
        _launch.Run(ConvolutionKernels.FullConvolution, g.InputSize, padded, rotated, View(dx), g);
    }

    /// <inheritdoc/>
    protected override void Conv2dBackwardFilterCore(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> dw, DeviceTensor<float>? db)
    {
        if (UseDepthwise(g) && DepthwiseKernels.PlanFilterGradient(g, DepthwiseGroupThreads, db is not null) is { } depthwise)
        {
            RunDepthwiseFilterGradient(g, depthwise, x, dy, dw, db);
            return;
        }

        if (UseImplicitGemm(g) && FewTapsRoute(g, db is not null) is { } blocked)
        {
            RunFewTapsFilterGradient(g, x, dy, dw, db, blocked);
            return;
        }

        if (UseImplicitGemm(g))
        {
            RunImplicitFilterGradient(g, View(x), View(dy), View(dw));
        }
        else if (UseIm2Col(g))
        {
            // dW (K × C·R·S) = Σ over chunks of dyᵀ (K × n·P·Q) · colsᵀ, accumulated in chunk order.
            int crs = g.C * g.R * g.S, pq = g.P * g.Q, chunk = ChunkImages(g);
            for (int first = 0; first < g.N; first += chunk)
            {
                int count = Math.Min(chunk, g.N - first);
                var cols = _workspace.Get(IlgpuWorkspace.Slot.Columns, crs * count * pq);
                var dyT = _workspace.Get(IlgpuWorkspace.Slot.Product, g.K * count * pq);
                _launch.NextSerial(g.R * g.S);
                _launch.Run(ConvolutionGemmKernels.Im2Col, g.C * count * pq, View(x), cols, g, first, count);
                _launch.Run(ConvolutionGemmKernels.FromNchw, g.K * count * pq, View(dy), dyT, g, first, count);
                RunGemm(new GemmShape(g.K, crs, count * pq, 0, 1, 1f, first == 0 ? 0f : 1f), dyT, cols, View(dw));
            }
        }
        else
        {
            // Direct: a split reduction over the output rows (n, p), so that every weight gets many threads (one
            // thread per weight left LeNet's first layer with 150 threads), the bias gradient riding along.
            int outputs = g.WeightSize + (db is null ? 0 : g.K);
            var (chunks, rowsPerChunk) = SplitReduction(outputs, g.N * g.P, g.Q);
            if (chunks > 1)
            {
                var partial = _workspace.Get(IlgpuWorkspace.Slot.Partials, GeometryChecks.Elements("Conv2dBackwardFilter", "filter-gradient partial sums", (long)chunks * outputs));
                _launch.NextSerial((long)rowsPerChunk * g.Q);
                _launch.Run(ConvolutionKernels.BackwardFilterChunk, chunks * outputs, View(x), View(dy), partial, g, outputs, rowsPerChunk);
                SumFilterGradientChunks(g, partial, dw, db, chunks);
                return;
            }

            _launch.NextSerial((long)g.N * g.P * g.Q);
            _launch.Run(ConvolutionKernels.BackwardFilter, g.WeightSize, View(x), View(dy), View(dw), g);
        }

        if (db is not null)
        {
            BiasGradientCore(dy, db, g.N, g.K, g.P * g.Q);
        }
    }

    /// <summary>
    /// The second pass of a chunked filter gradient: partial[chunk, i] for the weights (i &lt; g.WeightSize) and, when
    /// <paramref name="db"/> is given, the biases after them, added in a fixed tree into dw and db.
    /// </summary>
    private void SumFilterGradientChunks(Conv2dGeometry g, ArrayView<float> partial, DeviceTensor<float> dw, DeviceTensor<float>? db, int chunks)
    {
        int outputs = g.WeightSize + (db is null ? 0 : g.K);
        _launch.NextSerial((chunks + 255) / 256);
        _launch.Run(ReductionKernels.SumChunks, Reduction(outputs, chunks), partial, View(dw), db is null ? View(dw) : View(db),
            outputs, g.WeightSize, chunks);
    }

    /// <summary>Threads that fill the device (a few on ILGPU's CPU accelerator, where each is an OS thread).</summary>
    private long FillThreads => IsCpuAccelerator ? 64 : (long)_profile.Multiprocessors * _profile.ThreadsPerMultiprocessor;

    /// <summary>
    /// How to split <paramref name="outputs"/> sums of <paramref name="length"/> terms each (of about
    /// <paramref name="termCost"/> operations) into chunks: enough threads to fill the device, at most 1,024 chunks (the
    /// second pass's groups add them in a fixed tree), and one chunk when the work is too small to pay for a second launch.
    /// </summary>
    private (int Chunks, int PerChunk) SplitReduction(int outputs, int length, int termCost)
    {
        if (ReductionChunks is null && (length <= 1 || (long)outputs * length * termCost < 1 << 16))
        {
            return (1, length);
        }

        int chunks = (int)Math.Clamp(ReductionChunks ?? (FillThreads / outputs), 1, Math.Min(1024, length));
        int perChunk = (length + chunks - 1) / chunks;
        return ((length + perChunk - 1) / perChunk, perChunk);
    }

    /// <inheritdoc/>
    protected override void MaxPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<int> switches)
    {
        _launch.NextSerial(g.KernelH * g.KernelW);
        if (PoolingKernels.Halves(g))
        {
            _launch.Run(PoolingKernels.MaxForwardHalving, g.OutputSize, View(x), View(y), View(switches), g);
            return;
        }

        _launch.Run(PoolingKernels.MaxForward, g.OutputSize, View(x), View(y), View(switches), g);
    }

    /// <inheritdoc/>
    protected override void MaxPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<int> switches,
        DeviceTensor<float> dx)
    {
        if (PoolingKernels.Halves(g))
        {
            // A thread per window writes its four elements: a thread per element had gathered over window ranges.
            _launch.Run(PoolingKernels.MaxBackwardHalving, g.OutputSize, View(dy), View(switches), View(dx), g);
            return;
        }

        _launch.Run(PoolingKernels.MaxBackward, g.InputSize, View(dy), View(switches), View(dx), g);
    }

    /// <inheritdoc/>
    protected override void AvgPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y)
    {
        _launch.NextSerial(g.KernelH * g.KernelW);
        if (g.IsGlobal && _float64)
        {
            _launch.Run(PoolingKernels.GlobalAverageForward, g.N * g.C, View(x), View(y), g); // before Halves: a 2×2 plane is both
            return;
        }

        // Without doubles (an OpenCL device without cl_khr_fp64) a plane's mean is summed in float below: less exact.

        if (PoolingKernels.Halves(g))
        {
            _launch.Run(PoolingKernels.AverageForwardHalving, g.OutputSize, View(x), View(y), g);
            return;
        }

        _launch.Run(PoolingKernels.AverageForward, g.OutputSize, View(x), View(y), g);
    }

    /// <inheritdoc/>
    protected override void AvgPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx)
    {
        if (PoolingKernels.Halves(g))
        {
            _launch.Run(PoolingKernels.AverageBackwardHalving, g.OutputSize, View(dy), View(dx), g);
            return;
        }

        _launch.NextSerial(g.KernelH * g.KernelW);
        _launch.Run(PoolingKernels.AverageBackward, g.InputSize, View(dy), View(dx), g);
    }

    /// <inheritdoc/>
    protected override void GemmCore(GemmShape shape, DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> c) =>
        RunGemm(shape, View(a), View(b), View(c));

    /// <inheritdoc/>
    protected override void LinearForwardCore<TF>(DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float> b,
        DeviceTensor<float> y, TF activation)
    {
        // One launch: y = x · Wᵀ with the bias and the activation applied as each element is stored.
        var shape = new GemmShape(y.Shape[0], w.Shape[0], w.Shape[1], 0, 1, 1f, 0f);
        RunGemm(shape, View(x), View(w), View(y), View(b), new Epilogue<TF>(1, activation));
    }

    private void RunGemm(GemmShape shape, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c) =>
        RunGemm(shape, a, b, c, a, Epilogue.None); // without a bias the kernels never read it; any view stands in

    private void RunGemm<TF>(GemmShape shape, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias,
        Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        var algorithm = ChooseGemm(shape);
        if (algorithm == GemmAlgorithm.Naive)
        {
            _launch.NextSerial(shape.K);
            _launch.Run(GemmKernels.Naive, shape.M * shape.N, a, b, c, shape, bias, epilogue);
            return;
        }

        bool large = algorithm == GemmAlgorithm.Tiled8x8;
        int side = _gemm8x8Side;
        var tiles = large ? GemmTiled8x8Kernels.Tiles(shape, side) : GemmTiledKernels.Tiles(shape, _gemmGroup);
        RequireGridHeight("Gemm", tiles.Y, $"{shape.M} rows of C"); // C's rows of tiles run on the grid's y, which a GPU caps

        // Split-K when few tiles of C over a long depth would leave most of the device idle; each split a whole
        // number of staged tiles of either kernel.
        var (splits, depth) = large && GemmDepthSplits is null
            ? WaveSplits(shape.K, 16, (long)tiles.X * tiles.Y, side * side)
            : StagedSplits(shape.K, DepthSplits(shape, (long)tiles.X * tiles.Y), 16);

        var target = c;
        var part = shape;
        if (splits > 1)
        {
            target = _workspace.Get(IlgpuWorkspace.Slot.GemmSplits, GeometryChecks.Elements("Gemm", "partial sums of the depth splits", (long)splits * shape.M * shape.N));
            part = shape with { DepthPerSplit = depth };
        }

        if (large)
        {
            _launch.NextSerial(splits > 1 ? part.DepthPerSplit : shape.K);
            _launch.Run(GemmTiled8x8Kernels.Tiled, GemmTiled8x8Kernels.Config(part, side, splits), a, b, target, part, bias, epilogue);
        }
        else
        {
            _launch.NextSerial(splits > 1 ? part.DepthPerSplit : shape.K);
            _launch.Run(GemmTiledKernels.Tiled, GemmTiledKernels.Config(part, _gemmGroup, _gemmTileK, splits), a, b, target, part, _gemmTileK, bias, epilogue);
        }

        if (splits > 1)
        {
            _launch.NextSerial(splits);
            _launch.Run(GemmTiledKernels.SumSplits, shape.M * shape.N, target, c, shape, splits, bias, epilogue);
        }
    }

    /// <summary>
    /// Auto: the simple kernel for tiny products and on ILGPU's CPU accelerator; on GPUs 8×8 register blocks (128×128
    /// tiles) from 2²⁶ multiply-adds up, 4×4 blocks (64×64 tiles) below. On an H200 the 8×8 kernel was the faster on
    /// every bench row from gemm-1024 and the 3×3 convolutions up, the 4×4 one on gemm-256 (docs/benchmarks.md).
    /// </summary>
    private GemmAlgorithm ChooseGemm(GemmShape shape)
    {
        if (GemmAlgorithm != GemmAlgorithm.Auto)
        {
            return GemmAlgorithm;
        }

        if (IsCpuAccelerator || (long)shape.M * shape.N * shape.K < 32 * 32 * 32)
        {
            return GemmAlgorithm.Naive;
        }

        return (long)shape.M * shape.N * shape.K >= 1L << 26 ? GemmAlgorithm.Tiled8x8 : GemmAlgorithm.Tiled;
    }

    /// <summary>
    /// Forces the number of chunks of the split reductions (tests): the direct, depthwise and few-taps filter gradients',
    /// and the per-channel sums of bias gradients and batch norm; null: chosen by size.
    /// </summary>
    public int? ReductionChunks { get; set; }

    /// <summary>
    /// Forces the number of depth splits of tiled GEMMs and of the implicit-GEMM convolution (tests); null: chosen by
    /// <see cref="WaveSplits"/> for the kernels with 8×8 register blocks, by <see cref="DepthSplits"/> for the 4×4 GEMM.
    /// </summary>
    public int? GemmDepthSplits { get; set; }

    /// <summary>
    /// The fewest groups <see cref="WaveSplits"/> may launch where the depth allows as many splits (0, the default: no
    /// floor, the count that finishes soonest). 264 (two groups of 256 threads per multiprocessor of a 132-SM GPU) asks
    /// for the launch report's goal as written, for measuring it against the default (GPUCNN_SPLIT_MINIMUM_GROUPS).
    /// </summary>
    public int SplitMinimumGroups
    {
        get;
        set => field = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "A floor on the groups is 0 (none) or more.");
    }

    /// <summary>Splits of the depth so that a 4×4-blocked GEMM with fewer tiles of C than the device has multiprocessors fills it.</summary>
    private int DepthSplits(GemmShape shape, long tiles)
    {
        if (GemmDepthSplits is { } forced)
        {
            return Math.Clamp(forced, 1, Math.Max(1, shape.K));
        }

        // Aim at three groups of 256 threads per multiprocessor (as many threads in smaller groups), each split at
        // least two staged tiles deep: the launch report's goal (docs/benchmarks.md) is two groups per multiprocessor
        // for every row's dominant kernel.
        long perGroup256 = 256 / (_gemmGroup.X * _gemmGroup.Y);
        long target = 3L * _profile.Multiprocessors * perGroup256;
        if (IsCpuAccelerator || tiles >= 2L * _profile.Multiprocessors * perGroup256 || shape.K < 64)
        {
            return 1;
        }

        return (int)Math.Max(1, Math.Min((target + tiles - 1) / tiles, shape.K / 32));
    }

    /// <summary>im2col + GEMM: chosen, or the strided backward data that the implicit GEMM leaves to it.</summary>
    private bool UseIm2Col(Conv2dGeometry g) => g.IsPlain && ConvolutionAlgorithm switch
    {
        ConvolutionAlgorithm.Im2ColGemm or ConvolutionAlgorithm.ImplicitGemm => true,
        ConvolutionAlgorithm.Direct => false,
        _ => !IsCpuAccelerator,
    };

    /// <summary>
    /// The implicit GEMM for ungrouped forward passes, filter gradients and stride-1 backward data where GEMMs are
    /// chosen: <see cref="ConvolutionAlgorithm.Auto"/> takes it for every ungrouped convolution on GPUs. It
    /// had kept filters of at most 32 weights (LeNet's first layer) on the direct kernels, until an H100 ran that
    /// layer faster by the implicit GEMM (forward 0.048 against 0.059 ms, backward 0.244 against 0.320) and ResNet-8's
    /// 1×1 stride-2 shortcuts spent 0.5 ms each in the direct backward data (docs/benchmarks.md).
    /// </summary>
    private bool UseImplicitGemm(Conv2dGeometry g) => g.Groups == 1 && ConvolutionAlgorithm switch
    {
        ConvolutionAlgorithm.ImplicitGemm => true,
        ConvolutionAlgorithm.Auto => !IsCpuAccelerator,
        _ => false,
    };

    /// <summary>
    /// Whether a layer takes the depthwise kernels (<see cref="DepthwiseKernels"/>): a filter per input channel
    /// (groups = C, K = m·C), on every accelerator but under <see cref="ConvolutionAlgorithm.Direct"/>, which keeps the
    /// generic kernels of the ladder's first rung.
    /// </summary>
    private bool UseDepthwise(Conv2dGeometry g) => g.Groups > 1 && g.GroupChannels == 1 && ConvolutionAlgorithm != ConvolutionAlgorithm.Direct;

    /// <summary>Threads a depthwise group has at most: 256 on GPUs, the CPU accelerator's group size there.</summary>
    private int DepthwiseGroupThreads => Math.Min(256, _profile.MaxGroupThreads);

    /// <summary>
    /// A depthwise layer's filter (and bias) gradient: a group per (chunk of tiles, channel), enough chunks for about a
    /// wave of groups, then the chunks added in order by <see cref="ReductionKernels.SumChunks"/>.
    /// </summary>
    private void RunDepthwiseFilterGradient(Conv2dGeometry g, DepthwiseGeometry d, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> dw, DeviceTensor<float>? db)
    {
        int threads = DepthwiseGroupThreads, tiles = g.N * d.TilesH * d.TilesW;
        // About a wave of groups; on the CPU accelerator a few, so that its tests run the chunked sum too.
        long wave = IsCpuAccelerator ? 16 : (long)_profile.Multiprocessors * Math.Max(1, _profile.ThreadsPerMultiprocessor / threads);
        int chunks = (int)Math.Clamp(ReductionChunks ?? ((wave + g.K - 1) / g.K), 1, Math.Min(tiles, 1024));
        int perChunk = (tiles + chunks - 1) / chunks;
        chunks = (tiles + perChunk - 1) / perChunk;
        int outputs = g.WeightSize + (db is null ? 0 : g.K);
        var partial = _workspace.Get(IlgpuWorkspace.Slot.Partials,
            GeometryChecks.Elements("Conv2dBackwardFilter", "partial sums of the depthwise chunks", (long)chunks * outputs));
        int lanes = DepthwiseKernels.TapLanes((g.R * g.S) + (db is null ? 0 : 1), threads);
        _launch.NextSerial((long)perChunk * ((d.TileRows * d.TileW) + lanes - 1) / lanes);
        _launch.Run(DepthwiseKernels.FilterGradient, DepthwiseKernels.FilterGradientConfig(d, chunks, threads, db is not null),
            View(x), View(dy), partial, d, perChunk, db is null ? 0 : 1);
        SumFilterGradientChunks(g, partial, dw, db, chunks);
    }

    /// <summary>
    /// Filter gradients of layers of at most this many taps (C·R·S) that would take the implicit GEMM take
    /// <see cref="ConvolutionFewTapsKernels"/> instead (a split reduction over the pixels, the bias gradient riding
    /// along), when its stage fits and the blocked kernel does not take them (<see cref="FewTapsRoute"/>: its groups
    /// would have 128 threads or more): 64 by default, 0 turns it off. GPUCNN_FEW_TAPS_FILTER_GRADIENT sets it for a
    /// process.
    /// </summary>
    public int FewTapsFilterGradient
    {
        get;
        set => field = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "A number of taps, 0 (off) or more.");
    } = 64;

    /// <summary>
    /// Whether <paramref name="g"/>'s filter gradient can take <see cref="ConvolutionFewTapsKernels"/> (the implicit GEMM's
    /// layers only): at most <see cref="FewTapsFilterGradient"/> taps, at most <see cref="ConvolutionFewTapsKernels.MaxWeights"/>
    /// weights, and a stage that fits.
    /// </summary>
    private bool UsesFewTaps(Conv2dGeometry g, bool withBias) =>
        (long)g.C * g.R * g.S <= FewTapsFilterGradient && g.WeightSize <= ConvolutionFewTapsKernels.MaxWeights &&
        ConvolutionFewTapsKernels.SharedFloats(g, withBias) <= ConvolutionFewTapsKernels.MaxSharedFloats;

    /// <summary>
    /// Filter gradients of layers of at most this many taps (C·R·S) that would take the implicit GEMM take
    /// <see cref="ConvolutionFewTapsKernels.FilterGradientBlocked"/> (16 filters of a tap a thread, in registers) when a
    /// group holds a thread for each block of filters and tap and its stage fits — those the few-taps kernel
    /// (<see cref="FewTapsFilterGradient"/>) leaves or gives up (<see cref="FewTapsRoute"/>); with that one off, all.
    /// 160 by default (ResNet-8's 16-channel 3×3 layers, LeNet-5's second): on an H200 the backward of ResNet-8's
    /// 16 → 16 layer took 0.65× and of LeNet-5's second layer 0.84× the implicit GEMM's time, a ResNet-8 step 0.92× and a
    /// LeNet-5 step at batch 256 0.94× (perf/gpu/check.sh's `blocked` step, docs/benchmarks.md); 0 turns it off.
    /// GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT sets it for a process.
    /// </summary>
    public int BlockedFewTapsFilterGradient
    {
        get;
        set => field = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "A number of taps, 0 (off) or more.");
    } = 160;

    /// <summary>The most chunks a multiprocessor that <see cref="BlockedFewTapsChunksPerMultiprocessor"/> may ask for.</summary>
    public const int MaxBlockedFewTapsChunksPerMultiprocessor = 32;

    /// <summary>
    /// Chunks of pixels a multiprocessor for <see cref="ConvolutionFewTapsKernels.FilterGradientBlocked"/> (a group
    /// each; at most 1,024 in all and one per batch of 32 pixels); null, the default: 1,024 / its group's threads,
    /// between 4 and 8, for about 1,024 threads a multiprocessor: on an H200 none from 4 to 16 differed from it beyond noise on the training
    /// steps and 2 lost
    /// (perf/gpu/check.sh's `blocked-chunks` step; docs/benchmarks.md). GPUCNN_BLOCKED_FEW_TAPS_CHUNKS sets it for a process.
    /// </summary>
    public int? BlockedFewTapsChunksPerMultiprocessor
    {
        get;
        set => field = value is null or (>= 1 and <= MaxBlockedFewTapsChunksPerMultiprocessor)
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, $"Chunks a multiprocessor: 1 to {MaxBlockedFewTapsChunksPerMultiprocessor}, or null.");
    }

    /// <summary>
    /// Which few-taps kernel takes <paramref name="g"/>'s filter gradient (the implicit GEMM's layers only): true the
    /// blocked one, false the few-taps one, null neither. Where both fit, the blocked kernel takes the layers whose groups
    /// hold at least <see cref="ConvolutionFewTapsKernels.PreferredBlockedThreads"/> threads and the few-taps kernel the
    /// rest: on an H200 the backward of `conv1x1s2-64` (ResNet-8's 32 → 64 shortcut: 32 taps, 128 threads, 160 with the
    /// bias) took 0.86× the time with the blocked kernel, LeNet-5's first layer's (25 taps, 6 filters; 32 threads)
    /// 1.11×, ResNet-8's first layer's and 16 → 32 shortcut's (9 and 16 taps; 32 threads) 1.33× and 1.11×
    /// (docs/benchmarks.md).
    /// </summary>
    private bool? FewTapsRoute(Conv2dGeometry g, bool withBias)
    {
        bool fewTaps = UsesFewTaps(g, withBias), blocked = UsesBlockedFewTaps(g, withBias);
        return blocked && (!fewTaps || ConvolutionFewTapsKernels.BlockedThreads(g, withBias) >= ConvolutionFewTapsKernels.PreferredBlockedThreads)
            ? true
            : fewTaps ? false : null;
    }

    /// <summary>
    /// Whether <paramref name="g"/>'s filter gradient can take <see cref="ConvolutionFewTapsKernels.FilterGradientBlocked"/>
    /// (the implicit GEMM's layers only): at most <see cref="BlockedFewTapsFilterGradient"/> taps, a group's threads
    /// enough for one per block of 16 filters and tap (at most <see cref="ConvolutionFewTapsKernels.MaxBlockedThreads"/>),
    /// a stage that fits.
    /// </summary>
    private bool UsesBlockedFewTaps(Conv2dGeometry g, bool withBias) =>
        (long)g.C * g.R * g.S <= BlockedFewTapsFilterGradient &&
        ConvolutionFewTapsKernels.BlockedThreads(g, withBias) <= Math.Min(ConvolutionFewTapsKernels.MaxBlockedThreads, _profile.MaxGroupThreads) &&
        ConvolutionFewTapsKernels.BlockedSharedFloats(g, withBias) <= ConvolutionFewTapsKernels.MaxSharedFloats;

    /// <summary>
    /// A few-taps filter gradient (and bias gradient), <paramref name="blocked"/> or not: chunks of the pixels for a few
    /// groups a multiprocessor (three on the CPU accelerator, so that its tests add chunks too), then the chunks added in
    /// order by <see cref="ReductionKernels.SumChunks"/>.
    /// </summary>
    private void RunFewTapsFilterGradient(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> dy, DeviceTensor<float> dw,
        DeviceTensor<float>? db, bool blocked)
    {
        const int batch = ConvolutionFewTapsKernels.BatchPixels;
        bool withBias = db is not null;
        int threads = blocked ? (int)ConvolutionFewTapsKernels.BlockedThreads(g, withBias) : Math.Min(256, _profile.MaxGroupThreads);
        // Four groups of 256 a multiprocessor (the few-taps kernel as measured); the blocked kernel's groups, of 32 to
        // 512 threads, 1,024 / threads of them (4 to 8), for about as many threads to hide their gathers' latency, unless
        // told (BlockedFewTapsChunksPerMultiprocessor).
        int groupsPerMultiprocessor = blocked ? BlockedFewTapsChunksPerMultiprocessor ?? Math.Clamp(1024 / threads, 4, 8) : 4;
        int pixels = g.N * g.P * g.Q, batches = (pixels + batch - 1) / batch;
        int chunks = Math.Clamp(ReductionChunks ?? (IsCpuAccelerator ? 3 : groupsPerMultiprocessor * _profile.Multiprocessors), 1, Math.Min(1024, batches));
        int perChunk = (batches + chunks - 1) / chunks * batch;
        chunks = (pixels + perChunk - 1) / perChunk;
        int outputs = g.WeightSize + (withBias ? g.K : 0);
        var partial = _workspace.Get(IlgpuWorkspace.Slot.Partials,
            GeometryChecks.Elements("Conv2dBackwardFilter", "partial sums of the few-taps chunks", (long)chunks * outputs));
        if (blocked)
        {
            _launch.NextSerial(perChunk);
            _launch.Run(ConvolutionFewTapsKernels.FilterGradientBlocked, ConvolutionFewTapsKernels.BlockedConfig(g, chunks, threads, withBias),
                View(x), View(dy), partial, g, perChunk, withBias ? 1 : 0);
        }
        else
        {
            _launch.NextSerial((long)perChunk * ((outputs + threads - 1) / threads));
            _launch.Run(ConvolutionFewTapsKernels.FilterGradient, ConvolutionFewTapsKernels.Config(g, chunks, threads, withBias),
                View(x), View(dy), partial, g, perChunk, withBias ? 1 : 0);
        }

        SumFilterGradientChunks(g, partial, dw, db, chunks);
    }

    /// <summary>Threads per row of an implicit-GEMM group (8 rows): <see cref="TileGroupThreads"/> / 8 on GPUs, 2 on the CPU accelerator's 16-thread groups.</summary>
    private int ImplicitGemmThreadsX => _profile.MaxGroupThreads >= 256 ? TileGroupThreads / ConvolutionImplicitGemmKernels.ThreadRows : 2;

    /// <summary>
    /// y = f(conv(x, w) + b) by the implicit GEMM, its depth split (partial NCHW slices summed in order) when too few
    /// tiles would leave the device idle, as for the tiled GEMMs.
    /// </summary>
    private void RunImplicitGemm<TF>(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, ArrayView<float> bias,
        Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        bool narrow = UsesNarrowTiles(g);
        int tileFilters = ImplicitGemmFilters == ConvolutionImplicitGemmKernels.Narrow16Filters && g.K <= ConvolutionImplicitGemmKernels.Narrow16Filters
            ? ConvolutionImplicitGemmKernels.Narrow16Filters
            : ConvolutionImplicitGemmKernels.NarrowFilters;
        int depth = g.C * g.R * g.S, threadsX = narrow ? NarrowThreadsX : ImplicitGemmThreadsX;
        var tiles = narrow ? ConvolutionImplicitGemmKernels.NarrowTiles(g, threadsX, tileFilters) : ConvolutionImplicitGemmKernels.Tiles(g, threadsX);
        RequireGridHeight("Conv2d (implicit GEMM)", tiles.Y, $"{g.K} filters");
        var (splits, perSplit) = ImplicitGemmSplits(depth, (long)tiles.X * tiles.Y, narrow);
        var target = splits == 1 ? y : _workspace.Get(IlgpuWorkspace.Slot.GemmSplits, GeometryChecks.Elements("Conv2dForward", "partial sums of the depth splits", (long)splits * g.OutputSize));
        int depthPerSplit = splits == 1 ? 0 : perSplit;
        _launch.NextSerial(splits == 1 ? depth : perSplit);
        if (narrow && tileFilters == ConvolutionImplicitGemmKernels.Narrow16Filters)
        {
            _launch.Run(ConvolutionImplicitGemmKernels.ForwardNarrow16, ConvolutionImplicitGemmKernels.NarrowConfig(tiles, threadsX, splits, tileFilters),
                x, w, target, g, depthPerSplit, bias, epilogue);
        }
        else if (narrow)
        {
            _launch.Run(ConvolutionImplicitGemmKernels.ForwardNarrow, ConvolutionImplicitGemmKernels.NarrowConfig(tiles, threadsX, splits), x, w, target,
                g, depthPerSplit, bias, epilogue);
        }
        else
        {
            _launch.Run(ConvolutionImplicitGemmKernels.Forward, ConvolutionImplicitGemmKernels.Config(g, threadsX, splits), x, w, target, g,
                depthPerSplit, bias, epilogue);
        }

        if (splits > 1)
        {
            _launch.NextSerial(splits);
            _launch.Run(ConvolutionImplicitGemmKernels.SumSplits, g.OutputSize, target, y, g, splits, bias, epilogue);
        }
    }

    /// <summary>dW = dy · colsᵀ by the implicit GEMM over the N·P·Q output pixels, split across the grid and the splits summed by <see cref="ReductionKernels.SumSlices"/>.</summary>
    private void RunImplicitFilterGradient(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw)
    {
        bool narrow = UsesNarrowTiles(g);
        int pixels = g.N * g.P * g.Q, threadsX = narrow ? NarrowThreadsX : ImplicitGemmThreadsX, weights = g.K * g.C * g.R * g.S;
        var tiles = narrow
            ? ConvolutionImplicitGemmKernels.NarrowFilterGradientTiles(g, threadsX)
            : ConvolutionImplicitGemmKernels.FilterGradientTiles(g, threadsX);
        RequireGridHeight("Conv2dBackwardFilter (implicit GEMM)", tiles.Y, $"{g.K} filters");
        var (splits, perSplit) = ImplicitGemmSplits(pixels, (long)tiles.X * tiles.Y, narrow);
        var target = splits == 1 ? dw : _workspace.Get(IlgpuWorkspace.Slot.GemmSplits, GeometryChecks.Elements("Conv2dBackwardFilter", "partial sums of the pixel splits", (long)splits * weights));
        int pixelsPerSplit = splits == 1 ? 0 : perSplit;
        _launch.NextSerial(splits == 1 ? pixels : perSplit);
        if (narrow)
        {
            _launch.Run(ConvolutionImplicitGemmKernels.FilterGradientNarrow, ConvolutionImplicitGemmKernels.NarrowConfig(tiles, threadsX, splits), x, dy,
                target, g, pixelsPerSplit);
        }
        else
        {
            _launch.Run(ConvolutionImplicitGemmKernels.FilterGradient, ConvolutionImplicitGemmKernels.FilterGradientConfig(g, threadsX, splits), x, dy,
                target, g, pixelsPerSplit);
        }

        if (splits == 1)
        {
            return;
        }

        // The splits are many when the weights are few (one or two tiles): their sums get lanes of threads each.
        int lanes = 1;
        while (lanes < 8 && lanes * 2 <= splits && lanes * 2 <= _profile.MaxGroupThreads / 2)
        {
            lanes *= 2;
        }

        int width = Math.Min(32, _profile.MaxGroupThreads / lanes);
        _launch.NextSerial((splits + lanes - 1) / lanes);
        _launch.Run(ReductionKernels.SumSlices, new KernelConfig(new Index3D((weights + width - 1) / width, 1, 1), new Index3D(width, lanes, 1),
            SharedMemoryConfig.RequestDynamic<float>(width * lanes)), target, dw, weights, splits);
    }

    /// <summary>Depth splits of an implicit-GEMM launch, each a whole number of 8-deep stages: <see cref="WaveSplits"/>, or as forced.</summary>
    private (int Splits, int PerSplit) ImplicitGemmSplits(int depth, long tiles, bool narrow)
    {
        const int stage = ConvolutionImplicitGemmKernels.Depth;
        int groupThreads = narrow
            ? NarrowThreadsX * ConvolutionImplicitGemmKernels.NarrowRows
            : ImplicitGemmThreadsX * ConvolutionImplicitGemmKernels.ThreadRows;
        return GemmDepthSplits is { } forced
            ? StagedSplits(depth, Math.Clamp(forced, 1, Math.Max(1, depth)), stage)
            : WaveSplits(depth, stage, tiles, groupThreads);
    }

    /// <summary>
    /// Filters per implicit-GEMM tile for layers of at most 32 filters (forward and filter gradient; for backward data,
    /// of at most 32 input channels): 16 (the default: as 32, but the forward — and stride-1 backward data — of layers of
    /// at most 16 filters on 16-filter tiles, <see cref="ConvolutionImplicitGemmKernels.ForwardNarrow16"/>; on an H200 a
    /// LeNet-5 step at batch 256 took 0.95× the time of 32-filter tiles, a ResNet-8 step 0.99×, perf/gpu/check.sh's
    /// `narrow` step), 32 (<see cref="ConvolutionImplicitGemmKernels.ForwardNarrow"/>,
    /// <see cref="ConvolutionImplicitGemmKernels.FilterGradientNarrow"/>, so a 16-filter layer does not run its tiles a
    /// quarter full; on an H200 a ResNet-8 step took 0.90× and a LeNet-5 step at batch 256 0.86× the time of 64-filter
    /// tiles, docs/benchmarks.md) or 64 (the tiles of wider layers). GPUCNN_IMPLICIT_GEMM_FILTERS sets it for a process.
    /// </summary>
    public int ImplicitGemmFilters
    {
        get;
        set => field = value is 64 or ConvolutionImplicitGemmKernels.NarrowFilters or ConvolutionImplicitGemmKernels.Narrow16Filters
            ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "Implicit-GEMM tiles have 64, 32 or 16 filters.");
    } = ConvolutionImplicitGemmKernels.Narrow16Filters;

    /// <summary>Whether <paramref name="g"/> runs on narrow tiles (32 filters, or 16 for the forward when so set).</summary>
    private bool UsesNarrowTiles(Conv2dGeometry g) =>
        ImplicitGemmFilters <= ConvolutionImplicitGemmKernels.NarrowFilters && g.K <= ConvolutionImplicitGemmKernels.NarrowFilters;

    /// <summary>
    /// Threads per row of a narrow group (4 rows): <see cref="TileGroupThreads"/> / 4 on GPUs, 4 on the CPU accelerator's
    /// 16-thread groups (the gradient staging needs a multiple of 8 threads).
    /// </summary>
    private int NarrowThreadsX => _profile.MaxGroupThreads >= 256 ? TileGroupThreads / ConvolutionImplicitGemmKernels.NarrowRows : 4;

    /// <summary>
    /// About <paramref name="splits"/> splits of a depth, each a whole number of <paramref name="stage"/>-deep stages:
    /// the depth per split, and how many splits that makes (rounding can leave fewer).
    /// </summary>
    private static (int Splits, int PerSplit) StagedSplits(int depth, int splits, int stage)
    {
        splits = Math.Min(splits, MaximumGridHeight); // the splits run on the grid's z, which a GPU caps as its y (a forced count could pass it)
        int perSplit = ((depth + splits - 1) / splits + stage - 1) / stage * stage;
        return ((depth + perSplit - 1) / perSplit, perSplit);
    }

    /// <summary>
    /// Splits of a depth for the kernels with 8×8 register blocks (the 8×8 GEMM, the implicit GEMM), each split a whole
    /// number of <paramref name="stage"/>-deep stages and at least 32 deep (as <see cref="DepthSplits"/>): the count that
    /// finishes soonest, counting time as waves × stages per split, where a wave is the groups of
    /// <paramref name="groupThreads"/> that every multiprocessor holds at once (<see cref="GroupsPerMultiprocessor"/>:
    /// two of 256 threads). More splits must save at least 5 % of that time: each split's
    /// partial result is written and summed again. A count that leaves a partial wave loses to one that fills whole waves:
    /// conv3x3-128's filter gradient, 10 tiles over 1,024 stages on 132 multiprocessors, runs 25 splits of 41 stages
    /// in one wave (cost 41) rather than the earlier rule's 40 splits of 26 stages in a wave and a half (52): the whole
    /// conv3x3-128-bwd row took 0.36–0.37 ms against 0.43–0.44 in the same H100 run. No split on the CPU accelerator
    /// or for an empty product.
    /// </summary>
    private (int Splits, int PerSplit) WaveSplits(int depth, int stage, long tiles, int groupThreads)
    {
        int stages = (depth + stage - 1) / stage, fewestStages = Math.Max(2, 32 / stage);
        long slots = (long)GroupsPerMultiprocessor(groupThreads) * _profile.Multiprocessors;
        if (IsCpuAccelerator || tiles == 0 || stages < 2 * fewestStages)
        {
            return (1, depth);
        }

        // More splits than fill four waves never pay: the cost only falls while the waves stay few. A floor on the
        // groups that the depth can reach passes over the counts below it (those a depth rounds down included).
        long deepest = stages / fewestStages;
        long floor = tiles * deepest >= SplitMinimumGroups ? SplitMinimumGroups : 0;
        long mostSplits = Math.Min(Math.Min(deepest, MaximumGridHeight), Math.Max((4 * slots / tiles) + 1, (floor + tiles - 1) / tiles)); // splits run on the grid's z
        int bestPerSplit = 0;
        long bestCost = 0;
        for (int splits = 1; splits <= mostSplits; splits++)
        {
            int perSplit = (stages + splits - 1) / splits;
            long groups = tiles * ((stages + perSplit - 1) / perSplit);
            long cost = Waves(groups) * perSplit;
            if (groups >= floor && (bestPerSplit == 0 || cost * 20 < bestCost * 19))
            {
                (bestCost, bestPerSplit) = (cost, perSplit);
            }
        }

        if (bestPerSplit == 0)
        {
            bestPerSplit = (int)((stages + mostSplits - 1) / mostSplits); // the floor is in reach only before rounding
        }

        return StagedSplits(depth, (stages + bestPerSplit - 1) / bestPerSplit, stage);

        long Waves(long groups) => (groups + slots - 1) / slots;
    }

    /// <summary>CUDA's limit on a grid's y and z sizes.</summary>
    private const int MaximumGridHeight = 65_535;

    /// <summary>An enum setting from the environment by name (any case); null when unset; an unknown name is an error.</summary>
    private static TEnum? Setting<TEnum>(string variable)
        where TEnum : struct, Enum
    {
        string? text = Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        // Names only: Enum.TryParse also takes "7", which names no algorithm.
        return Enum.GetNames<TEnum>().FirstOrDefault(n => n.Equals(text.Trim(), StringComparison.OrdinalIgnoreCase)) is { } name
            ? Enum.Parse<TEnum>(name)
            : throw new SettingException($"{variable} is '{text}'; expected {string.Join(", ", Enum.GetNames<TEnum>())}.");
    }

    /// <summary>
    /// An integer setting from <paramref name="minimum"/> to <paramref name="maximum"/> from the environment; null when
    /// unset; anything else is an error saying what is <paramref name="expected"/> (by default "an integer ≥ minimum").
    /// </summary>
    private static int? IntegerSetting(string variable, int minimum, int maximum = int.MaxValue, string? expected = null)
    {
        string? text = Environment.GetEnvironmentVariable(variable);
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        return int.TryParse(text.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int value) && value >= minimum && value <= maximum
            ? value
            : throw new SettingException($"{variable} is '{text}'; expected {expected ?? $"an integer ≥ {minimum}"}.");
    }

    /// <summary>Refuses a launch whose tiles' rows would pass a GPU grid's y (a clear error, not ILGPU's "gridDim").</summary>
    private static void RequireGridHeight(string operation, int rows, string what)
    {
        if (rows > MaximumGridHeight)
        {
            throw new ArgumentException($"{operation}: {what} make {rows} rows of tiles, more than a GPU grid's {MaximumGridHeight}; split the work along them.");
        }
    }


    /// <summary>Images per im2col chunk: as many as fit the workspace budget (at least one).</summary>
    private int ChunkImages(Conv2dGeometry g)
    {
        long perImage = (((long)g.C * g.R * g.S) + g.K) * g.P * g.Q;
        GeometryChecks.Elements("convolution", "column matrix of one image", perImage);
        return (int)Math.Clamp(Math.Min(ConvolutionWorkspaceFloats, Shape.MaximumElements) / perImage, 1, g.N); // a chunk's columns index in int
    }

    /// <inheritdoc/>
    protected override void BiasAddCore(DeviceTensor<float> y, DeviceTensor<float> b, int batch, int channels, int inner) =>
        _launch.Run(ElementwiseKernels.BiasAdd, y.Length, View(y), View(b), channels, inner);

    /// <inheritdoc/>
    protected override void BiasGradientCore(DeviceTensor<float> dy, DeviceTensor<float> db, int batch, int channels,
        int inner)
    {
        // Chunks of the batch and positions per channel, then the chunks added by a fixed tree per channel: one group
        // per channel had left a GPU idle (LeNet's first layer: 6 groups).
        var (chunks, chunkSize) = ChannelChunks(channels, batch * inner);
        var sums = chunks == 1 ? View(db) : _workspace.Get(IlgpuWorkspace.Slot.Partials, chunks * channels);
        var groups = Reduction(1, chunkSize);
        _launch.NextSerial((chunkSize + 255) / 256);
        _launch.Run(ElementwiseKernels.BiasGradient, new KernelConfig(new Index3D(channels, chunks, 1), groups.GroupDim, groups.SharedMemoryConfig),
            View(dy), sums, batch, channels, inner, chunkSize);
        if (chunks > 1)
        {
            _launch.NextSerial((chunks + 255) / 256);
            _launch.Run(ReductionKernels.SumChunks, Reduction(channels, chunks), sums, View(db), View(db), channels, channels, chunks);
        }
    }

    /// <summary>
    /// Chunks per channel for per-channel sums of <paramref name="count"/> values each (bias gradients, batch norm's
    /// statistics), and values per chunk: about four groups per multiprocessor in all, each chunk at least 2,048
    /// values (8 per thread of a group), one chunk on ILGPU's CPU accelerator; <see cref="ReductionChunks"/> forces the
    /// count (tests).
    /// </summary>
    private (int Chunks, int ChunkSize) ChannelChunks(int channels, int count)
    {
        int chunks = ReductionChunks is { } forced
            ? Math.Clamp(forced, 1, Math.Clamp(count, 1, 1024))
            : IsCpuAccelerator ? 1 : Math.Clamp((4 * _profile.Multiprocessors + channels - 1) / channels, 1, Math.Max(1, count / 2048));
        int chunkSize = Math.Max(1, (count + chunks - 1) / chunks);
        return (Math.Max(1, (count + chunkSize - 1) / chunkSize), chunkSize);
    }

    /// <summary>
    /// A launch of one group per output for sums of <paramref name="terms"/> terms: a power-of-two group of up to 256
    /// threads (fewer for short sums and on ILGPU's CPU accelerator), with a float of shared memory per thread.
    /// </summary>
    private KernelConfig Reduction(int outputs, int terms)
    {
        int threads = 1;
        while (threads < Math.Min(terms, Math.Min(256, _profile.MaxGroupThreads)) && threads * 2 <= _profile.MaxGroupThreads)
        {
            threads *= 2;
        }

        return new KernelConfig(outputs, threads, SharedMemoryConfig.RequestDynamic<float>(threads));
    }

    /// <inheritdoc/>
    protected override void ActivationForwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y) =>
        _launch.Run(ElementwiseKernels.ActivationForward, x.Length, View(x), View(y), f);

    /// <inheritdoc/>
    protected override void ActivationBackwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        _launch.Run(ElementwiseKernels.ActivationBackward, x.Length, View(x), View(y), View(dy), View(dx), f);

    /// <inheritdoc/>
    protected override void ActivationBackwardFromOutputCore<TF>(TF f, DeviceTensor<float> y, DeviceTensor<float> dy,
        DeviceTensor<float> dx) =>
        _launch.Run(ElementwiseKernels.ActivationBackwardFromOutput, y.Length, View(y), View(dy), View(dx), f);

    /// <summary>Classes from which the loss runs a group a row (<see cref="LossKernels.SoftmaxCrossEntropyRowGroups"/>), not a thread.</summary>
    internal const int LossRowGroupClasses = 256;

    /// <inheritdoc/>
    protected override void SoftmaxCrossEntropyCore(DeviceTensor<float> logits, DeviceTensor<int> labels,
        DeviceTensor<float> dlogits, DeviceTensor<float> loss, float labelSmoothing)
    {
        int batch = logits.Shape[0], classes = logits.Shape[1];
        var shape = new LossShape(classes, batch, labelSmoothing);
        var perSample = _workspace.Get(IlgpuWorkspace.Slot.PerSampleLoss, batch);
        if (classes >= LossRowGroupClasses)
        {
            // A group a row: a thread's loop over 1,000 classes a row had left a 256-row batch on one multiprocessor.
            var rows = Reduction(batch, classes / 4); // four classes a thread, up to 256 threads a row
            _launch.NextSerial((long)((classes + rows.GroupDim.X - 1) / rows.GroupDim.X) * 3);
            _launch.Run(LossKernels.SoftmaxCrossEntropyRowGroups, rows, View(logits), View(labels), View(dlogits), perSample, shape);
            _launch.NextSerial(batch);
            _launch.Run(LossKernels.MeanInOrder, 1, perSample, View(loss), batch);
            return;
        }

        if (batch <= 4096)
        {
            // One launch: a single group does the rows, then one thread sums them in order.
            int threads = Math.Min(Math.Min(256, _profile.MaxGroupThreads), batch);
            _launch.NextSerial((long)((batch + threads - 1) / threads) * classes * 3);
            _launch.Run(LossKernels.SoftmaxCrossEntropyBatch, new KernelConfig(1, threads), View(logits), View(labels), View(dlogits),
                perSample, View(loss), shape);
            return;
        }

        _launch.NextSerial(classes * 3);
        _launch.Run(LossKernels.SoftmaxCrossEntropyRows, batch, View(logits), View(labels), View(dlogits), perSample, shape);
        _launch.NextSerial(batch);
        _launch.Run(LossKernels.MeanInOrder, 1, perSample, View(loss), batch);
    }

    /// <inheritdoc/>
    protected override void GatherRowsCore<T>(DeviceTensor<T> source, DeviceTensor<int> indices, int offset,
        DeviceTensor<T> destination, int rows, int rowLength)
    {
        if (typeof(T) == typeof(float))
        {
            _launch.Run(DataKernels.GatherRows<float>, destination.Length, View((DeviceTensor<float>)(object)source), View(indices),
                View((DeviceTensor<float>)(object)destination), offset, rowLength, source.Shape[0]);
        }
        else if (typeof(T) == typeof(int))
        {
            _launch.Run(DataKernels.GatherRows<int>, destination.Length, View((DeviceTensor<int>)(object)source), View(indices),
                View((DeviceTensor<int>)(object)destination), offset, rowLength, source.Shape[0]);
        }
        else
        {
            throw new NotSupportedException($"GatherRows: element type {typeof(T).Name} is not supported on {Name}; use float or int.");
        }
    }

    /// <inheritdoc/>
    protected override void ArgmaxCore(DeviceTensor<float> logits, DeviceTensor<int> predictions, int offset)
    {
        _launch.NextSerial(logits.Shape[1]);
        _launch.Run(DataKernels.Argmax, logits.Shape[0], View(logits), View(predictions), offset, logits.Shape[1]);
    }

    /// <inheritdoc/>
    protected override void AccumulateMetricsCore(DeviceTensor<float> logits, DeviceTensor<int> labels,
        DeviceTensor<float> loss, DeviceTensor<float> metrics, MetricSlots slots, int batchIndex)
    {
        var group = Reduction(1, logits.Shape[0]);
        _launch.NextSerial((long)(logits.Shape[0] + group.GroupDim.X - 1) / group.GroupDim.X * logits.Shape[1]);
        _launch.Run(DataKernels.AccumulateMetrics, group, View(logits), View(labels), View(loss), View(metrics), slots, batchIndex);
    }

    /// <inheritdoc/>
    /// <remarks>PyTorch's fused multiply-adds where the device has doubles; a float product and sum where it has none.</remarks>
    protected override void SgdUpdateCore(SgdParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> velocity)
    {
        if (_float64)
        {
            _launch.Run(OptimizerKernels.Sgd<FusedMultiplyAdd>, parameter.Length, View(parameter), View(gradient), View(velocity), h);
        }
        else
        {
            _launch.Run(OptimizerKernels.Sgd<SinglePrecisionMultiplyAdd>, parameter.Length, View(parameter), View(gradient), View(velocity), h);
        }
    }

    /// <inheritdoc/>
    /// <remarks>As <see cref="SgdUpdateCore(SgdParams, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float})"/>.</remarks>
    protected override void AdamUpdateCore(AdamParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> firstMoment, DeviceTensor<float> secondMoment)
    {
        if (_float64)
        {
            _launch.Run(OptimizerKernels.Adam<FusedMultiplyAdd>, parameter.Length, View(parameter), View(gradient), View(firstMoment), View(secondMoment), h);
        }
        else
        {
            _launch.Run(OptimizerKernels.Adam<SinglePrecisionMultiplyAdd>, parameter.Length, View(parameter), View(gradient), View(firstMoment),
                View(secondMoment), h);
        }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var release in (Action[])[_workspace.Dispose, _accelerator.Dispose, _context.Dispose])
            {
                try
                {
                    release();
                }
                catch (Exception) when (Faulted)
                {
                    // The driver refuses calls on a faulted context; the process can go on without that memory.
                }
            }
        }

        base.Dispose(disposing);
    }

    private static ArrayView<T> View<T>(DeviceTensor<T> tensor)
        where T : unmanaged => ((IlgpuTensor<T>)tensor).Memory;
}

/// <summary>The GEMM kernel an <see cref="IlgpuBackend"/> runs.</summary>
public enum GemmAlgorithm
{
    /// <summary>On GPUs, products of at least 32³ multiply-adds run tiled (8×8 blocks from 2²⁶ multiply-adds up); the simple kernel otherwise.</summary>
    Auto,

    /// <summary>One thread per element of C (the first rung).</summary>
    Naive,

    /// <summary>Shared-memory tiles with 4×4 register blocking.</summary>
    Tiled,

    /// <summary>Shared-memory tiles with 8×8 register blocking (128×128 tiles on GPUs).</summary>
    Tiled8x8,
}

/// <summary>A GPUCNN_* environment setting with a value it does not know: the user's mistake, never a device that failed to start.</summary>
public sealed class SettingException(string message) : InvalidOperationException(message);

/// <summary>The convolution kernels an <see cref="IlgpuBackend"/> runs.</summary>
public enum ConvolutionAlgorithm
{
    /// <summary>
    /// On GPUs the implicit GEMM for ungrouped layers (forward and filter gradient, dilated ones too; stride-1 backward
    /// data of undilated ones), im2col + GEMM for strided backward data, direct for grouped layers and for dilated
    /// layers' backward data; direct on the CPU accelerator. Depthwise layers (groups = C) take their own tiled
    /// kernels here and under the GEMM settings.
    /// </summary>
    Auto,

    /// <summary>
    /// One thread per output element; backward-data as the explicit rotated-kernel full convolution; depthwise layers
    /// too (the first rung of the ladder).
    /// </summary>
    Direct,

    /// <summary>im2col into a reusable workspace, then the tiled GEMM, in chunks of images.</summary>
    Im2ColGemm,

    /// <summary>
    /// Forward, filter gradient and stride-1 backward data as implicit GEMMs that gather their column tiles into shared
    /// memory themselves; strided backward data as <see cref="Im2ColGemm"/>. Ungrouped convolutions only (grouped ones
    /// run direct).
    /// </summary>
    ImplicitGemm,
}
