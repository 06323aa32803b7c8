using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Measures what the team's fused multiply-adds can do at one SIMD width: every worker runs twelve independent FMA
/// chains (enough to cover two FMA pipes of 4–5 cycles' latency, and 12 + 2 registers fit AVX2's 16) with no memory
/// traffic. The best of a few timed passes is the ceiling a GEMM or convolution row can be compared against.
/// </summary>
internal sealed class FmaPeak(CpuWorkers workers, SimdWidth width) : IParallelJob
{
    private const int Chains = 12;
    private long _iterations;

    /// <summary>The team's measured single-precision FMA throughput in GFLOP/s (one FMA = 2 FLOPs per lane).</summary>
    public double MeasureGflops()
    {
        _iterations = 20_000;
        double seconds = Time();
        for (int calibrations = 0; seconds < 0.02 && calibrations < 12; calibrations++)
        {
            _iterations *= 4;
            seconds = Time();
        }

        double best = seconds;
        for (int pass = 0; pass < 3; pass++)
        {
            best = Math.Min(best, Time());
        }

        double flops = (double)workers.Count * _iterations * Chains * 2 * (int)width;
        return flops / best / 1e9;
    }

    public void Run(int part, int worker)
    {
        float sink = width switch
        {
            SimdWidth.Vector512 => RunChains<Vec512, Vector512<float>>(_iterations),
            SimdWidth.Vector256 => RunChains<Vec256, Vector256<float>>(_iterations),
            SimdWidth.Vector128 => RunChains<Vec128, Vector128<float>>(_iterations),
            _ => RunChains<Scalar, float>(_iterations),
        };

        // The result is consumed so the JIT cannot drop the loop; it is a finite number, never NaN.
        if (float.IsNaN(sink))
        {
            throw new InvalidOperationException("FMA peak measurement produced NaN.");
        }
    }

    private double Time()
    {
        long start = Stopwatch.GetTimestamp();
        workers.Run(this, workers.Count);
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float RunChains<TOps, TVec>(long iterations)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        // x ← x·m + a with m just below 1 converges to a / (1 − m): the values stay finite for any count.
        TVec m = TOps.Broadcast(0.999f), a = TOps.Broadcast(0.001f);
        TVec c0 = TOps.Zero, c1 = TOps.Zero, c2 = TOps.Zero, c3 = TOps.Zero, c4 = TOps.Zero, c5 = TOps.Zero;
        TVec c6 = TOps.Zero, c7 = TOps.Zero, c8 = TOps.Zero, c9 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero;
        for (long i = 0; i < iterations; i++)
        {
            c0 = TOps.MultiplyAdd(c0, m, a);
            c1 = TOps.MultiplyAdd(c1, m, a);
            c2 = TOps.MultiplyAdd(c2, m, a);
            c3 = TOps.MultiplyAdd(c3, m, a);
            c4 = TOps.MultiplyAdd(c4, m, a);
            c5 = TOps.MultiplyAdd(c5, m, a);
            c6 = TOps.MultiplyAdd(c6, m, a);
            c7 = TOps.MultiplyAdd(c7, m, a);
            c8 = TOps.MultiplyAdd(c8, m, a);
            c9 = TOps.MultiplyAdd(c9, m, a);
            c10 = TOps.MultiplyAdd(c10, m, a);
            c11 = TOps.MultiplyAdd(c11, m, a);
        }

        TVec sum = TOps.Add(TOps.Add(TOps.Add(c0, c1), TOps.Add(c2, c3)), TOps.Add(TOps.Add(c4, c5), TOps.Add(c6, c7)));
        return TOps.Sum(TOps.Add(sum, TOps.Add(TOps.Add(c8, c9), TOps.Add(c10, c11))));
    }
}
