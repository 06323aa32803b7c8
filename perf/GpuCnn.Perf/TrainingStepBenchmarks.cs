using BenchmarkDotNet.Attributes;
using GpuCnn.Cpu;
using GpuCnn.Models;

namespace GpuCnn.Perf;

/// <summary>One whole LeNet-5 training step (forward, loss, backward, SGD with momentum) on a resident batch.</summary>
[Config(typeof(ThroughputConfig))]
public class TrainingStepBenchmarks
{
    private Backend _backend = null!;
    private Sequential _model = null!;
    private Sgd _sgd = null!;
    private DeviceTensor<float> _x = null!, _dlogits = null!, _loss = null!;
    private DeviceTensor<int> _labels = null!;

    [ParamsSource(typeof(FastDevices), nameof(FastDevices.Names))]
    public string Device { get; set; } = "cpu";

    [Params(64, 100)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _backend = Backends.Open(Device);
        _model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], _backend, seed: 1);
        _sgd = new Sgd(_backend, _model.NamedParameters(), new SgdOptions(0f, 0.9f)); // rate 0: every step sees the same weights
        _x = _backend.Upload(Tensor.Random([Batch, 1, 28, 28], 2, 0f, 1f));
        _labels = _backend.Upload<int>([Batch], Enumerable.Range(0, Batch).Select(i => i % 10).ToArray());
        _dlogits = _backend.Allocate<float>([Batch, 10]);
        _loss = _backend.Allocate<float>([1]);
    }

    [Benchmark]
    public void Step()
    {
        var logits = _model.Forward(_x);
        _backend.SoftmaxCrossEntropy(logits, _labels, _dlogits, _loss);
        _model.Backward(_dlogits);
        _sgd.Step();
        _backend.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sgd.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}

/// <summary>Devices fast enough for whole training steps: everything present but the two emulations of slowness.</summary>
public static class FastDevices
{
    public static IEnumerable<string> Names() => PresentDevices.Names().Where(n => n is not "reference" and not "ilgpu-cpu");
}
