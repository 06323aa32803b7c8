using System.Runtime.CompilerServices;

namespace GpuCnn;

/// <summary>An immutable tensor shape, outermost dimension first (NCHW for images). Write it as <c>[n, c, h, w]</c>.</summary>
[CollectionBuilder(typeof(Shape), nameof(Create))]
public readonly struct Shape : IEquatable<Shape>
{
    private readonly int[]? _dims; // null in default(Shape), which is the scalar shape (), as new Shape() reads
    private readonly int _size;

    /// <summary>
    /// The most elements a tensor holds: 2³¹ − 1 less 4,096 (2,147,479,551), so that no kernel's int loop counter or
    /// launch size wraps on a GPU large enough to hold such a tensor (.NET's arrays stop 4,040 higher anyway).
    /// </summary>
    public const int MaximumElements = GeometryChecks.MaximumElements;

    /// <summary>Creates a shape; every dimension must be positive and the product at most <see cref="MaximumElements"/>.</summary>
    public Shape(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        long size = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(dims), $"Shape ({string.Join(",", dims)}): dimension {i} is {dims[i]}; every dimension must be positive.");
            }

            size *= dims[i];
            if (size > MaximumElements)
            {
                throw new ArgumentOutOfRangeException(nameof(dims), $"Shape ({string.Join(",", dims)}) holds more than {MaximumElements} elements.");
            }
        }

        _dims = (int[])dims.Clone();
        _size = (int)size;
    }

    /// <summary>Builds a shape from a collection expression such as <c>[2, 3]</c>.</summary>
    public static Shape Create(ReadOnlySpan<int> dims) => new(dims.ToArray());

    /// <summary>Enumerates the dimensions.</summary>
    public ReadOnlySpan<int>.Enumerator GetEnumerator() => new ReadOnlySpan<int>(_dims ?? []).GetEnumerator();

    /// <summary>The number of dimensions.</summary>
    public int Rank => _dims?.Length ?? 0;

    /// <summary>The number of elements (the product of the dimensions; 1 for a scalar shape).</summary>
    public int Size => _dims is null ? 1 : _size;

    /// <summary>Dimension <paramref name="axis"/>.</summary>
    public int this[int axis] => (_dims ?? [])[axis];

    /// <summary>The dimensions as a fresh array.</summary>
    public int[] ToArray() => (int[])(_dims ?? []).Clone();

    /// <summary>The product of the dimensions from <paramref name="axis"/> on (the row length of a flattened tensor).</summary>
    public int SizeFrom(int axis)
    {
        int size = 1;
        for (int i = axis; i < Rank; i++)
        {
            size *= this[i];
        }

        return size;
    }

    /// <inheritdoc/>
    public bool Equals(Shape other) => (_dims ?? []).AsSpan().SequenceEqual(other._dims ?? []);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Shape other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (int d in _dims ?? [])
        {
            hash.Add(d);
        }

        return hash.ToHashCode();
    }

    /// <summary>Shape equality.</summary>
    public static bool operator ==(Shape left, Shape right) => left.Equals(right);

    /// <summary>Shape inequality.</summary>
    public static bool operator !=(Shape left, Shape right) => !left.Equals(right);

    /// <summary>"(2,3,28,28)".</summary>
    public override string ToString() => $"({string.Join(",", _dims ?? [])})";

    /// <summary>Implicit conversion from the dimensions.</summary>
    public static implicit operator Shape(int[] dims) => new(dims);

    /// <summary>Same as the implicit conversion, for languages without it.</summary>
    public static Shape FromArray(int[] dims) => new(dims);
}
