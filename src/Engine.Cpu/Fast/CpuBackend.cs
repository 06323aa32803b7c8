using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.InteropServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// The fast CPU backend: a packed, cache-blocked GEMM with AVX-512 / AVX2 / 128-bit / scalar micro-kernels,
/// convolution as im2col + GEMM per image, pooling and elementwise work split across cores by a fixed thread
/// team, and grow-only scratch so a training loop allocates nothing after its first step. Results are bitwise
/// reproducible run after run on the same machine and thread count (a part's result does not depend on the worker
/// that claims it; ordered reductions); routes are chosen by shape, batch size included (docs/07-cpu-backend.md).
/// </summary>
public sealed unsafe partial class CpuBackend : HostBackend
{
    private readonly CpuWorkers _workers;
    private readonly Scratch[] _scratch;

    /// <summary>Creates the backend with one thread per core and the widest SIMD the machine accelerates.</summary>
    public CpuBackend()
        : this(Environment.ProcessorCount, Simd.Best)
    {
    }

    /// <summary>Creates the backend with a given thread count and SIMD width (tests use this to cover every width).</summary>
    public CpuBackend(int threads, SimdWidth width)
    {
        Checks.Positive("CpuBackend", nameof(threads), threads);
        Width = width;
        _workers = new CpuWorkers(threads, width);
        _scratch = [.. Enumerable.Range(0, _workers.Count).Select(_ => new Scratch())];
        _convForward = new ConvForwardJob(this);
        _winogradWeightsJob = new WinogradWeightsJob(this);
        _convBackwardData = new ConvBackwardDataJob(this);
        _convBackwardFilter = new ConvBackwardFilterJob(this);
        _gemm = new GemmJob(this);
        _planes = new PlaneJob(this);
        _planJob = new PlanJob(this);
    }

    private readonly Dictionary<Type, FusedActivation> _fused = [];

    /// <summary>
    /// The filters of the current Winograd or filter-vectorised convolution, transformed or packed (shared by the
    /// workers, read-only while they run).
    /// </summary>
    private readonly Scratch _transformedWeights = new();

    /// <summary>The filters packed for <see cref="FilterVectorConvolution"/> beside Winograd's, for the images Winograd leaves to it.</summary>
    private readonly Scratch _packedWeights = new();

    /// <summary>
    /// Where 3×3 stride-1 layers run by Winograd's F(2×2, 3×3) (<see cref="WinogradConvolution"/>, on the AVX paths),
    /// forward and backward-data, and their filter gradients by F(3×3, 2×2): 2.25× fewer multiplications, results that
    /// differ from a direct correlation's by float rounding. <see cref="WinogradMode.Auto"/> (the default) where it was measured faster, <see
    /// cref="WinogradMode.Off"/> never. The environment variable GPUCNN_CPU_WINOGRAD (off, auto, always) sets the
    /// starting value.
    /// </summary>
    public WinogradMode Winograd { get; set; } = WinogradFromEnvironment();

    /// <summary>Whether a layer's forward pass (or its filter gradient) runs by Winograd under the current <see cref="Winograd"/> setting.</summary>
    private bool UsesWinograd(in Conv2dGeometry g, bool filterGradient = false) => Winograd switch
    {
        WinogradMode.Auto => filterGradient ? WinogradConvolution.PaysForFilterGradient(g, Width) : WinogradConvolution.Pays(g, Width),
        WinogradMode.Always => WinogradConvolution.CanRun(g, Width),
        _ => false,
    };

    /// <summary>
    /// Whether a layer's forward pass (or a stride-1 backward-data, run as one) is vectorised across filters
    /// (<see cref="FilterVectorConvolution"/>) when Winograd would (<paramref name="winograd"/>) or would not run it:
    /// where it suits and pays, unless Winograd is forced and can run, or GPUCNN_CPU_FILTER_VECTORS is off (for
    /// comparing the routes).
    /// </summary>
    private bool UsesFilterVectors(in Conv2dGeometry g, bool winograd) =>
        _filterVectorsAllowed && FilterVectorConvolution.Suits(g, Width) &&
        !(winograd && Winograd == WinogradMode.Always) &&
        FilterVectorConvolution.Pays(g, Width, winograd);

    private readonly bool _filterVectorsAllowed = FilterVectorsFromEnvironment();

    /// <summary>GPUCNN_CPU_FILTER_VECTORS: off, or auto (the default); anything else is an error naming it.</summary>
    internal static bool FilterVectorsFromEnvironment()
    {
        string? setting = Environment.GetEnvironmentVariable("GPUCNN_CPU_FILTER_VECTORS")?.Trim();
        return string.IsNullOrEmpty(setting) || string.Equals(setting, "auto", StringComparison.OrdinalIgnoreCase) ? true :
            string.Equals(setting, "off", StringComparison.OrdinalIgnoreCase) ? false :
            throw new InvalidOperationException($"GPUCNN_CPU_FILTER_VECTORS is '{setting}'; expected off or auto.");
    }

    private static WinogradMode WinogradFromEnvironment()
    {
        string? setting = Environment.GetEnvironmentVariable("GPUCNN_CPU_WINOGRAD");
        if (string.IsNullOrEmpty(setting))
        {
            return WinogradMode.Auto;
        }

        foreach (var mode in Enum.GetValues<WinogradMode>())
        {
            if (string.Equals(setting.Trim(), mode.ToString(), StringComparison.OrdinalIgnoreCase))
            {
                return mode;
            }
        }

        throw new InvalidOperationException($"GPUCNN_CPU_WINOGRAD is '{setting}'; expected off, auto or always.");
    }

    /// <summary>The SIMD width in use.</summary>
    public SimdWidth Width { get; }

    /// <summary>Threads in use.</summary>
    public int Threads => _workers.Count;

    /// <summary>
    /// Measures the team's peak single-precision FMA throughput at <see cref="Width"/> in GFLOP/s (about a quarter
    /// of a second): the ceiling that benchmark rows are reported against. Not cached: clocks and neighbours change.
    /// </summary>
    public double MeasurePeakGflops()
    {
        using var operation = EnterOperation(); // the worker team is the backend's
        return new FmaPeak(_workers, Width).MeasureGflops();
    }

    /// <inheritdoc/>
    public override string Name => "cpu";

    /// <inheritdoc/>
    public override string DeviceName => $"{Threads} threads, {Width} ({RuntimeInformation.ProcessArchitecture})";

    /// <inheritdoc/>
    protected override long ScratchBytes => _workers.ScratchBytes + _scratch.Sum(s => s.Bytes) + _transformedWeights.Bytes + _packedWeights.Bytes;

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _workers.Dispose();
        }

        base.Dispose(disposing);
    }

    // ------------------------------------------------------------------ GEMM

    /// <inheritdoc/>
    protected override void GemmCore(GemmShape shape, DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> c)
    {
        fixed (float* pa = Data(a), pb = Data(b), pc = Data(c))
        {
            var args = new GemmArgs(shape.TransposeA != 0, shape.TransposeB != 0, shape.M, shape.N, shape.K, shape.Alpha,
                pa, shape.TransposeA != 0 ? shape.M : shape.K, pb, shape.TransposeB != 0 ? shape.K : shape.N, shape.Beta, pc, shape.N);
            Gemm(args);
        }
    }

    /// <summary>A GEMM split by columns across the team when it is big enough to pay for the split.</summary>
    private void Gemm(in GemmArgs args)
    {
        long work = (long)args.M * args.N * args.K;
        int parts = work < 1 << 18 ? 1 : Math.Min(_workers.Count, (args.N + 31) / 32);
        if (parts <= 1)
        {
            _workers.Gemm(0).Run(args);
            return;
        }

        _gemm.Args = args;
        _gemm.Parts = parts;
        _workers.Run(_gemm, parts);
    }

    // ------------------------------------------------------------------ convolution

    /// <inheritdoc/>
    protected override void Conv2dForwardCore<TF>(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w,
        DeviceTensor<float>? b, DeviceTensor<float> y, TF activation)
    {
        fixed (float* px = Data(x), pw = Data(w), py = Data(y), pb = b is null ? null : Data(b))
        {
            var fused = Fused(activation);
            if (g.Groups == 1)
            {
                ConvForward(g, px, pw, pb, py, fused);
                return;
            }

            if (IsDepthwise(g))
            {
                DepthwiseForward(g, px, pw, pb, py, fused);
                return;
            }

            // Each group an ungrouped convolution of its channels, gathered into contiguous scratch and scattered back.
            var group = GroupGeometry(g);
            fixed (float* input = Grow(ref _groupInput, g.N * group.C * g.H * g.W), output = Grow(ref _groupOutput, g.N * group.K * g.P * g.Q))
            {
                for (int i = 0; i < g.Groups; i++)
                {
                    CopyChannels(px, g.C, input, group.C, i * group.C, g.N, g.H * g.W, gather: true);
                    ConvForward(group, input, pw + ((long)i * group.WeightSize), pb == null ? null : pb + (i * group.K), output, fused);
                    CopyChannels(py, g.K, output, group.K, i * group.K, g.N, g.P * g.Q, gather: false);
                }
            }
        }
    }

    private void ConvForward(in Conv2dGeometry g, float* px, float* pw, float* pb, float* py, FusedActivation? fused)
    {
        _convForward.Set(g, px, pw, pb, py, fused);
        RunImages(_convForward, _convForward.Parts, _convForward.ScratchFloats);
    }

    /// <summary>
    /// Runs a job of one image (or a group of images) per part, each worker's scratch first grown to what a part needs: parts are claimed
    /// by whichever worker is free, so without this a worker could first need its scratch — and allocate it — at any
    /// later call (training is to allocate nothing after its first steps, and the backend's scratch to stop growing).
    /// A single image reserves it on every worker too: batch-1 inference holds the team's scratch, not one worker's.
    /// </summary>
    private void RunImages(IParallelJob job, int parts, int scratchFloats)
    {
        if (scratchFloats > 0)
        {
            foreach (var scratch in _scratch)
            {
                scratch.Columns(scratchFloats);
            }
        }

        _workers.Run(job, parts);
    }

    /// <summary>The geometry of one group of a grouped convolution: its channels, ungrouped.</summary>
    private static Conv2dGeometry GroupGeometry(in Conv2dGeometry g) => g with { C = g.GroupChannels, K = g.GroupFilters, Groups = 1 };

    /// <summary>
    /// Between tensor (N, channels, plane) and a group's contiguous copy (N, groupChannels, plane) of its channels
    /// first … first + groupChannels − 1: gather copies into the group buffer, scatter back out of it.
    /// </summary>
    private static void CopyChannels(float* tensor, int channels, float* group, int groupChannels, int first, int batch, int plane, bool gather)
    {
        long length = (long)groupChannels * plane;
        for (int n = 0; n < batch; n++)
        {
            float* outer = tensor + ((((long)n * channels) + first) * plane), inner = group + (n * length);
            Buffer.MemoryCopy(gather ? outer : inner, gather ? inner : outer, length * sizeof(float), length * sizeof(float));
        }
    }

    private static float[] Grow(ref float[] buffer, int length)
    {
        if (buffer.Length < length)
        {
            buffer = new float[length];
        }

        return buffer;
    }

    private float[] _groupInput = [], _groupOutput = [];
    private double[] _biasTotals = [];

    /// <inheritdoc/>
    protected override void Conv2dBackwardDataCore(Conv2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> w,
        DeviceTensor<float> dx)
    {
        fixed (float* pdy = Data(dy), pw = Data(w), pdx = Data(dx))
        {
            if (g.Groups == 1)
            {
                ConvBackwardData(g, pdy, pw, pdx);
                return;
            }

            if (IsDepthwise(g))
            {
                DepthwiseBackwardData(g, pdy, pw, pdx);
                return;
            }

            var group = GroupGeometry(g);
            fixed (float* output = Grow(ref _groupOutput, g.N * group.K * g.P * g.Q), input = Grow(ref _groupInput, g.N * group.C * g.H * g.W))
            {
                for (int i = 0; i < g.Groups; i++)
                {
                    CopyChannels(pdy, g.K, output, group.K, i * group.K, g.N, g.P * g.Q, gather: true);
                    ConvBackwardData(group, output, pw + ((long)i * group.WeightSize), input);
                    CopyChannels(pdx, g.C, input, group.C, i * group.C, g.N, g.H * g.W, gather: false);
                }
            }
        }
    }

    private void ConvBackwardData(in Conv2dGeometry g, float* pdy, float* pw, float* pdx)
    {
        if (ShiftedPlan.Suits(g))
        {
            // Unpadded stride-1 layers: one correlation per kernel column over dy padded by rows only (ShiftedPlan).
            RunPlan(g, pdy, pw, pdx, static (shape, width) => new ShiftedPlan(shape, width));
            return;
        }

        if (DirectConvolution.SuitsFullConvolution(g))
        {
            // The full convolution of the padded dy with the rotated kernel, run as a forward convolution: direct
            // for up to 16 channels of dy (LeNet: 1.4× faster than GEMM + col2im), im2col + GEMM beyond.
            float* rotated = _scratch[0].Rotated(g.WeightSize);
            DirectConvolution.RotateKernel(g, pw, rotated);
            _convForward.Set(DirectConvolution.FullConvolution(g), pdy, rotated, null, pdx, null, direct: g.K <= 16);
            RunImages(_convForward, _convForward.Parts, _convForward.ScratchFloats);
            return;
        }

        if (BlockedConvolution.SuitsBackwardData(g))
        {
            // Strided: one stride-1 correlation per phase of dx (TransposedPlan).
            RunPlan(g, pdy, pw, pdx, static (shape, width) => new TransposedPlan(shape, width));
            return;
        }

        _convBackwardData.Set(g, pdy, pw, pdx);
        RunImages(_convBackwardData, _convBackwardData.Parts, _convBackwardData.ScratchFloats);
    }

    /// <summary>A planned backward-data, the plan made once per layer shape (the lambdas are static: no allocation per call).</summary>
    private void RunPlan(in Conv2dGeometry g, float* pdy, float* pw, float* pdx, Func<Conv2dGeometry, int, IBackwardDataPlan> create)
    {
        var shape = g with { N = 1 };
        if (!_plans.TryGetValue(shape, out var plan))
        {
            plan = create(shape, (int)Width);
            _plans[shape] = plan;
        }

        plan.SetWeights(pw);
        _planJob.Set(plan, pdy, pdx);
        RunImages(_planJob, g.N, plan.ScratchFloats);
    }

    /// <summary>Backward-data plans per layer shape (N = 1): a geometry always gets the same kind.</summary>
    private readonly Dictionary<Conv2dGeometry, IBackwardDataPlan> _plans = [];
    private readonly PlanJob _planJob;

    /// <summary>A planned backward-data (phase by phase, or kernel column by column) of one image per part.</summary>
    private sealed class PlanJob(CpuBackend owner) : IParallelJob
    {
        private IBackwardDataPlan? _plan;
        private float* _dy, _dx;

        public bool AnyWorker => true;

        public void Set(IBackwardDataPlan plan, float* dy, float* dx)
        {
            _plan = plan;
            _dy = dy;
            _dx = dx;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int n, int worker)
        {
            var g = _plan!.Geometry;
            float* scratch = owner._scratch[worker].Columns(_plan.ScratchFloats);
            _plan.Run(owner.Width, _dy + (long)n * g.K * g.P * g.Q, _dx + (long)n * g.C * g.H * g.W, scratch);
        }
    }

    /// <inheritdoc/>
    protected override void Conv2dBackwardFilterCore(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> dw, DeviceTensor<float>? db)
    {
        fixed (float* px = Data(x), pdy = Data(dy), pdw = Data(dw))
        {
            if (g.Groups == 1)
            {
                ConvBackwardFilter(g, px, pdy, pdw);
            }
            else if (IsDepthwise(g))
            {
                DepthwiseBackwardFilter(g, px, pdy, pdw);
            }
            else
            {
                var group = GroupGeometry(g);
                fixed (float* input = Grow(ref _groupInput, g.N * group.C * g.H * g.W), output = Grow(ref _groupOutput, g.N * group.K * g.P * g.Q))
                {
                    for (int i = 0; i < g.Groups; i++)
                    {
                        CopyChannels(px, g.C, input, group.C, i * group.C, g.N, g.H * g.W, gather: true);
                        CopyChannels(pdy, g.K, output, group.K, i * group.K, g.N, g.P * g.Q, gather: true);
                        ConvBackwardFilter(group, input, output, pdw + ((long)i * group.WeightSize));
                    }
                }
            }
        }

        if (db is not null)
        {
            BiasGradientCore(dy, db, g.N, g.K, g.P * g.Q);
        }
    }

    private void ConvBackwardFilter(in Conv2dGeometry g, float* px, float* pdy, float* pdw)
    {
        int parts = Math.Min(g.N, _workers.Count);
        _convBackwardFilter.Set(g, px, pdy, parts);
        _workers.Run(_convBackwardFilter, parts);

        // dw = the parts' partial sums, added in part order (whichever worker ran each).
        int size = g.WeightSize;
        var total = new Span<float>(pdw, size);
        new Span<float>(_scratch[0].Partial(size), size).CopyTo(total);
        for (int part = 1; part < parts; part++)
        {
            Add(new Span<float>(_scratch[part].Partial(size), size), total);
        }
    }

    // ------------------------------------------------------------------ pooling

    /// <inheritdoc/>
    protected override void MaxPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<int> switches) => RunPlanes(PlaneJob.Op.MaxForward, g, Data(x), Data(y), Data(switches));

    /// <inheritdoc/>
    protected override void MaxPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<int> switches,
        DeviceTensor<float> dx)
    {
        RunPlanes(PlaneJob.Op.MaxBackward, g, Data(dy), Data(dx), Data(switches));
        if (_planes.BadSwitch is >= 0 and long bad)
        {
            throw Checks.SwitchOutsidePlane(g, bad, Data(switches)[(int)bad]); // as the reference backend
        }
    }

    /// <inheritdoc/>
    protected override void AvgPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y) =>
        RunPlanes(PlaneJob.Op.AvgForward, g, Data(x), Data(y), []);

    /// <inheritdoc/>
    protected override void AvgPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        RunPlanes(PlaneJob.Op.AvgBackward, g, Data(dy), Data(dx), []);

    private void RunPlanes(PlaneJob.Op op, Pool2dGeometry g, Span<float> input, Span<float> output, Span<int> switches)
    {
        fixed (float* pin = input, pout = output)
        fixed (int* psw = switches) // null for average pooling
        {
            _planes.Set(op, g, pin, pout, psw);
            int planes = g.N * g.C;
            int parts = (long)g.InputSize < 1 << 15 ? 1 : Math.Min(planes, _workers.Count * 4);
            _planes.Parts = parts;
            RunImages(_planes, parts, _planes.ScratchFloats);
        }
    }

    // ------------------------------------------------------------------ elementwise

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void BiasAddCore(DeviceTensor<float> y, DeviceTensor<float> b, int batch, int channels, int inner)
    {
        if (inner == 1)
        {
            fixed (float* py = Data(y), pb = Data(b))
            {
                AddRows(py, pb, batch, channels, default(Identity)); // a dense layer's (N, C): the bias is a row
            }

            return;
        }

        var values = Data(y);
        var bias = Data(b);
        for (int n = 0; n < batch; n++)
        {
            for (int c = 0; c < channels; c++)
            {
                AddScalar(values.Slice((n * channels + c) * inner, inner), bias[c]);
            }
        }
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void BiasGradientCore(DeviceTensor<float> dy, DeviceTensor<float> db, int batch, int channels, int inner)
    {
        if (inner == 1)
        {
            // A dense layer's (N, C): the rows added up, a vector of channels at a time — each lane the same terms in the
            // same order as channel by channel, without a call per value; blocks of RowBlock rows in float, the blocks
            // in double. A batch of up to RowBlock rows is one block, a plain float sum.
            bool blocked = batch > RowBlock;
            double[] total = !blocked || _biasTotals.Length >= channels ? _biasTotals : _biasTotals = new double[channels];
            fixed (float* pdy = Data(dy), pdb = Data(db))
            fixed (double* ptotal = total)
            {
                new Span<double>(ptotal, blocked ? channels : 0).Clear();
                new Span<float>(pdb, channels).Clear(); // and AddBlock clears it after each block
                for (int first = 0, rows; first < batch; first += rows)
                {
                    rows = Math.Min(RowBlock, batch - first);
                    for (int n = first; n < first + rows; n++)
                    {
                        Simd.AddFloats(pdy + ((long)n * channels), pdb, channels);
                    }

                    if (blocked)
                    {
                        AddBlock(pdb, ptotal, channels);
                    }
                }

                if (blocked)
                {
                    RoundTotals(ptotal, pdb, channels);
                }
            }

            return;
        }

        var grad = Data(db);
        fixed (float* values = Data(dy))
        {
            for (int c = 0; c < channels; c++)
            {
                double sum = 0; // each image's run in pieces of float vectors, the pieces added in double
                for (int n = 0; n < batch; n++)
                {
                    float* run = values + ((long)((n * channels) + c) * inner);
                    for (int first = 0, length; first < inner; first += length)
                    {
                        length = Math.Min(SumPiece, inner - first);
                        sum += Sum(run + first, length);
                    }
                }

                grad[c] = (float)sum;
            }
        }
    }

    /// <summary>
    /// Values per float sum where a longer sum goes on in double: 1,024 are 16 to 32 terms a lane, and a plane of
    /// 250,000 summed in float lanes had come to 5.6e-5 off (PyTorch's cascade sum: 1e-7).
    /// </summary>
    private const int SumPiece = 1024;

    /// <summary>
    /// Rows of an (N, C) tensor summed down each lane in float before the sums go on in double: a lane is one chain of
    /// additions, so alike terms drift by a rounding per row (a million rows of 0.1 in one chain had come to 1 % too
    /// much; in blocks of 256, 2.4e-6; of 1,024, 1e-5).
    /// </summary>
    private const int RowBlock = 64;

    /// <summary>totals[i] += sums[i], then sums[i] = 0: the end of a block whose sums ran in float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddBlock(float* sums, double* totals, int count)
    {
        for (int i = 0; i < count; i++)
        {
            totals[i] += sums[i];
            sums[i] = 0f;
        }
    }

    /// <summary>sums[i] = totals[i] rounded to float (after one block, that block's float sum exactly).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RoundTotals(double* totals, float* sums, int count)
    {
        for (int i = 0; i < count; i++)
        {
            sums[i] = (float)totals[i];
        }
    }

    /// <summary>The reusable fused-activation object for <typeparamref name="TF"/> set to <paramref name="f"/>; null for none.</summary>
    private FusedActivation? Fused<TF>(TF f)
        where TF : struct, IActivationFunction
    {
        if (typeof(TF) == typeof(Identity))
        {
            return null;
        }

        if (!_fused.TryGetValue(typeof(TF), out var fused))
        {
            fused = new FusedActivation<TF>();
            _fused[typeof(TF)] = fused;
        }

        ((FusedActivation<TF>)fused).Function = f;
        return fused;
    }

    // ------------------------------------------------------------------ SGD (loss, metrics and Adam: HostBackend)

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void SgdUpdateCore(SgdParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> velocity)
    {
        Span<float> p = Data(parameter), g = Data(gradient), v = Data(velocity);
        int i = 0;
        if (h.Momentum != 0f)
        {
            // The loop below, a vector at a time: the same operations in the same order on each lane, so the same bits
            // (PyTorch's rounding: ReferenceMath.SgdUpdate).
            Vector<float> decay = new(h.WeightDecay), momentum = new(h.Momentum), keep = new(h.OneMinusDampening), rate = new(-h.LearningRate);
            fixed (float* pp = p, pg = g, pv = v)
            {
                for (; i <= parameter.Length - Vector<float>.Count; i += Vector<float>.Count)
                {
                    var d = h.WeightDecay != 0f ? Vector.FusedMultiplyAdd(Vector.Load(pp + i), decay, Vector.Load(pg + i)) : Vector.Load(pg + i);
                    var velocityNow = h.FirstStep != 0 ? d : Vector.FusedMultiplyAdd(d, keep, Vector.Load(pv + i) * momentum);
                    velocityNow.Store(pv + i);
                    d = h.Nesterov != 0 ? Vector.FusedMultiplyAdd(velocityNow, momentum, d) : velocityNow;
                    Vector.FusedMultiplyAdd(d, rate, Vector.Load(pp + i)).Store(pp + i);
                }
            }
        }

        ReferenceMath.SgdUpdate(h.LearningRate, h.Momentum, h.OneMinusDampening, h.WeightDecay, h.Nesterov != 0, h.FirstStep != 0,
            p[i..], g[i..], v[i..]);
    }

    // ------------------------------------------------------------------ vector helpers

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]

    private static void Add(ReadOnlySpan<float> source, Span<float> target)
    {
        int i = 0;
        for (; i <= source.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            (new Vector<float>(target[i..]) + new Vector<float>(source[i..])).CopyTo(target[i..]);
        }

        for (; i < source.Length; i++)
        {
            target[i] += source[i];
        }
    }

    /// <summary>
    /// The dense layer's forward: the GEMM, then y = f(y + b) row by row in one pass (ReLU a vector select), where the
    /// default made a bias pass with a call per value and an activation pass.
    /// </summary>
    protected override void LinearForwardCore<TF>(DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float> b, DeviceTensor<float> y,
        TF activation)
    {
        int batch = y.Shape[0], outFeatures = w.Shape[0], inFeatures = w.Shape[1];
        GemmCore(new GemmShape(batch, outFeatures, inFeatures, 0, 1, 1f, 0f), x, w, y);
        fixed (float* py = Data(y), pb = Data(b))
        {
            AddRows(py, pb, batch, outFeatures, activation);
        }
    }

    /// <summary>Each row of y (rows × length) = f(row + b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddRows<TF>(float* y, float* b, int rows, int length, TF f)
        where TF : struct, IActivationFunction
    {
        for (int n = 0; n < rows; n++)
        {
            float* row = y + ((long)n * length);
            Simd.AddFloats(b, row, length);
            if (typeof(TF) != typeof(Identity))
            {
                ActivationLoops.Forward(f, new ReadOnlySpan<float>(row, length), new Span<float>(row, length)); // the row is in cache
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddScalar(Span<float> target, float value)
    {
        var v = new Vector<float>(value);
        int i = 0;
        for (; i <= target.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            (new Vector<float>(target[i..]) + v).CopyTo(target[i..]);
        }

        for (; i < target.Length; i++)
        {
            target[i] += value;
        }
    }

    /// <summary>
    /// Σ x[0 … length), with four independent vector accumulators: one would chain every add on the last, and the adds'
    /// latency, not memory, would set the pace (a quarter of it with four). Bias gradients use it, in pieces of
    /// <see cref="SumPiece"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Sum(float* x, int length)
    {
        int n = Vector<float>.Count, i = 0;
        Vector<float> s0 = Vector<float>.Zero, s1 = s0, s2 = s0, s3 = s0;
        for (; i <= length - (4 * n); i += 4 * n)
        {
            s0 += Vector.Load(x + i);
            s1 += Vector.Load(x + i + n);
            s2 += Vector.Load(x + i + (2 * n));
            s3 += Vector.Load(x + i + (3 * n));
        }

        for (; i <= length - n; i += n)
        {
            s0 += Vector.Load(x + i);
        }

        float sum = Vector.Sum((s0 + s1) + (s2 + s3));
        for (; i < length; i++)
        {
            sum += x[i];
        }

        return sum;
    }

    /// <summary>Per-worker grow-only scratch: im2col columns and partial filter gradients.</summary>
    private sealed class Scratch
    {
        private float[] _columns = [];
        private float[] _partial = [];
        private float[] _rotated = [];
        private float[] _winograd = [];

        public long Bytes => ((long)_columns.Length + _partial.Length + _rotated.Length + _winograd.Length) * sizeof(float);

        /// <summary>The Winograd filter gradient's transforms and sums (beside the columns a direct fallback uses).</summary>
        public float* Winograd(int length) => Pin(ref _winograd, length);

        public float* Rotated(int length) => Pin(ref _rotated, length);

        public TransposedColumns TransposedColumns { get; } = new();

        public ImageColumns ImageColumns { get; } = new();

        public ImageRows ImageRows { get; } = new();

        public float* Columns(int length) => Pin(ref _columns, length);

        public float* Partial(int length) => Pin(ref _partial, length);

        /// <summary>
        /// A pinned buffer of at least <paramref name="length"/> floats starting on a 64-byte cache line (an array's
        /// data starts 16 bytes into its object): then the kernels' vector loads at multiples of 16 floats never split
        /// a line.
        /// </summary>
        private static float* Pin(ref float[] buffer, int length)
        {
            const int LineFloats = 16;
            if ((uint)length > Array.MaxLength - LineFloats)
            {
                // Lengths are counted in long and checked where they are made; a negative or huge one here would have
                // returned a short buffer for the caller to write past.
                throw new ArgumentOutOfRangeException(nameof(length), length, $"CPU backend: a scratch buffer of {length} floats cannot be made.");
            }

            if (buffer.Length < length + LineFloats)
            {
                buffer = GC.AllocateUninitializedArray<float>(length + LineFloats, pinned: true);
            }

            var start = (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
            return (float*)((start + 63) & ~(nint)63);
        }
    }
}
