using GpuCnn.Cpu;
using GpuCnn.Kernels;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The gradient checks of the modern layers' operations (batch norm …), in double as the rest.</summary>
public sealed partial class GradientCheckTests
{
    /// <summary>(N, C, inner…) shapes: BatchNorm2d's and BatchNorm1d's, batch 1 included (the positions still vary).</summary>
    public static TheoryData<bool, int[]> BatchNormCases => new()
    {
        { true, [3, 2, 2, 3] },
        { true, [1, 3, 2, 2] },
        { true, [5, 4] },
        { false, [3, 2, 2, 3] },
        { false, [5, 4] },
    };

    [Theory]
    [MemberData(nameof(BatchNormCases))]
    public void Batch_norm_gradients_match_finite_differences(bool training, int[] dims)
    {
        var shape = new Shape(dims);
        var s = BatchNormShapeOf(shape, training);
        double[] x = TestData.Widen(TestData.Uniform(shape.Size, 21, -2f, 2f));
        double[] weight = TestData.Widen(TestData.Uniform(s.Channels, 22, 0.5f, 1.5f));
        double[] bias = TestData.Widen(TestData.Uniform(s.Channels, 23));
        double[] runningMean = TestData.Widen(TestData.Uniform(s.Channels, 24));
        double[] runningVar = TestData.Widen(TestData.Uniform(s.Channels, 25, 0.5f, 2f));
        double[] probe = TestData.Widen(TestData.Uniform(shape.Size, 26));
        double[] mean = new double[s.Channels], invStd = new double[s.Channels];
        double Loss()
        {
            var y = new double[shape.Size];
            ReferenceMath.BatchNormForward<double>(s, x, weight, bias, (double[])runningMean.Clone(), (double[])runningVar.Clone(), y, mean, invStd);
            return Dot(y, probe);
        }

        Loss(); // mean and invStd of the unperturbed input, as the forward leaves them for the backward
        var dx = new double[shape.Size];
        var dweight = new double[s.Channels];
        var dbias = new double[s.Channels];
        ReferenceMath.BatchNormBackward<double>(s, x, probe, weight, mean, invStd, dx, dweight, dbias);
        ExpectBatchNormGradients($"batch norm {(training ? "training" : "evaluation")} {shape}", Loss, shape, x, weight, bias, dx, dweight, dbias);
    }

    /// <summary>dx, dweight and dbias against central differences of <paramref name="loss"/> in each.</summary>
    private static void ExpectBatchNormGradients(string what, Func<double> loss, Shape shape, double[] x, double[] weight, double[] bias,
        double[] dx, double[] dweight, double[] dbias)
    {
        var channels = new Shape(weight.Length);
        TensorAssert.Close(FiniteDifferences.Central(x, loss), dx, shape, Atol, Rtol, $"{what} ∂L/∂x");
        TensorAssert.Close(FiniteDifferences.Central(weight, loss), dweight, channels, Atol, Rtol, $"{what} ∂L/∂weight");
        TensorAssert.Close(FiniteDifferences.Central(bias, loss), dbias, channels, Atol, Rtol, $"{what} ∂L/∂bias");
    }

    /// <summary>
    /// The oracle of the fused batch norm's cross-checks (BackendOpsTests): the gradient of f(batch_norm(x)) is batch
    /// norm's backward from dz = dy·f′, f′ taken at the normalised value — checked here by finite differences.
    /// </summary>
    [Theory]
    [InlineData("tanh", true)]
    [InlineData("sigmoid", true)]
    [InlineData("tanh", false)]
    public void Batch_norm_with_the_activation_after_it_matches_finite_differences(string spec, bool training)
    {
        var f = Cases.Activation(spec);
        var shape = new Shape(3, 2, 2, 3);
        var s = BatchNormShapeOf(shape, training);
        double[] x = TestData.Widen(TestData.Uniform(shape.Size, 121, -2f, 2f));
        double[] weight = TestData.Widen(TestData.Uniform(s.Channels, 122, 0.5f, 1.5f));
        double[] bias = TestData.Widen(TestData.Uniform(s.Channels, 123));
        double[] runningVar = TestData.Widen(TestData.Uniform(s.Channels, 124, 0.5f, 2f));
        double[] probe = TestData.Widen(TestData.Uniform(shape.Size, 125));
        double[] mean = new double[s.Channels], invStd = new double[s.Channels], z = new double[shape.Size];
        double Loss()
        {
            ReferenceMath.BatchNormForward<double>(s, x, weight, bias, new double[s.Channels], (double[])runningVar.Clone(), z, mean, invStd);
            return z.Select((value, i) => f.Evaluate(value) * probe[i]).Sum();
        }

        Loss();
        double[] dz = [.. z.Select((value, i) => f.EvaluateBackward(value, f.Evaluate(value), probe[i]))];
        var dx = new double[shape.Size];
        var dweight = new double[s.Channels];
        var dbias = new double[s.Channels];
        ReferenceMath.BatchNormBackward<double>(s, x, dz, weight, mean, invStd, dx, dweight, dbias);
        ExpectBatchNormGradients($"batch norm + {spec} {(training ? "training" : "evaluation")}", Loss, shape, x, weight, bias, dx, dweight, dbias);
    }

    [Fact]
    public void Batch_norm_running_statistics_follow_pytorch_formulas()
    {
        // Channel 0 holds 1, 2, 3, 6 over two samples: mean 3, biased variance 3.5, unbiased 14/3.
        var s = new BatchNormShape(Channels: 2, Inner: 2, Count: 4, Momentum: 0.25f, Epsilon: 1e-5f, Training: 1);
        double[] x = [1, 2, 10, 10, 3, 6, 10, 10];
        double[] runningMean = [1, 0], runningVar = [2, 1], mean = new double[2], invStd = new double[2], y = new double[8];
        ReferenceMath.BatchNormForward<double>(s, x, [1, 1], [0, 0], runningMean, runningVar, y, mean, invStd);
        Assert.Equal(3.0, mean[0], 12);
        Assert.Equal(1 / Math.Sqrt(3.5 + 1e-5), invStd[0], 9);
        Assert.Equal((0.75 * 1) + (0.25 * 3), runningMean[0], 7);
        Assert.Equal((0.75 * 2) + (0.25 * 14 / 3.0), runningVar[0], 7);
        Assert.Equal(0.75, runningVar[1], 7); // a constant channel: variance 0
        Assert.Equal((1 - 3) / Math.Sqrt(3.5 + 1e-5), y[0], 9);
    }

    internal static BatchNormShape BatchNormShapeOf(Shape shape, bool training) =>
        new(shape[1], shape.SizeFrom(2), shape[0] * shape.SizeFrom(2), 0.1f, 1e-5f, training ? 1 : 0);

    [Fact]
    public void Dropout_gradient_is_the_same_mask_applied_to_dy()
    {
        const int count = 40;
        const float p = 0.4f;
        double[] x = TestData.Widen(TestData.Uniform(count, 27));
        double[] probe = TestData.Widen(TestData.Uniform(count, 28));
        double scale = 1 / (1 - (double)p);
        double Loss()
        {
            var y = new double[count];
            ReferenceMath.Dropout<double>(x, y, p, scale, 77);
            return Dot(y, probe);
        }

        var dx = new double[count];
        ReferenceMath.Dropout<double>(probe, dx, p, scale, 77);
        TensorAssert.Close(FiniteDifferences.Central(x, Loss), dx, new Shape(count), Atol, Rtol, "dropout ∂L/∂x");
    }
}
