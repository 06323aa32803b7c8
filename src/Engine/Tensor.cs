namespace GpuCnn;

/// <summary>A host tensor: float32 values in flat row-major (NCHW) storage with a checked shape.</summary>
public sealed class Tensor
{
    /// <summary>Wraps <paramref name="data"/> (not copied); its length must equal the shape's size.</summary>
    public Tensor(Shape shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Length != shape.Size)
        {
            throw new ArgumentException($"Tensor: shape {shape} needs {shape.Size} values but the data has {data.Length}.", nameof(data));
        }

        Shape = shape;
        Data = data;
    }

    /// <summary>A zero tensor of the given shape.</summary>
    public Tensor(Shape shape)
        : this(shape, new float[shape.Size])
    {
    }

    /// <summary>The shape.</summary>
    public Shape Shape { get; }

    /// <summary>The values in row-major order.</summary>
    public float[] Data { get; }

    /// <summary>The element at the given multi-index (checked).</summary>
    public float this[params int[] index]
    {
        get => Data[FlatIndex(index)];
        set => Data[FlatIndex(index)] = value;
    }

    /// <summary>The row-major flat position of a multi-index, checked against the shape.</summary>
    public int FlatIndex(params int[] index)
    {
        ArgumentNullException.ThrowIfNull(index);
        if (index.Length != Shape.Rank)
        {
            throw new ArgumentException($"Tensor: index of rank {index.Length} for a tensor of shape {Shape}.", nameof(index));
        }

        int flat = 0;
        for (int i = 0; i < index.Length; i++)
        {
            if ((uint)index[i] >= (uint)Shape[i])
            {
                throw new ArgumentOutOfRangeException(nameof(index), $"Tensor: index {index[i]} on axis {i} is outside shape {Shape}.");
            }

            flat = flat * Shape[i] + index[i];
        }

        return flat;
    }

    /// <summary>A tensor of the given shape filled with seeded uniform values in [low, high).</summary>
    public static Tensor Random(Shape shape, int seed, float low = -1f, float high = 1f)
    {
        var random = new Random(seed);
        var data = new float[shape.Size];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = low + (high - low) * random.NextSingle();
        }

        return new Tensor(shape, data);
    }
}
