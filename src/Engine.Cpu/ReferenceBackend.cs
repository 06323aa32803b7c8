using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>
/// The reference backend: <see cref="ReferenceMath"/> in float on host arrays, one thread, synchronous. It defines
/// what every other backend must compute; it is deliberately slow.
/// </summary>
public sealed partial class ReferenceBackend : HostBackend
{
    /// <inheritdoc/>
    public override string Name => "reference";

    /// <inheritdoc/>
    public override string DeviceName => "naive C# reference (host memory, 1 thread)";

    /// <inheritdoc/>
    protected override void Conv2dForwardCore<TF>(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w,
        DeviceTensor<float>? b, DeviceTensor<float> y, TF activation)
    {
        ReferenceMath.Conv2dForward<float>(g, Data(x), Data(w), b is null ? [] : Data(b), Data(y));
        ReferenceMath.ActivationForward<float, TF>(activation, Data(y), Data(y));
    }

    /// <inheritdoc/>
    protected override void Conv2dBackwardDataCore(Conv2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> w,
        DeviceTensor<float> dx) =>
        ReferenceMath.Conv2dBackwardData<float>(g, Data(dy), Data(w), Data(dx));

    /// <inheritdoc/>
    protected override void Conv2dBackwardFilterCore(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> dw, DeviceTensor<float>? db) =>
        ReferenceMath.Conv2dBackwardFilter<float>(g, Data(x), Data(dy), Data(dw), db is null ? [] : Data(db));

    /// <inheritdoc/>
    protected override void MaxPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<int> switches) =>
        ReferenceMath.MaxPool2dForward<float>(g, Data(x), Data(y), Data(switches));

    /// <inheritdoc/>
    protected override void MaxPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<int> switches,
        DeviceTensor<float> dx) =>
        ReferenceMath.MaxPool2dBackward<float>(g, Data(dy), Data(switches), Data(dx));

    /// <inheritdoc/>
    protected override void AvgPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y) =>
        ReferenceMath.AvgPool2dForward<float>(g, Data(x), Data(y));

    /// <inheritdoc/>
    protected override void AvgPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        ReferenceMath.AvgPool2dBackward<float>(g, Data(dy), Data(dx));

    /// <inheritdoc/>
    protected override void GemmCore(GemmShape shape, DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> c) =>
        ReferenceMath.Gemm<float>(shape.TransposeA != 0, shape.TransposeB != 0, shape.M, shape.N, shape.K, shape.Alpha,
            Data(a), Data(b), shape.Beta, Data(c));

    /// <inheritdoc/>
    protected override void BiasAddCore(DeviceTensor<float> y, DeviceTensor<float> b, int batch, int channels, int inner) =>
        ReferenceMath.BiasAdd<float>(Data(y), Data(b), batch, channels, inner);

    /// <inheritdoc/>
    protected override void BiasGradientCore(DeviceTensor<float> dy, DeviceTensor<float> db, int batch, int channels,
        int inner) =>
        ReferenceMath.BiasGradient<float>(Data(dy), Data(db), batch, channels, inner);

    /// <inheritdoc/>
    protected override void ActivationForwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y) =>
        ReferenceMath.ActivationForward<float, TF>(f, Data(x), Data(y));

    /// <inheritdoc/>
    protected override void ActivationBackwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        ReferenceMath.ActivationBackward<float, TF>(f, Data(x), Data(y), Data(dy), Data(dx));

    /// <inheritdoc/>
    protected override void ActivationBackwardFromOutputCore<TF>(TF f, DeviceTensor<float> y, DeviceTensor<float> dy,
        DeviceTensor<float> dx) =>
        ReferenceMath.ActivationBackwardFromOutput<float, TF>(f, Data(y), Data(dy), Data(dx));

    /// <inheritdoc/>
    protected override void SgdUpdateCore(SgdParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> velocity) =>
        ReferenceMath.SgdUpdate<float>(h.LearningRate, h.Momentum, h.OneMinusDampening, h.WeightDecay, h.Nesterov != 0,
            h.FirstStep != 0, Data(parameter), Data(gradient), Data(velocity));
}
