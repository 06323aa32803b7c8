using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// Per-sample random crop and flip of a batch x (N, C, H, W): sample n is shifted by (dy, dx) ∈ [0, 2·pad]² within
/// its zero-padded copy and, when flips are on and its coin says so, mirrored left to right — torchvision's
/// RandomCrop(size, padding=pad) then RandomHorizontalFlip. The draws come from <see cref="CounterRandom"/>, keyed by
/// the sample's position in the whole batch: sample n of x draws as sample FirstSample + n, so ranks that each crop
/// their share of a global batch draw what one process cropping the whole batch draws.
/// </summary>
public readonly record struct CropFlip(int Channels, int Height, int Width, int Padding, int Flip, uint Key, int FirstSample = 0)
{
    /// <summary>The vertical shift of sample n in [0, 2·pad].</summary>
    public int ShiftY(int n) => Draw(Counter(n));

    /// <summary>The horizontal shift of sample n in [0, 2·pad].</summary>
    public int ShiftX(int n) => Draw(Counter(n) + 1u);

    /// <summary>Whether sample n is mirrored.</summary>
    public bool Mirrored(int n) => Flip != 0 && (CounterRandom.Hash(Key, Counter(n) + 2u) & 0x100u) != 0;

    /// <summary>The input element that output (n, c, h, w) copies, or −1 where it falls in the zero padding.</summary>
    public int Source(int n, int c, int h, int w)
    {
        int column = Mirrored(n) ? Width - 1 - w : w;
        int row = h + ShiftY(n) - Padding;
        column += ShiftX(n) - Padding;
        return row < 0 || row >= Height || column < 0 || column >= Width ? -1 : ((((n * Channels) + c) * Height) + row) * Width + column;
    }

    // Three draws per sample, counted from the whole batch's first sample (unsigned: counters wrap, never throw).
    private uint Counter(int n) => 3u * unchecked((uint)FirstSample + (uint)n);

    // (24 random bits · (2·pad + 1)) >> 24: uniform over the 2·pad + 1 shifts (to within 2⁻²⁴).
    private int Draw(uint counter) => (int)(((ulong)(CounterRandom.Hash(Key, counter) >> 8) * (ulong)((2 * Padding) + 1)) >> 24);
}

/// <summary>The ILGPU kernels of data augmentation and input normalisation (compiled into GpuCnn.Kernels; see src/Ops/README.md).</summary>
internal static class AugmentKernels
{
    /// <summary>y (N,C,H,W) = x cropped from its zero padding and maybe mirrored, one output element per thread.</summary>
    public static void CropFlip(Index1D i, ArrayView<float> x, ArrayView<float> y, CropFlip s)
    {
        int w = i % s.Width, rest = i / s.Width;
        int h = rest % s.Height;
        rest /= s.Height;
        int source = s.Source(rest / s.Channels, rest % s.Channels, h, w);
        y[i] = source < 0 ? 0f : x[source];
    }

    /// <summary>y = (x − mean[c]) / std[c] for x (N, C, inner), as torchvision's Normalize; y may be x.</summary>
    public static void NormalizeChannels(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> std,
        int channels, int inner)
    {
        int c = i / inner % channels;
        y[i] = (x[i] - mean[c]) / std[c];
    }
}
