using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>Dropout on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void DropoutCore(DeviceTensor<float> x, DeviceTensor<float> y, float p, float scale, uint key, uint first) =>
        _launch.Run(DropoutKernels.Dropout, x.Length, View(x), View(y), p, scale, key, first);
}
