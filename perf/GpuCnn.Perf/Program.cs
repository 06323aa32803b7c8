using BenchmarkDotNet.Running;

// dotnet run -c Release --project perf/GpuCnn.Perf -- --filter '*'            (full runs)
// dotnet run -c Release --project perf/GpuCnn.Perf -- --filter '*' --job short (a quick look)
// dotnet run -c Release --project perf/GpuCnn.Perf -- gemm-vs-blas [--lib PATH] [--pairs N] [SIZE …]  (perf/cpu/gemm_vs_blas.sh)
if (args is ["gemm-vs-blas", .. var rest])
{
    return GpuCnn.Perf.GemmVersusBlas.Run(rest);
}

BenchmarkSwitcher.FromAssembly(typeof(GpuCnn.Perf.GemmBenchmarks).Assembly).Run(args);
return 0;
