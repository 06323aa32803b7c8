using BenchmarkDotNet.Attributes;
using GpuCnn.Cpu;

namespace GpuCnn.Perf;

/// <summary>Max pooling with its switch mask, forward and backward, on every backend present; GB/s.</summary>
[Config(typeof(ThroughputConfig))]
public class PoolingBenchmarks : IByteCount
{
    private Backend _backend = null!;
    private DeviceTensor<float> _x = null!, _y = null!, _dx = null!;
    private DeviceTensor<int> _switches = null!;

    [ParamsSource(typeof(PresentDevices), nameof(PresentDevices.Names))]
    public string Device { get; set; } = "reference";

    /// <summary>Planes of 28×28 (LeNet) and an awkward 33×31 with overlapping 3×3 windows.</summary>
    [Params("2x2-s2-28", "3x3-s2-33x31")]
    public string Shape { get; set; } = "2x2-s2-28";

    private Pool2dGeometry G => Shape == "2x2-s2-28" ? new(16, 6, 28, 28, 2, 2, 2, 2) : new(16, 6, 33, 31, 3, 3, 2, 2);

    /// <summary>Forward: read x, write y and the switches (the backward moves the same amount the other way).</summary>
    public double Bytes => 4.0 * (G.InputSize + 2.0 * G.OutputSize);

    [GlobalSetup]
    public void Setup()
    {
        var g = G;
        _backend = Backends.Open(Device);
        _x = _backend.Upload(Tensor.Random(g.InputShape, 1));
        _y = _backend.Allocate<float>(g.OutputShape);
        _switches = _backend.Allocate<int>(g.OutputShape);
        _dx = _backend.Allocate<float>(g.InputShape);
        _backend.MaxPool2dForward(g, _x, _y, _switches);
    }

    [Benchmark]
    public void Forward()
    {
        _backend.MaxPool2dForward(G, _x, _y, _switches);
        _backend.Synchronize();
    }

    [Benchmark]
    public void Backward()
    {
        _backend.MaxPool2dBackward(G, _y, _switches, _dx);
        _backend.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();
}
