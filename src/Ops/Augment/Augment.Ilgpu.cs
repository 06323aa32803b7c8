using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>Augmentation and normalisation on an ILGPU accelerator (compiled into GpuCnn.Engine).</summary>
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    protected override void RandomCropFlipCore(DeviceTensor<float> x, DeviceTensor<float> y, CropFlip crop) =>
        _launch.Run(AugmentKernels.CropFlip, y.Length, View(x), View(y), crop);

    /// <inheritdoc/>
    protected override void NormalizeChannelsCore(DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> mean,
        DeviceTensor<float> std, int channels, int inner) =>
        _launch.Run(AugmentKernels.NormalizeChannels, x.Length, View(x), View(y), View(mean), View(std), channels, inner);
}
