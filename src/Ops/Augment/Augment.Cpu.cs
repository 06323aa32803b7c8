using System.Runtime.CompilerServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>Augmentation and normalisation on the fast CPU backend (compiled into GpuCnn.Engine.Cpu): row copies and per-plane loops.</summary>
public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void RandomCropFlipCore(DeviceTensor<float> x, DeviceTensor<float> y, CropFlip crop)
    {
        var s = crop;
        var input = Data(x);
        var output = Data(y);
        int plane = s.Height * s.Width;
        for (int n = 0; n < x.Shape[0]; n++)
        {
            int dy = s.ShiftY(n) - s.Padding, dx = s.ShiftX(n) - s.Padding;
            bool mirrored = s.Mirrored(n);
            int first = Math.Max(0, -dx), last = Math.Min(s.Width, s.Width - dx); // output columns whose source column lies inside
            for (int c = 0; c < s.Channels; c++)
            {
                var source = input.Slice(((n * s.Channels) + c) * plane, plane);
                var target = output.Slice(((n * s.Channels) + c) * plane, plane);
                for (int h = 0; h < s.Height; h++)
                {
                    var row = target.Slice(h * s.Width, s.Width);
                    int from = h + dy;
                    if (from < 0 || from >= s.Height || first >= last)
                    {
                        row.Clear();
                        continue;
                    }

                    // Crop: row[w] = source[from, w + dx] for w in [first, last), zero elsewhere; then mirror the row.
                    row[..first].Clear();
                    row[last..].Clear();
                    source.Slice((from * s.Width) + first + dx, last - first).CopyTo(row[first..last]);
                    if (mirrored)
                    {
                        row.Reverse();
                    }
                }
            }
        }
    }

    /// <inheritdoc/>
    protected override void NormalizeChannelsCore(DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> mean,
        DeviceTensor<float> std, int channels, int inner) =>
        ReferenceMath.NormalizeChannels<float>(Data(x), Data(y), Data(mean), Data(std), channels, inner);
}
