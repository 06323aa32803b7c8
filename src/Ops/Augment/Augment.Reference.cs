using System.Numerics;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>The naive augmentation and normalisation (compiled into GpuCnn.Engine.Cpu).</summary>
internal static partial class ReferenceMath
{
    /// <summary>
    /// y (N,C,H,W): sample n is the window at (ShiftY(n), ShiftX(n)) of x zero-padded by the crop's padding, mirrored
    /// left to right when Mirrored(n).
    /// </summary>
    public static void RandomCropFlip<T>(CropFlip s, ReadOnlySpan<T> x, Span<T> y, int batch)
        where T : IFloatingPointIeee754<T>
    {
        for (int n = 0; n < batch; n++)
        {
            int dy = s.ShiftY(n) - s.Padding, dx = s.ShiftX(n) - s.Padding;
            bool mirrored = s.Mirrored(n);
            for (int c = 0; c < s.Channels; c++)
            {
                for (int h = 0; h < s.Height; h++)
                {
                    for (int w = 0; w < s.Width; w++)
                    {
                        int row = h + dy, column = (mirrored ? s.Width - 1 - w : w) + dx;
                        bool inside = row >= 0 && row < s.Height && column >= 0 && column < s.Width;
                        y[Index4(n, c, h, w, s.Channels, s.Height, s.Width)] = inside ? x[Index4(n, c, row, column, s.Channels, s.Height, s.Width)] : T.Zero;
                    }
                }
            }
        }
    }

    /// <summary>y = (x − mean[c]) / std[c] for x (N, C, inner).</summary>
    public static void NormalizeChannels<T>(ReadOnlySpan<T> x, Span<T> y, ReadOnlySpan<T> mean, ReadOnlySpan<T> std, int channels, int inner)
        where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < x.Length; i++)
        {
            int c = i / inner % channels;
            y[i] = (x[i] - mean[c]) / std[c];
        }
    }
}

/// <summary>Augmentation and normalisation on the reference backend.</summary>
public sealed partial class ReferenceBackend
{
    /// <inheritdoc/>
    protected override void RandomCropFlipCore(DeviceTensor<float> x, DeviceTensor<float> y, CropFlip crop) =>
        ReferenceMath.RandomCropFlip<float>(crop, Data(x), Data(y), x.Shape[0]);

    /// <inheritdoc/>
    protected override void NormalizeChannelsCore(DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> mean,
        DeviceTensor<float> std, int channels, int inner) =>
        ReferenceMath.NormalizeChannels<float>(Data(x), Data(y), Data(mean), Data(std), channels, inner);
}
