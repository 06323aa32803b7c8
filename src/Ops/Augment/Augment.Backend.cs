using GpuCnn.Kernels;

namespace GpuCnn;

/// <summary>Data augmentation's and input normalisation's public operations and cores (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// y (N,C,H,W) = each sample of x randomly cropped from its copy zero-padded by <paramref name="padding"/> on every
    /// side and, with <paramref name="flip"/>, mirrored left to right with probability ½ (torchvision's
    /// RandomCrop(padding=…) then RandomHorizontalFlip); the draws depend only on <paramref name="key"/> and the sample's
    /// position in the whole batch, <paramref name="firstSample"/> + n for sample n of x (ranks that share a global batch
    /// pass where their share starts, and so draw what one process would).
    /// </summary>
    public void RandomCropFlip(DeviceTensor<float> x, DeviceTensor<float> y, int padding, bool flip, uint key, int firstSample = 0)
    {
        using var operation = EnterOperation();
        const string op = "RandomCropFlip";
        Checks.Owned(op, nameof(x), x, this);
        if (x.Shape.Rank != 4)
        {
            throw new ArgumentException($"{op}: x must be (N, C, H, W), got {x.Shape}.", nameof(x));
        }

        if (padding < 0 || padding > 1000)
        {
            throw new ArgumentOutOfRangeException(nameof(padding), padding, $"{op}: padding must lie in [0, 1000], got {padding}.");
        }

        if (firstSample < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(firstSample), firstSample, $"{op}: firstSample must be ≥ 0, got {firstSample}.");
        }

        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        Checks.WrittenApart(op, nameof(y), y, (nameof(x), x)); // the crop reads neighbours of the element it writes: x itself or a view of it

        RandomCropFlipCore(x, y, new CropFlip(x.Shape[1], x.Shape[2], x.Shape[3], padding, flip ? 1 : 0, key, firstSample));
    }

    /// <summary>y = (x − mean[c]) / std[c] over x (N, C, …) per channel c, as torchvision's Normalize; y may be x.</summary>
    public void NormalizeChannels(DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> mean, DeviceTensor<float> std)
    {
        using var operation = EnterOperation();
        const string op = "NormalizeChannels";
        Checks.Owned(op, nameof(x), x, this);
        if (x.Shape.Rank < 2)
        {
            throw new ArgumentException($"{op}: x must be (N, C, …), got {x.Shape}.", nameof(x));
        }

        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        Checks.Dims(op, nameof(mean), mean, this, x.Shape[1]);
        Checks.Dims(op, nameof(std), std, this, x.Shape[1]);
        NormalizeChannelsCore(x, y, mean, std, x.Shape[1], x.Shape.SizeFrom(2));
    }

    /// <summary>The crop and flip; arguments already checked.</summary>
    protected abstract void RandomCropFlipCore(DeviceTensor<float> x, DeviceTensor<float> y, CropFlip crop);

    /// <summary>The normalisation; arguments already checked.</summary>
    protected abstract void NormalizeChannelsCore(DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> mean,
        DeviceTensor<float> std, int channels, int inner);
}
