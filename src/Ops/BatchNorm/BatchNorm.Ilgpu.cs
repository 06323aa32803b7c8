using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>Batch normalisation on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void BatchNormForwardCore(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd)
    {
        if (shape.Training != 0)
        {
            _launch.NextSerial(2L * ((shape.Count + 255) / 256));
            _launch.Run(BatchNormKernels.BatchStatistics, Reduction(shape.Channels, shape.Count), View(x), View(mean), View(invStd),
                View(runningMean), View(runningVar), shape);
        }
        else
        {
            _launch.Run(BatchNormKernels.RunningStatistics, shape.Channels, View(runningMean), View(runningVar), View(mean), View(invStd), shape);
        }

        _launch.Run(BatchNormKernels.Normalize, x.Length, View(x), View(y), View(weight), View(bias), View(mean), View(invStd), shape);
    }

    /// <inheritdoc/>
    protected override void BatchNormBackwardCore(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd, DeviceTensor<float>? dx,
        DeviceTensor<float> dweight, DeviceTensor<float> dbias)
    {
        _launch.NextSerial((shape.Count + 255) / 256);
        _launch.Run(BatchNormKernels.GradientSums, Reduction(shape.Channels, shape.Count), View(x), View(dy), View(mean), View(invStd),
            View(dweight), View(dbias), shape);
        if (dx is null)
        {
            return;
        }

        var coefficients = _workspace.Get(IlgpuWorkspace.Slot.BatchNormCoefficients, 3 * shape.Channels);
        _launch.Run(BatchNormKernels.InputGradientCoefficients, shape.Channels, View(weight), View(mean), View(invStd), View(dweight),
            View(dbias), coefficients, shape);
        _launch.Run(BatchNormKernels.InputGradient, x.Length, View(x), View(dy), coefficients, View(dx), shape);
    }
}
