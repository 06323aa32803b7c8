namespace GpuCnn.Tests.Support;

/// <summary>Seeded inputs that are exactly representable in float, so float backends and the double reference see the same numbers.</summary>
public static class TestData
{
    public static float[] Uniform(int count, int seed, float low = -1f, float high = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = low + (high - low) * random.NextSingle();
        }

        return values;
    }

    /// <summary>Distinct values spaced at least 1/count apart, in shuffled order: pooling inputs without ties.</summary>
    public static float[] Distinct(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (i - count / 2f) / count * 4f;
        }

        random.Shuffle(values);
        return values;
    }

    /// <summary>Uniform values kept at least <paramref name="gap"/> away from zero (ReLU's kink).</summary>
    public static float[] AwayFromZero(int count, int seed, float gap = 0.05f)
    {
        var values = Uniform(count, seed);
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = values[i] >= 0 ? values[i] + gap : values[i] - gap;
        }

        return values;
    }

    public static int[] Labels(int count, int classes, int seed)
    {
        var random = new Random(seed);
        var labels = new int[count];
        for (int i = 0; i < count; i++)
        {
            labels[i] = random.Next(classes);
        }

        return labels;
    }

    public static double[] Widen(float[] values) => Array.ConvertAll(values, v => (double)v);
}
