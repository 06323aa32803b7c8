using System.Globalization;

namespace GpuCnn.Models;

/// <summary>
/// torchvision's Normalize(mean, std) for a model's input: x ↦ (x − mean[c]) / std[c] per channel, applied on the
/// device by <see cref="Sequential"/> before its first layer, in training, evaluation and prediction alike. Model
/// files keep it in their metadata ("normalize"), so a loaded model normalises its input as it was trained to.
/// </summary>
public sealed record ChannelNormalization
{
    /// <summary>A normalisation with one mean and one positive standard deviation per channel.</summary>
    public ChannelNormalization(IReadOnlyList<float> mean, IReadOnlyList<float> std)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        if (mean.Count == 0 || mean.Count != std.Count)
        {
            throw new ArgumentException($"normalize: {mean.Count} means but {std.Count} standard deviations; give one of each per channel.");
        }

        if (mean.Any(m => !float.IsFinite(m)) || std.Any(s => !(s > 0f) || !float.IsFinite(s)))
        {
            throw new ArgumentException($"normalize: means must be finite and standard deviations positive, got {Format(mean, std)}.");
        }

        Mean = [.. mean];
        Std = [.. std];
    }

    /// <summary>The per-channel means.</summary>
    public IReadOnlyList<float> Mean { get; }

    /// <summary>The per-channel standard deviations.</summary>
    public IReadOnlyList<float> Std { get; }

    /// <summary>The channels it normalises.</summary>
    public int Channels => Mean.Count;

    /// <summary>
    /// Parses "MEAN,STD" (the same for every channel) or "M1,…,MC,S1,…,SC" (C means, then C standard deviations) for
    /// inputs of <paramref name="channels"/> channels.
    /// </summary>
    public static ChannelNormalization Parse(string text, int channels)
    {
        ArgumentNullException.ThrowIfNull(text);
        var values = text.Split(',').Select(v => float.TryParse(v.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out float f)
            ? f : throw new ArgumentException($"normalize: '{v.Trim()}' in '{text}' is not a number.")).ToArray();
        if (values.Length == 2)
        {
            return new ChannelNormalization(Enumerable.Repeat(values[0], channels).ToArray(), Enumerable.Repeat(values[1], channels).ToArray());
        }

        if (values.Length != 2 * channels)
        {
            throw new ArgumentException($"normalize: '{text}' has {values.Length} numbers; give MEAN,STD or {channels} means then {channels} standard deviations for {channels}-channel inputs.");
        }

        return new ChannelNormalization(values[..channels], values[channels..]);
    }

    /// <summary>"M1,…,MC,S1,…,SC", what <see cref="Parse"/> reads back.</summary>
    public override string ToString() => Format(Mean, Std);

    /// <inheritdoc/>
    public bool Equals(ChannelNormalization? other) => other is not null && Mean.SequenceEqual(other.Mean) && Std.SequenceEqual(other.Std);

    /// <inheritdoc/>
    public override int GetHashCode() => ToString().GetHashCode(StringComparison.Ordinal);

    private static string Format(IReadOnlyList<float> mean, IReadOnlyList<float> std) =>
        string.Join(",", mean.Concat(std).Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
}

/// <summary>
/// Training-time augmentation on the device: a random crop of each sample from its copy zero-padded by
/// <see cref="CropPadding"/> pixels, and with <see cref="HorizontalFlip"/> a left-right mirror with probability ½
/// (torchvision's RandomCrop(padding=…) then RandomHorizontalFlip). Draws depend only on the seed, epoch, batch and
/// sample. Applied before the input normalisation, as torchvision's pipelines do.
/// </summary>
public sealed record Augmentation(int CropPadding, bool HorizontalFlip)
{
    /// <summary>Parses "crop=PAD", "flip" or both, comma-separated.</summary>
    public static Augmentation Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int padding = 0;
        bool flip = false;
        foreach (string raw in text.Split(','))
        {
            string part = raw.Trim();
            bool crop = part.StartsWith("crop=", StringComparison.OrdinalIgnoreCase);
            if ((crop && padding > 0) || (!crop && flip && part.Equals("flip", StringComparison.OrdinalIgnoreCase)))
            {
                throw new ArgumentException($"augment: '{text}' gives {(crop ? "crop" : "flip")} twice; give each once.");
            }

            if (part.Equals("flip", StringComparison.OrdinalIgnoreCase))
            {
                flip = true;
            }
            else if (crop && int.TryParse(part[5..], NumberStyles.None, CultureInfo.InvariantCulture, out padding) && padding is > 0 and <= 1000)
            {
            }
            else
            {
                throw new ArgumentException($"augment: '{part}' is not crop=PAD (PAD from 1 to 1000) or flip.");
            }
        }

        return new Augmentation(padding, flip);
    }

    /// <summary>"crop=4,flip", what <see cref="Parse"/> reads back.</summary>
    public override string ToString() =>
        string.Join(",", (CropPadding > 0 ? [$"crop={CropPadding.ToString(CultureInfo.InvariantCulture)}"] : Array.Empty<string>())
            .Concat(HorizontalFlip ? ["flip"] : Array.Empty<string>()));
}
