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
            var partial = _workspace.Get(IlgpuWorkspace.Slot.BatchNormPartials, GeometryChecks.Elements("BatchNormForward", "per-chunk sums", 2L * shape.Channels * chunks));
            _launch.NextSerial(2L * ((chunkSize + 255) / 256));
            _launch.Run(BatchNormKernels.ChunkStatistics, ChunkReduction(shape, chunks), View(x), partial, shape, chunkSize);
            _launch.NextSerial(2L * chunks);
            if (StagesMerge(chunks))
            {
                _launch.Run(BatchNormKernels.MergeStatisticsStaged, StagedMerge(shape.Channels, chunks), View(x), partial, View(mean), View(invStd),
                    View(runningMean), View(runningVar), shape, chunkSize);
            }
            else
            {
                _launch.Run(BatchNormKernels.MergeStatistics, shape.Channels, View(x), partial, View(mean), View(invStd), View(runningMean),
                    View(runningVar), shape, chunkSize);
            }
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
        var partial = _workspace.Get(IlgpuWorkspace.Slot.BatchNormPartials, GeometryChecks.Elements("BatchNormBackward", "per-chunk sums", 2L * shape.Channels * chunks));
        _launch.NextSerial((chunkSize + 255) / 256);
        _launch.Run(BatchNormKernels.ChunkGradientSums, ChunkReduction(shape, chunks), View(x), output, View(dy), View(mean), View(invStd),
            partial, shape, chunkSize, activation);
        _launch.NextSerial(chunks);
        if (StagesMerge(chunks))
        {
            _launch.Run(BatchNormKernels.MergeGradientSumsStaged, StagedMerge(shape.Channels, chunks), partial, View(dweight), View(dbias), chunks);
        }
        else
        {
            _launch.Run(BatchNormKernels.MergeGradientSums, shape.Channels, partial, View(dweight), View(dbias), chunks);
        }
        if (dx is null)
        {
            return;
        }

        var coefficients = _workspace.Get(IlgpuWorkspace.Slot.BatchNormCoefficients, GeometryChecks.Elements("BatchNormBackward", "per-channel coefficients", 4L * shape.Channels));
        _launch.Run(BatchNormKernels.InputGradientCoefficients, shape.Channels, View(weight), View(mean), View(invStd), View(dweight),
            View(dbias), coefficients, shape);
        _launch.Run(BatchNormKernels.InputGradient, x.Length, View(x), output, View(dy), coefficients, View(dx), shape, activation);
    }

    /// <summary>
    /// Whether batch norm merges each channel's chunks (statistics forward, gradient sums backward) from shared memory,
    /// staged by a group a channel (<see cref="BatchNormKernels.MergeStatisticsStaged"/>,
    /// <see cref="BatchNormKernels.MergeGradientSumsStaged"/>), instead of a thread a channel reading them from memory
    /// one chunk at a time: the same sums in the same order, the same bits. On by default since an H200 timed it
    /// (docs/benchmarks.md, twenty-fifth session: ResNet-8's 16-channel batch norms, 33 chunks a channel, 0.8× the time
    /// forward, 0.85–0.87× backward). A channel of one chunk is always merged from memory: there is nothing to stage.
    /// GPUCNN_BATCH_NORM_STAGED_MERGE=1|0 sets it for a process.
    /// </summary>
    public bool StagedBatchNormMerge { get; set; } = true;

    /// <summary>Whether a merge of <paramref name="chunks"/> chunks a channel is staged (<see cref="StagedBatchNormMerge"/>).</summary>
    private bool StagesMerge(int chunks) => StagedBatchNormMerge && chunks > 1;

    /// <summary>A group a channel for the staged merges: a thread per staged float, in whole warps, at most 256 (and the device's most).</summary>
    private KernelConfig StagedMerge(int channels, int chunks)
    {
        int threads = Math.Min(Math.Min(256, _profile.MaxGroupThreads), (2 * chunks + 31) / 32 * 32);
        return new KernelConfig(channels, threads, SharedMemoryConfig.RequestDynamic<float>(2 * chunks));
    }

    /// <summary>A (channels, chunks) grid of reduction groups for sums of a chunk's values (<see cref="Reduction"/>'s group size).</summary>
    private KernelConfig ChunkReduction(BatchNormShape shape, int chunks)
    {
        var groups = Reduction(1, (shape.Count + chunks - 1) / chunks);
        return new KernelConfig(new Index3D(shape.Channels, chunks, 1), groups.GroupDim, groups.SharedMemoryConfig);
    }
}
