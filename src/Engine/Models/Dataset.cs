namespace GpuCnn.Models;

/// <summary>Images (N, C, H, W) with integer class labels (N).</summary>
public sealed class Dataset
{
    /// <summary>Pairs images with labels; their counts must agree.</summary>
    public Dataset(Tensor images, int[] labels)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.Shape.Rank < 2)
        {
            throw new ArgumentException($"Dataset: images must be (N, …), got {images.Shape}.", nameof(images));
        }

        if (images.Shape[0] != labels.Length)
        {
            throw new ArgumentException($"Dataset: {images.Shape[0]} images but {labels.Length} labels; the counts must match.", nameof(labels));
        }

        Images = images;
        Labels = labels;
    }

    /// <summary>The images.</summary>
    public Tensor Images { get; }

    /// <summary>The labels.</summary>
    public int[] Labels { get; }

    /// <summary>Where the samples came from (files or a folder), named in the errors about them; null when not said.</summary>
    public string? Source { get; init; }

    /// <summary>The number of samples.</summary>
    public int Count => Labels.Length;

    /// <summary>Throws when a label lies outside [0, classes), naming the first bad sample.</summary>
    internal void ValidateLabels(int classes, string what) => Checks.Labels(what, Labels, classes);
}
