namespace GpuCnn;

/// <summary>
/// A tensor resident on one backend's device (accelerator memory, or host memory for CPU backends). Values move
/// between host and device only through the backend's Upload and Download methods.
/// </summary>
/// <typeparam name="T">float for values, int for switch masks and labels.</typeparam>
public abstract class DeviceTensor<T> : IDisposable
    where T : unmanaged
{
    /// <summary>Creates the handle; backends call this.</summary>
    protected DeviceTensor(Backend backend, Shape shape)
    {
        Backend = backend;
        Shape = shape;
    }

    /// <summary>The backend that owns the storage.</summary>
    public Backend Backend { get; }

    /// <summary>The shape.</summary>
    public Shape Shape { get; private set; }

    /// <summary>The element count.</summary>
    public int Length => Shape.Size;

    /// <summary>Whether <see cref="Dispose()"/> has run.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>Reinterprets the same storage with another shape of the same size (no copy), as PyTorch's view.</summary>
    public void Reshape(Shape shape)
    {
        if (shape.Size != Shape.Size)
        {
            throw new ArgumentException($"Reshape: cannot view {Shape} ({Shape.Size} elements) as {shape} ({shape.Size} elements).", nameof(shape));
        }

        Shape = shape;
    }

    /// <summary>Frees the device storage.</summary>
    public void Dispose()
    {
        if (!IsDisposed)
        {
            IsDisposed = true;
            Release();
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Frees the storage; called once.</summary>
    protected abstract void Release();

    /// <inheritdoc/>
    public override string ToString() => $"{typeof(T).Name}{Shape} on {Backend.Name}";
}
