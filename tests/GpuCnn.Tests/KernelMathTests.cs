using GpuCnn.Kernels;

namespace GpuCnn.Tests;

/// <summary>
/// The math helpers the kernels share, run as plain C#: the same code ILGPU compiles for every accelerator, except
/// that XMath.Exp is the host's exp here and PTX ex2.approx (a couple of ulp) on CUDA; the GPU check covers that. And
/// the host-side launch plans that decide what a kernel may index.
/// </summary>
public sealed class KernelMathTests
{
    [Fact]
    public void Depthwise_tiling_fits_its_stage_and_leaves_what_cannot_fit_to_the_direct_kernels()
    {
        // A MobileNet layer: a 32×32 tile a plane, its stage within the limit.
        var g = new Conv2dGeometry(64, 64, 28, 28, 64, 3, 3, PadH: 1, PadW: 1, Groups: 64);
        var d = Assert.NotNull(DepthwiseKernels.Plan(g, backwardData: false, 256));
        Assert.Equal((32, 8, 1), (d.TileW, d.ThreadRows, d.Planes));
        Assert.Equal((34, 34), (d.InRows, d.InCols));

        // Small planes share a group, but not more planes than the layer has.
        var tiny = Assert.NotNull(DepthwiseKernels.Plan(g with { N = 1, C = 3, K = 3, Groups = 3, H = 5, W = 5 }, backwardData: false, 256));
        Assert.Equal((8, 2, 3), (tiny.TileW, tiny.ThreadRows, tiny.Planes));

        // A stride whose region would overflow an int: no plan (the generic kernels run it), not a wrapped size.
        var absurd = new Conv2dGeometry(1, 2, 1, 1, 2, 1, 1, StrideH: 1_000_000_000, StrideW: 1_000_000_000, Groups: 2);
        Assert.Null(DepthwiseKernels.Plan(absurd, backwardData: false, 256));
        Assert.Null(DepthwiseKernels.PlanFilterGradient(absurd, 256, withBias: true));
    }

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
            double relative = Math.Abs(Tanh.Evaluate(v) - expected) / Math.Max(Math.Abs(expected), 1e-30);
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
    public void Tanh_keeps_the_limits(float v, float expected) => Assert.Equal(expected, Tanh.Evaluate(v));

    [Fact]
    public void Tanh_of_nan_is_nan_and_keeps_the_sign_of_zero()
    {
        Assert.True(float.IsNaN(Tanh.Evaluate(float.NaN)));
        Assert.True(float.IsNegative(Tanh.Evaluate(-0f)));
    }

    [Fact]
    public void Float_erf_is_within_its_documented_bound_and_double_erf_within_1e_14()
    {
        // References: erf at points where it is known exactly or to many digits (erf 0.5, 1, 2, 3 from tables).
        (double X, double Erf)[] known = [(0, 0), (0.5, 0.5204998778130465), (1, 0.8427007929497149), (2, 0.9953222650189527),
            (3, 0.9999779095030014), (-1, -0.8427007929497149), (6, 1)];
        foreach (var (x, expected) in known)
        {
            Assert.InRange(Math.Abs(SpecialFunctions.Erf(x) - expected), 0, 1e-14);
            Assert.InRange(Math.Abs(SpecialFunctions.Erf((float)x) - expected), 0, 2.5e-7); // 1.5e-7 plus float rounding
        }

        // Everywhere on a fine grid the float version stays within 2.5e-7 (1.5e-7 plus float rounding) of the double one.
        for (int i = -6000; i <= 6000; i++)
        {
            double x = i / 1000.0;
            Assert.InRange(Math.Abs(SpecialFunctions.Erf((float)x) - SpecialFunctions.Erf((double)(float)x)), 0, 2.5e-7);
        }

        Assert.True(double.IsNaN(SpecialFunctions.Erf(double.NaN)));
        Assert.Equal(1.0, SpecialFunctions.Erf(double.PositiveInfinity));
        Assert.Equal(-1f, SpecialFunctions.Erf(float.NegativeInfinity));
    }

    [Fact]
    public void Activation_structs_match_closed_forms_written_independently()
    {
        // The reference evaluates the activation structs themselves, so the backend tests compare each formula with
        // itself; here every forward and derivative meets a closed form written apart from it (GELU's Φ from tables).
        (double X, double Phi)[] normal = [(-2, 1 - 0.9772498680518208), (-1, 1 - 0.8413447460685429), (-0.5, 1 - 0.6914624612740131),
            (0, 0.5), (0.5, 0.6914624612740131), (1, 0.8413447460685429), (2, 0.9772498680518208)];
        foreach (var (x, phi) in normal)
        {
            double sigmoid = 1 / (1 + Math.Exp(-x)), density = Math.Exp(-x * x / 2) / Math.Sqrt(2 * Math.PI);
            Check(default(Relu), x, Math.Max(x, 0), x > 0 ? 1 : 0);
            Check(new LeakyRelu(0.1f), x, x > 0 ? x : 0.1f * x, x > 0 ? 1 : 0.1f);
            Check(default(Sigmoid), x, sigmoid, sigmoid * (1 - sigmoid));
            Check(default(Tanh), x, Math.Tanh(x), 1 - (Math.Tanh(x) * Math.Tanh(x)));
            Check(default(Silu), x, x * sigmoid, sigmoid + (x * sigmoid * (1 - sigmoid)));
            Check(default(Gelu), x, x * phi, phi + (x * density));
        }

        static void Check<TF>(TF f, double x, double value, double slope)
            where TF : struct, IActivationFunction
        {
            double y = f.Forward(x);
            Assert.True(Math.Abs(y - value) <= 1e-13, $"{f.Spec}({x}) = {y}, closed form {value}");
            Assert.True(Math.Abs(f.Backward(x, y, 1.0) - slope) <= 1e-13, $"{f.Spec}'({x}) = {f.Backward(x, y, 1.0)}, closed form {slope}");
            Assert.True(Math.Abs(f.Forward((float)x) - value) <= 1e-6, $"{f.Spec}({x}) in float = {f.Forward((float)x)}, closed form {value}");
            Assert.True(Math.Abs(f.Backward((float)x, (float)y, 1f) - slope) <= 1e-6, $"{f.Spec}'({x}) in float, closed form {slope}");
        }
    }
}
