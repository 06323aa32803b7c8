using GpuCnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>Batch normalisation on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void BatchNormForwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd, TF activation)
    {
        if (shape.Training != 0)
        {
            var (chunks, chunkSize) = ChannelChunks(shape.Channels, shape.Count);
            var partial = _workspace.Get(IlgpuWorkspace.Slot.BatchNormPartials, 2 * shape.Channels * chunks);
            _launch.NextSerial(2L * ((chunkSize + 255) / 256));
            _launch.Run(BatchNormKernels.ChunkStatistics, ChunkReduction(shape, chunks), View(x), partial, shape, chunkSize);
            _launch.NextSerial(2L * chunks);
            _launch.Run(BatchNormKernels.MergeStatistics, shape.Channels, View(x), partial, View(mean), View(invStd), View(runningMean),
                View(runningVar), shape, chunkSize);
        }
        else
        {
            _launch.Run(BatchNormKernels.RunningStatistics, shape.Channels, View(runningMean), View(runningVar), View(mean), View(invStd), shape);
        }

        _launch.Run(BatchNormKernels.Normalize, x.Length, View(x), View(y), View(weight), View(bias), View(mean), View(invStd), shape,
            activation);
    }

    /// <inheritdoc/>
    protected override void BatchNormBackwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float>? y,
        DeviceTensor<float> dy, DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd,
        DeviceTensor<float>? dx, DeviceTensor<float> dweight, DeviceTensor<float> dbias, TF activation)
    {
        var output = View(y ?? dy); // Identity's derivative never reads it
        var (chunks, chunkSize) = ChannelChunks(shape.Channels, shape.Count);
        var partial = _workspace.Get(IlgpuWorkspace.Slot.BatchNormPartials, 2 * shape.Channels * chunks);
        _launch.NextSerial((chunkSize + 255) / 256);
        _launch.Run(BatchNormKernels.ChunkGradientSums, ChunkReduction(shape, chunks), View(x), output, View(dy), View(mean), View(invStd),
            partial, shape, chunkSize, activation);
        _launch.NextSerial(chunks);
        _launch.Run(BatchNormKernels.MergeGradientSums, shape.Channels, partial, View(dweight), View(dbias), chunks);
        if (dx is null)
        {
            return;
        }

        var coefficients = _workspace.Get(IlgpuWorkspace.Slot.BatchNormCoefficients, 4 * shape.Channels);
        _launch.Run(BatchNormKernels.InputGradientCoefficients, shape.Channels, View(weight), View(mean), View(invStd), View(dweight),
            View(dbias), coefficients, shape);
        _launch.Run(BatchNormKernels.InputGradient, x.Length, View(x), output, View(dy), coefficients, View(dx), shape, activation);
    }

    /// <summary>A (channels, chunks) grid of reduction groups for sums of a chunk's values (<see cref="Reduction"/>'s group size).</summary>
    private KernelConfig ChunkReduction(BatchNormShape shape, int chunks)
    {
        var groups = Reduction(1, (shape.Count + chunks - 1) / chunks);
        return new KernelConfig(new Index3D(shape.Channels, chunks, 1), groups.GroupDim, groups.SharedMemoryConfig);
    }
}
