using GpuCnn.Distributed;

namespace GpuCnn.Tests.Support;

/// <summary>
/// Ranks as threads of one process, for testing the trainer's data parallelism without MPI: the same rank-order sum
/// and broadcast as <see cref="MpiCommunicator"/>, through shared slots and a barrier.
/// </summary>
public sealed class ThreadCommunicator : ICommunicator
{
    private readonly Shared _shared;

    private ThreadCommunicator(Shared shared, int rank)
    {
        _shared = shared;
        Rank = rank;
    }

    public int Rank { get; }

    public int Size => _shared.Slots.Length;

    /// <summary>One communicator per rank, to be used each from its own thread.</summary>
    public static ThreadCommunicator[] Create(int size)
    {
        var shared = new Shared(size);
        return [.. Enumerable.Range(0, size).Select(rank => new ThreadCommunicator(shared, rank))];
    }

    public void AllReduceSum(float[] values)
    {
        _shared.Slots[Rank] = (float[])values.Clone();
        Wait();
        Array.Clear(values);
        foreach (float[] part in _shared.Slots)
        {
            for (int i = 0; i < values.Length; i++)
            {
                values[i] += part[i];
            }
        }

        Wait();
    }

    public void Broadcast(float[] values, int root)
    {
        if (Rank == root)
        {
            _shared.Slots[root] = (float[])values.Clone();
        }

        Wait();
        _shared.Slots[root].CopyTo(values, 0);
        Wait();
    }

    public void Dispose()
    {
    }

    /// <summary>
    /// Waits for every rank, for a bounded time: a rank that threw never arrives, and a test must then fail rather than
    /// hang the run (as MPI's ranks stop within a bounded time when one dies).
    /// </summary>
    private void Wait()
    {
        if (!_shared.Barrier.SignalAndWait(TimeSpan.FromSeconds(120)))
        {
            throw new TimeoutException($"ThreadCommunicator: rank {Rank} waited 120 s for the other ranks; one of them stopped or hangs.");
        }
    }

    private sealed class Shared(int size)
    {
        public float[][] Slots { get; } = new float[size][];

        public Barrier Barrier { get; } = new(size);
    }
}
