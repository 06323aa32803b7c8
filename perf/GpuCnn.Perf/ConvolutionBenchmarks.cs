using BenchmarkDotNet.Attributes;
using GpuCnn.Cpu;

namespace GpuCnn.Perf;

/// <summary>Convolution forward and backward on every backend present, at LeNet's layer shapes and one awkward shape.</summary>
[Config(typeof(ThroughputConfig))]
public class ConvolutionBenchmarks : IFlopCount
{
    private static readonly Dictionary<string, Conv2dGeometry> Shapes = new()
    {
        ["lenet1-n8"] = new(N: 8, C: 1, H: 28, W: 28, K: 6, R: 5, S: 5, PadH: 2, PadW: 2),
        ["lenet2-n8"] = new(N: 8, C: 6, H: 14, W: 14, K: 16, R: 5, S: 5),
        ["odd-s2p1"] = new(N: 3, C: 5, H: 17, W: 13, K: 7, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
    };

    private Backend _backend = null!;
    private DeviceTensor<float> _x = null!, _w = null!, _b = null!, _y = null!, _dx = null!, _dw = null!, _db = null!;

    [ParamsSource(typeof(PresentDevices), nameof(PresentDevices.Names))]
    public string Device { get; set; } = "reference";

    [Params("lenet1-n8", "lenet2-n8", "odd-s2p1")]
    public string Shape { get; set; } = "lenet1-n8";

    private Conv2dGeometry G => Shapes[Shape];

    /// <summary>Forward FLOPs, 2·N·K·P·Q·C·R·S; each backward pass costs the same again.</summary>
    public double Flops => 2.0 * G.N * G.K * G.P * G.Q * G.C * G.R * G.S;

    [GlobalSetup]
    public void Setup()
    {
        var g = G;
        _backend = Backends.Open(Device);
        _x = _backend.Upload(Tensor.Random(g.InputShape, 1));
        _w = _backend.Upload(Tensor.Random(g.WeightShape, 2));
        _b = _backend.Upload(Tensor.Random([g.K], 3));
        _y = _backend.Allocate<float>(g.OutputShape);
        _dx = _backend.Allocate<float>(g.InputShape);
        _dw = _backend.Allocate<float>(g.WeightShape);
        _db = _backend.Allocate<float>([g.K]);
        _backend.Conv2dForward(G, _x, _w, _b, _y); // the backward benchmarks' dy: allocated memory may hold anything, a NaN sends Winograd to the direct route
        _backend.Synchronize();
    }

    [Benchmark]
    public void Forward()
    {
        _backend.Conv2dForward(G, _x, _w, _b, _y);
        _backend.Synchronize();
    }

    [Benchmark]
    public void BackwardData()
    {
        _backend.Conv2dBackwardData(G, _y, _w, _dx);
        _backend.Synchronize();
    }

    [Benchmark]
    public void BackwardFilter()
    {
        _backend.Conv2dBackwardFilter(G, _x, _y, _dw, _db);
        _backend.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();
}
