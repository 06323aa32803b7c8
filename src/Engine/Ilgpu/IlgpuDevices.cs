using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace GpuCnn.Ilgpu;

/// <summary>
/// Finds and opens ILGPU accelerators, working around ILGPU 1.5.3's known traps (docs/01-architecture.md):
/// it probes libcuda.so but never libcuda.so.1, swallows CUDA detection errors, and lists OpenCL devices it
/// then cannot use. Each open creates its own ILGPU context; nothing falls back silently.
/// </summary>
public static class IlgpuDevices
{
    private static readonly object ResolverLock = new();
    private static bool _resolverInstalled;

    /// <summary>Describes the CUDA device (index 0), or why there is none.</summary>
    public static DeviceInfo DescribeCuda() => Describe("cuda", "gpu", OpenCudaCore);

    /// <summary>Describes the first usable OpenCL device, or why there is none.</summary>
    public static DeviceInfo DescribeOpenCL() => Describe("opencl", "gpu", OpenOpenCLCore);

    /// <summary>Describes ILGPU's CPU accelerator (always present; for testing kernels, not for speed).</summary>
    public static DeviceInfo DescribeCpuAccelerator() => Describe("ilgpu-cpu", "cpu", OpenCpuAcceleratorCore);

    /// <summary>Opens the first CUDA device, or throws <see cref="DeviceUnavailableException"/> saying why not.</summary>
    public static IlgpuBackend OpenCuda() => OpenCudaCore();

    /// <summary>
    /// Opens CUDA device <paramref name="index"/> modulo the devices there are (one rank per GPU: the rank's index on
    /// its machine), or throws <see cref="DeviceUnavailableException"/> saying why not.
    /// </summary>
    public static IlgpuBackend OpenCuda(int index) => OpenCudaCore(index);

    /// <summary>Opens the first usable OpenCL device, or throws <see cref="DeviceUnavailableException"/>.</summary>
    public static IlgpuBackend OpenOpenCL() => OpenOpenCLCore();

    /// <summary>Opens ILGPU's CPU accelerator, which emulates GPU threads; use it to test kernels on tiny shapes.</summary>
    public static IlgpuBackend OpenCpuAccelerator() => OpenCpuAcceleratorCore();

    /// <summary>
    /// ILGPU's CPU accelerator simulating GPU-sized groups of <paramref name="groupThreads"/> threads (warps of 32, one
    /// multiprocessor), so that the launch settings a GPU gets — 16×16 GEMM groups, 128×128 tiles, depth 16, 256-thread
    /// reductions — run against the reference without a GPU. For tests: one OS thread per simulated thread.
    /// </summary>
    internal static IlgpuBackend OpenCpuAccelerator(int groupThreads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(groupThreads, 32);
        if (groupThreads % 32 != 0 || (groupThreads & (groupThreads - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(groupThreads), groupThreads, "groupThreads: warps of 32, a power of two of them.");
        }

        return OpenCpuAcceleratorCore(new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: groupThreads / 32, numMultiprocessors: 1));
    }

    private static DeviceInfo Describe(string name, string kind, Func<IlgpuBackend> open)
    {
        try
        {
            using var backend = open();
            return new DeviceInfo(name, kind, backend.DeviceName, backend.DeviceMemoryBytes, true, null);
        }
        catch (DeviceUnavailableException e)
        {
            return new DeviceInfo(name, kind, "-", 0, false, e.Message);
        }
    }

    private static IlgpuBackend OpenCudaCore() => OpenCudaCore(0);

    private static IlgpuBackend OpenCudaCore(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        InstallNativeResolver();
        var context = CreateContext(b => b.Cuda());
        try
        {
            int count = context.GetCudaDevices().Count;
            if (count == 0)
            {
                throw new DeviceUnavailableException("cuda: no CUDA device found. " + CudaDiagnosis());
            }

            return new IlgpuBackend("cuda", context, context.CreateCudaAccelerator(index % count));
        }
        catch (Exception e) when (e is not DeviceUnavailableException and not SettingException)
        {
            context.Dispose();
            throw new DeviceUnavailableException($"cuda: the CUDA device failed to start: {e.Message}", e) { DeviceFound = true };
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static IlgpuBackend OpenOpenCLCore()
    {
        InstallNativeResolver();
        var context = CreateContext(b => b.OpenCL());
        try
        {
            // Only GPUs: on PoCL 5's CPU device (seen on the GPU machine, docs/benchmarks.md) every kernel that
            // synchronises a group through shared memory gave wrong results, while the same kernels pass on CUDA and
            // on ILGPU's CPU accelerator; a CPU is served by the `cpu` backend anyway.
            var devices = new List<CLDevice>();
            foreach (var device in context.GetCLDevices())
            {
                devices.Add(device);
            }

            var gpu = devices.Find(d => (d.DeviceType & CLDeviceType.CL_DEVICE_TYPE_GPU) != 0);
            if (gpu is null)
            {
                string cpus = string.Join(", ", devices.Select(d => d.Name));
                throw new DeviceUnavailableException(
                    "opencl: no OpenCL GPU that ILGPU 1.5.3 can use (it needs OpenCL 2.0, or 3.0 with the generic address space)" +
                    (cpus.Length == 0 ? "." : $"; CPU OpenCL devices are not used ({cpus}): kernels with group barriers computed wrong results on PoCL, and the cpu backend serves a CPU."));
            }

            return new IlgpuBackend("opencl", context, gpu.CreateAccelerator(context));
        }
        catch (Exception e) when (e is not DeviceUnavailableException and not SettingException)
        {
            context.Dispose();
            throw new DeviceUnavailableException($"opencl: the OpenCL device failed to start: {e.Message}", e) { DeviceFound = true };
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static IlgpuBackend OpenCpuAcceleratorCore() => OpenCpuAcceleratorCore(CPUDevice.Default);

    private static IlgpuBackend OpenCpuAcceleratorCore(CPUDevice device)
    {
        var context = CreateContext(b => b.CPU(device));
        try
        {
            return new IlgpuBackend("ilgpu-cpu", context, context.CreateCPUAccelerator(0));
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static Context CreateContext(Action<Context.Builder> addDevices)
    {
        try
        {
            return Context.Create(builder =>
            {
                addDevices(builder);
                builder.EnableAlgorithms().Optimize(OptimizationLevel.O2).Profiling(); // profiling: device-event timing for bench
            });
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new DeviceUnavailableException($"ILGPU could not create a context: {e.Message}", e);
        }
    }

    /// <summary>ILGPU hides why CUDA detection failed; say what we can see from here.</summary>
    private static string CudaDiagnosis()
    {
        foreach (string library in CudaLibraryNames())
        {
            if (NativeLibrary.TryLoad(library, out var handle))
            {
                NativeLibrary.Free(handle);
                return $"The driver library {library} loads, but it reports no usable device (check nvidia-smi and the driver version).";
            }
        }

        return OperatingSystem.IsLinux()
            ? "No NVIDIA driver library (libcuda.so.1) was found on this machine."
            : "No NVIDIA driver library (nvcuda) was found on this machine.";
    }

    private static string[] CudaLibraryNames() =>
        OperatingSystem.IsWindows() ? ["nvcuda.dll"] : ["libcuda.so.1", "libcuda.so"];

    /// <summary>
    /// ILGPU imports "cuda" and "OpenCL" by bare name; on Linux driver-only machines ship only the ".so.1" files.
    /// Map the names to whichever file exists. WSL's ILGPU installs its own resolver; then we leave it alone.
    /// </summary>
    private static void InstallNativeResolver()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        lock (ResolverLock)
        {
            if (_resolverInstalled)
            {
                return;
            }

            _resolverInstalled = true;
            try
            {
                NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, ResolveNative);
            }
            catch (InvalidOperationException)
            {
                // A resolver is already set for ILGPU's assembly (ILGPU's WSL support); keep it.
            }
        }
    }

    private static IntPtr ResolveNative(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string[] candidates = name switch
        {
            "cuda" or "nvcuda" => ["libcuda.so.1", "libcuda.so"], // .so.1 first: a CUDA toolkit's stub libcuda.so reports no device
            "OpenCL" => ["libOpenCL.so", "libOpenCL.so.1"],
            _ => [],
        };
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, assembly, searchPath, out var handle))
            {
                return handle;
            }
        }

        return IntPtr.Zero;
    }
}
