using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;
using GpuCnn.Ilgpu;

namespace GpuCnn;

/// <summary>
/// Device selection by name, in its own assembly (GpuCnn.Devices) because it is the one place that sees every
/// backend: the ILGPU ones of GpuCnn.Engine and the CPU ones of GpuCnn.Engine.Cpu.
/// </summary>
public static class Backends
{
    /// <summary>The names <see cref="Open"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["auto", "cpu", "reference", "ilgpu-cpu", "cuda", "opencl"];

    /// <summary>Every device this machine could offer, with the reason where one is unavailable.</summary>
    public static IReadOnlyList<DeviceInfo> List() =>
    [
        IlgpuDevices.DescribeCuda(),
        IlgpuDevices.DescribeOpenCL(),
        new DeviceInfo("cpu", "cpu", $"fast CPU backend: {Environment.ProcessorCount} threads, {Simd.Best}", 0, true, null),
        new DeviceInfo("reference", "cpu", "naive C# reference (1 thread)", 0, true, null),
        IlgpuDevices.DescribeCpuAccelerator(),
    ];

    /// <summary>
    /// The device <c>auto</c> picks: CUDA, then OpenCL, then the fast CPU backend (ILGPU's CPU accelerator emulates
    /// GPU threads and is for tests; the reference is for checking).
    /// </summary>
    public static string AutoChoice(IReadOnlyList<DeviceInfo> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        foreach (string name in (string[])["cuda", "opencl"])
        {
            if (devices.Any(d => d.Name == name && d.Available))
            {
                return name;
            }
        }

        return "cpu";
    }

    /// <summary>
    /// Opens a backend by name. An explicit device that is absent throws <see cref="DeviceUnavailableException"/>
    /// with the reason; only <c>auto</c> chooses, and it tells <paramref name="warn"/> when a GPU that is present
    /// fails to start and it falls back.
    /// </summary>
    public static Backend Open(string name, Action<string>? warn = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.Trim().ToLowerInvariant() switch
        {
            "auto" => OpenAuto(warn),
            "cpu" => new CpuBackend(),
            "reference" => new ReferenceBackend(),
            "ilgpu-cpu" => IlgpuDevices.OpenCpuAccelerator(),
            "cuda" => IlgpuDevices.OpenCuda(),
            "opencl" => IlgpuDevices.OpenOpenCL(),
            _ => throw new ArgumentException(
                $"Unknown device '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>The CPU backend auto falls back to.</summary>
    public static Backend OpenCpuFallback() => new CpuBackend();

    private static Backend OpenAuto(Action<string>? warn)
    {
        foreach (var open in (Func<Backend>[])[IlgpuDevices.OpenCuda, IlgpuDevices.OpenOpenCL])
        {
            try
            {
                return open();
            }
            catch (DeviceUnavailableException e)
            {
                // auto moves on to the next kind (explicit names never do), saying so when a device was there.
                if (e.DeviceFound)
                {
                    warn?.Invoke($"{e.Message}; falling back");
                }
            }
        }

        return OpenCpuFallback();
    }
}
