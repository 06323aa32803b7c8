using GpuCnn.Cpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Every backward of the reference against central finite differences, all in double. The scalar probed is
/// L = Σ y ⊙ G for a fixed random G, so ∂L/∂input is exactly what the backward computes from dy = G.
/// </summary>
/// <remarks>
/// Step ε = 1e-6: the operations are at most quadratic in one input, so the central difference's truncation error
/// is ~0 and its rounding error ~1e-16·|L|/ε ≈ 1e-9; atol 1e-7 with rtol 1e-6 is far below any real mistake.
/// </remarks>
[Trait("Category", "GradientCheck")]
public sealed partial class GradientCheckTests
{
    private const double Atol = 1e-7;
    private const double Rtol = 1e-6;

    [Theory]
    [MemberData(nameof(Cases.ConvolutionNames), MemberType = typeof(Cases))]
    public void Convolution_gradients_match_finite_differences(string name)
    {
        var g = Cases.Convolutions[name];
        double[] x = TestData.Widen(TestData.Uniform(g.InputSize, 1));
        double[] w = TestData.Widen(TestData.Uniform(g.WeightSize, 2));
        double[] b = TestData.Widen(TestData.Uniform(g.K, 3));
        double[] probe = TestData.Widen(TestData.Uniform(g.OutputSize, 4));
        double Loss()
        {
            var y = new double[g.OutputSize];
            ReferenceMath.Conv2dForward<double>(g, x, w, b, y);
            return Dot(y, probe);
        }

        var dx = new double[g.InputSize];
        var dw = new double[g.WeightSize];
        var db = new double[g.K];
        ReferenceMath.Conv2dBackwardData<double>(g, probe, w, dx);
        ReferenceMath.Conv2dBackwardFilter<double>(g, x, probe, dw, db);
        TensorAssert.Close(FiniteDifferences.Central(x, Loss), dx, g.InputShape, Atol, Rtol, $"∂L/∂x {name}");
        TensorAssert.Close(FiniteDifferences.Central(w, Loss), dw, g.WeightShape, Atol, Rtol, $"∂L/∂w {name}");
        TensorAssert.Close(FiniteDifferences.Central(b, Loss), db, new Shape(g.K), Atol, Rtol, $"∂L/∂b {name}");
    }

    [Theory]
    [MemberData(nameof(Cases.PoolNames), MemberType = typeof(Cases))]
    public void Max_pooling_gradient_matches_finite_differences(string name)
    {
        var g = Cases.Pools[name];

        // Distinct inputs ≥ 1/size apart: a ±1e-6 step never changes a window's arg-max.
        double[] x = TestData.Widen(TestData.Distinct(g.InputSize, 5));
        double[] probe = TestData.Widen(TestData.Uniform(g.OutputSize, 6));
        var switches = new int[g.OutputSize];
        double Loss()
        {
            var y = new double[g.OutputSize];
            ReferenceMath.MaxPool2dForward<double>(g, x, y, new int[g.OutputSize]);
            return Dot(y, probe);
        }

        ReferenceMath.MaxPool2dForward<double>(g, x, new double[g.OutputSize], switches);
        var dx = new double[g.InputSize];
        ReferenceMath.MaxPool2dBackward<double>(g, probe, switches, dx);
        TensorAssert.Close(FiniteDifferences.Central(x, Loss), dx, g.InputShape, Atol, Rtol, $"max pool ∂L/∂x {name}");
    }

    [Theory]
    [MemberData(nameof(Cases.PoolNames), MemberType = typeof(Cases))]
    public void Average_pooling_gradient_matches_finite_differences(string name)
    {
        var g = Cases.Pools[name];
        double[] x = TestData.Widen(TestData.Uniform(g.InputSize, 7));
        double[] probe = TestData.Widen(TestData.Uniform(g.OutputSize, 8));
        double Loss()
        {
            var y = new double[g.OutputSize];
            ReferenceMath.AvgPool2dForward<double>(g, x, y);
            return Dot(y, probe);
        }

        var dx = new double[g.InputSize];
        ReferenceMath.AvgPool2dBackward<double>(g, probe, dx);
        TensorAssert.Close(FiniteDifferences.Central(x, Loss), dx, g.InputShape, Atol, Rtol, $"avg pool ∂L/∂x {name}");
    }

    [Theory]
    [MemberData(nameof(Cases.PadNames), MemberType = typeof(Cases))]
    public void Padding_gradient_matches_finite_differences(string name)
    {
        var g = Cases.Pads[name];
        double[] x = TestData.Widen(TestData.Uniform(g.InputSize, 17));
        double[] probe = TestData.Widen(TestData.Uniform(g.OutputSize, 18));
        double Loss()
        {
            var y = new double[g.OutputSize];
            ReferenceMath.Pad2dForward<double>(g, x, y, -0.75); // the value is a constant: it moves L, not ∂L/∂x
            return Dot(y, probe);
        }

        var dx = new double[g.InputSize];
        ReferenceMath.Pad2dBackward<double>(g, probe, dx);
        TensorAssert.Close(FiniteDifferences.Central(x, Loss), dx, g.InputShape, Atol, Rtol, $"pad ∂L/∂x {name}");
    }

    [Theory]
    [MemberData(nameof(Cases.ActivationSpecs), MemberType = typeof(Cases))]
    public void Activation_gradient_matches_finite_differences(string spec)
    {
        var f = Cases.Activation(spec);
        double[] x = TestData.Widen(TestData.AwayFromZero(24, 9));
        double[] probe = TestData.Widen(TestData.Uniform(24, 10));
        var y = new double[24];
        double Loss()
        {
            for (int i = 0; i < x.Length; i++)
            {
                y[i] = f.Evaluate(x[i]);
            }

            return Dot(y, probe);
        }

        Loss();
        double[] dx = [.. Enumerable.Range(0, x.Length).Select(i => f.EvaluateBackward(x[i], y[i], probe[i]))];
        TensorAssert.Close(FiniteDifferences.Central(x, Loss), dx, new Shape(24), Atol, Rtol, $"{spec} ∂L/∂x");
    }

    [Fact]
    public void Residual_block_gradients_add_up_over_both_branches()
    {
        // y = conv2(gelu(conv1(x))) + convS(x) with a strided 1×1 shortcut, as residual(conv,gelu,conv; conv) computes it;
        // the backward is what Residual.Backward composes: each branch's chain rule, then dx = dx_body + dx_shortcut.
        var g1 = new Conv2dGeometry(N: 2, C: 2, H: 6, W: 6, K: 3, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1);
        var g2 = new Conv2dGeometry(N: 2, C: 3, H: 3, W: 3, K: 3, R: 3, S: 3, PadH: 1, PadW: 1);
        var gs = new Conv2dGeometry(N: 2, C: 2, H: 6, W: 6, K: 3, R: 1, S: 1, StrideH: 2, StrideW: 2);
        var gelu = Cases.Activation("gelu");
        double[] x = TestData.Widen(TestData.Uniform(g1.InputSize, 40)), w1 = TestData.Widen(TestData.Uniform(g1.WeightSize, 41));
        double[] w2 = TestData.Widen(TestData.Uniform(g2.WeightSize, 42)), ws = TestData.Widen(TestData.Uniform(gs.WeightSize, 43));
        double[] probe = TestData.Widen(TestData.Uniform(g2.OutputSize, 44));
        var z1 = new double[g1.OutputSize];
        var a1 = new double[g1.OutputSize];
        double Loss()
        {
            var y = new double[g2.OutputSize];
            var shortcut = new double[gs.OutputSize];
            ReferenceMath.Conv2dForward<double>(g1, x, w1, [], z1);
            for (int i = 0; i < z1.Length; i++)
            {
                a1[i] = gelu.Evaluate(z1[i]);
            }

            ReferenceMath.Conv2dForward<double>(g2, a1, w2, [], y);
            ReferenceMath.Conv2dForward<double>(gs, x, ws, [], shortcut);
            ReferenceMath.Add<double>(y, shortcut, y);
            return Dot(y, probe);
        }

        Loss();
        var da1 = new double[g1.OutputSize];
        ReferenceMath.Conv2dBackwardData<double>(g2, probe, w2, da1);
        double[] dz1 = [.. Enumerable.Range(0, z1.Length).Select(i => gelu.EvaluateBackward(z1[i], a1[i], da1[i]))];
        var dxBody = new double[g1.InputSize];
        var dxShortcut = new double[gs.InputSize];
        ReferenceMath.Conv2dBackwardData<double>(g1, dz1, w1, dxBody);
        ReferenceMath.Conv2dBackwardData<double>(gs, probe, ws, dxShortcut);
        var dx = new double[g1.InputSize];
        ReferenceMath.Add<double>(dxBody, dxShortcut, dx);
        var dw1 = new double[g1.WeightSize];
        var dws = new double[gs.WeightSize];
        ReferenceMath.Conv2dBackwardFilter<double>(g1, x, dz1, dw1, []);
        ReferenceMath.Conv2dBackwardFilter<double>(gs, x, probe, dws, []);

        TensorAssert.Close(FiniteDifferences.Central(x, Loss), dx, g1.InputShape, Atol, Rtol, "residual ∂L/∂x");
        TensorAssert.Close(FiniteDifferences.Central(w1, Loss), dw1, g1.WeightShape, Atol, Rtol, "residual ∂L/∂w_body");
        TensorAssert.Close(FiniteDifferences.Central(ws, Loss), dws, gs.WeightShape, Atol, Rtol, "residual ∂L/∂w_shortcut");
    }

    [Theory]
    [InlineData(1, 3, 0)]
    [InlineData(6, 10, 0)]
    [InlineData(6, 10, 0.1)]
    [InlineData(2, 5, 1)]
    public void Softmax_cross_entropy_gradient_matches_finite_differences(int batch, int classes, double smoothing)
    {
        double[] z = TestData.Widen(TestData.Uniform(batch * classes, 11, -4f, 4f));
        int[] labels = TestData.Labels(batch, classes, 12);
        double Loss() => ReferenceMath.SoftmaxCrossEntropy<double>(z, labels, new double[z.Length], batch, classes, smoothing);

        var dz = new double[z.Length];
        ReferenceMath.SoftmaxCrossEntropy<double>(z, labels, dz, batch, classes, smoothing);
        TensorAssert.Close(FiniteDifferences.Central(z, Loss), dz, new Shape(batch, classes), Atol, Rtol, "softmax cross-entropy ∂L/∂z");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Gemm_gradients_are_gemms_with_transposed_operands(bool transposeA, bool transposeB)
    {
        const int m = 4, n = 3, k = 5;
        double[] a = TestData.Widen(TestData.Uniform(m * k, 13));
        double[] b = TestData.Widen(TestData.Uniform(k * n, 14));
        double[] probe = TestData.Widen(TestData.Uniform(m * n, 15));
        double Loss()
        {
            var c = new double[m * n];
            ReferenceMath.Gemm<double>(transposeA, transposeB, m, n, k, 1.0, a, b, 0.0, c);
            return Dot(c, probe);
        }

        // ∂L/∂op(A) = G·op(B)ᵀ (M×K) and ∂L/∂op(B) = op(A)ᵀ·G (K×N), stored back in A's and B's own layouts.
        var da = new double[m * k];
        var db = new double[k * n];
        if (transposeA)
        {
            ReferenceMath.Gemm<double>(transposeB, true, k, m, n, 1.0, b, probe, 0.0, da); // stored Aᵀ: op(B)·Gᵀ
        }
        else
        {
            ReferenceMath.Gemm<double>(false, !transposeB, m, k, n, 1.0, probe, b, 0.0, da);
        }

        if (transposeB)
        {
            ReferenceMath.Gemm<double>(true, transposeA, n, k, m, 1.0, probe, a, 0.0, db); // stored Bᵀ: Gᵀ·op(A)
        }
        else
        {
            ReferenceMath.Gemm<double>(!transposeA, false, k, n, m, 1.0, a, probe, 0.0, db);
        }

        TensorAssert.Close(FiniteDifferences.Central(a, Loss), da, new Shape(m * k), Atol, Rtol, "gemm ∂L/∂A");
        TensorAssert.Close(FiniteDifferences.Central(b, Loss), db, new Shape(k * n), Atol, Rtol, "gemm ∂L/∂B");
    }

    [Fact]
    public void Bias_gradient_matches_finite_differences()
    {
        const int batch = 3, channels = 4, inner = 6;
        double[] y0 = TestData.Widen(TestData.Uniform(batch * channels * inner, 16));
        double[] bias = TestData.Widen(TestData.Uniform(channels, 17));
        double[] probe = TestData.Widen(TestData.Uniform(y0.Length, 18));
        double Loss()
        {
            var y = (double[])y0.Clone();
            ReferenceMath.BiasAdd<double>(y, bias, batch, channels, inner);
            return Dot(y, probe);
        }

        var db = new double[channels];
        ReferenceMath.BiasGradient<double>(probe, db, batch, channels, inner);
        TensorAssert.Close(FiniteDifferences.Central(bias, Loss), db, new Shape(channels), Atol, Rtol, "bias ∂L/∂b");
    }

    private static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }
}
