using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

// One small class per kernel arity, as ILGPU's own LoadAutoGroupedStreamKernel overloads are: each compiles its
// kernel on first launch (once per accelerator) and counts launches.
#pragma warning disable SA1402 // The arities belong together.

internal sealed class Kernel<T1, T2>(Accelerator accelerator, LaunchCounter counter, Action<Index1D, T1, T2> method)
    where T1 : struct
    where T2 : struct
{
    private Action<Index1D, T1, T2>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2)
    {
        _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
        counter.Increment();
        _loaded(threads, a1, a2);
    }
}

internal sealed class Kernel<T1, T2, T3>(Accelerator accelerator, LaunchCounter counter, Action<Index1D, T1, T2, T3> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
{
    private Action<Index1D, T1, T2, T3>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3)
    {
        _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
        counter.Increment();
        _loaded(threads, a1, a2, a3);
    }
}

internal sealed class Kernel<T1, T2, T3, T4>(Accelerator accelerator, LaunchCounter counter, Action<Index1D, T1, T2, T3, T4> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
{
    private Action<Index1D, T1, T2, T3, T4>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3, T4 a4)
    {
        _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
        counter.Increment();
        _loaded(threads, a1, a2, a3, a4);
    }
}

internal sealed class Kernel<T1, T2, T3, T4, T5>(Accelerator accelerator, LaunchCounter counter, Action<Index1D, T1, T2, T3, T4, T5> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
{
    private Action<Index1D, T1, T2, T3, T4, T5>? _loaded;

    public void Launch(int threads, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5)
    {
        _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
        counter.Increment();
        _loaded(threads, a1, a2, a3, a4, a5);
    }
}

internal sealed class Kernel<T1, T2, T3, T4, T5, T6>(Accelerator accelerator, LaunchCounter counter, Action<Index1D, T1, T2, T3, T4, T5, T6> method)
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
        _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
        counter.Increment();
        _loaded(threads, a1, a2, a3, a4, a5, a6);
    }
}

internal sealed class Kernel<T1, T2, T3, T4, T5, T6, T7>(Accelerator accelerator, LaunchCounter counter, Action<Index1D, T1, T2, T3, T4, T5, T6, T7> method)
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
        _loaded ??= accelerator.LoadAutoGroupedStreamKernel(method);
        counter.Increment();
        _loaded(threads, a1, a2, a3, a4, a5, a6, a7);
    }
}

/// <summary>An explicitly grouped kernel (shared memory, barriers): compiled on first launch, launched with a <see cref="KernelConfig"/>.</summary>
internal sealed class GroupedKernel<T1, T2, T3, T4, T5>(Accelerator accelerator, LaunchCounter counter, Action<T1, T2, T3, T4, T5> method)
    where T1 : struct
    where T2 : struct
    where T3 : struct
    where T4 : struct
    where T5 : struct
{
    private Action<KernelConfig, T1, T2, T3, T4, T5>? _loaded;

    public void Launch(KernelConfig config, T1 a1, T2 a2, T3 a3, T4 a4, T5 a5)
    {
        _loaded ??= accelerator.LoadStreamKernel(method);
        counter.Increment();
        _loaded(config, a1, a2, a3, a4, a5);
    }
}

/// <summary>An explicitly grouped kernel of seven parameters.</summary>
internal sealed class GroupedKernel<T1, T2, T3, T4, T5, T6, T7>(Accelerator accelerator, LaunchCounter counter, Action<T1, T2, T3, T4, T5, T6, T7> method)
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
        _loaded ??= accelerator.LoadStreamKernel(method);
        counter.Increment();
        _loaded(config, a1, a2, a3, a4, a5, a6, a7);
    }
}

/// <summary>Counts kernel launches of one accelerator.</summary>
internal sealed class LaunchCounter
{
    private long _count;

    public long Count => Interlocked.Read(ref _count);

    public void Increment() => Interlocked.Increment(ref _count);
}
