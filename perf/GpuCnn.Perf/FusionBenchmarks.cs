using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using GpuCnn.Cpu;
using GpuCnn.Kernels;

namespace GpuCnn.Perf;

/// <summary>
/// A batch norm + ReLU layer's training step (forward with batch statistics, backward with dx) and a residual join +
/// ReLU, each as separate operations (the baseline: what the layers ran before fusion) and fused, at ResNet-8's three
/// stages on batch 128, on the fast backends present. Ratio &lt; 1: fusion is faster.
/// </summary>
[Config(typeof(ThroughputConfig))]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
public class FusionBenchmarks
{
    private Backend _backend = null!;
    private DeviceTensor<float> _x = null!, _dy = null!, _y = null!, _activated = null!, _dz = null!, _dx = null!;
    private DeviceTensor<float> _weight = null!, _bias = null!, _runningMean = null!, _runningVar = null!, _mean = null!, _invStd = null!;
    private DeviceTensor<float> _dweight = null!, _dbias = null!;

    /// <summary>The fast backends present (the reference and ILGPU's CPU accelerator would take minutes a case).</summary>
    public static IEnumerable<string> Devices() => PresentDevices.Names().Where(name => name is not ("reference" or "ilgpu-cpu"));

    [ParamsSource(nameof(Devices))]
    public string Device { get; set; } = "cpu";

    /// <summary>Channels × plane side: 16×28, 32×14, 64×7 (planes of 784, 196 and 49 values).</summary>
    [Params("16x28", "32x14", "64x7")]
    public string Stage { get; set; } = "16x28";

    private Shape Shape => Stage switch
    {
        "16x28" => new Shape(128, 16, 28, 28),
        "32x14" => new Shape(128, 32, 14, 14),
        _ => new Shape(128, 64, 7, 7),
    };

    [GlobalSetup]
    public void Setup()
    {
        var shape = Shape;
        var channels = new Shape(shape[1]);
        _backend = Backends.Open(Device);
        _x = _backend.Upload(Tensor.Random(shape, 1));
        _dy = _backend.Upload(Tensor.Random(shape, 2));
        (_y, _activated, _dz, _dx) = (_backend.Allocate<float>(shape), _backend.Allocate<float>(shape), _backend.Allocate<float>(shape), _backend.Allocate<float>(shape));
        _weight = _backend.Upload(Tensor.Random(channels, 3));
        _bias = _backend.Upload(Tensor.Random(channels, 4));
        (_runningMean, _runningVar) = (_backend.Allocate<float>(channels), _backend.Allocate<float>(channels));
        _backend.Fill(_runningMean, 0f);
        _backend.Fill(_runningVar, 1f);
        (_mean, _invStd, _dweight, _dbias) = (_backend.Allocate<float>(channels), _backend.Allocate<float>(channels), _backend.Allocate<float>(channels), _backend.Allocate<float>(channels));
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("batchnorm+relu")]
    public void BatchNormReluSeparate()
    {
        _backend.BatchNormForward(true, _x, _weight, _bias, _runningMean, _runningVar, 0.1f, 1e-5f, _y, _mean, _invStd);
        _backend.ActivationForward(default(Relu), _y, _activated);
        _backend.ActivationBackwardFromOutput(default(Relu), _activated, _dy, _dz);
        _backend.BatchNormBackward(true, _x, _dz, _weight, _mean, _invStd, _dx, _dweight, _dbias);
        _backend.Synchronize();
    }

    [Benchmark]
    [BenchmarkCategory("batchnorm+relu")]
    public void BatchNormReluFused()
    {
        _backend.BatchNormForward(true, _x, _weight, _bias, _runningMean, _runningVar, 0.1f, 1e-5f, _y, _mean, _invStd, default(Relu));
        _backend.BatchNormBackward(true, _x, _y, _dy, _weight, _mean, _invStd, _dx, _dweight, _dbias, default(Relu));
        _backend.Synchronize();
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("add+relu")]
    public void AddReluSeparate()
    {
        _backend.Add(_x, _dy, _y);
        _backend.ActivationForward(default(Relu), _y, _y);
        _backend.Synchronize();
    }

    [Benchmark]
    [BenchmarkCategory("add+relu")]
    public void AddReluFused()
    {
        _backend.Add(_x, _dy, _y, default(Relu));
        _backend.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();
}
