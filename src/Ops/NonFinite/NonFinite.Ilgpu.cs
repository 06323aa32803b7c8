using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>FlagNonFinite on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void FlagNonFiniteCore(DeviceTensor<float> x, DeviceTensor<float> flags, int slot) =>
        _launch.Run(NonFiniteKernels.Flag, x.Length, View(x), View(flags), slot);
}
