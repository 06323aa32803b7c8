using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

// One small class per kernel arity, as ILGPU's own LoadAutoGroupedStreamKernel overloads are: each compiles its
// kernel on first launch (once per accelerator) and counts launches.
#pragma warning disable SA1402 // The arities belong together.

internal sealed class Kernel<T1, T2>(Accelerator accelerator, DeviceGuard counter, Action<Index1D, T1, T2> method)
    where T1 : struct
    where T2 : struct
{
    private Action<Index1D, T1, T2>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2)
    {
        try
        {
            _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
            counter.Increment();
            _loaded(threads, a1, a2);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({threads} threads)", e);
        }
    }
}

internal sealed class Kernel<T1, T2, T3>(Accelerator accelerator, DeviceGuard counter, Action<Index1D, T1, T2, T3> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
{
    private Action<Index1D, T1, T2, T3>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3)
    {
        try
        {
            _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
            counter.Increment();
            _loaded(threads, a1, a2, a3);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({threads} threads)", e);
        }
    }
}

internal sealed class Kernel<T1, T2, T3, T4>(Accelerator accelerator, DeviceGuard counter, Action<Index1D, T1, T2, T3, T4> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
{
    private Action<Index1D, T1, T2, T3, T4>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3, T4 a4)
    {
        try
        {
            _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
            counter.Increment();
            _loaded(threads, a1, a2, a3, a4);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({threads} threads)", e);
        }
    }
}

internal sealed class Kernel<T1, T2, T3, T4, T5>(Accelerator accelerator, DeviceGuard counter, Action<Index1D, T1, T2, T3, T4, T5> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
{
    private Action<Index1D, T1, T2, T3, T4, T5>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5)
    {
        try
        {
            _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
            counter.Increment();
            _loaded(threads, a1, a2, a3, a4, a5);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({threads} threads)", e);
        }
    }
}

internal sealed class Kernel<T1, T2, T3, T4, T5, T6>(Accelerator accelerator, DeviceGuard counter, Action<Index1D, T1, T2, T3, T4, T5, T6> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
    where T6 : struct
{
    private Action<Index1D, T1, T2, T3, T4, T5, T6>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6)
    {
        try
        {
            _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
            counter.Increment();
            _loaded(threads, a1, a2, a3, a4, a5, a6);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({threads} threads)", e);
        }
    }
}

internal sealed class Kernel<T1, T2, T3, T4, T5, T6, T7>(Accelerator accelerator, DeviceGuard counter, Action<Index1D, T1, T2, T3, T4, T5, T6, T7> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
    where T6 : struct
    where T7 : struct
{
    private Action<Index1D, T1, T2, T3, T4, T5, T6, T7>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7)
    {
        try
        {
            _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
            counter.Increment();
            _loaded(threads, a1, a2, a3, a4, a5, a6, a7);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({threads} threads)", e);
        }
    }
}

/// <summary>An explicitly grouped kernel (shared memory, barriers): compiled on first launch, launched with a <see cref="KernelConfig"/>.</summary>
internal sealed class GroupedKernel<T1, T2, T3, T4, T5>(Accelerator accelerator, DeviceGuard counter, Action<T1, T2, T3, T4, T5> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
{
    private Action<KernelConfig, T1, T2, T3, T4, T5>? _loaded;

    public void Launch(KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5)
    {
        try
        {
            _loaded ??= accelerator.LoadStreamKernel(method);
            counter.Increment();
            _loaded(config, a1, a2, a3, a4, a5);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }
}

/// <summary>An explicitly grouped kernel of six parameters.</summary>
internal sealed class GroupedKernel<T1, T2, T3, T4, T5, T6>(Accelerator accelerator, DeviceGuard counter, Action<T1, T2, T3, T4, T5, T6> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
    where T6 : struct
{
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6>? _loaded;

    public void Launch(KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6)
    {
        try
        {
            _loaded ??= accelerator.LoadStreamKernel(method);
            counter.Increment();
            _loaded(config, a1, a2, a3, a4, a5, a6);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }
}

/// <summary>An explicitly grouped kernel of seven parameters.</summary>
internal sealed class GroupedKernel<T1, T2, T3, T4, T5, T6, T7>(Accelerator accelerator, DeviceGuard counter, Action<T1, T2, T3, T4, T5, T6, T7> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
    where T6 : struct
    where T7 : struct
{
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7>? _loaded;

    public void Launch(KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7)
    {
        try
        {
            _loaded ??= accelerator.LoadStreamKernel(method);
            counter.Increment();
            _loaded(config, a1, a2, a3, a4, a5, a6, a7);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw counter.Fail(_loaded is null ? $"compiling kernel {method.Method.Name}" : $"launching kernel {method.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }
}

/// <summary>
/// Counts the kernel launches of one accelerator and turns what the driver or ILGPU throws (a failed compile, launch,
/// copy or synchronisation) into a <see cref="DeviceFaultException"/> that names the device and the step. After a
/// fault the device is marked faulted: a CUDA context that faulted stays unusable, so releasing its memory may fail too.
/// </summary>
internal sealed class DeviceGuard(string device)
{
    private long _count;
    private long _faultAt = -1;
    private Action? _injectFault;

    public long Count => Interlocked.Read(ref _count);

    /// <summary>Whether a device call has failed (other than running out of memory).</summary>
    public bool Faulted { get; private set; }

    /// <summary>Whether an exception came from the device side (not a bug in our arguments, nor a cancellation).</summary>
    public static bool IsDriverError(Exception e) =>
        e is not DeviceFaultException and not ArgumentException and not ObjectDisposedException and not OperationCanceledException;

    public static bool IsOutOfMemory(Exception e) =>
        e is OutOfMemoryException || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase) ||
        e.Message.Contains("OutOfMemory", StringComparison.Ordinal);

    public void Increment()
    {
        if (Interlocked.Increment(ref _count) == _faultAt)
        {
            _injectFault!();
        }
    }

    /// <summary>Makes launch number <paramref name="launch"/> run <paramref name="fault"/> first (a test of the recovery path).</summary>
    public void InjectFault(long launch, Action fault) => (_faultAt, _injectFault) = (launch, fault);

    /// <summary>The exception to throw for a failed device call.</summary>
    public DeviceFaultException Fail(string what, Exception e)
    {
        if (IsOutOfMemory(e))
        {
            return new DeviceOutOfMemoryException($"{device}: out of device memory ({what}): {e.Message}", e);
        }

        Faulted = true;
        return new DeviceFaultException($"{device}: the device failed ({what}): {e.GetType().Name}: {e.Message}", e);
    }
}
