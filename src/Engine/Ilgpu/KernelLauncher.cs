using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>
/// Launches the kernels of one accelerator: <c>Run(ElementwiseKernels.Fill, n, view, value)</c> names the kernel
/// method itself, so no signature is restated anywhere. Each kernel (each generic instantiation, e.g. one per
/// activation) is compiled on its first launch and kept; failures to compile or launch become a
/// <see cref="DeviceFaultException"/> naming the kernel. The overloads differ only in arity because ILGPU's typed
/// launchers do (one delegate type per parameter count); implicitly grouped kernels take a thread count, explicitly
/// grouped ones (shared memory, barriers) a <see cref="KernelConfig"/>.
/// </summary>
#pragma warning disable SA1402, CS1591 // The overloads are one method per arity; each is documented above.
internal sealed class KernelLauncher(Accelerator accelerator, DeviceGuard guard)
{
    private readonly Dictionary<MethodInfo, Delegate> _loaded = [];
    private long _serial = 1;

    /// <summary>When set, every launch is described here (kernel, grid, group, shared memory, serial loop).</summary>
    public List<LaunchRecord>? Recorder { get; set; }

    /// <summary>When set, told every kernel launched or planned (tests check which kernel families an operation reaches).</summary>
    public Action<MethodInfo>? Observer { get; set; }

    /// <summary>Record launches without running them (planning a launch report for another device).</summary>
    public bool DryRun { get; set; }

    /// <summary>The longest serial loop of one thread of the next launch (for the launch report; 1 when not said).</summary>
    public void NextSerial(long elements) => _serial = Math.Max(1, elements);

    /// <summary>
    /// An implicitly grouped launch's thread count, refused with the kernel named where ILGPU's own int arithmetic,
    /// (n + group − 1) / group with groups of up to 1,024, would wrap (a raw ArgumentOutOfRangeException before, or an
    /// OverflowException taken for a device fault past int). The limit is the tensors' own, <see cref="Shape.MaximumElements"/>.
    /// </summary>
    private static int Threads(Delegate kernel, long threads) =>
        threads <= Shape.MaximumElements
            ? (int)threads
            : throw new ArgumentException($"kernel {kernel.Method.Name}: {threads} threads in one launch, more than {Shape.MaximumElements}; use smaller tensors.");

    /// <summary>Records a launch; false when it must not run (dry run).</summary>
    private bool Note(Delegate kernel, long groups, long groupSize, long sharedBytes)
    {
        long serial = _serial;
        _serial = 1;
        Recorder?.Add(new LaunchRecord(kernel.Method.Name, groups, groupSize, sharedBytes, serial));
        Observer?.Invoke(kernel.Method);
        return !DryRun;
    }

    public void Run<T1, T2>(Action<Index1D, T1, T2> kernel, long threads, T1 a1, T2 a2)
        where T1 : struct
        where T2 : struct
    {
        int count = Threads(kernel, threads); // refused before it is recorded or counted
        if (!Note(kernel, (threads + AutoGroup - 1) / AutoGroup, AutoGroup, 0))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadAutoGroupedStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(count, a1, a2);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({threads} threads)", e);
        }
    }

    public void Run<T1, T2, T3>(Action<Index1D, T1, T2, T3> kernel, long threads, T1 a1, T2 a2, T3 a3)
        where T1 : struct
        where T2 : struct
        where T3 : struct
    {
        int count = Threads(kernel, threads); // refused before it is recorded or counted
        if (!Note(kernel, (threads + AutoGroup - 1) / AutoGroup, AutoGroup, 0))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadAutoGroupedStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(count, a1, a2, a3);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({threads} threads)", e);
        }
    }

    public void Run<T1, T2, T3, T4>(Action<Index1D, T1, T2, T3, T4> kernel, long threads, T1 a1, T2 a2, T3 a3, T4 a4)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
    {
        int count = Threads(kernel, threads); // refused before it is recorded or counted
        if (!Note(kernel, (threads + AutoGroup - 1) / AutoGroup, AutoGroup, 0))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadAutoGroupedStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(count, a1, a2, a3, a4);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({threads} threads)", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5>(Action<Index1D, T1, T2, T3, T4, T5> kernel, long threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
    {
        int count = Threads(kernel, threads); // refused before it is recorded or counted
        if (!Note(kernel, (threads + AutoGroup - 1) / AutoGroup, AutoGroup, 0))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadAutoGroupedStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(count, a1, a2, a3, a4, a5);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({threads} threads)", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5, T6>(Action<Index1D, T1, T2, T3, T4, T5, T6> kernel, long threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
    {
        int count = Threads(kernel, threads); // refused before it is recorded or counted
        if (!Note(kernel, (threads + AutoGroup - 1) / AutoGroup, AutoGroup, 0))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadAutoGroupedStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(count, a1, a2, a3, a4, a5, a6);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({threads} threads)", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5, T6, T7>(Action<Index1D, T1, T2, T3, T4, T5, T6, T7> kernel, long threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
    {
        int count = Threads(kernel, threads); // refused before it is recorded or counted
        if (!Note(kernel, (threads + AutoGroup - 1) / AutoGroup, AutoGroup, 0))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadAutoGroupedStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(count, a1, a2, a3, a4, a5, a6, a7);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({threads} threads)", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5, T6, T7, T8>(Action<Index1D, T1, T2, T3, T4, T5, T6, T7, T8> kernel, long threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7, T8 a8)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
        where T8 : struct
    {
        int count = Threads(kernel, threads); // refused before it is recorded or counted
        if (!Note(kernel, (threads + AutoGroup - 1) / AutoGroup, AutoGroup, 0))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadAutoGroupedStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(count, a1, a2, a3, a4, a5, a6, a7, a8);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({threads} threads)", e);
        }
    }

    public void Run<T1, T2, T3, T4>(Action<T1, T2, T3, T4> kernel, KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
    {
        if (!Note(kernel, config.GridDim.Size, config.GroupDim.Size, config.SharedMemoryConfig.ArraySize))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(config, a1, a2, a3, a4);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> kernel, KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
    {
        if (!Note(kernel, config.GridDim.Size, config.GroupDim.Size, config.SharedMemoryConfig.ArraySize))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(config, a1, a2, a3, a4, a5);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5, T6>(Action<T1, T2, T3, T4, T5, T6> kernel, KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
    {
        if (!Note(kernel, config.GridDim.Size, config.GroupDim.Size, config.SharedMemoryConfig.ArraySize))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(config, a1, a2, a3, a4, a5, a6);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5, T6, T7>(Action<T1, T2, T3, T4, T5, T6, T7> kernel, KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
    {
        if (!Note(kernel, config.GridDim.Size, config.GroupDim.Size, config.SharedMemoryConfig.ArraySize))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(config, a1, a2, a3, a4, a5, a6, a7);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5, T6, T7, T8>(Action<T1, T2, T3, T4, T5, T6, T7, T8> kernel, KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7, T8 a8)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
        where T8 : struct
    {
        if (!Note(kernel, config.GridDim.Size, config.GroupDim.Size, config.SharedMemoryConfig.ArraySize))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(config, a1, a2, a3, a4, a5, a6, a7, a8);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }

    public void Run<T1, T2, T3, T4, T5, T6, T7, T8, T9>(Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel, KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7, T8 a8, T9 a9)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
        where T8 : struct
        where T9 : struct
    {
        if (!Note(kernel, config.GridDim.Size, config.GroupDim.Size, config.SharedMemoryConfig.ArraySize))
        {
            return;
        }

        var loaded = Load(kernel, static (a, k) => a.LoadStreamKernel(k));
        try
        {
            guard.Increment();
            loaded(config, a1, a2, a3, a4, a5, a6, a7, a8, a9);
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"launching kernel {kernel.Method.Name} ({config.GridDim} groups of {config.GroupDim})", e);
        }
    }

    /// <summary>The group size the launch report assumes for implicitly grouped kernels (ILGPU picks its own per device).</summary>
    public const int AutoGroup = 256;

    /// <summary>The launcher of <paramref name="kernel"/>, compiled on first use.</summary>
    private TLauncher Load<TKernel, TLauncher>(TKernel kernel, Func<Accelerator, TKernel, TLauncher> load)
        where TKernel : Delegate
        where TLauncher : Delegate
    {
        if (_loaded.TryGetValue(kernel.Method, out var launcher))
        {
            return (TLauncher)launcher;
        }

        try
        {
            var loaded = load(accelerator, kernel);
            _loaded[kernel.Method] = loaded;
            return loaded;
        }
        catch (Exception e) when (DeviceGuard.IsDriverError(e))
        {
            throw guard.Fail($"compiling kernel {kernel.Method.Name}", e);
        }
    }
}

/// <summary>One kernel launch as the launch report shows it.</summary>
public sealed record LaunchRecord(string Kernel, long Groups, long GroupSize, long SharedBytes, long SerialLoop);
