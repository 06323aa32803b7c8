using System.Diagnostics;
using System.Runtime.InteropServices;
using GpuCnn.Cpu.Fast;

namespace GpuCnn.Perf;

/// <summary>
/// The CPU backend's GEMM against a system BLAS's sgemm in one process, call for call: each pair runs both on the same
/// data, 1 ms apart (so that each side's idle threads have gone to sleep and neither spins on a core the other needs),
/// and the result is the median of the pairs' time ratios. Drift of a shared machine then hits both sides of a pair
/// alike, where separate processes minutes apart can differ by more than the gap being measured (perf/cpu/gemm_vs_blas.sh
/// sets the BLAS's kernel and thread settings).
/// </summary>
internal static unsafe class GemmVersusBlas
{
    private const string DebianOpenBlas = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";

    /// <summary>gemm-vs-blas [--lib PATH] [--pairs N] [SIZE …]: square products C = A·B, sizes 1024 and 4096 by default.</summary>
    public static int Run(string[] args)
    {
        string library = DebianOpenBlas;
        int pairs = 0;
        var sizes = new List<int>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--lib" when i + 1 < args.Length: library = args[++i]; break;
                case "--pairs" when i + 1 < args.Length && int.TryParse(args[i + 1], out int p) && p > 0: pairs = p; i++; break;
                default:
                    if (!int.TryParse(args[i], out int size) || size <= 0)
                    {
                        Console.Error.WriteLine($"gemm-vs-blas: '{args[i]}' is neither an option (--lib PATH, --pairs N) nor a positive size.");
                        return 2;
                    }

                    sizes.Add(size);
                    break;
            }
        }

        if (!NativeLibrary.TryLoad(library, out nint handle))
        {
            Console.Error.WriteLine($"gemm-vs-blas: cannot load the BLAS '{library}' (Debian: apt-get install libopenblas0-pthread; or --lib PATH).");
            return 2;
        }

        var sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)
            NativeLibrary.GetExport(handle, "cblas_sgemm");
        using var backend = (CpuBackend)Backends.Open("cpu");
        string? core = NativeLibrary.TryGetExport(handle, "openblas_get_corename", out nint name)
            ? Marshal.PtrToStringAnsi(((delegate* unmanaged<nint>)name)()) : null;
        if (NativeLibrary.TryGetExport(handle, "openblas_set_num_threads", out nint setThreads))
        {
            ((delegate* unmanaged<int, void>)setThreads)(backend.Threads); // as many as the CPU backend's team
        }

        Console.WriteLine($"cpu backend: {backend.Width} on {backend.Threads} threads; BLAS {Path.GetFileName(library)}{(core is null ? "" : $" (kernel {core})")}; {DateTime.UtcNow:yyyy-MM-dd}");
        Console.WriteLine($"{"size",6} {"pairs",6} {"ours GFLOP/s",13} {"BLAS GFLOP/s",13} {"ours/BLAS time",15} {"max |ours−BLAS|",14}");
        foreach (int n in sizes.Count > 0 ? sizes : [1024, 4096])
        {
            Compare(backend, sgemm, n, pairs > 0 ? pairs : n >= 4096 ? 7 : 31);
        }

        return 0;
    }

    private static void Compare(CpuBackend backend, delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> sgemm,
        int n, int pairs)
    {
        float[] a = Tensor.Random([n, n], 1).Data, b = Tensor.Random([n, n], 2).Data;
        using var da = backend.Upload<float>([n, n], a);
        using var db = backend.Upload<float>([n, n], b);
        using var dc = backend.Allocate<float>([n, n]);
        var ours = new double[pairs];
        var blas = new double[pairs];
        var ratios = new double[pairs];

        // The BLAS's matrices on 64-byte lines too, as the backend's tensors are: a managed array's data is not (24
        // bytes past a line on the large-object heap), and split vector loads and stores would handicap one side.
        nuint bytes = (nuint)n * (nuint)n * sizeof(float);
        float* pa = null, pb = null, pc = null;
        try
        {
            pa = (float*)NativeMemory.AlignedAlloc(bytes, 64);
            pb = (float*)NativeMemory.AlignedAlloc(bytes, 64);
            pc = (float*)NativeMemory.AlignedAlloc(bytes, 64);
            a.CopyTo(new Span<float>(pa, n * n));
            b.CopyTo(new Span<float>(pb, n * n));
            for (int i = -1; i < pairs; i++) // pair −1 warms both up
            {
                Thread.Sleep(1);
                long start = Stopwatch.GetTimestamp();
                backend.Gemm(false, false, n, n, n, 1f, da, db, 0f, dc);
                backend.Synchronize();
                double oursSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                Thread.Sleep(1);
                start = Stopwatch.GetTimestamp();
                sgemm(101, 111, 111, n, n, n, 1f, pa, n, pb, n, 0f, pc, n); // row-major, no transposes
                double blasSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (i >= 0)
                {
                    (ours[i], blas[i], ratios[i]) = (oursSeconds, blasSeconds, oursSeconds / blasSeconds);
                }
            }

            double flops = 2.0 * n * n * n;
            Console.WriteLine($"{n,6} {pairs,6} {flops / Median(ours) / 1e9,13:F1} {flops / Median(blas) / 1e9,13:F1} {Median(ratios),15:F3} {LargestDifference(backend.DownloadArray(dc), new ReadOnlySpan<float>(pc, n * n)),14:G3}");
        }
        finally
        {
            NativeMemory.AlignedFree(pa);
            NativeMemory.AlignedFree(pb);
            NativeMemory.AlignedFree(pc);
        }
    }

    /// <summary>The largest |ours − BLAS| over C: a timing of a wrong product would mean nothing.</summary>
    private static double LargestDifference(float[] ours, ReadOnlySpan<float> blas)
    {
        double largest = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            largest = Math.Max(largest, Math.Abs(ours[i] - blas[i]));
        }

        return largest;
    }

    private static double Median(double[] values)
    {
        double[] sorted = [.. values.Order()];
        return sorted[sorted.Length / 2];
    }
}
