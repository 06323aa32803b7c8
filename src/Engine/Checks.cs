namespace GpuCnn;

/// <summary>Argument checks whose messages name the operation, the argument, what was expected and what came.</summary>
internal static class Checks
{
    /// <summary>The tensor must live on <paramref name="backend"/>, be undisposed, and have exactly <paramref name="expected"/>.</summary>
    public static void Tensor<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend, Shape expected)
        where T : unmanaged
    {
        Owned(operation, argument, tensor, backend);
        if (tensor!.Shape != expected)
        {
            throw new ArgumentException($"{operation}: {argument} has shape {tensor.Shape}, expected {expected}.", argument);
        }
    }

    /// <summary>
    /// The tensor must live on <paramref name="backend"/>, be undisposed, and have exactly the dimensions
    /// <paramref name="expected"/> (no allocation unless it fails: this runs on every operation).
    /// </summary>
    public static void Dims<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend, params ReadOnlySpan<int> expected)
        where T : unmanaged
    {
        Owned(operation, argument, tensor, backend);
        var shape = tensor!.Shape;
        bool same = shape.Rank == expected.Length;
        for (int i = 0; same && i < expected.Length; i++)
        {
            same = shape[i] == expected[i];
        }

        if (!same)
        {
            throw new ArgumentException($"{operation}: {argument} has shape {shape}, expected ({string.Join(",", expected.ToArray())}).", argument);
        }
    }

    /// <summary>The tensor must live on <paramref name="backend"/>, be undisposed, and hold <paramref name="length"/> elements.</summary>
    public static void Length<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend, int length)
        where T : unmanaged
    {
        Owned(operation, argument, tensor, backend);
        if (tensor!.Length != length)
        {
            throw new ArgumentException($"{operation}: {argument} has shape {tensor.Shape} ({tensor.Length} elements), expected {length} elements.", argument);
        }
    }

    /// <summary>The tensor must be non-null, undisposed and owned by <paramref name="backend"/>.</summary>
    public static void Owned<T>(string operation, string argument, DeviceTensor<T>? tensor, Backend backend)
        where T : unmanaged
    {
        if (tensor is null)
        {
            throw new ArgumentNullException(argument, $"{operation}: {argument} is null.");
        }

        if (tensor.IsDisposed)
        {
            throw new ObjectDisposedException(argument, $"{operation}: {argument} {tensor.Shape} has been disposed.");
        }

        if (!ReferenceEquals(tensor.Backend, backend))
        {
            throw new ArgumentException($"{operation}: {argument} lives on backend '{tensor.Backend.Name}', not on '{backend.Name}'; move it with Download/Upload.", argument);
        }
    }

    /// <summary>The value must be finite and ≥ 0.</summary>
    public static void FiniteNonNegative(string operation, string argument, float value)
    {
        if (!float.IsFinite(value) || value < 0f)
        {
            throw new ArgumentOutOfRangeException(argument, value, $"{operation}: {argument} must be a finite number ≥ 0, got {value}.");
        }
    }

    /// <summary>The value must be positive.</summary>
    public static void Positive(string operation, string argument, int value)
    {
        if (value <= 0)
        {
            throw new ArgumentOutOfRangeException(argument, value, $"{operation}: {argument} must be positive, got {value}.");
        }
    }
}
