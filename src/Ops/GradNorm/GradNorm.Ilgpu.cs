using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>clip_grad_norm_'s operations on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void SquaredNormCore(DeviceTensor<float> x, DeviceTensor<float> sums, int slot)
    {
        // A group per chunk of at least 2,048 values, then the chunks added by one fixed tree (as the bias gradient's sums).
        var (chunks, chunkSize) = ChannelChunks(1, x.Length);
        var total = View(sums).SubView(slot, 1);
        var partial = chunks == 1 ? total : _workspace.Get(IlgpuWorkspace.Slot.Partials, chunks);
        _launch.NextSerial((chunkSize + 255) / 256);
        _launch.Run(GradNormKernels.SquaredNormChunks, Reduction(chunks, chunkSize), View(x), partial, x.Length, chunkSize);
        if (chunks > 1)
        {
            _launch.NextSerial((chunks + 255) / 256);
            _launch.Run(ReductionKernels.SumChunks, Reduction(1, chunks), partial, total, total, 1, 1, chunks);
        }
    }

    /// <inheritdoc/>
    protected override void ClipCoefficientCore(DeviceTensor<float> sums, float maxNorm, DeviceTensor<float> coefficient)
    {
        _launch.NextSerial(sums.Length);
        _launch.Run(GradNormKernels.ClipCoefficient, 1, View(sums), View(coefficient), sums.Length, maxNorm);
    }

    /// <inheritdoc/>
    protected override void ScaleByCore(DeviceTensor<float> x, DeviceTensor<float> coefficient) =>
        _launch.Run(GradNormKernels.ScaleBy, x.Length, View(x), View(coefficient));
}
