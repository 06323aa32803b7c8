namespace GpuCnn.IO;

/// <summary>Checks on data as it is loaded, so a bad file fails at once, naming itself, instead of spoiling a run.</summary>
public static class DataChecks
{
    /// <summary>
    /// Throws a <see cref="FileFormatException"/> when <paramref name="images"/> (N, …) holds NaN or ±∞, naming
    /// <paramref name="source"/>, how many values and the first sample (0-based) that has one: one such value turns
    /// every weight it reaches into NaN after a single training step.
    /// </summary>
    public static void RequireFinite(Tensor images, string source)
    {
        ArgumentNullException.ThrowIfNull(images);
        var data = images.Data;
        int count = 0, first = -1;
        for (int i = 0; i < data.Length; i++)
        {
            if (!float.IsFinite(data[i]))
            {
                count++;
                first = first < 0 ? i : first;
            }
        }

        if (count > 0)
        {
            int sample = first / Math.Max(1, images.Shape.SizeFrom(1));
            throw new FileFormatException(
                $"{source}: {count} non-finite value{(count == 1 ? "" : "s")} (NaN or ±∞) in the images, the first in sample {sample} (0-based); fix or drop those samples.");
        }
    }
}
