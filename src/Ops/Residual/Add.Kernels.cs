using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>The ILGPU kernel of <c>Backend.Add</c> (compiled into GpuCnn.Kernels; see src/Ops/README.md).</summary>
internal static class AddKernels
{
    /// <summary>y = f(a + b) (<see cref="Identity"/>: no activation); y may be a or b.</summary>
    public static void Add<TF>(Index1D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, TF f)
        where TF : struct, IActivationFunction =>
        y[index] = f.Forward(a[index] + b[index]);
}
