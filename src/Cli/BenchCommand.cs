using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using GpuCnn.Cli.Bench;
using GpuCnn.IO;

namespace GpuCnn.Cli;

/// <summary>
/// <c>gpucnn bench [--device D] [--quick] [--json FILE] [--only PREFIX]</c>: the fixed suite as a table (median ms,
/// GFLOP/s; on the CPU backend also each row's share of the measured FMA peak) and optionally a JSON array of
/// {"name", "device", "ms", "gflops"} rows (the agreed fields other programs read).
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliIo io)
    {
        var device = CommonOptions.Device();
        var quick = new Option<bool>("--quick") { Description = "Small shapes (rows named …-quick); under a minute even on the ILGPU CPU accelerator." };
        var json = new Option<string?>("--json") { Description = "Also write the rows as a JSON array to this file." };
        var only = new Option<string[]>("--only") { Description = "Run only rows whose name starts with one of these prefixes.", AllowMultipleArgumentsPerToken = true };
        var launches = new Option<bool>("--launches")
        {
            Description = "Instead of timing, list each row's kernel launches (grid, group, shared memory, longest serial loop per thread) " +
                "as an ILGPU device would make them; on ILGPU's CPU accelerator, as for a 132-SM H100/H200 (nothing runs).",
        };
        var command = new Command("bench", "Time the fixed benchmark suite on one device.") { device, quick, json, only, launches };
        command.SetAction(parse =>
        {
            if (parse.GetValue(launches) && parse.GetValue(json) is not null)
            {
                // It had checked the file, printed the plan and written nothing.
                throw new UsageException("--json writes timed rows; --launches times nothing (it prints its plan): give one of them.");
            }

            if (parse.GetValue(json) is { } target)
            {
                CommonOptions.WritableFile("--json", target); // before minutes of timing
            }

            using var backend = CommonOptions.OpenDevice(parse.GetValue(device)!, io.Error);
            string[] prefixes = parse.GetValue(only) ?? [];
            var cases = BenchSuite.Cases(parse.GetValue(quick)).Where(c => prefixes.Length == 0 || prefixes.Any(p => c.Name.StartsWith(p, StringComparison.Ordinal))).ToList();
            if (cases.Count == 0)
            {
                throw new UsageException($"--only {string.Join(" ", prefixes)} matches no benchmark row.");
            }

            io.Out.WriteLine($"device: {backend.Name} ({backend.DeviceName})");
            if (backend is Ilgpu.IlgpuBackend settings && (settings.IsGpu || parse.GetValue(launches)))
            {
                // What the GPUCNN_* switches chose (a GPU's, or the plan's), so that a log of one setting against another says which is which.
                string tiles = settings.ImplicitGemmFilters == 16
                    ? "implicit-GEMM tiles of 16 filters for forwards of ≤ 16 (32 for the rest of ≤ 32)"
                    : $"implicit-GEMM tiles of {settings.ImplicitGemmFilters} filters for layers of ≤ 32";
                io.Out.WriteLine($"kernels: GEMM {settings.GemmAlgorithm}, convolution {settings.ConvolutionAlgorithm}, tile groups of " +
                    $"{settings.TileGroupThreads} threads, {tiles}, few-taps filter gradients of ≤ {settings.FewTapsFilterGradient} taps " +
                    $"(blocked: ≤ {settings.BlockedFewTapsFilterGradient}" +
                    (settings.BlockedFewTapsChunksPerMultiprocessor is { } chunks ? $", chunks a multiprocessor: {chunks})" : ")") +
                    (settings.SplitMinimumGroups > 0 ? $", depth splits of at least {settings.SplitMinimumGroups} groups" : "") +
                    (settings.StagedBatchNormMerge ? "" : ", batch norm's merges from memory"));
            }

            if (parse.GetValue(launches))
            {
                var ilgpuBackend = backend as Ilgpu.IlgpuBackend ?? throw new UsageException("--launches needs an ILGPU device: cuda, opencl or ilgpu-cpu.");
                return LaunchReport.Print(io.Out, ilgpuBackend, cases);
            }

            bool events = backend is Ilgpu.IlgpuBackend { IsGpu: true };
            io.Out.WriteLine(events ? "median ms: device events around each run (wall ms: host clock with a synchronisation)" : "median ms: host clock around each run and a synchronisation");
            double? peak = backend is Cpu.Fast.CpuBackend cpu ? cpu.MeasurePeakGflops() : null;
            if (peak is { } p)
            {
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"measured FMA peak: {p:F1} GFLOP/s (% peak: each row's GFLOP/s against it)"));
                io.Out.WriteLine($"Winograd: {((Cpu.Fast.CpuBackend)backend).Winograd} (convolution rows count a direct convolution's FLOPs; a 3x3 layer run by Winograd does 2.25x fewer, so its share can pass 100 %)");
            }

            io.Out.WriteLine($"{"name",-24} {"median ms",12} {"GFLOP/s",10} {"% peak",7} {"runs",5} {"wall ms",10}");
            var results = new List<BenchResult>();
            foreach (var benchCase in cases)
            {
                var result = BenchSuite.Measure(backend, benchCase);
                results.Add(result);
                string share = result.Gflops is { } rowGflops && peak is { } ceiling ? (100 * rowGflops / ceiling).ToString("F1", CultureInfo.InvariantCulture) : "-";
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{result.Name,-24} {result.Ms,12:F3} {(result.Gflops is { } g ? g.ToString("F1", CultureInfo.InvariantCulture) : "-"),10} {share,7} {result.Repetitions,5} {result.WallMs,10:F3}"));
            }

            if (backend is Ilgpu.IlgpuBackend ilgpu)
            {
                io.Out.WriteLine($"kernel launches per LeNet-5 training step: {BenchSuite.LaunchesPerLeNetStep(ilgpu, parse.GetValue(quick) ? 4 : 64)}");
            }

            if (parse.GetValue(json) is { } path)
            {
                var rows = results.Select(r => new { name = r.Name, device = r.Device, ms = Math.Round(r.Ms, 4), gflops = r.Gflops is { } g ? Math.Round(g, 2) : (double?)null });
                byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(rows, JsonOptions);
                CommonOptions.WriteOutput("--json", path, () => FileUtil.WriteAtomically(path, s => s.Write(bytes)));
                io.Out.WriteLine($"wrote {path}");
            }

            return 0;
        });
        return command;
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
}
