using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>Add on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void AddCore<TF>(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y, TF activation) =>
        _launch.Run(AddKernels.Add, y.Length, View(a), View(b), View(y), activation);
}
