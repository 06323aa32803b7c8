using GpuCnn.Kernels;

namespace GpuCnn;

/// <summary>
/// The one abstraction layers call: coarse CNN operations on device-resident tensors. Each public method checks its
/// arguments (shapes, ownership, hyperparameters) with messages that name the operation and argument, then calls
/// the backend's core implementation. Implementations: the naive reference (GpuCnn.Engine.Cpu) and the ILGPU
/// backend (CUDA, OpenCL, ILGPU's CPU accelerator). Operations may run asynchronously; <see cref="Download{T}"/>
/// and <see cref="Synchronize"/> wait for them.
/// </summary>
public abstract partial class Backend : IDisposable
{
    /// <summary>The selection name: "reference", "cpu", "ilgpu-cpu", "cuda", "opencl".</summary>
    public abstract string Name { get; }

    /// <summary>A human-readable device description.</summary>
    public abstract string DeviceName { get; }

    /// <summary>Bytes of device memory currently held by tensors and workspaces of this backend.</summary>
    public abstract long BytesAllocated { get; }

    private long _tensorsForgotten;

    /// <summary>
    /// Tensors of this backend finalized without Dispose (their storage went with them, and they stopped being counted
    /// in <see cref="BytesAllocated"/>): the leak tests read it after a full collection, since a leak no longer shows
    /// in the bytes once the collector has run.
    /// </summary>
    internal long TensorsForgotten => Interlocked.Read(ref _tensorsForgotten);

    /// <summary>Counts a tensor finalized undisposed (from its finalizer).</summary>
    private protected void Forgotten() => Interlocked.Increment(ref _tensorsForgotten);

    /// <summary>
    /// A cap on <see cref="BytesAllocated"/> for tensors (like PyTorch's per-process memory fraction); an allocation
    /// past it throws <see cref="DeviceOutOfMemoryException"/>. Unlimited by default.
    /// </summary>
    public long MemoryLimitBytes
    {
        get;
        set => field = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "MemoryLimitBytes: a limit of memory must be ≥ 0 bytes.");
    } = long.MaxValue;

    // ---------------------------------------------------------------- memory

    /// <summary>Allocates an uninitialised tensor (contents unspecified).</summary>
    public DeviceTensor<T> Allocate<T>(Shape shape)
        where T : unmanaged
    {
        using var operation = EnterOperation();
        if (shape.Rank == 0)
        {
            throw new ArgumentException("Allocate: shape must have at least one dimension.", nameof(shape));
        }

        long bytes = (long)shape.Size * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        if (BytesAllocated + bytes > MemoryLimitBytes)
        {
            throw new DeviceOutOfMemoryException(
                $"{Name}: out of device memory allocating {typeof(T).Name}{shape} ({FormatBytes(bytes)}) with {FormatBytes(BytesAllocated)} " +
                $"already in use and a limit of {FormatBytes(MemoryLimitBytes)}; use smaller batches.");
        }

        return AllocateCore<T>(shape);
    }

    /// <summary>
    /// A new tensor with every element <paramref name="value"/>; freed again if the fill fails, so that what builds
    /// models and optimizers leaves nothing allocated behind an error.
    /// </summary>
    internal DeviceTensor<float> AllocateFilled(Shape shape, float value)
    {
        var tensor = Allocate<float>(shape);
        try
        {
            Fill(tensor, value);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }

        return tensor;
    }

    /// <summary>Allocates a tensor holding a copy of <paramref name="values"/>.</summary>
    public DeviceTensor<T> Upload<T>(Shape shape, ReadOnlySpan<T> values)
        where T : unmanaged
    {
        using var operation = EnterOperation();
        if (values.Length != shape.Size)
        {
            // Before allocating: a tensor made and then refused would stay counted against the memory limit.
            throw new ArgumentException($"Upload: shape {shape} holds {shape.Size} elements, the values {values.Length}.", nameof(values));
        }

        var tensor = Allocate<T>(shape);
        try
        {
            Upload(values, tensor);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }

        return tensor;
    }

    /// <summary>Allocates a tensor holding a copy of the host tensor.</summary>
    public DeviceTensor<float> Upload(Tensor tensor)
    {
        using var operation = EnterOperation();
        ArgumentNullException.ThrowIfNull(tensor);
        return Upload<float>(tensor.Shape, tensor.Data);
    }

    /// <summary>Copies host values into an existing device tensor of the same length.</summary>
    public void Upload<T>(ReadOnlySpan<T> source, DeviceTensor<T> destination)
        where T : unmanaged
    {
        using var operation = EnterOperation();
        Checks.Length("Upload", nameof(destination), destination, this, source.Length);
        UploadCore(source, destination);
    }

    /// <summary>Waits for pending work and copies the device tensor into <paramref name="destination"/>.</summary>
    public void Download<T>(DeviceTensor<T> source, Span<T> destination)
        where T : unmanaged
    {
        using var operation = EnterOperation();
        Checks.Owned("Download", nameof(source), source, this);
        if (destination.Length != source.Length)
        {
            throw new ArgumentException($"Download: destination holds {destination.Length} elements, source {source.Shape} holds {source.Length}.", nameof(destination));
        }

        DownloadCore(source, destination);
    }

    /// <summary>Downloads a float tensor into a new host tensor of the same shape.</summary>
    public Tensor Download(DeviceTensor<float> source)
    {
        using var operation = EnterOperation();
        Checks.Owned("Download", nameof(source), source, this);
        var host = new Tensor(source.Shape);
        DownloadCore(source, host.Data);
        return host;
    }

    /// <summary>Downloads a tensor into a new array.</summary>
    public T[] DownloadArray<T>(DeviceTensor<T> source)
        where T : unmanaged
    {
        using var operation = EnterOperation();
        Checks.Owned("Download", nameof(source), source, this);
        var values = new T[source.Length];
        DownloadCore<T>(source, values);
        return values;
    }

    /// <summary>Sets every element to <paramref name="value"/>.</summary>
    public void Fill(DeviceTensor<float> tensor, float value)
    {
        using var operation = EnterOperation();
        Checks.Owned("Fill", nameof(tensor), tensor, this);
        FillCore(tensor, value);
    }

    /// <summary>Waits until all queued work has finished.</summary>
    public void Synchronize()
    {
        using var operation = EnterOperation();
        SynchronizeCore();
    }

    /// <summary>
    /// Enters the backend's operation lock until the scope is disposed. Every public operation takes it first, so
    /// threads sharing a backend take turns operation by operation: an operation's scratch buffers, the CPU backend's
    /// worker team and a GPU's stream are the backend's, not the caller's. Re-entrant: an operation may call another.
    /// A backend's own public operations beyond these (a benchmark's timing, say) take it too. A disposed backend
    /// throws <see cref="ObjectDisposedException"/> here (another thread may have disposed it between two operations).
    /// </summary>
    protected Lock.Scope EnterOperation()
    {
        var scope = _operations.EnterScope();
        if (_disposed)
        {
            scope.Dispose();
            throw new ObjectDisposedException(GetType().Name, $"{Name}: the backend has been disposed; nothing can run on it.");
        }

        return scope;
    }

    /// <summary>The operation lock without the disposed check: for freeing a tensor, which may outlive its backend.</summary>
    private protected Lock.Scope EnterRelease() => _operations.EnterScope();

    private readonly Lock _operations = new();

    // ---------------------------------------------------------------- convolution

    /// <summary>y (N,K,P,Q) = conv(x (N,C,H,W), w (K,C,R,S)) + b (K); PyTorch's cross-correlation. b may be null.</summary>
    public void Conv2dForward(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float>? b,
        DeviceTensor<float> y) => Conv2dForward(g, x, w, b, y, default(Identity));

    /// <summary>
    /// y = f(conv(x, w) + b): a convolution layer with the activation after it, fused (the ILGPU kernels and the CPU
    /// backend apply bias and activation as each output is stored).
    /// </summary>
    public void Conv2dForward<TF>(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float>? b,
        DeviceTensor<float> y, TF activation)
        where TF : struct, IActivationFunction
    {
        using var operation = EnterOperation();
        const string op = "Conv2dForward";
        g.Validate(op);
        Checks.Dims(op, nameof(x), x, this, g.N, g.C, g.H, g.W);
        Checks.Dims(op, nameof(w), w, this, g.K, g.GroupChannels, g.R, g.S);
        if (b is not null)
        {
            Checks.Dims(op, nameof(b), b, this, g.K);
        }

        Checks.Dims(op, nameof(y), y, this, g.N, g.K, g.P, g.Q);
        Checks.WrittenApart(op, nameof(y), y, (nameof(x), x), (nameof(w), w), (nameof(b), b));
        Conv2dForwardCore(g, x, w, b, y, activation);
    }

    /// <summary>
    /// dx (N,C,H,W) = full convolution of dy (N,K,P,Q), dilated by the stride and padded, with the 180°-rotated
    /// kernel w (K,C,R,S).
    /// </summary>
    public void Conv2dBackwardData(Conv2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> w, DeviceTensor<float> dx)
    {
        using var operation = EnterOperation();
        const string op = "Conv2dBackwardData";
        g.Validate(op);
        Checks.Dims(op, nameof(dy), dy, this, g.N, g.K, g.P, g.Q);
        Checks.Dims(op, nameof(w), w, this, g.K, g.GroupChannels, g.R, g.S);
        Checks.Dims(op, nameof(dx), dx, this, g.N, g.C, g.H, g.W);
        Checks.WrittenApart(op, nameof(dx), dx, (nameof(dy), dy), (nameof(w), w));
        Conv2dBackwardDataCore(g, dy, w, dx);
    }

    /// <summary>
    /// dw (K,C,R,S) = valid correlation of x (N,C,H,W) with dy (N,K,P,Q), summed over the batch; db (K) = Σ dy over
    /// n, p, q when db is not null. Both are overwritten, not accumulated.
    /// </summary>
    public void Conv2dBackwardFilter(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> dw, DeviceTensor<float>? db)
    {
        using var operation = EnterOperation();
        const string op = "Conv2dBackwardFilter";
        g.Validate(op);
        Checks.Dims(op, nameof(x), x, this, g.N, g.C, g.H, g.W);
        Checks.Dims(op, nameof(dy), dy, this, g.N, g.K, g.P, g.Q);
        Checks.Dims(op, nameof(dw), dw, this, g.K, g.GroupChannels, g.R, g.S);
        if (db is not null)
        {
            Checks.Dims(op, nameof(db), db, this, g.K);
            Checks.WrittenApart(op, nameof(db), db, (nameof(x), x), (nameof(dy), dy), (nameof(dw), dw));
        }

        Checks.WrittenApart(op, nameof(dw), dw, (nameof(x), x), (nameof(dy), dy));
        Conv2dBackwardFilterCore(g, x, dy, dw, db);
    }

    // ---------------------------------------------------------------- pooling

    /// <summary>y (N,C,P,Q) = window max of x (N,C,H,W); switches (N,C,P,Q) = the arg-max's index h·W + w in its plane.</summary>
    public void MaxPool2dForward(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<int> switches)
    {
        using var operation = EnterOperation();
        const string op = "MaxPool2dForward";
        g.Validate(op);
        Checks.Dims(op, nameof(x), x, this, g.N, g.C, g.H, g.W);
        Checks.Dims(op, nameof(y), y, this, g.N, g.C, g.P, g.Q);
        Checks.Dims(op, nameof(switches), switches, this, g.N, g.C, g.P, g.Q);
        Checks.WrittenApart(op, nameof(y), y, (nameof(x), x));
        MaxPool2dForwardCore(g, x, y, switches);
    }

    /// <summary>
    /// dx (N,C,H,W) = each dy (N,C,P,Q) routed to its switch; overlapping windows add up. The switches must be those
    /// MaxPool2dForward wrote for this geometry: on the host backends one outside its plane is an
    /// <see cref="ArgumentException"/> (dx then unspecified), on a GPU it sends nothing (docs/03-pooling.md).
    /// </summary>
    public void MaxPool2dBackward(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<int> switches, DeviceTensor<float> dx)
    {
        using var operation = EnterOperation();
        const string op = "MaxPool2dBackward";
        g.Validate(op);
        Checks.Dims(op, nameof(dy), dy, this, g.N, g.C, g.P, g.Q);
        Checks.Dims(op, nameof(switches), switches, this, g.N, g.C, g.P, g.Q);
        Checks.Dims(op, nameof(dx), dx, this, g.N, g.C, g.H, g.W);
        Checks.WrittenApart(op, nameof(dx), dx, (nameof(dy), dy));
        MaxPool2dBackwardCore(g, dy, switches, dx);
    }

    /// <summary>
    /// y (N,C,P,Q) = window mean of x (N,C,H,W): each window's sum divided by <see cref="Pool2dGeometry.WindowArea"/>,
    /// zero padding counted unless <see cref="Pool2dGeometry.CountIncludePad"/> is false.
    /// </summary>
    public void AvgPool2dForward(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y)
    {
        using var operation = EnterOperation();
        const string op = "AvgPool2dForward";
        g.Validate(op);
        Checks.Dims(op, nameof(x), x, this, g.N, g.C, g.H, g.W);
        Checks.Dims(op, nameof(y), y, this, g.N, g.C, g.P, g.Q);
        Checks.WrittenApart(op, nameof(y), y, (nameof(x), x));
        AvgPool2dForwardCore(g, x, y);
    }

    /// <summary>dx (N,C,H,W) = Σ over the windows containing each element of dy / that window's <see cref="Pool2dGeometry.WindowArea"/>.</summary>
    public void AvgPool2dBackward(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx)
    {
        using var operation = EnterOperation();
        const string op = "AvgPool2dBackward";
        g.Validate(op);
        Checks.Dims(op, nameof(dy), dy, this, g.N, g.C, g.P, g.Q);
        Checks.Dims(op, nameof(dx), dx, this, g.N, g.C, g.H, g.W);
        Checks.WrittenApart(op, nameof(dx), dx, (nameof(dy), dy));
        AvgPool2dBackwardCore(g, dy, dx);
    }

    // ---------------------------------------------------------------- dense algebra

    /// <summary>
    /// C (M×N) = α·op(A)·op(B) + β·C on row-major data: A holds M×K values (K×M when <paramref name="transposeA"/>),
    /// B holds K×N (N×K when <paramref name="transposeB"/>). With β = 0, C's old values are never read.
    /// </summary>
    public void Gemm(bool transposeA, bool transposeB, int m, int n, int k, float alpha, DeviceTensor<float> a,
        DeviceTensor<float> b, float beta, DeviceTensor<float> c)
    {
        using var operation = EnterOperation();
        const string op = "Gemm";
        Checks.Positive(op, nameof(m), m);
        Checks.Positive(op, nameof(n), n);
        Checks.Positive(op, nameof(k), k);
        Checks.Length(op, nameof(a), a, this, (long)m * k); // in long: a product past int is a wrong size, not an overflow
        Checks.Length(op, nameof(b), b, this, (long)k * n);
        Checks.Length(op, nameof(c), c, this, (long)m * n);
        Checks.WrittenApart(op, nameof(c), c, (nameof(a), a), (nameof(b), b));
        if (!float.IsFinite(alpha) || !float.IsFinite(beta))
        {
            throw new ArgumentOutOfRangeException(nameof(alpha), string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{op}: alpha and beta must be finite, got {alpha} and {beta}."));
        }

        GemmCore(new GemmShape(m, n, k, transposeA ? 1 : 0, transposeB ? 1 : 0, alpha, beta), a, b, c);
    }

    /// <summary>
    /// A dense layer, fused: y (N, out) = f(x · Wᵀ + b) with x holding N·in values, w (out, in) as PyTorch's Linear,
    /// b (out), and f = <paramref name="activation"/> (<see cref="Identity"/> for none). Backends may compute it in one
    /// pass (the ILGPU GEMM applies bias and activation in its epilogue).
    /// </summary>
    public void LinearForward<TF>(DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float> b, DeviceTensor<float> y,
        TF activation)
        where TF : struct, IActivationFunction
    {
        using var operation = EnterOperation();
        const string op = "LinearForward";
        Checks.Owned(op, nameof(w), w, this);
        if (w.Shape.Rank != 2)
        {
            throw new ArgumentException($"{op}: w must be (out, in), got {w.Shape}.", nameof(w));
        }

        int outFeatures = w.Shape[0], inFeatures = w.Shape[1];
        Checks.Owned(op, nameof(y), y, this);
        Checks.Dims(op, nameof(y), y, this, y.Shape[0], outFeatures);
        Checks.Length(op, nameof(x), x, this, (long)y.Shape[0] * inFeatures);
        Checks.Dims(op, nameof(b), b, this, outFeatures);
        Checks.WrittenApart(op, nameof(y), y, (nameof(x), x), (nameof(w), w), (nameof(b), b));
        LinearForwardCore(x, w, b, y, activation);
    }

    /// <summary>y (N, C, …) += b (C): the bias broadcast over the batch and every position after axis 1.</summary>
    public void BiasAdd(DeviceTensor<float> y, DeviceTensor<float> b)
    {
        using var operation = EnterOperation();
        const string op = "BiasAdd";
        Checks.Owned(op, nameof(y), y, this);
        RequireRank(op, nameof(y), y.Shape, 2);
        Checks.Dims(op, nameof(b), b, this, y.Shape[1]);
        BiasAddCore(y, b, y.Shape[0], y.Shape[1], y.Shape.SizeFrom(2));
    }

    /// <summary>db (C) = Σ dy (N, C, …) over the batch and every position after axis 1.</summary>
    public void BiasGradient(DeviceTensor<float> dy, DeviceTensor<float> db)
    {
        using var operation = EnterOperation();
        const string op = "BiasGradient";
        Checks.Owned(op, nameof(dy), dy, this);
        RequireRank(op, nameof(dy), dy.Shape, 2);
        Checks.Dims(op, nameof(db), db, this, dy.Shape[1]);
        Checks.WrittenApart(op, nameof(db), db, (nameof(dy), dy));
        BiasGradientCore(dy, db, dy.Shape[0], dy.Shape[1], dy.Shape.SizeFrom(2));
    }

    /// <summary>y = f(x) elementwise; y may be x.</summary>
    public void ActivationForward<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y)
        where TF : struct, IActivationFunction
    {
        using var operation = EnterOperation();
        const string op = "ActivationForward";
        Checks.Owned(op, nameof(x), x, this);
        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        ActivationForwardCore(f, x, y);
    }

    /// <summary>dx = dy·f′(x), from the input x and the output y = f(x); dx may be dy.</summary>
    public void ActivationBackward<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> dy,
        DeviceTensor<float> dx)
        where TF : struct, IActivationFunction
    {
        using var operation = EnterOperation();
        const string op = "ActivationBackward";
        Checks.Owned(op, nameof(x), x, this);
        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        Checks.Tensor(op, nameof(dy), dy, this, x.Shape);
        Checks.Tensor(op, nameof(dx), dx, this, x.Shape);
        ActivationBackwardCore(f, x, y, dy, dx);
    }

    /// <summary>
    /// dx = dy·f′ from the output y = f(x) alone, for functions that allow it (what remains of a layer that applied
    /// f as it stored); dx may be dy.
    /// </summary>
    public void ActivationBackwardFromOutput<TF>(TF f, DeviceTensor<float> y, DeviceTensor<float> dy, DeviceTensor<float> dx)
        where TF : struct, IDerivativeFromOutput
    {
        using var operation = EnterOperation();
        const string op = "ActivationBackwardFromOutput";
        if (!f.DerivableFromOutput)
        {
            throw new ArgumentException($"{op}: {f.Spec} has no derivative from its output alone.", nameof(f));
        }

        Checks.Owned(op, nameof(y), y, this);
        Checks.Tensor(op, nameof(dy), dy, this, y.Shape);
        Checks.Tensor(op, nameof(dx), dx, this, y.Shape);
        ActivationBackwardFromOutputCore(f, y, dy, dx);
    }

    /// <summary>
    /// Fused softmax + cross-entropy over logits (N, K classes) and labels (N): loss (1) = mean over the batch of
    /// −Σ_j q_j·log softmax(z)_j with q = (1 − ε)·onehot(label) + ε/K, ε = <paramref name="labelSmoothing"/> as
    /// PyTorch's cross_entropy(label_smoothing=ε); dlogits (N, K) = (softmax − q) / N. Labels must lie in [0, K): the
    /// host backends throw <see cref="ArgumentException"/> naming the sample, an ILGPU device (which cannot
    /// throw without a synchronisation) makes the loss and that sample's gradient row NaN.
    /// </summary>
    public void SoftmaxCrossEntropy(DeviceTensor<float> logits, DeviceTensor<int> labels, DeviceTensor<float> dlogits,
        DeviceTensor<float> loss, float labelSmoothing = 0f)
    {
        using var operation = EnterOperation();
        const string op = "SoftmaxCrossEntropy";
        if (!(labelSmoothing >= 0f && labelSmoothing <= 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{op}: label smoothing must lie in [0, 1], got {labelSmoothing}."));
        }

        Checks.Owned(op, nameof(logits), logits, this);
        RequireMatrix(op, logits);

        Checks.Dims(op, nameof(labels), labels, this, logits.Shape[0]);
        Checks.Tensor(op, nameof(dlogits), dlogits, this, logits.Shape);
        Checks.Dims(op, nameof(loss), loss, this, 1);
        Checks.WrittenApart(op, nameof(dlogits), dlogits, (nameof(logits), logits), (nameof(loss), loss));
        Checks.WrittenApart(op, nameof(loss), loss, (nameof(logits), logits));
        SoftmaxCrossEntropyCore(logits, labels, dlogits, loss, labelSmoothing);
    }

    // ---------------------------------------------------------------- batches and metrics

    /// <summary>
    /// destination (M, …) = rows indices[offset … offset+M) of source (rows, …), row shapes equal. Indices outside
    /// [0, rows) are a caller error; the device writes zeros for them rather than fault.
    /// </summary>
    public void GatherRows<T>(DeviceTensor<T> source, DeviceTensor<int> indices, int offset, DeviceTensor<T> destination)
        where T : unmanaged
    {
        using var operation = EnterOperation();
        const string op = "GatherRows";
        Checks.Owned(op, nameof(source), source, this);
        Checks.Owned(op, nameof(indices), indices, this);
        Checks.Owned(op, nameof(destination), destination, this);
        int rowLength = source.Shape.SizeFrom(1);
        if (destination.Shape.SizeFrom(1) != rowLength)
        {
            throw new ArgumentException($"{op}: destination rows {destination.Shape} do not match source rows {source.Shape}.", nameof(destination));
        }

        int rows = destination.Shape[0];
        if (offset < 0 || offset > indices.Length - rows)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{op}: rows {offset}…{offset + rows} lie outside the {indices.Length} indices.");
        }

        // An in-place gather (a shuffle) would read rows it has already overwritten on the host, and race on a GPU.
        Checks.WrittenApart(op, nameof(destination), destination, (nameof(source), source));
        if (destination is DeviceTensor<int> written)
        {
            Checks.WrittenApart(op, nameof(destination), written, (nameof(indices), indices));
        }

        GatherRowsCore(source, indices, offset, destination, rows, rowLength);
    }

    /// <summary>
    /// predictions[offset + n] = arg-max over classes of logits (N, classes) as torch.argmax takes it: a row's first NaN
    /// if it has one (NaN ranks above every number), else the first of equal maxima.
    /// </summary>
    public void Argmax(DeviceTensor<float> logits, DeviceTensor<int> predictions, int offset)
    {
        using var operation = EnterOperation();
        const string op = "Argmax";
        Checks.Owned(op, nameof(logits), logits, this);
        Checks.Owned(op, nameof(predictions), predictions, this);
        RequireMatrix(op, logits);
        if (offset < 0 || offset > predictions.Length - logits.Shape[0])
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{op}: rows {offset}…{offset + logits.Shape[0]} lie outside predictions {predictions.Shape}.");
        }

        ArgmaxCore(logits, predictions, offset);
    }

    /// <summary>
    /// Running sums in the slots of <paramref name="metrics"/> that <paramref name="slots"/> names: LossSum += loss·N,
    /// Correct += the number of rows of logits (N, classes) whose arg-max (as <see cref="Argmax"/>) equals the label,
    /// FirstNonFinite = <paramref name="batchIndex"/> when it is still negative and the loss is NaN or infinite (start it
    /// at −1). The three slots must be three different places in metrics.
    /// </summary>
    public void AccumulateMetrics(DeviceTensor<float> logits, DeviceTensor<int> labels, DeviceTensor<float> loss,
        DeviceTensor<float> metrics, MetricSlots slots, int batchIndex)
    {
        using var operation = EnterOperation();
        const string op = "AccumulateMetrics";
        Checks.Owned(op, nameof(logits), logits, this);
        RequireMatrix(op, logits);
        Checks.Dims(op, nameof(labels), labels, this, logits.Shape[0]);
        Checks.Dims(op, nameof(loss), loss, this, 1);
        Checks.Owned(op, nameof(metrics), metrics, this);
        // Each slot on its own (Length adds 1 to the largest: int.MaxValue wrapped negative and passed), and no slot twice.
        if ((uint)slots.LossSum >= (uint)metrics.Length || (uint)slots.Correct >= (uint)metrics.Length || (uint)slots.FirstNonFinite >= (uint)metrics.Length ||
            slots.LossSum == slots.Correct || slots.LossSum == slots.FirstNonFinite || slots.Correct == slots.FirstNonFinite)
        {
            throw new ArgumentOutOfRangeException(nameof(slots), slots, $"{op}: slots {slots} are not three different places in metrics {metrics.Shape}.");
        }

        AccumulateMetricsCore(logits, labels, loss, metrics, slots, batchIndex);
    }

    // ---------------------------------------------------------------- optimizers

    /// <summary>
    /// One torch.optim.SGD step on one parameter tensor; <paramref name="velocity"/> is its momentum buffer.
    /// <paramref name="learningRate"/>, when given, is this step's rate in place of the options' (a schedule's).
    /// </summary>
    public void SgdUpdate(SgdOptions options, bool firstStep, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> velocity, float? learningRate = null)
    {
        using var operation = EnterOperation();
        const string op = "SgdUpdate";
        var h = SgdStep(options, firstStep, learningRate);
        Checks.Owned(op, nameof(parameter), parameter, this);
        Checks.Tensor(op, nameof(gradient), gradient, this, parameter.Shape);
        Checks.Tensor(op, nameof(velocity), velocity, this, parameter.Shape);
        // As in the list form: what is written shares no storage with anything else (the backends read and write in
        // different orders, so a shared buffer would give each its own wrong answer).
        Checks.WrittenApart(op, nameof(parameter), parameter, (nameof(gradient), gradient), (nameof(velocity), velocity));
        Checks.WrittenApart(op, nameof(velocity), velocity, (nameof(gradient), gradient));
        SgdUpdateCore(h, parameter, gradient, velocity);
    }

    /// <summary>One SGD step's hyperparameters as the kernels take them, checked (both forms of <c>SgdUpdate</c>).</summary>
    private static SgdParams SgdStep(SgdOptions options, bool firstStep, float? learningRate)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        float lr = learningRate ?? options.LearningRate;
        Checks.FiniteNonNegative("SGD", "learning rate", lr);
        return new SgdParams(lr, options.Momentum, (float)(1 - AsWritten(options.Dampening)), options.WeightDecay, options.Nesterov ? 1 : 0,
            firstStep ? 1 : 0);
    }

    /// <summary>
    /// The double a setting held as a float stands for: its shortest decimal (0.9999f → "0.9999" → 0.9999), which is
    /// what was written and what PyTorch's Python float holds. 1 − 0.9999f in float is 1.7e-4 away from PyTorch's
    /// 1 − 0.9999 rounded to float. Allocates nothing.
    /// </summary>
    internal static double AsWritten(float value)
    {
        Span<char> digits = stackalloc char[32];
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        bool formatted = value.TryFormat(digits, out int length, "R", invariant);
        System.Diagnostics.Debug.Assert(formatted, "a float's shortest form fits in 32 characters");
        return double.Parse(digits[..length], System.Globalization.NumberStyles.Float, invariant);
    }

    /// <summary>
    /// One torch.optim.Adam or AdamW step (<paramref name="step"/> counts from 1) on one parameter tensor;
    /// <paramref name="learningRate"/>, when given, is this step's rate in place of the options' (a schedule's).
    /// </summary>
    public void AdamUpdate(AdamOptions options, int step, DeviceTensor<float> parameter, DeviceTensor<float> gradient,
        DeviceTensor<float> firstMoment, DeviceTensor<float> secondMoment, float? learningRate = null)
    {
        using var operation = EnterOperation();
        const string op = "AdamUpdate";
        var h = AdamStep(op, options, step, learningRate);
        Checks.Owned(op, nameof(parameter), parameter, this);
        Checks.Tensor(op, nameof(gradient), gradient, this, parameter.Shape);
        Checks.Tensor(op, nameof(firstMoment), firstMoment, this, parameter.Shape);
        Checks.Tensor(op, nameof(secondMoment), secondMoment, this, parameter.Shape);
        Checks.WrittenApart(op, nameof(parameter), parameter, (nameof(gradient), gradient), (nameof(firstMoment), firstMoment),
            (nameof(secondMoment), secondMoment));
        Checks.WrittenApart(op, nameof(firstMoment), firstMoment, (nameof(gradient), gradient), (nameof(secondMoment), secondMoment));
        Checks.WrittenApart(op, nameof(secondMoment), secondMoment, (nameof(gradient), gradient));
        AdamUpdateCore(h, parameter, gradient, firstMoment, secondMoment);
    }

    /// <summary>Step <paramref name="step"/>'s Adam hyperparameters as the kernels take them, checked (both forms of <c>AdamUpdate</c>).</summary>
    private static AdamParams AdamStep(string op, AdamOptions options, int step, float? learningRate)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        float lr = learningRate ?? options.LearningRate;
        Checks.FiniteNonNegative("Adam", "learning rate", lr);
        Checks.Positive(op, nameof(step), step);
        return AdamParams.ForStep(AsWritten(lr), AsWritten(options.Beta1), AsWritten(options.Beta2), AsWritten(options.Epsilon),
            AsWritten(options.WeightDecay), step, options.DecoupledWeightDecay);
    }

    // ---------------------------------------------------------------- core implementations (arguments already checked)

#pragma warning disable CS1591 // The cores mirror the documented public methods above.
    protected abstract DeviceTensor<T> AllocateCore<T>(Shape shape) where T : unmanaged;
    protected abstract void UploadCore<T>(ReadOnlySpan<T> source, DeviceTensor<T> destination) where T : unmanaged;
    protected abstract void DownloadCore<T>(DeviceTensor<T> source, Span<T> destination) where T : unmanaged;
    protected abstract void FillCore(DeviceTensor<float> tensor, float value);
    protected abstract void SynchronizeCore();
    protected abstract void Conv2dForwardCore<TF>(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float>? b, DeviceTensor<float> y, TF activation) where TF : struct, IActivationFunction;
    protected abstract void Conv2dBackwardDataCore(Conv2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> w, DeviceTensor<float> dx);
    protected abstract void Conv2dBackwardFilterCore(Conv2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> dy, DeviceTensor<float> dw, DeviceTensor<float>? db);
    protected abstract void MaxPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<int> switches);
    protected abstract void MaxPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<int> switches, DeviceTensor<float> dx);
    protected abstract void AvgPool2dForwardCore(Pool2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y);
    protected abstract void AvgPool2dBackwardCore(Pool2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx);
    protected abstract void GemmCore(GemmShape shape, DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> c);
    protected abstract void BiasAddCore(DeviceTensor<float> y, DeviceTensor<float> b, int batch, int channels, int inner);
    protected abstract void BiasGradientCore(DeviceTensor<float> dy, DeviceTensor<float> db, int batch, int channels, int inner);
    protected abstract void ActivationForwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y) where TF : struct, IActivationFunction;
    protected abstract void ActivationBackwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> dy, DeviceTensor<float> dx) where TF : struct, IActivationFunction;
    protected abstract void ActivationBackwardFromOutputCore<TF>(TF f, DeviceTensor<float> y, DeviceTensor<float> dy, DeviceTensor<float> dx) where TF : struct, IDerivativeFromOutput;
    protected abstract void SoftmaxCrossEntropyCore(DeviceTensor<float> logits, DeviceTensor<int> labels, DeviceTensor<float> dlogits, DeviceTensor<float> loss, float labelSmoothing);
    protected abstract void SgdUpdateCore(SgdParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient, DeviceTensor<float> velocity);
    protected abstract void AdamUpdateCore(AdamParams h, DeviceTensor<float> parameter, DeviceTensor<float> gradient, DeviceTensor<float> firstMoment, DeviceTensor<float> secondMoment);
    protected abstract void GatherRowsCore<T>(DeviceTensor<T> source, DeviceTensor<int> indices, int offset, DeviceTensor<T> destination, int rows, int rowLength) where T : unmanaged;
    protected abstract void ArgmaxCore(DeviceTensor<float> logits, DeviceTensor<int> predictions, int offset);
    protected abstract void AccumulateMetricsCore(DeviceTensor<float> logits, DeviceTensor<int> labels, DeviceTensor<float> loss, DeviceTensor<float> metrics, MetricSlots slots, int batchIndex);

    /// <summary>The fused dense layer; by default a GEMM, a bias add and an activation in turn.</summary>
    protected virtual void LinearForwardCore<TF>(DeviceTensor<float> x, DeviceTensor<float> w, DeviceTensor<float> b, DeviceTensor<float> y,
        TF activation)
        where TF : struct, IActivationFunction
    {
        int batch = y.Shape[0], outFeatures = w.Shape[0], inFeatures = w.Shape[1];
        GemmCore(new GemmShape(batch, outFeatures, inFeatures, 0, 1, 1f, 0f), x, w, y);
        BiasAddCore(y, b, batch, outFeatures, 1);
        if (typeof(TF) != typeof(Identity))
        {
            ActivationForwardCore(activation, y, y);
        }
    }
#pragma warning restore CS1591

    private bool _disposed;

    /// <summary>Releases the device and everything allocated on it.</summary>
    public void Dispose()
    {
        using var operation = EnterRelease();
        if (!_disposed)
        {
            _disposed = true;
            Dispose(true);
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Releases resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({DeviceName})";

    private static void RequireRank(string op, string argument, Shape shape, int minimum)
    {
        if (shape.Rank < minimum)
        {
            throw new ArgumentException($"{op}: {argument} must have at least {minimum} dimensions (N, C, …), got {shape}.", argument);
        }
    }

    /// <summary>"1000 B", "1.5 KiB", "3.2 MiB", "1.1 GiB".</summary>
    protected static string FormatBytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return value.ToString(unit == 0 ? "0" : "0.#", System.Globalization.CultureInfo.InvariantCulture) + " " + units[unit];
    }

    private static void RequireMatrix(string op, DeviceTensor<float> logits)
    {
        if (logits.Shape.Rank != 2)
        {
            throw new ArgumentException($"{op}: logits must be (N, classes), got {logits.Shape}.", nameof(logits));
        }
    }
}
