using GpuCnn.Kernels;

namespace GpuCnn.Tests;

/// <summary>
/// The math helpers the kernels share, run as plain C#: the same code ILGPU compiles for every accelerator, except
/// that XMath.Exp is the host's exp here and PTX ex2.approx (a couple of ulp) on CUDA; the GPU check covers that.
/// </summary>
public sealed class KernelMathTests
{
    [Fact]
    public void Tanh_is_within_a_few_ulp_of_double_tanh_everywhere()
    {
        double worst = 0;
        float worstAt = 0;
        // Dense near the series/exponential switch at 0.55 and near 0, then out to where tanh is ±1 in float.
        var points = Enumerable.Range(-200_000, 400_001).Select(i => i * 1e-4f)
            .Concat(Enumerable.Range(1, 2000).Select(i => 0.55f + ((i - 1000) * 1e-7f)))
            .Concat(Enumerable.Range(-60, 121).Select(i => MathF.Pow(2f, i / 4f)));
        foreach (float v in points)
        {
            double expected = Math.Tanh(v);
            double relative = Math.Abs(ElementwiseKernels.Tanh(v) - expected) / Math.Max(Math.Abs(expected), 1e-30);
            if (relative > worst)
            {
                (worst, worstAt) = (relative, v);
            }
        }

        Assert.True(worst < 3.6e-7, $"worst relative error {worst:E2} at {worstAt:R} (3 float ulp = 3.6e-7)");
    }

    [Theory]
    [InlineData(float.PositiveInfinity, 1f)]
    [InlineData(float.NegativeInfinity, -1f)]
    [InlineData(0f, 0f)]
    [InlineData(100f, 1f)]
    [InlineData(-100f, -1f)]
    public void Tanh_keeps_the_limits(float v, float expected) => Assert.Equal(expected, ElementwiseKernels.Tanh(v));

    [Fact]
    public void Tanh_of_nan_is_nan_and_keeps_the_sign_of_zero()
    {
        Assert.True(float.IsNaN(ElementwiseKernels.Tanh(float.NaN)));
        Assert.True(float.IsNegative(ElementwiseKernels.Tanh(-0f)));
    }
}
