using ILGPU.Runtime.Cuda;

namespace GpuCnn.Kernels;

/// <summary>
/// Products and sums rounded one at a time, as C# writes them, on every backend. ILGPU writes a float product and sum
/// as PTX <c>mul.f32</c> / <c>add.f32</c>, which ptxas fuses into one <c>fma.rn.f32</c> (rounded once) wherever a
/// product feeds a sum; PTX never fuses an instruction that names its rounding (<c>mul.rn</c>, <c>add.rn</c>), so on
/// CUDA these emit those. The CPU backends and ILGPU's CPU accelerator run .NET, which never fuses. Used where rounding
/// piles up over many launches and the same bits on every backend matter more than the fused form's one rounding less:
/// the optimizer updates (an H200 run: SGD's Nesterov fixture drifted 1.3e-5 from PyTorch in 100 fused steps, each
/// operation rounded alone as the CPU backends and PyTorch's CPU kernels round it).
/// </summary>
internal static class Unfused
{
    /// <summary>a · b, rounded.</summary>
    public static float Multiply(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f32 %0, %1, %2;", out float product, a, b);
            return product;
        }

        return a * b;
    }

    /// <summary>a + b, rounded.</summary>
    public static float Add(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("add.rn.f32 %0, %1, %2;", out float sum, a, b);
            return sum;
        }

        return a + b;
    }

    /// <summary>a − b, rounded.</summary>
    public static float Subtract(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("sub.rn.f32 %0, %1, %2;", out float difference, a, b);
            return difference;
        }

        return a - b;
    }
}
