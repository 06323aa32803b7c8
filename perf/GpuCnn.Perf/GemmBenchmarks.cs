using BenchmarkDotNet.Attributes;
using GpuCnn.Cpu;

namespace GpuCnn.Perf;

/// <summary>C = A·B on every backend present; 127 is the awkward size (no tile divides it).</summary>
[Config(typeof(ThroughputConfig))]
public class GemmBenchmarks : IFlopCount
{
    private Backend _backend = null!;
    private DeviceTensor<float> _a = null!, _b = null!, _c = null!;

    [ParamsSource(typeof(PresentDevices), nameof(PresentDevices.Names))]
    public string Device { get; set; } = "reference";

    [Params(64, 127, 256)]
    public int Size { get; set; }

    public double Flops => 2.0 * Size * Size * Size;

    [GlobalSetup]
    public void Setup()
    {
        _backend = Backends.Open(Device);
        _a = _backend.Upload(Tensor.Random([Size, Size], 1));
        _b = _backend.Upload(Tensor.Random([Size, Size], 2));
        _c = _backend.Allocate<float>([Size, Size]);
    }

    [Benchmark]
    public void Gemm()
    {
        _backend.Gemm(false, false, Size, Size, Size, 1f, _a, _b, 0f, _c);
        _backend.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();
}
