using BenchmarkDotNet.Running;

// dotnet run -c Release --project perf/GpuCnn.Perf -- --filter '*'            (full runs)
// dotnet run -c Release --project perf/GpuCnn.Perf -- --filter '*' --job short (a quick look)
BenchmarkSwitcher.FromAssembly(typeof(GpuCnn.Perf.GemmBenchmarks).Assembly).Run(args);
