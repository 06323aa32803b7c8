namespace GpuCnn.Ilgpu;

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
