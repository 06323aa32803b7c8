using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>The ILGPU kernel of <c>Backend.Add</c> (compiled into GpuCnn.Kernels; see src/Ops/README.md).</summary>
internal static class AddKernels
{
    /// <summary>y = a + b; y may be a or b.</summary>
    public static void Add(Index1D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[index] = a[index] + b[index];
}
