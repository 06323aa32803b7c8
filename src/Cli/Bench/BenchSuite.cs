using System.Diagnostics;
using GpuCnn.Cpu;
using GpuCnn.Models;

namespace GpuCnn.Cli.Bench;

/// <summary>
/// A measured row: median milliseconds over the repetitions (device events on GPUs, as PyTorch's CUDA events; the
/// host clock around the work and a synchronisation elsewhere), the host-clock median too, and GFLOP/s where FLOPs
/// are defined.
/// </summary>
internal sealed record BenchResult(string Name, string Device, double Ms, double? Gflops, int Repetitions, double WallMs);

/// <summary>
/// `gpucnn bench`: times the benchmark list of the shared operation catalogue (<see cref="OperationCases.Benchmarks"/>),
/// the same case descriptions that selftest and the tests cross-check.
/// </summary>
internal static class BenchSuite
{
    public static IReadOnlyList<OperationCase> Cases(bool quick) => [.. OperationCases.Benchmarks(quick)];

    /// <summary>
    /// Runs one row: a warm-up (which also compiles kernels), then repetitions until about half a second or 20 runs.
    /// The warm-up repeats for <see cref="WarmUpMs"/>: .NET compiles code outside the kernels (argument checks, job
    /// dispatch) at full optimisation only after 30 calls and a 100 ms delay, and without that a row of a few
    /// milliseconds measured partly unoptimised code that a training run leaves behind in its first second
    /// (LeNet's second layer forward: 0.117 ms against 0.111 with tiered compilation off). The number of runs comes
    /// from the fastest warm-up run after the first (three at least): the first one's compiling had held every row that
    /// meets a new kernel to 3 runs (the H200 log's gemm and first convolution rows), where PyTorch's side sizes from
    /// warm runs, and a single warm run stalled by the host (a collection elsewhere in the process) could do the same.
    /// </summary>
    public static BenchResult Measure(Backend backend, OperationCase benchCase)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(benchCase);
        using var body = benchCase.Prepare(backend);
        var clock = Stopwatch.StartNew();
        body.Run(); // compiles
        backend.Synchronize();
        double warm = double.PositiveInfinity;
        int warmRuns = 0;
        do
        {
            var run = Stopwatch.StartNew();
            body.Run();
            backend.Synchronize();
            warm = Math.Min(warm, run.Elapsed.TotalMilliseconds);
            warmRuns++;
        }
        while (clock.Elapsed.TotalMilliseconds < WarmUpMs || warmRuns < 3);

        int repetitions = (int)Math.Clamp(500 / Math.Max(warm, 1e-3), 3, 20);
        var wall = new double[repetitions];
        var device = new double[repetitions];
        var gpu = backend as Ilgpu.IlgpuBackend is { IsGpu: true } ilgpu ? ilgpu : null;
        for (int i = 0; i < repetitions; i++)
        {
            clock.Restart();
            device[i] = gpu?.DeviceMilliseconds(body.Run) ?? 0;
            if (gpu is null)
            {
                body.Run();
            }

            backend.Synchronize();
            wall[i] = clock.Elapsed.TotalMilliseconds;
        }

        double wallMedian = StepProfiler.Median(wall);
        double median = gpu is null ? wallMedian : StepProfiler.Median(device);
        return new BenchResult(benchCase.Name, backend.Name, median, benchCase.Flops / (median * 1e6), repetitions, wallMedian);
    }

    private const double WarmUpMs = 300;


    /// <summary>Kernel launches of one LeNet-5 training step at <paramref name="batch"/> (after a warm-up step), for ILGPU backends.</summary>
    public static long LaunchesPerLeNetStep(Ilgpu.IlgpuBackend backend, int batch)
    {
        using var body = OperationCases.LeNetStep("launches", batch).Prepare(backend);
        body.Run();
        long before = backend.LaunchCount;
        body.Run();
        return backend.LaunchCount - before;
    }
}
