using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>Constant padding on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void Pad2dForwardCore(Pad2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y, float value) =>
        _launch.Run(PadKernels.Forward, y.Length, View(x), View(y), g, value);

    /// <inheritdoc/>
    protected override void Pad2dBackwardCore(Pad2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        _launch.Run(PadKernels.Backward, dx.Length, View(dy), View(dx), g);
}
