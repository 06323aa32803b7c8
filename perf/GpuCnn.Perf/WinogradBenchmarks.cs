using BenchmarkDotNet.Attributes;
using GpuCnn.Cpu.Fast;

namespace GpuCnn.Perf;

/// <summary>
/// The CPU backend's 3×3 passes with Winograd off and always on, at the shapes that set <c>WinogradConvolution.Pays</c>
/// and <c>PaysForFilterGradient</c> (measured on a 2-core Zen 5 only): on another processor, rerun and compare each
/// shape's Off and Always times with the rule (its <c>Auto</c> column says what the rule picks here).
///     dotnet run -c Release --project perf/GpuCnn.Perf -- --filter '*Winograd*' --job short
///     DOTNET_EnableAVX512=0 dotnet run … (the AVX2 path)
/// </summary>
[Config(typeof(ThroughputConfig))]
public class WinogradBenchmarks : IFlopCount
{
    /// <summary>Batch, channels → filters, H×W (stride 1, padding 1).</summary>
    private static readonly Dictionary<string, Conv2dGeometry> Shapes = new()
    {
        ["16-16-32x32"] = Same(64, 16, 32, 16),
        ["32-32-14x14"] = Same(64, 32, 14, 32),
        ["32-64-14x14"] = Same(64, 32, 14, 64),
        ["64-32-14x14"] = Same(64, 64, 14, 32),
        ["48-48-14x14"] = Same(64, 48, 14, 48),
        ["64-64-7x7"] = Same(64, 64, 7, 64),
        ["64-64-14x14"] = Same(64, 64, 14, 64),
        ["128-128-16x16"] = Same(32, 128, 16, 128),
    };

    private CpuBackend _backend = null!;
    private DeviceTensor<float> _x = null!, _w = null!, _y = null!, _dx = null!, _dw = null!;

    [Params("16-16-32x32", "32-32-14x14", "32-64-14x14", "64-32-14x14", "48-48-14x14", "64-64-7x7", "64-64-14x14", "128-128-16x16")]
    public string Shape { get; set; } = "64-64-14x14";

    [Params(WinogradMode.Off, WinogradMode.Always)]
    public WinogradMode Mode { get; set; } = WinogradMode.Off;

    /// <summary>What the rules pick on this machine: forward and backward-data / filter gradient.</summary>
    public string Auto => $"{WinogradConvolution.Pays(G, _backend.Width)}/{WinogradConvolution.PaysForFilterGradient(G, _backend.Width)}";

    private Conv2dGeometry G => Shapes[Shape];

    /// <summary>A direct convolution's FLOPs, 2·N·K·P·Q·C·9 (Winograd does 2.25× fewer).</summary>
    public double Flops => 2.0 * G.N * G.K * G.P * G.Q * G.C * 9;

    private static Conv2dGeometry Same(int n, int c, int size, int k) =>
        new(N: n, C: c, H: size, W: size, K: k, R: 3, S: 3, PadH: 1, PadW: 1);

    [GlobalSetup]
    public void Setup()
    {
        var g = G;
        _backend = new CpuBackend { Winograd = Mode };
        _x = _backend.Upload(Tensor.Random(g.InputShape, 1));
        _w = _backend.Upload(Tensor.Random(g.WeightShape, 2));
        _y = _backend.Allocate<float>(g.OutputShape);
        _backend.Conv2dForward(G, _x, _w, null, _y); // the backward benchmarks' dy (allocated memory may hold a NaN, which Winograd routes around)
        _dx = _backend.Allocate<float>(g.InputShape);
        _dw = _backend.Allocate<float>(g.WeightShape);
        Console.WriteLine($"// {Shape}: Winograd by the rules (forward/filter gradient) {Auto}");
    }

    [Benchmark]
    public void Forward() => _backend.Conv2dForward(G, _x, _w, null, _y);

    [Benchmark]
    public void BackwardData() => _backend.Conv2dBackwardData(G, _y, _w, _dx);

    [Benchmark]
    public void BackwardFilter() => _backend.Conv2dBackwardFilter(G, _x, _y, _dw, null);

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();
}
