namespace GpuCnn;

/// <summary>
/// A tensor resident on one backend's device (accelerator memory, or host memory for CPU backends). Values move
/// between host and device only through the backend's Upload and Download methods.
/// </summary>
/// <typeparam name="T">float for values, int for switch masks and labels.</typeparam>
public abstract class DeviceTensor<T> : IDisposable
    where T : unmanaged
{
    private readonly DeviceTensor<T>? _viewOf;
    private int _disposed; // 1 once disposed: set by one Interlocked exchange, so two threads disposing at once release once

    /// <summary>Creates the handle; backends call this. <paramref name="viewOf"/> is the owner of shared storage.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA1816", Justification = "A view has no storage for its finalizer to forget.")]
    protected DeviceTensor(Backend backend, Shape shape, DeviceTensor<T>? viewOf = null)
    {
        Backend = backend;
        Shape = shape;
        _viewOf = viewOf?._viewOf ?? viewOf;
        if (_viewOf is not null)
        {
            GC.SuppressFinalize(this); // a view owns no storage: nothing to forget
        }
    }

    /// <summary>
    /// An owner dropped without <see cref="Dispose"/>: its storage goes with it (a host array to the garbage collector,
    /// an ILGPU buffer to ILGPU's own finalizer), and the backend stops counting it, so that
    /// <see cref="Backend.BytesAllocated"/> and a memory limit do not count memory that is gone.
    /// </summary>
    ~DeviceTensor()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Forget();
        }
    }

    /// <summary>
    /// Stops counting this owner's storage, from the finalizer thread: no locks, no device calls (ILGPU's buffer frees
    /// itself there).
    /// </summary>
    private protected virtual void Forget()
    {
    }

    /// <summary>The backend that owns the storage.</summary>
    public Backend Backend { get; }

    /// <summary>The shape.</summary>
    public Shape Shape { get; }

    /// <summary>The element count.</summary>
    public int Length => Shape.Size;

    /// <summary>Whether this tensor, or the tensor whose storage it views, has been disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0 || (_viewOf?.IsDisposed ?? false);

    /// <summary>
    /// A view of the same storage with another shape of the same size (no copy), as PyTorch's view. Disposing the
    /// view frees nothing; disposing the owner invalidates its views.
    /// </summary>
    public DeviceTensor<T> View(Shape shape)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (shape.Rank == 0)
        {
            throw new ArgumentException($"View: a tensor has at least one dimension (as Allocate takes it); view {Shape} as ({Shape.Size}) instead.", nameof(shape));
        }

        if (shape.Size != Shape.Size)
        {
            throw new ArgumentException($"View: cannot view {Shape} ({Shape.Size} elements) as {shape} ({shape.Size} elements).", nameof(shape));
        }

        return CreateView(shape);
    }

    /// <summary>Whether this tensor and <paramref name="other"/> are the same storage (one owner, or views of it).</summary>
    public bool SharesStorageWith(DeviceTensor<T> other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return ReferenceEquals(_viewOf ?? this, other._viewOf ?? other);
    }

    /// <summary>The tensor that owns this one's storage (itself, unless it is a view).</summary>
    internal DeviceTensor<T> Storage => _viewOf ?? this;

    /// <summary>On a storage owner: the last list check that met it (<see cref="Checks.Unaliased"/>).</summary>
    internal long ListedStamp { get; set; }

    /// <summary>
    /// Whether the tensor is lent by a model or optimizer that owns it — a layer's output or input gradient, a
    /// parameter, a buffer, an optimizer's state — and reuses it: <see cref="Dispose"/> then does nothing (so
    /// <c>using var y = model.Forward(x)</c> is harmless), the owner frees it when it is disposed, and its values hold
    /// until the owner's next call (copy them with Download to keep them).
    /// </summary>
    public bool IsLent { get; private set; }

    /// <summary>Marks the tensor as lent by its owner (see <see cref="IsLent"/>); returns it.</summary>
    internal DeviceTensor<T> Lend()
    {
        IsLent = true;
        return this;
    }

    /// <summary>The owner frees a tensor it lent.</summary>
    internal void Reclaim()
    {
        IsLent = false;
        Dispose();
    }

    /// <summary>Frees the device storage (a view frees nothing; a lent tensor is freed by its owner, not here).</summary>
    public void Dispose()
    {
        if (IsLent)
        {
            return;
        }

        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            if (_viewOf is null)
            {
                Release();
            }

            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Frees the storage; called once, for owners only.</summary>
    protected abstract void Release();

    /// <summary>A tensor object sharing this storage with another shape.</summary>
    protected abstract DeviceTensor<T> CreateView(Shape shape);

    /// <inheritdoc/>
    public override string ToString() => $"{typeof(T).Name}{Shape} on {Backend.Name}";
}
