using System.Diagnostics;
using GpuCnn.Models;

namespace GpuCnn.Cli.Bench;

/// <summary>One benchmark row: a name, the FLOPs of one run (null where bandwidth, not arithmetic, is the point), and a body.</summary>
internal sealed record BenchCase(string Name, double? Flops, Func<Backend, IBenchBody> Create);

/// <summary>Prepared device state for one row; <see cref="Run"/> is timed (with a device synchronisation after it).</summary>
internal interface IBenchBody : IDisposable
{
    void Run();
}

/// <summary>
/// A measured row: median milliseconds over the repetitions (device events on GPUs, as PyTorch's CUDA events; the
/// host clock around the work and a synchronisation elsewhere), the host-clock median too, and GFLOP/s where FLOPs
/// are defined.
/// </summary>
internal sealed record BenchResult(string Name, string Device, double Ms, double? Gflops, int Repetitions, double WallMs);

/// <summary>
/// The fixed suite of `gpucnn bench`: GEMM, the LeNet and VGG-like convolution layers forward and backward, max
/// pooling with switches, and whole LeNet-5 training steps. Names are stable so runs on different machines and
/// days compare row by row; <c>--quick</c> shrinks every shape and appends "-quick".
/// </summary>
internal static class BenchSuite
{
    public static IReadOnlyList<BenchCase> Cases(bool quick)
    {
        string suffix = quick ? "-quick" : "";
        var cases = new List<BenchCase>();
        foreach (int n in (int[])[256, 1024, 4096])
        {
            int size = quick ? n / 8 : n;
            cases.Add(new($"gemm-{n}{suffix}", 2.0 * size * size * size, b => new GemmBody(b, size)));
        }

        AddConvolution(cases, "conv-lenet1", suffix, new(N: quick ? 4 : 64, C: 1, H: 28, W: 28, K: 6, R: 5, S: 5, PadH: 2, PadW: 2));
        AddConvolution(cases, "conv-lenet2", suffix, new(N: quick ? 4 : 64, C: 6, H: 14, W: 14, K: 16, R: 5, S: 5));
        AddConvolution(cases, "conv3x3-64", suffix, quick
            ? new(N: 2, C: 16, H: 16, W: 16, K: 16, R: 3, S: 3, PadH: 1, PadW: 1)
            : new(N: 64, C: 64, H: 32, W: 32, K: 64, R: 3, S: 3, PadH: 1, PadW: 1));
        AddConvolution(cases, "conv3x3-128", suffix, quick
            ? new(N: 2, C: 32, H: 8, W: 8, K: 32, R: 3, S: 3, PadH: 1, PadW: 1)
            : new(N: 32, C: 128, H: 16, W: 16, K: 128, R: 3, S: 3, PadH: 1, PadW: 1));

        var pool = quick ? new Pool2dGeometry(4, 8, 16, 16, 2, 2, 2, 2) : new Pool2dGeometry(64, 64, 32, 32, 2, 2, 2, 2);
        cases.Add(new($"maxpool2x2-fwd{suffix}", null, b => new PoolBody(b, pool, backward: false)));
        cases.Add(new($"maxpool2x2-bwd{suffix}", null, b => new PoolBody(b, pool, backward: true)));
        foreach (int batch in (int[])[64, 256])
        {
            int size = quick ? batch / 16 : batch;
            cases.Add(new($"lenet-step-{batch}{suffix}", LeNetStepFlops(size), b => new LeNetStepBody(b, size)));
        }

        return cases;
    }

    /// <summary>Runs one row: a warm-up (which also compiles kernels), then repetitions until about half a second or 20 runs.</summary>
    public static BenchResult Measure(Backend backend, BenchCase benchCase)
    {
        using var body = benchCase.Create(backend);
        var clock = Stopwatch.StartNew();
        body.Run();
        backend.Synchronize();
        double warmup = clock.Elapsed.TotalMilliseconds;
        int repetitions = (int)Math.Clamp(500 / Math.Max(warmup, 1e-3), 3, 20);
        var wall = new double[repetitions];
        var device = new double[repetitions];
        var gpu = backend as Ilgpu.IlgpuBackend is { IsGpu: true } ilgpu ? ilgpu : null;
        for (int i = 0; i < repetitions; i++)
        {
            clock.Restart();
            device[i] = gpu?.DeviceMilliseconds(body.Run) ?? 0;
            if (gpu is null)
            {
                body.Run();
            }

            backend.Synchronize();
            wall[i] = clock.Elapsed.TotalMilliseconds;
        }

        double wallMedian = Median(wall);
        double median = gpu is null ? wallMedian : Median(device);
        return new BenchResult(benchCase.Name, backend.Name, median, benchCase.Flops / (median * 1e6), repetitions, wallMedian);
    }

    private static double Median(double[] values)
    {
        Array.Sort(values);
        int n = values.Length;
        return n % 2 == 1 ? values[n / 2] : (values[(n / 2) - 1] + values[n / 2]) / 2;
    }

    private static void AddConvolution(List<BenchCase> cases, string name, string suffix, Conv2dGeometry g)
    {
        double forward = 2.0 * g.N * g.K * g.P * g.Q * g.C * g.R * g.S;
        cases.Add(new($"{name}-fwd{suffix}", forward, b => new ConvBody(b, g, backward: false)));
        cases.Add(new($"{name}-bwd{suffix}", 2 * forward, b => new ConvBody(b, g, backward: true)));
    }

    /// <summary>Kernel launches of one LeNet-5 training step at batch 64 (after a warm-up step), for ILGPU backends.</summary>
    public static long LaunchesPerLeNetStep(Ilgpu.IlgpuBackend backend, int batch)
    {
        using var body = new LeNetStepBody(backend, batch);
        body.Run();
        long before = backend.LaunchCount;
        body.Run();
        return backend.LaunchCount - before;
    }

    /// <summary>Forward, backward and update FLOPs of one LeNet-5 step (the first layer needs no input gradient).</summary>
    private static double LeNetStepFlops(int batch)
    {
        double conv1 = 2.0 * batch * 6 * 28 * 28 * 1 * 25, conv2 = 2.0 * batch * 16 * 10 * 10 * 6 * 25;
        double dense = 2.0 * batch * (400 * 120 + 120 * 84 + 84 * 10);
        return (conv1 * 2) + (conv2 * 3) + (dense * 3);
    }

    private sealed class GemmBody(Backend backend, int size) : IBenchBody
    {
        private readonly DeviceTensor<float> _a = backend.Upload(Tensor.Random([size, size], 1));
        private readonly DeviceTensor<float> _b = backend.Upload(Tensor.Random([size, size], 2));
        private readonly DeviceTensor<float> _c = backend.Allocate<float>([size, size]);

        public void Run() => backend.Gemm(false, false, size, size, size, 1f, _a, _b, 0f, _c);

        public void Dispose()
        {
            _a.Dispose();
            _b.Dispose();
            _c.Dispose();
        }
    }

    private sealed class ConvBody(Backend backend, Conv2dGeometry g, bool backward) : IBenchBody
    {
        private readonly DeviceTensor<float> _x = backend.Upload(Tensor.Random(g.InputShape, 1));
        private readonly DeviceTensor<float> _w = backend.Upload(Tensor.Random(g.WeightShape, 2, -0.1f, 0.1f));
        private readonly DeviceTensor<float> _b = backend.Upload(Tensor.Random([g.K], 3));
        private readonly DeviceTensor<float> _y = backend.Upload(Tensor.Random(g.OutputShape, 4));
        private readonly DeviceTensor<float> _dx = backend.Allocate<float>(g.InputShape);
        private readonly DeviceTensor<float> _dw = backend.Allocate<float>(g.WeightShape);
        private readonly DeviceTensor<float> _db = backend.Allocate<float>([g.K]);

        public void Run()
        {
            if (!backward)
            {
                backend.Conv2dForward(g, _x, _w, _b, _y);
                return;
            }

            backend.Conv2dBackwardData(g, _y, _w, _dx);
            backend.Conv2dBackwardFilter(g, _x, _y, _dw, _db);
        }

        public void Dispose()
        {
            foreach (var t in (DeviceTensor<float>[])[_x, _w, _b, _y, _dx, _dw, _db])
            {
                t.Dispose();
            }
        }
    }

    private sealed class PoolBody(Backend backend, Pool2dGeometry g, bool backward) : IBenchBody
    {
        private readonly DeviceTensor<float> _x = backend.Upload(Tensor.Random(g.InputShape, 1));
        private readonly DeviceTensor<float> _y = backend.Allocate<float>(g.OutputShape);
        private readonly DeviceTensor<int> _switches = backend.Allocate<int>(g.OutputShape);
        private readonly DeviceTensor<float> _dx = backend.Allocate<float>(g.InputShape);

        public void Run()
        {
            if (backward)
            {
                backend.MaxPool2dBackward(g, _y, _switches, _dx);
            }
            else
            {
                backend.MaxPool2dForward(g, _x, _y, _switches);
            }
        }

        public void Dispose()
        {
            _x.Dispose();
            _y.Dispose();
            _switches.Dispose();
            _dx.Dispose();
        }
    }

    /// <summary>One LeNet-5 SGD-with-momentum step on a resident batch: forward, loss, backward, update.</summary>
    private sealed class LeNetStepBody : IBenchBody
    {
        private readonly Backend _backend;
        private readonly Sequential _model;
        private readonly Sgd _sgd;
        private readonly DeviceTensor<float> _x, _dlogits, _loss;
        private readonly DeviceTensor<int> _labels;

        public LeNetStepBody(Backend backend, int batch)
        {
            _backend = backend;
            _model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend, seed: 1);
            _sgd = new Sgd(backend, _model.NamedParameters(), new SgdOptions(0f, 0.9f));
            _x = backend.Upload(Tensor.Random([batch, 1, 28, 28], 2, 0f, 1f));
            _labels = backend.Upload<int>([batch], Enumerable.Range(0, batch).Select(i => i % 10).ToArray());
            _dlogits = backend.Allocate<float>([batch, 10]);
            _loss = backend.Allocate<float>([1]);
        }

        public void Run()
        {
            var logits = _model.Forward(_x);
            _backend.SoftmaxCrossEntropy(logits, _labels, _dlogits, _loss);
            _model.Backward(_dlogits);
            _sgd.Step();
        }

        public void Dispose()
        {
            _sgd.Dispose();
            _model.Dispose();
            _x.Dispose();
            _labels.Dispose();
            _dlogits.Dispose();
            _loss.Dispose();
        }
    }
}
