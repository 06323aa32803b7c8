using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace GpuCnn.Cpu.Fast;

/// <summary>Work split into numbered parts; <see cref="Run"/> is called once per part.</summary>
internal interface IParallelJob
{
    /// <summary>
    /// Whether each part's result is the same whichever worker runs it (the worker's scratch and packing buffers are
    /// only scratch; sums kept per part, not per worker): then the parts are claimed by whoever is free. Every job of
    /// the backend is; the FMA-peak measurement, which must run one part on each worker at once, is not.
    /// </summary>
    bool AnyWorker => false;

    /// <summary>Does part <paramref name="part"/> on worker <paramref name="worker"/> (whose scratch it may use).</summary>
    void Run(int part, int worker);
}

/// <summary>
/// A fixed team of threads (the caller plus Count − 1 workers) that runs a job's parts. Parts that do not depend on
/// the worker (<see cref="IParallelJob.AnyWorker"/>) are claimed one at a time from a counter, and once all are
/// claimed the job is closed to workers that have not joined it: a worker slowed or descheduled by other work on its
/// core then neither holds up the parts (the others take them) nor the job's end (it is not waited for). With a busy
/// process pinned to one of two cores, LeNet's batch-64 training step ran 0.33–0.41× the time of a fixed split, which waited
/// milliseconds per job for the worker sharing that core. Other jobs keep a static assignment: part p on worker
/// p mod Count, every worker waited for. Results never depend on which worker ran a part (per-part sums are added
/// in part order), so they stay bitwise reproducible. Each worker owns a <see cref="PackedGemm"/>. Running a job
/// allocates nothing.
/// </summary>
/// <remarks>
/// Training issues a job every few hundred microseconds, so idle workers spin (pause instructions only) for a
/// while before blocking: a blocked thread — on a virtual machine, a halted vCPU — can take a millisecond to wake,
/// and the usual SpinWait escalates to Sleep(1). The caller spins likewise while waiting for the team.
/// The per-job methods here and the kernels they run are optimised at their first call: a tier-0 loop whose trip
/// count depends on timing (a spin) reaches the runtime's on-stack-replacement compile at an unpredictable batch,
/// and that compile runs on the caller's thread, in the middle of training.
/// </remarks>
internal sealed class CpuWorkers : IDisposable
{
    private static readonly long SpinTicks = Stopwatch.Frequency / 2000; // 0.5 ms of spinning before a worker blocks
    private const long Closed = 1L << 31;
    private const long JoinedMask = Closed - 1;

    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _wake;
    private readonly PackedGemm[] _gemms;
    private IParallelJob? _job;
    private int _parts;
    private bool _claimed;
    private int _nextPart;

    /// <summary>
    /// The job's generation (high 32 bits), whether it is closed to workers that have not joined it yet
    /// (<see cref="Closed"/>), and how many workers have joined and not yet left (low bits).
    /// </summary>
    private long _state;
    private int _remaining;
    private volatile bool _stopping;
    private Exception? _failure;

    public CpuWorkers(int count, SimdWidth width)
    {
        Count = Math.Max(1, count);
        _gemms = [.. Enumerable.Range(0, Count).Select(_ => new PackedGemm(width))];
        _wake = [.. Enumerable.Range(0, Count).Select(_ => new ManualResetEventSlim(false, spinCount: 0))];
        _threads = new Thread[Count - 1];
        for (int i = 1; i < Count; i++)
        {
            int worker = i;
            _threads[i - 1] = new Thread(() => Loop(worker)) { IsBackground = true, Name = $"gpucnn-cpu-{worker}" };
            _threads[i - 1].Start();
        }
    }

    /// <summary>Threads in the team, the caller included.</summary>
    public int Count { get; }

    /// <summary>Bytes of per-worker scratch (GEMM packing buffers).</summary>
    public long ScratchBytes => Count * PackedGemm.BufferBytes;

    /// <summary>The GEMM engine of a worker.</summary>
    public PackedGemm Gemm(int worker) => _gemms[worker];

    /// <summary>Runs parts 0 … parts − 1 of the job across the team and returns when all are done.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(IParallelJob job, int parts)
    {
        if (parts <= 1 || Count == 1)
        {
            for (int p = 0; p < parts; p++)
            {
                job.Run(p, 0);
            }

            return;
        }

        _job = job;
        _parts = parts;
        _claimed = job.AnyWorker;
        _nextPart = 0;
        _failure = null;
        Volatile.Write(ref _remaining, Count - 1);
        Interlocked.Exchange(ref _state, ((Volatile.Read(ref _state) >> 32) + 1) << 32); // the next generation, open, none joined
        for (int w = 1; w < Count; w++)
        {
            _wake[w].Set();
        }

        try
        {
            RunShare(0);
        }
        finally
        {
            if (_claimed)
            {
                // Every part has been claimed (or the caller's part threw, and Run rethrows below). A worker that has
                // not joined yet — descheduled, or still waking — has nothing left to do, so it is shut out rather
                // than waited for; those that joined finish their parts.
                Interlocked.Or(ref _state, Closed);
            }

            AwaitTeam(_claimed);

            _job = null;
        }

        if (_failure is not null)
        {
            ExceptionDispatchInfo.Throw(_failure);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        Interlocked.Exchange(ref _state, ((Volatile.Read(ref _state) >> 32) + 1) << 32);
        for (int w = 1; w < Count; w++)
        {
            _wake[w].Set();
        }

        foreach (var thread in _threads)
        {
            thread.Join();
        }

        foreach (var gemm in _gemms)
        {
            gemm.Dispose();
        }

        foreach (var e in _wake)
        {
            e.Dispose();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunShare(int worker)
    {
        if (_claimed)
        {
            for (int p = Interlocked.Increment(ref _nextPart) - 1; p < _parts; p = Interlocked.Increment(ref _nextPart) - 1)
            {
                _job!.Run(p, worker);
            }

            return;
        }

        for (int p = worker; p < _parts; p += Count)
        {
            _job!.Run(p, worker);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Loop(int worker)
    {
        long seen = 0;
        while (true)
        {
            seen = AwaitGeneration(worker, seen);
            if (_stopping)
            {
                return;
            }

            if (!TryJoin(seen))
            {
                continue; // closed: its parts were all taken (a static job is never closed, so never skipped)
            }

            bool claimed = _claimed; // read while joined: once this worker has left, the caller may post the next job
            try
            {
                RunShare(worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            finally
            {
                Interlocked.Decrement(ref _state);
                if (!claimed)
                {
                    Interlocked.Decrement(ref _remaining);
                }
            }
        }
    }

    /// <summary>Joins the job of <paramref name="generation"/> unless it is closed or a newer one has been posted.</summary>
    private bool TryJoin(long generation)
    {
        while (true)
        {
            long state = Volatile.Read(ref _state);
            if ((state >> 32) != generation || (state & Closed) != 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _state, state + 1, state) == state)
            {
                return true;
            }
        }
    }

    /// <summary>
    /// The caller's wait: until the workers that joined a claimed job have left it, or every worker has run its share
    /// of a static one. Spins, then yields its core once the wait is long.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AwaitTeam(bool claimed)
    {
        for (int spins = 0; claimed ? (Volatile.Read(ref _state) & JoinedMask) != 0 : Volatile.Read(ref _remaining) > 0; spins++)
        {
            Thread.SpinWait(30);
            if (spins > 100_000)
            {
                Thread.Yield(); // the team is slow (a descheduled thread); stop hogging the core
            }
        }
    }

    /// <summary>Spins, then blocks, until a job newer than <paramref name="seen"/> is posted; returns its generation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private long AwaitGeneration(int worker, long seen)
    {
        long start = Stopwatch.GetTimestamp();
        while (true)
        {
            long current = Volatile.Read(ref _state) >> 32;
            if (current != seen)
            {
                return current;
            }

            if (Stopwatch.GetTimestamp() - start < SpinTicks)
            {
                Thread.SpinWait(20);
                continue;
            }

            // Reset before the final check, so a Set that races with it is never lost.
            _wake[worker].Reset();
            if (Volatile.Read(ref _state) >> 32 == seen)
            {
                _wake[worker].Wait();
            }

            start = Stopwatch.GetTimestamp();
        }
    }
}
