using System.Runtime.InteropServices;

namespace GpuCnn.Distributed;

/// <summary>
/// The processes of a data-parallel run (one per device), as DistributedDataParallel sees them: each has a rank in
/// 0 … Size − 1, and collective operations that every rank calls in the same order.
/// </summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This process's rank.</summary>
    int Rank { get; }

    /// <summary>How many processes take part.</summary>
    int Size { get; }

    /// <summary>
    /// Replaces <paramref name="values"/> on every rank by their sum over the ranks, added in rank order (so every rank,
    /// and every rerun with the same ranks, gets the same bits).
    /// </summary>
    void AllReduceSum(float[] values);

    /// <summary>Replaces <paramref name="values"/> on every rank by those of rank <paramref name="root"/>.</summary>
    void Broadcast(float[] values, int root);
}

/// <summary>One process alone: the collectives change nothing.</summary>
public sealed class SingleProcess : ICommunicator
{
    /// <summary>The one instance.</summary>
    public static SingleProcess Instance { get; } = new();

    /// <inheritdoc/>
    public int Rank => 0;

    /// <inheritdoc/>
    public int Size => 1;

    /// <inheritdoc/>
    public void AllReduceSum(float[] values)
    {
    }

    /// <inheritdoc/>
    public void Broadcast(float[] values, int root)
    {
    }

    /// <inheritdoc/>
    public void Dispose()
    {
    }
}

/// <summary>
/// The ranks of an Open MPI job (<c>mpirun -np N …</c>), through libmpi.so.40. Open MPI's handles are pointers to
/// exported objects (MPI_COMM_WORLD is &amp;ompi_mpi_comm_world), which is why MPI.NET's integer handles do not work
/// with it. The sum is a gather to rank 0, a sum in rank order there and a broadcast: Open MPI's own all-reduce picks
/// its algorithm by size and rank count and changes the last bits with it.
/// </summary>
public sealed class MpiCommunicator : ICommunicator
{
    private const string Library = "libmpi.so.40";
    private readonly IntPtr _world, _float;
    private float[] _gathered = [];
    private bool _finalized;

    private MpiCommunicator(IntPtr world, IntPtr single)
    {
        _world = world;
        _float = single;
        Check(NativeMethods.MPI_Comm_rank(_world, out int rank), "MPI_Comm_rank");
        Check(NativeMethods.MPI_Comm_size(_world, out int size), "MPI_Comm_size");
        (Rank, Size) = (rank, size);
    }

    /// <summary>Whether this process was started by mpirun (Open MPI's environment is present).</summary>
    public static bool UnderMpirun => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null;

    /// <summary>This rank's index among the ranks on its machine (0 when unknown).</summary>
    public static int LocalRank => int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_RANK"), out int r) ? r : 0;

    /// <summary>How many ranks run on this machine (1 when unknown).</summary>
    public static int LocalSize => int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out int n) && n > 0 ? n : 1;

    /// <inheritdoc/>
    public int Rank { get; }

    /// <inheritdoc/>
    public int Size { get; }

    /// <summary>
    /// Initialises MPI. Throws <see cref="InvalidOperationException"/> saying what to do when the process was not
    /// started by mpirun or Open MPI is not installed.
    /// </summary>
    public static MpiCommunicator Start()
    {
        if (!UnderMpirun)
        {
            throw new InvalidOperationException("--distributed needs mpirun: start the ranks with `mpirun -np N gpucnn train --distributed …` (Open MPI).");
        }

        IntPtr library;
        try
        {
            library = NativeLibrary.Load(Library);
        }
        catch (DllNotFoundException e)
        {
            throw new InvalidOperationException($"--distributed needs Open MPI's {Library}, which is not installed (Debian/Ubuntu: apt-get install openmpi-bin).", e);
        }

        Check(NativeMethods.MPI_Init(IntPtr.Zero, IntPtr.Zero), "MPI_Init");
        return new MpiCommunicator(NativeLibrary.GetExport(library, "ompi_mpi_comm_world"), NativeLibrary.GetExport(library, "ompi_mpi_float"));
    }

    /// <inheritdoc/>
    public void AllReduceSum(float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (Rank == 0 && _gathered.Length != values.Length * Size)
        {
            _gathered = new float[values.Length * Size];
        }

        Check(NativeMethods.MPI_Gather(values, values.Length, _float, Rank == 0 ? _gathered : null, values.Length, _float, 0, _world), "MPI_Gather");
        if (Rank == 0)
        {
            Array.Clear(values);
            for (int rank = 0; rank < Size; rank++)
            {
                var part = _gathered.AsSpan(rank * values.Length, values.Length);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] += part[i];
                }
            }
        }

        Broadcast(values, 0);
    }

    /// <inheritdoc/>
    public void Broadcast(float[] values, int root)
    {
        ArgumentNullException.ThrowIfNull(values);
        Check(NativeMethods.MPI_Bcast(values, values.Length, _float, root, _world), "MPI_Bcast");
    }

    /// <summary>Finalises MPI (every rank must).</summary>
    public void Dispose()
    {
        if (!_finalized)
        {
            _finalized = true;
            _ = NativeMethods.MPI_Finalize();
        }
    }

    private static void Check(int code, string call)
    {
        if (code != 0)
        {
            throw new InvalidOperationException($"MPI: {call} failed with error {code}.");
        }
    }

    private static class NativeMethods
    {
        [DllImport(Library)]
        internal static extern int MPI_Init(IntPtr argc, IntPtr argv);

        [DllImport(Library)]
        internal static extern int MPI_Comm_rank(IntPtr comm, out int rank);

        [DllImport(Library)]
        internal static extern int MPI_Comm_size(IntPtr comm, out int size);

        [DllImport(Library)]
        internal static extern int MPI_Gather(float[] send, int sendCount, IntPtr sendType, float[]? receive, int receiveCount, IntPtr receiveType,
            int root, IntPtr comm);

        [DllImport(Library)]
        internal static extern int MPI_Bcast(float[] buffer, int count, IntPtr type, int root, IntPtr comm);

        [DllImport(Library)]
        internal static extern int MPI_Finalize();
    }
}
