using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>The ILGPU kernel of <c>Backend.FlagNonFinite</c> (compiled into GpuCnn.Kernels; see src/Ops/README.md).</summary>
internal static class NonFiniteKernels
{
    /// <summary>
    /// flags[slot] = 1 where x[i] is NaN or ±∞. Every such thread stores the same value, so the result does not
    /// depend on their order (no atomics needed).
    /// </summary>
    public static void Flag(Index1D index, ArrayView<float> x, ArrayView<float> flags, int slot)
    {
        float v = x[index];
        if (float.IsNaN(v) || float.IsInfinity(v)) // ILGPU intrinsics
        {
            flags[slot] = 1f;
        }
    }
}
