using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>Kernels that exist to test how the engine survives a device fault; training never launches them.</summary>
internal static class DiagnosticKernels
{
    /// <summary>
    /// Writes 1 at <paramref name="offset"/> elements past the start of <paramref name="buffer"/>, far outside it: on a
    /// GPU an illegal address, the fault a kernel bug causes. Launched only by the GPUCNN_INJECT_FAULT_AT_LAUNCH hook.
    /// </summary>
    public static void WriteOutOfBounds(Index1D index, ArrayView<float> buffer, long offset) => buffer[offset + index] = 1f;
}
