namespace GpuCnn;

/// <summary>One compute device a backend can run on, as listed by device discovery.</summary>
/// <param name="Name">The selection name ("reference", "ilgpu-cpu", "cuda", "opencl", …).</param>
/// <param name="Kind">"cpu" or "gpu".</param>
/// <param name="Description">The device as its driver names it.</param>
/// <param name="MemoryBytes">Device memory, or 0 where it is the host's.</param>
/// <param name="Available">Whether the device can be opened here.</param>
/// <param name="Reason">Why it cannot, when <paramref name="Available"/> is false.</param>
public sealed record DeviceInfo(string Name, string Kind, string Description, long MemoryBytes, bool Available, string? Reason);

/// <summary>A device failed while in use (out of memory, a driver or launch error); the message says which and why.</summary>
public class DeviceFaultException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DeviceFaultException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }

    /// <summary>Creates the exception.</summary>
    public DeviceFaultException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public DeviceFaultException(string message)
        : base(message)
    {
    }
}

/// <summary>An allocation did not fit in the device's memory (or the backend's <see cref="Backend.MemoryLimitBytes"/>).</summary>
public sealed class DeviceOutOfMemoryException : DeviceFaultException
{
    /// <summary>Creates the exception.</summary>
    public DeviceOutOfMemoryException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }

    /// <summary>Creates the exception.</summary>
    public DeviceOutOfMemoryException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public DeviceOutOfMemoryException(string message)
        : base(message)
    {
    }
}

/// <summary>A requested device is absent or failed to start; the message says which and why.</summary>
public sealed class DeviceUnavailableException : Exception
{
    /// <summary>True when the device exists but failed to start (as opposed to being absent).</summary>
    public bool DeviceFound { get; init; }

    /// <summary>Creates the exception.</summary>
    public DeviceUnavailableException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }

    /// <summary>Creates the exception.</summary>
    public DeviceUnavailableException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public DeviceUnavailableException(string message)
        : base(message)
    {
    }
}
