using ILGPU;
using ILGPU.Runtime.Cuda;

namespace GpuCnn.Kernels;

/// <summary>
/// Float operations whose rounding is stated: a product or a sum rounded on its own. ILGPU writes a float product and
/// sum as PTX <c>mul.f32</c> / <c>add.f32</c>, which ptxas fuses into one <c>fma.rn.f32</c> wherever a product feeds a
/// sum, as it sees fit; PTX never fuses an instruction that names its rounding, so on CUDA these emit <c>mul.rn</c> and
/// <c>add.rn</c>. Elsewhere (the CPU accelerator runs .NET, which never fuses on its own) they are the plain operators.
/// Used by the optimizer updates, which round as PyTorch's CPU kernels do (docs/05-optimizers.md), with a
/// <see cref="IMultiplyAdd"/> for the fused forms: an H200 run had found ptxas's own fusing moving SGD's Nesterov
/// fixture 1.3e-5 from PyTorch in 100 steps.
/// </summary>
internal static class Rounded
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

    /// <summary>
    /// a · b + c rounded once, from double arithmetic: the product of two floats is exact in double (48 of its 53 bits);
    /// the double sum is made round-to-odd (if inexact and its last bit is even, moved one unit toward the exact sum,
    /// which TwoSum gives), and a round-to-odd result with at least two bits more than a float's 24 rounds to the float
    /// nearest the exact value (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums", IEEE TC 2008).
    /// Tested against MathF.FusedMultiplyAdd (RoundedTests).
    /// </summary>
    internal static float MultiplyAddInDouble(float a, float b, float c)
    {
        double product = (double)a * b;
        double sum = product + c;
        double bVirtual = sum - product;
        double error = (product - (sum - bVirtual)) + (c - bVirtual);
        if (error != 0 && !double.IsNaN(sum) && !double.IsInfinity(sum))
        {
            ulong bits = Interop.FloatAsInt(sum);
            if ((bits & 1) == 0)
            {
                // One unit up in magnitude when the exact sum lies beyond the double, down when it lies inside.
                bits = (error > 0) == (sum > 0) ? bits + 1 : bits - 1;
                sum = Interop.IntAsFloat(bits);
            }
        }

        return (float)sum;
    }
}

/// <summary>
/// How a kernel computes a · b + c where PyTorch's kernels fuse it: a type argument of the optimizer kernels, chosen per
/// device by the ILGPU backend (a kernel is compiled for the one it is given, so a device never sees the other's code).
/// </summary>
internal interface IMultiplyAdd
{
    /// <summary>a · b + c.</summary>
    float MultiplyAdd(float a, float b, float c);
}

/// <summary>
/// a · b + c rounded once (IEEE 754 fusedMultiplyAdd): <c>fma.rn.f32</c> on CUDA; elsewhere
/// <see cref="Rounded.MultiplyAddInDouble"/> (ILGPU 1.5.3 maps no .NET method to its own multiply-add, and a call of
/// <c>MathF.FusedMultiplyAdd</c> becomes an undefined external function in PTX, even in a branch never taken).
/// </summary>
internal readonly struct FusedMultiplyAdd : IMultiplyAdd
{
    /// <inheritdoc/>
    public float MultiplyAdd(float a, float b, float c)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("fma.rn.f32 %0, %1, %2, %3;", out float result, a, b, c);
            return result;
        }

        return Rounded.MultiplyAddInDouble(a, b, c);
    }
}

/// <summary>
/// a · b + c as a float product and sum, for an OpenCL device without doubles (no cl_khr_fp64), where the exact form
/// cannot compile: rounded twice, or once where the device's compiler fuses them (OpenCL C allows it by default).
/// Within float rounding of PyTorch, not to its bit (docs/05-optimizers.md).
/// </summary>
internal readonly struct SinglePrecisionMultiplyAdd : IMultiplyAdd
{
    /// <inheritdoc/>
    public float MultiplyAdd(float a, float b, float c) => (a * b) + c;
}
