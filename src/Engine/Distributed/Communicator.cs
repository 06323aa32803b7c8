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

/// <summary>Collectives built on <see cref="ICommunicator"/>'s two.</summary>
internal static class CommunicatorVotes
{
    /// <summary>
    /// Whether any rank votes <paramref name="yes"/> (every rank must call it), summed through <paramref name="slot"/>,
    /// a one-float array the caller keeps (a vote a step allocates nothing); one process: its own vote.
    /// </summary>
    public static bool AnyRank(this ICommunicator ranks, bool yes, float[] slot)
    {
        slot[0] = yes ? 1f : 0f;
        ranks.AllReduceSum(slot);
        return slot[0] > 0f;
    }
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
/// its algorithm by size and rank count and changes the last bits with it. Collectives are started non-blocking and
/// waited on with a deadline (<see cref="Timeout"/>): a rank that hangs makes the others abort the job with a message
/// saying so, instead of waiting for ever (a rank that dies is mpirun's to handle: it ends the job).
/// </summary>
public sealed class MpiCommunicator : ICommunicator
{
    private const string Library = "libmpi.so.40";
    private readonly IntPtr _world, _float;
    private readonly TimeSpan _timeout = Timeout; // read once, checked in Start
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
    /// How long a collective may wait for the other ranks before this rank aborts the job: 10 minutes, or
    /// GPUCNN_MPI_TIMEOUT_S seconds (a slow first step — compiling GPU kernels, loading data — must fit in it; "Infinity"
    /// or any value past 10⁹ s is 10⁹ s, about 31 years). Anything but a number of at least 1 is an
    /// <see cref="InvalidOperationException"/> naming the value, which <see cref="Start"/> raises before MPI starts.
    /// </summary>
    public static TimeSpan Timeout
    {
        get
        {
            if (Environment.GetEnvironmentVariable("GPUCNN_MPI_TIMEOUT_S") is not { } text || string.IsNullOrWhiteSpace(text))
            {
                return TimeSpan.FromMinutes(10);
            }

            if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double seconds) || !(seconds >= 1))
            {
                // Below a second every collective would time out at once (1e-9 is a zero TimeSpan).
                throw new InvalidOperationException($"GPUCNN_MPI_TIMEOUT_S '{text}' is not a number of seconds of at least 1.");
            }

            return TimeSpan.FromSeconds(Math.Min(seconds, 1e9)); // TimeSpan.FromSeconds overflows past about 9.2e11 s
        }
    }

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

        _ = Timeout; // a bad GPUCNN_MPI_TIMEOUT_S is said now, not thrown mid-collective with a buffer still pinned for MPI

        // GPUCNN_MPI_LIBRARY names another libmpi.so.40 (an Open MPI outside the loader's path, as cluster modules install it).
        string path = Environment.GetEnvironmentVariable("GPUCNN_MPI_LIBRARY") is { Length: > 0 } custom ? custom : Library;
        IntPtr library;
        try
        {
            library = NativeLibrary.Load(path);
        }
        catch (DllNotFoundException e)
        {
            throw new InvalidOperationException(
                $"--distributed needs Open MPI's {Library}, which was not found{(path == Library ? "" : $" at {path}")} (Debian/Ubuntu: apt-get install openmpi-bin).", e);
        }

        InstallResolver(library);

        Check(NativeMethods.MPI_Init(IntPtr.Zero, IntPtr.Zero), "MPI_Init");
        var communicator = new MpiCommunicator(NativeLibrary.GetExport(library, "ompi_mpi_comm_world"), NativeLibrary.GetExport(library, "ompi_mpi_float"));
        // The fault tests: this rank never reaches a collective, or dies.
        if (int.TryParse(Environment.GetEnvironmentVariable("GPUCNN_TEST_HANG_RANK"), out int hang) && hang == communicator.Rank)
        {
            Thread.Sleep(System.Threading.Timeout.Infinite);
        }

        if (int.TryParse(Environment.GetEnvironmentVariable("GPUCNN_TEST_DIE_RANK"), out int die) && die == communicator.Rank)
        {
            Environment.Exit(3);
        }

        return communicator;
    }

    /// <summary>Binds this class's MPI imports to the library that was loaded (once per process).</summary>
    private static void InstallResolver(IntPtr library)
    {
        lock (ResolverLock)
        {
            if (!_resolverInstalled)
            {
                NativeLibrary.SetDllImportResolver(typeof(MpiCommunicator).Assembly,
                    (name, _, _) => name == Library ? library : IntPtr.Zero);
                _resolverInstalled = true;
            }
        }
    }

    private static readonly object ResolverLock = new();
    private static bool _resolverInstalled;

    /// <inheritdoc/>
    public void AllReduceSum(float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (Rank == 0 && _gathered.Length != values.Length * Size)
        {
            _gathered = new float[values.Length * Size];
        }

        var send = GCHandle.Alloc(values, GCHandleType.Pinned);
        var receive = GCHandle.Alloc(_gathered, GCHandleType.Pinned);
        try
        {
            Check(NativeMethods.MPI_Igather(send.AddrOfPinnedObject(), values.Length, _float, Rank == 0 ? receive.AddrOfPinnedObject() : IntPtr.Zero,
                values.Length, _float, 0, _world, out IntPtr request), "MPI_Igather");
            Wait(request, "summing over the ranks (MPI_Igather)");
        }
        finally
        {
            send.Free();
            receive.Free();
        }

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
        var buffer = GCHandle.Alloc(values, GCHandleType.Pinned);
        try
        {
            Check(NativeMethods.MPI_Ibcast(buffer.AddrOfPinnedObject(), values.Length, _float, root, _world, out IntPtr request), "MPI_Ibcast");
            Wait(request, "a broadcast (MPI_Ibcast)");
        }
        finally
        {
            buffer.Free();
        }
    }

    /// <summary>Waits for a non-blocking collective; past <see cref="Timeout"/>, says so on stderr and aborts the whole job.</summary>
    private void Wait(IntPtr request, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var timeout = _timeout;
        var spin = new SpinWait();
        while (true)
        {
            Check(NativeMethods.MPI_Test(ref request, out int done, IntPtr.Zero), "MPI_Test");
            if (done != 0)
            {
                return;
            }

            if (clock.Elapsed > timeout)
            {
                Console.Error.WriteLine($"error: rank {Rank} of {Size}: no answer from the other ranks for {timeout.TotalSeconds:F0} s while {what}: " +
                    "a rank hung or stopped; aborting the job (GPUCNN_MPI_TIMEOUT_S sets the limit).");
                Console.Error.Flush();
                _ = NativeMethods.MPI_Abort(_world, 1);
            }

            spin.SpinOnce(sleep1Threshold: 20);
        }
    }

    /// <summary>
    /// Ends every rank of the job at once with exit code <paramref name="code"/> (MPI_Abort): for a rank that fails
    /// alone, whose peers would otherwise wait in their next collective until <see cref="Timeout"/> — and whose own
    /// MPI_Finalize would wait for them. Say what went wrong before calling it; it does not return.
    /// </summary>
    public void Abort(int code)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        _ = NativeMethods.MPI_Abort(_world, code);
        Environment.Exit(code); // MPI_Abort does not return; should it, the process still ends
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
        internal static extern int MPI_Igather(IntPtr send, int sendCount, IntPtr sendType, IntPtr receive, int receiveCount, IntPtr receiveType,
            int root, IntPtr comm, out IntPtr request);

        [DllImport(Library)]
        internal static extern int MPI_Ibcast(IntPtr buffer, int count, IntPtr type, int root, IntPtr comm, out IntPtr request);

        [DllImport(Library)]
        internal static extern int MPI_Test(ref IntPtr request, out int flag, IntPtr status);

        [DllImport(Library)]
        internal static extern int MPI_Abort(IntPtr comm, int code);

        [DllImport(Library)]
        internal static extern int MPI_Finalize();
    }
}
