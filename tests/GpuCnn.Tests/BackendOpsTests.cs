using GpuCnn.Cpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// One test body per operation, run once per backend by the subclasses at the end of this file. Each body runs the
/// operation on the backend (outputs poisoned with NaN first, so an unwritten element fails) and compares it with
/// <see cref="ReferenceMath"/> evaluated in double on the same float inputs. The convolution and GEMM bodies, which the
/// classes forcing one kernel route run alone, are in <see cref="ConvolutionAndGemmOpsTests"/>.
/// </summary>
public abstract partial class BackendOpsTests(BackendFixture fixture) : ConvolutionAndGemmOpsTests(fixture)
{
    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(Cases.PoolNames), MemberType = typeof(Cases))]
    public void MaxPool2d_forward_and_switches_match_reference(string name)
    {
        var g = Cases.Pools[name];
        float[] x = TestData.Distinct(g.InputSize, 8);
        var expected = new double[g.OutputSize];
        var expectedSwitches = new int[g.OutputSize];
        ReferenceMath.MaxPool2dForward<double>(g, TestData.Widen(x), expected, expectedSwitches);

        using var dx = Put(x, g.InputShape);
        using var dy = Poisoned(g.OutputShape);
        using var switches = PoisonedSwitches(g.OutputShape);
        Backend.MaxPool2dForward(g, dx, dy, switches);
        TensorAssert.Close(expected, Backend.DownloadArray(dy), g.OutputShape, 0, 0, $"{Backend.Name} max pool {name}");
        Assert.Equal(expectedSwitches, Backend.DownloadArray(switches));
    }

    [Theory]
    [Trait("Category", "GradientCheck")]
    [MemberData(nameof(Cases.PoolNames), MemberType = typeof(Cases))]
    public void MaxPool2dBackward_matches_reference(string name)
    {
        var g = Cases.Pools[name];
        float[] x = TestData.Distinct(g.InputSize, 9), gy = TestData.Uniform(g.OutputSize, 10);
        var y = new double[g.OutputSize];
        var switches = new int[g.OutputSize];
        ReferenceMath.MaxPool2dForward<double>(g, TestData.Widen(x), y, switches);
        var expected = new double[g.InputSize];
        ReferenceMath.MaxPool2dBackward<double>(g, TestData.Widen(gy), switches, expected);

        using var dgy = Put(gy, g.OutputShape);
        using var dswitches = Backend.Upload<int>(g.OutputShape, switches);
        using var dgx = Poisoned(g.InputShape);
        Backend.MaxPool2dBackward(g, dgy, dswitches, dgx);
        TensorAssert.Close(expected, Backend.DownloadArray(dgx), g.InputShape, Atol, Rtol, $"{Backend.Name} max pool backward {name}");
    }

    [Theory]
    [Trait("Category", "GradientCheck")]
    [MemberData(nameof(Cases.PoolNames), MemberType = typeof(Cases))]
    public void AvgPool2d_forward_and_backward_match_reference(string name)
    {
        var g = Cases.Pools[name];
        float[] x = TestData.Uniform(g.InputSize, 11), gy = TestData.Uniform(g.OutputSize, 12);
        var expectedY = new double[g.OutputSize];
        var expectedGx = new double[g.InputSize];
        ReferenceMath.AvgPool2dForward<double>(g, TestData.Widen(x), expectedY);
        ReferenceMath.AvgPool2dBackward<double>(g, TestData.Widen(gy), expectedGx);

        using var dx = Put(x, g.InputShape);
        using var dy = Poisoned(g.OutputShape);
        using var dgy = Put(gy, g.OutputShape);
        using var dgx = Poisoned(g.InputShape);
        Backend.AvgPool2dForward(g, dx, dy);
        Backend.AvgPool2dBackward(g, dgy, dgx);
        TensorAssert.Close(expectedY, Backend.DownloadArray(dy), g.OutputShape, Atol, Rtol, $"{Backend.Name} avg pool {name}");
        TensorAssert.Close(expectedGx, Backend.DownloadArray(dgx), g.InputShape, Atol, Rtol, $"{Backend.Name} avg pool backward {name}");
    }

    /// <summary>The shared operation catalogue's other cases (`gpucnn selftest` runs them all), as "index: name shape".</summary>
    public static TheoryData<string> CatalogueCases => CatalogueCasesWhere(c => !IsConvolutionOrGemm(c));

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(CatalogueCases))]
    public void Catalogue_case_matches_the_reference(string name) => CatalogueCaseMatchesTheReference(name);

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Add_matches_reference_also_in_place()
    {
        Shape shape = new(3, 2, 7, 5); // 210 values: whole vectors and a tail on every SIMD width
        float[] a = TestData.Uniform(shape.Size, 60), b = TestData.Uniform(shape.Size, 61);
        double[] expected = [.. a.Select((v, i) => (double)(v + b[i]))]; // one float rounding, the same on every backend
        using var da = Put(a, shape);
        using var db = Put(b, shape);
        using var dy = Poisoned(shape);
        Backend.Add(da, db, dy);
        TensorAssert.Close(expected, Backend.DownloadArray(dy), shape, 0, 0, $"{Backend.Name} add");
        Backend.Add(da, db, da);
        TensorAssert.Close(expected, Backend.DownloadArray(da), shape, 0, 0, $"{Backend.Name} add in place");
        Assert.Throws<ArgumentException>(() => Backend.Add(da, Put(b[..10], [10]), dy));
    }

    [Fact]
    [Trait("Category", "GradientCheck")]
    public void BiasAdd_and_BiasGradient_match_reference()
    {
        // Planes, and a dense layer's (N, features): whole vectors of features and some left over.
        foreach (var shape in (Shape[])[new(3, 4, 2, 5), new(9, 37)])
        {
            int batch = shape[0], channels = shape[1], inner = shape.SizeFrom(2);
            float[] y = TestData.Uniform(shape.Size, 16), b = TestData.Uniform(channels, 17);
            var expected = TestData.Widen(y);
            ReferenceMath.BiasAdd<double>(expected, TestData.Widen(b), batch, channels, inner);
            var expectedGrad = new double[channels];
            ReferenceMath.BiasGradient<double>(TestData.Widen(y), expectedGrad, batch, channels, inner);

            using var dy = Put(y, shape);
            using var dbias = Put(b, [channels]);
            using var dgrad = Poisoned([channels]);
            Backend.BiasGradient(dy, dgrad);
            Backend.BiasAdd(dy, dbias);
            TensorAssert.Close(expected, Backend.DownloadArray(dy), shape, Atol, Rtol, $"{Backend.Name} bias add {shape}");
            TensorAssert.Close(expectedGrad, Backend.DownloadArray(dgrad), new Shape(channels), Atol, Rtol, $"{Backend.Name} bias gradient {shape}");
        }
    }

    [Theory]
    [Trait("Category", "GradientCheck")]
    [MemberData(nameof(Cases.ActivationSpecs), MemberType = typeof(Cases))]
    public void Activation_forward_and_backward_match_reference(string spec)
    {
        var f = Cases.Activation(spec);
        Shape shape = new(2, 3, 5);
        float[] x = TestData.AwayFromZero(shape.Size, 18), gy = TestData.Uniform(shape.Size, 19);
        double[] expectedY = [.. TestData.Widen(x).Select(f.Evaluate)];

        using var dx = Put(x, shape);
        using var dy = Poisoned(shape);
        f.Apply(Backend, dx, dy);
        float[] y = Backend.DownloadArray(dy);
        TensorAssert.Close(expectedY, y, shape, 1e-6, 1e-6, $"{Backend.Name} {spec} forward");

        // The backward takes the float y the backend produced, as a layer would.
        double[] expectedGx = [.. Enumerable.Range(0, shape.Size).Select(i => f.EvaluateBackward(x[i], y[i], gy[i]))];
        using var dgy = Put(gy, shape);
        using var dgx = Poisoned(shape);
        f.ApplyBackward(Backend, dx, dy, dgy, dgx);
        TensorAssert.Close(expectedGx, Backend.DownloadArray(dgx), shape, 1e-6, 1e-6, $"{Backend.Name} {spec} backward");

        // A fusable function gives the same gradient from its output alone (what remains after fusion).
        if (f.CanFuse)
        {
            using var fromOutput = Poisoned(shape);
            f.ApplyBackwardFromOutput(Backend, dy, dgy, fromOutput);
            TensorAssert.Close(expectedGx, Backend.DownloadArray(fromOutput), shape, 1e-6, 1e-6, $"{Backend.Name} {spec} backward from the output");
        }
    }

    [Theory]
    [Trait("Category", "GradientCheck")]
    [InlineData(1, 1, 1f, 0f)]
    [InlineData(5, 10, 3f, 0f)]
    [InlineData(4, 7, 1000f, 0f)] // logits near ±1000: a naive exp overflows; the max shift must keep it finite
    [InlineData(5, 10, 3f, 0.1f)]
    [InlineData(3, 4, 2f, 1f)]
    [InlineData(4500, 3, 3f, 0.1f)] // past 4,096 rows ILGPU runs a row kernel and a separate in-order sum
    [InlineData(6, 37, 5f, 0f)] // the CPU backend's vectors of 16 and 8 logits and their tails
    [InlineData(40, 1000, 30f, 0.1f)] // a 1,000-class head: the CPU backend splits the rows across its threads, ILGPU runs a group a row
    [InlineData(3, 256, 5f, 0f)] // the fewest classes ILGPU runs a group a row for (IlgpuBackend.LossRowGroupClasses)
    [InlineData(2, 300, 1000f, 1f)] // classes that leave some of a group's threads one class fewer; all smoothing
    public void SoftmaxCrossEntropy_matches_reference(int batch, int classes, float scale, float smoothing)
    {
        float[] z = TestData.Uniform(batch * classes, 20, -scale, scale);
        int[] labels = TestData.Labels(batch, classes, 21);
        var expectedGrad = new double[z.Length];
        double expectedLoss = ReferenceMath.SoftmaxCrossEntropy<double>(TestData.Widen(z), labels, expectedGrad, batch, classes, smoothing);

        using var dz = Put(z, [batch, classes]);
        using var dlabels = Backend.Upload<int>([batch], labels);
        using var dgrad = Poisoned([batch, classes]);
        using var dloss = Poisoned([1]);
        Backend.SoftmaxCrossEntropy(dz, dlabels, dgrad, dloss, smoothing);
        TensorAssert.Close([expectedLoss], Backend.DownloadArray(dloss), new Shape(1), 1e-5 * scale, 1e-5, $"{Backend.Name} loss");
        TensorAssert.Close(expectedGrad, Backend.DownloadArray(dgrad), new Shape(batch, classes), 1e-6, 1e-4, $"{Backend.Name} dlogits");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_loss_of_a_large_batch_keeps_float_precision(bool infiniteLastRow)
    {
        // 100,000 rows of logits (0, 1.5), label 0, each row's loss log(1 + e^1.5): their float sum, row by row, had
        // lost 8e-4 of the mean (PyTorch 1.13: 1.70141411, 5e-7 from the exact value, the rounding of one row's loss).
        // With logits (−3e38, 3e38) in the last row its loss is +∞, and so the mean, as PyTorch's.
        const int Batch = 100_000;
        float[] z = new float[2 * Batch];
        for (int n = 0; n < Batch; n++)
        {
            z[(2 * n) + 1] = 1.5f;
        }

        if (infiniteLastRow)
        {
            (z[^2], z[^1]) = (-3e38f, 3e38f);
        }

        using var dz = Put(z, [Batch, 2]);
        using var dlabels = Backend.Upload<int>([Batch], new int[Batch]);
        using var dgrad = Poisoned([Batch, 2]);
        using var dloss = Poisoned([1]);
        Backend.SoftmaxCrossEntropy(dz, dlabels, dgrad, dloss);
        float loss = Backend.DownloadArray(dloss)[0];
        double row = Math.Log(1 + Math.Exp(1.5));
        Assert.True(infiniteLastRow ? float.IsPositiveInfinity(loss) : Math.Abs(loss - row) <= 2e-6 * row,
            $"{Backend.Name}: the mean loss of {Batch} rows is {loss:R}, expected {(infiniteLastRow ? "+∞" : row.ToString("R", System.Globalization.CultureInfo.InvariantCulture))}");
    }

    [Theory]
    [InlineData(1_000_000, 1, 1)] // a dense layer's (N, 1)
    [InlineData(4, 1, 250_000)] // a convolution's (N, C, H·W)
    public void Bias_gradients_over_a_million_values_keep_float_precision(int batch, int channels, int inner)
    {
        // A million values of 0.1 added one after another in float had come to 1 % too much (PyTorch 1.13: 1e-7 off on
        // the dense layer's); in blocks or in double they keep to float rounding. ILGPU's chunked sums had come to 1.5e-4
        // off on its CPU accelerator (a few threads each adding long runs) before each run was compensated.
        float[] dy = new float[batch * channels * inner];
        Array.Fill(dy, 0.1f);
        using var tdy = Put(dy, [batch, channels, inner]);
        using var tdb = Poisoned([channels]);
        Backend.BiasGradient(tdy, tdb);
        double expected = (double)0.1f * dy.Length;
        TensorAssert.Close([expected], Backend.DownloadArray(tdb), new Shape(1), 0, 1e-6, $"{Backend.Name} bias gradient of {dy.Length} values of 0.1 ({batch}, {channels}, {inner})");
    }

    [Fact]
    public void Huge_tied_logits_keep_the_log_of_the_sum_as_pytorch_does()
    {
        // PyTorch: log_softmax = (z − max) − log Σ e^(z − max). As max + log Σ, log 2 vanished next to 10³⁰: the loss was 0
        // and the reference's softmax [1, 0].
        using var dz = Put([1e30f, 1e30f], [1, 2]);
        using var dlabels = Backend.Upload<int>([1], [1]);
        using var dgrad = Poisoned([1, 2]);
        using var dloss = Poisoned([1]);
        Backend.SoftmaxCrossEntropy(dz, dlabels, dgrad, dloss);
        TensorAssert.Close([Math.Log(2)], Backend.DownloadArray(dloss), new Shape(1), 1e-7, 1e-6, $"{Backend.Name} loss");
        TensorAssert.Close([0.5, -0.5], Backend.DownloadArray(dgrad), new Shape(1, 2), 1e-7, 1e-6, $"{Backend.Name} dlogits");
    }

    [Fact]
    public void Label_smoothing_keeps_a_huge_loss_finite_where_it_is()
    {
        // Logits of ±1e38 smoothed: the loss is 0.925·2e38 + 2·0.025·2e38 = 1.95e38, a float. Σ_j (m − z_j) = 6e38 taken
        // first overflowed on ILGPU (+∞, as PyTorch 1.13 in float; in double it gives 1.95e38); each term scaled as it is
        // added keeps it.
        float[] z = [1e38f, -1e38f, -1e38f, -1e38f];
        using var dz = Put(z, [1, 4]);
        using var dlabels = Backend.Upload<int>([1], [1]);
        using var dgrad = Poisoned([1, 4]);
        using var dloss = Poisoned([1]);
        Backend.SoftmaxCrossEntropy(dz, dlabels, dgrad, dloss, labelSmoothing: 0.1f);
        double[] expectedGrad = new double[4];
        double expected = ReferenceMath.SoftmaxCrossEntropy<double>(TestData.Widen(z), [1], expectedGrad, 1, 4, (double)0.1f);
        TensorAssert.Close([expected], Backend.DownloadArray(dloss), new Shape(1), 0, 1e-6, $"{Backend.Name} smoothed loss of ±1e38 logits");
        TensorAssert.Close(expectedGrad, Backend.DownloadArray(dgrad), new Shape(1, 4), 1e-7, 1e-6, $"{Backend.Name} dlogits");
    }

    [Theory]
    [InlineData(9, 4)]
    [InlineData(-1, 4)]
    [InlineData(300, 300)] // ILGPU's group-a-row loss
    public void A_label_outside_the_classes_is_an_error_on_the_host_and_nan_on_a_device_never_a_read_outside(int label, int classes)
    {
        float[] z = TestData.Uniform(3 * classes, 22);
        using var dz = Put(z, [3, classes]);
        using var dlabels = Backend.Upload<int>([3], [0, label, 3]);
        using var dgrad = Poisoned([3, classes]);
        using var dloss = Poisoned([1]);
        if (Backend is HostBackend)
        {
            var error = Assert.Throws<ArgumentException>(() => Backend.SoftmaxCrossEntropy(dz, dlabels, dgrad, dloss));
            Assert.Equal($"SoftmaxCrossEntropy: label {label} of sample 1 is outside the model's {classes} classes (0…{classes - 1}).", error.Message);
            return;
        }

        Backend.SoftmaxCrossEntropy(dz, dlabels, dgrad, dloss);
        Assert.True(float.IsNaN(Backend.DownloadArray(dloss)[0]), "the loss is not NaN");
        float[] gradient = Backend.DownloadArray(dgrad);
        Assert.All(gradient[classes..(2 * classes)], v => Assert.True(float.IsNaN(v), "the bad sample's gradient row is not NaN"));
        Assert.All(gradient[..classes].Concat(gradient[(2 * classes)..]), v => Assert.True(float.IsFinite(v), "another row's gradient is not finite"));
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData(0f, 0f, false)]
    [InlineData(0.9f, 0f, false)]
    [InlineData(0.9f, 0.01f, true)]
    public void Sgd_matches_reference_over_three_steps(float momentum, float weightDecay, bool nesterov)
    {
        var options = new SgdOptions(0.05f, momentum, 0f, weightDecay, nesterov);
        Shape shape = new(3, 7);
        float[] p = TestData.Uniform(shape.Size, 22);
        double[] expectedP = TestData.Widen(p), expectedV = new double[shape.Size];
        using var dp = Put(p, shape);
        using var dv = Poisoned(shape);
        if (momentum == 0f)
        {
            Backend.Fill(dv, 0f); // untouched without momentum
        }

        for (int step = 1; step <= 3; step++)
        {
            float[] grad = TestData.Uniform(shape.Size, 30 + step);
            ReferenceMath.SgdUpdate<double>(options.LearningRate, momentum, 1, weightDecay, nesterov, step == 1, expectedP, TestData.Widen(grad), expectedV);
            using var dgrad = Put(grad, shape);
            Backend.SgdUpdate(options, step == 1, dp, dgrad, dv);
        }

        TensorAssert.Close(expectedP, Backend.DownloadArray(dp), shape, 1e-6, 1e-5, $"{Backend.Name} SGD parameters");
        TensorAssert.Close(expectedV, Backend.DownloadArray(dv), shape, 1e-6, 1e-5, $"{Backend.Name} SGD velocity");
    }

    /// <summary>
    /// A float setting acts as the decimal written, as PyTorch's Python float does: the moments after one step of
    /// gradient 1 are exactly 1 − β rounded from double (1f − 0.9999f is 1.00016594e-4, 1.7e-4 away), SGD's dampened
    /// velocity exactly 1 − 0.99 rounded (1f − 0.99f is 9e-7 away), and a zero weight decay adds nothing to an
    /// infinite parameter (0·∞ had made it NaN where PyTorch keeps it).
    /// </summary>
    [Fact]
    public void Optimizer_settings_act_as_the_decimals_written()
    {
        Shape shape = new(2);
        using var p = Put([1f, float.PositiveInfinity], shape);
        using var g = Put([1f, 1f], shape);
        using var m = Put([0f, 0f], shape);
        using var v = Put([0f, 0f], shape);
        Backend.AdamUpdate(new AdamOptions(LearningRate: 1e-3f, Beta1: 0.9f, Beta2: 0.9999f), 1, p, g, m, v);
        Assert.Equal((float)(1 - 0.9), Backend.DownloadArray(m)[0]);
        Assert.Equal((float)(1 - 0.9999), Backend.DownloadArray(v)[0]);
        Assert.Equal(float.PositiveInfinity, Backend.DownloadArray(p)[1]);

        using var zero = Put([0f, 0f], shape);
        using var velocity = Put([0f, 0f], shape);
        var sgd = new SgdOptions(0.1f, Momentum: 0.9f, Dampening: 0.99f);
        Backend.SgdUpdate(sgd, true, p, zero, velocity); // the first step's velocity is the gradient, 0
        Backend.SgdUpdate(sgd, false, p, g, velocity); // then 0.9·0 + (1 − 0.99)·1
        Assert.Equal((float)(1 - 0.99), Backend.DownloadArray(velocity)[0]);
        Assert.Equal(float.PositiveInfinity, Backend.DownloadArray(p)[1]);
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData(false)]
    [InlineData(true)]
    public void Adam_matches_reference_over_three_steps(bool decoupled)
    {
        var options = new AdamOptions(LearningRate: 0.01f, WeightDecay: decoupled ? 0.1f : 0.001f, DecoupledWeightDecay: decoupled);
        Shape shape = new(11);
        float[] p = TestData.Uniform(shape.Size, 40);
        double[] expectedP = TestData.Widen(p), expectedM = new double[shape.Size], expectedV = new double[shape.Size];
        using var dp = Put(p, shape);
        using var dm = Put(new float[shape.Size], shape);
        using var dv = Put(new float[shape.Size], shape);
        for (int step = 1; step <= 3; step++)
        {
            float[] grad = TestData.Uniform(shape.Size, 40 + step);
            double stepSize = options.LearningRate / (1 - Math.Pow(options.Beta1, step));
            double sqrtC2 = Math.Sqrt(1 - Math.Pow(options.Beta2, step));
            ReferenceMath.AdamUpdate<double>(stepSize, sqrtC2, options.Beta1, 1 - options.Beta1, options.Beta2, 1 - options.Beta2, options.Epsilon,
                decoupled ? 0 : options.WeightDecay,
                decoupled ? 1 - (options.LearningRate * (double)options.WeightDecay) : 1, expectedP, TestData.Widen(grad), expectedM, expectedV);
            using var dgrad = Put(grad, shape);
            Backend.AdamUpdate(options, step, dp, dgrad, dm, dv);
        }

        TensorAssert.Close(expectedP, Backend.DownloadArray(dp), shape, 1e-6, 1e-5, $"{Backend.Name} Adam parameters decoupled={decoupled}");
        TensorAssert.Close(expectedM, Backend.DownloadArray(dm), shape, 1e-6, 1e-5, $"{Backend.Name} Adam first moment");
    }

    [Fact]
    [Trait("Category", "Validation")]
    public void Bad_arguments_name_the_operation_argument_and_shapes()
    {
        var g = new Conv2dGeometry(N: 1, C: 2, H: 5, W: 5, K: 3, R: 3, S: 3);
        using var x = Backend.Allocate<float>(new Shape(1, 2, 5, 4));
        using var w = Backend.Allocate<float>(g.WeightShape);
        using var y = Backend.Allocate<float>(g.OutputShape);
        var mismatch = Assert.Throws<ArgumentException>(() => Backend.Conv2dForward(g, x, w, null, y));
        Assert.Contains("Conv2dForward", mismatch.Message, StringComparison.Ordinal);
        Assert.Contains("x has shape (1,2,5,4), expected (1,2,5,5)", mismatch.Message, StringComparison.Ordinal);

        var zeroStride = Assert.Throws<ArgumentOutOfRangeException>(() => Backend.Conv2dForward(g with { StrideH = 0 }, x, w, null, y));
        Assert.Contains("Conv2dForward: stride height must be positive, got 0", zeroStride.Message, StringComparison.Ordinal);

        var tooLarge = Assert.Throws<ArgumentException>(() => Backend.Conv2dBackwardData(g with { R = 8, S = 8 }, y, w, x));
        Assert.Contains("Conv2dBackwardData: kernel 8x8 is larger than the padded input 5x5", tooLarge.Message, StringComparison.Ordinal);

        var pool = new Pool2dGeometry(N: 1, C: 2, H: 5, W: 4, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2);
        using var switches = Backend.Allocate<int>(new Shape(1, 2, 3, 2));
        var poolShape = Assert.Throws<ArgumentException>(() => Backend.MaxPool2dForward(pool, x, y, switches));
        Assert.Contains("MaxPool2dForward: y has shape (1,3,3,3), expected (1,2,2,2)", poolShape.Message, StringComparison.Ordinal);

        using var a = Backend.Allocate<float>(new Shape(6));
        var gemm = Assert.Throws<ArgumentException>(() => Backend.Gemm(false, false, 2, 3, 4, 1f, a, a, 0f, a));
        Assert.Contains("Gemm: a has shape (6) (6 elements), expected 8 elements", gemm.Message, StringComparison.Ordinal);

        var lr = Assert.Throws<ArgumentOutOfRangeException>(() => Backend.SgdUpdate(new SgdOptions(-1f), true, a, a, a));
        Assert.Contains("SGD: learning rate must be a finite number ≥ 0, got -1", lr.Message, StringComparison.Ordinal);

        using var other = new ReferenceBackend();
        using var foreign = other.Allocate<float>(new Shape(6));
        if (Backend is not ReferenceBackend)
        {
            var wrongDevice = Assert.Throws<ArgumentException>(() => Backend.Fill(foreign, 0f));
            Assert.Contains("lives on backend 'reference'", wrongDevice.Message, StringComparison.Ordinal);
        }
    }
}

public sealed class ReferenceBackendOps(ReferenceFixture fixture) : BackendOpsTests(fixture), IClassFixture<ReferenceFixture>;

public sealed class CpuBackendOps(CpuFixture fixture) : BackendOpsTests(fixture), IClassFixture<CpuFixture>;

public sealed class IlgpuCpuBackendOps(IlgpuCpuFixture fixture) : BackendOpsTests(fixture), IClassFixture<IlgpuCpuFixture>;

public sealed class IlgpuCpuTiledBackendOps(IlgpuCpuTiledFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuTiledFixture>;

public sealed class IlgpuCpuTiled8x8BackendOps(IlgpuCpuTiled8x8Fixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuTiled8x8Fixture>;

public sealed class IlgpuCpuSplitBackendOps(IlgpuCpuSplitFixture fixture) : BackendOpsTests(fixture), IClassFixture<IlgpuCpuSplitFixture>;

public sealed class IlgpuCpuImplicitBackendOps(IlgpuCpuImplicitFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuImplicitFixture>;

public sealed class IlgpuCpuFewTapsBackendOps(IlgpuCpuFewTapsFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuFewTapsFixture>;

public sealed class IlgpuCpuNarrow32BackendOps(IlgpuCpuNarrow32Fixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuNarrow32Fixture>;

/// <summary>
/// The convolution and GEMM bodies alone: the simulated 128-thread groups change every kernel's group, but no GPU stops
/// at 128, and the other operations' kernels are tested with the groups the CPU accelerator and GPUs give them (16 and
/// 256 threads: <see cref="IlgpuCpuBackendOps"/>, <see cref="IlgpuCpuGpuGroupsBackendOps"/>).
/// </summary>
public sealed class IlgpuCpuBlockedFewTapsBackendOps(IlgpuCpuBlockedFewTapsFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuBlockedFewTapsFixture>;

public sealed class IlgpuCpuImplicitSplitBackendOps(IlgpuCpuImplicitSplitFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuImplicitSplitFixture>;

public sealed class IlgpuCpuImplicitWideBackendOps(IlgpuCpuImplicitWideFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuImplicitWideFixture>;

public sealed class IlgpuCpuImplicitWideSplitBackendOps(IlgpuCpuImplicitWideSplitFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuImplicitWideSplitFixture>;

public sealed class IlgpuCpuGpuGroupsBackendOps(IlgpuCpuGpuGroupsFixture fixture) : BackendOpsTests(fixture), IClassFixture<IlgpuCpuGpuGroupsFixture>;

/// <summary>
/// The convolution and GEMM bodies alone: every other operation runs the same 256-thread kernels here as in
/// <see cref="IlgpuCpuGpuGroupsBackendOps"/>, which tests them.
/// </summary>
public sealed class IlgpuCpuGpuGroupsTiledBackendOps(IlgpuCpuGpuGroupsTiledFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<IlgpuCpuGpuGroupsTiledFixture>;

public sealed class CudaBackendOps(CudaFixture fixture) : BackendOpsTests(fixture), IClassFixture<CudaFixture>;

public sealed class CudaImplicitBackendOps(CudaImplicitFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<CudaImplicitFixture>;

public sealed class CudaImplicitWideBackendOps(CudaImplicitWideFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<CudaImplicitWideFixture>;

public sealed class CudaTileGroups64BackendOps(CudaTileGroups64Fixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<CudaTileGroups64Fixture>;

public sealed class CudaNarrow32BackendOps(CudaNarrow32Fixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<CudaNarrow32Fixture>;

public sealed class CudaBlockedFewTapsBackendOps(CudaBlockedFewTapsFixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<CudaBlockedFewTapsFixture>;

public sealed class CudaTiled128BackendOps(CudaTiled128Fixture fixture) : ConvolutionAndGemmOpsTests(fixture), IClassFixture<CudaTiled128Fixture>;

public sealed class OpenCLBackendOps(OpenCLFixture fixture) : BackendOpsTests(fixture), IClassFixture<OpenCLFixture>;

/// <summary>
/// Which filter gradients take the few-taps kernel (<see cref="Kernels.ConvolutionFewTapsKernels"/>), planned for an
/// H100 — the test classes of <see cref="IlgpuCpuFewTapsFixture"/> check its sums only if they get there.
/// </summary>
public sealed class FewTapsLaunchTests(IlgpuCpuFewTapsFixture fixture) : IClassFixture<IlgpuCpuFewTapsFixture>
{
    private static readonly string[] FewTaps = ["FilterGradient", "SumChunks"];

    [Fact]
    public void Layers_of_few_taps_take_the_few_taps_filter_gradient_and_others_the_blocked_one_or_the_implicit_gemm()
    {
        Assert.SkipWhen(Environment.GetEnvironmentVariable("GPUCNN_FEW_TAPS_FILTER_GRADIENT") is not null ||
            Environment.GetEnvironmentVariable("GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT") is not null, "plans the default routes; a GPUCNN_*_FILTER_GRADIENT variable is set");
        var backend = (Ilgpu.IlgpuBackend)fixture.Require();
        Assert.Equal((64, 160), (backend.FewTapsFilterGradient, backend.BlockedFewTapsFilterGradient));
        // ResNet-8's first layer (9 taps), with and without a bias: the chunks, then their sum (the bias's too).
        var stem = new Conv2dGeometry(128, 1, 28, 28, 16, 3, 3, PadH: 1, PadW: 1);
        var withBias = Plan(stem, bias: true);
        Assert.Equal(FewTaps, withBias.Select(r => r.Kernel));
        Assert.True(withBias[0].Groups >= 264, $"{withBias[0].Groups} groups");
        Assert.Equal(16 * 9 + 16, withBias[1].Groups); // a group per weight and per bias
        Assert.Equal(FewTaps, Plan(stem, bias: false).Select(r => r.Kernel));
        // 64 taps (a 1×1 layer of 64 channels, 8 filters: a blocked group would have 64 threads) still; 72 (3×3 of 8
        // channels) beyond it, to the blocked kernel, or with that off to the implicit GEMM.
        Assert.Equal(FewTaps, Plan(new Conv2dGeometry(32, 64, 14, 14, 8, 1, 1), bias: false).Select(r => r.Kernel));
        var beyond = new Conv2dGeometry(32, 8, 14, 14, 16, 3, 3, PadH: 1, PadW: 1);
        Assert.Equal("FilterGradientBlocked", Plan(beyond, bias: false)[0].Kernel);
        // Where both fit, the blocked kernel takes the layers whose groups have at least 128 threads: ResNet-8's 32 → 64
        // shortcut (32 taps, four blocks of filters); 16 → 32 (16 taps, two blocks: 32 threads) stays.
        Assert.Equal("FilterGradientBlocked", Plan(new Conv2dGeometry(128, 32, 14, 14, 64, 1, 1, 2, 2), bias: false)[0].Kernel);
        Assert.Equal(FewTaps, Plan(new Conv2dGeometry(128, 16, 28, 28, 32, 1, 1, 2, 2), bias: false).Select(r => r.Kernel));
        backend.BlockedFewTapsFilterGradient = 0;
        try
        {
            Assert.Equal("FilterGradientNarrow", Plan(beyond, bias: false)[0].Kernel);
            Assert.Equal(FewTaps, Plan(new Conv2dGeometry(128, 32, 14, 14, 64, 1, 1, 2, 2), bias: false).Select(r => r.Kernel));
        }
        finally
        {
            backend.BlockedFewTapsFilterGradient = 160;
        }

        // Too many weights: 64 filters × 64 taps (4,096; at most 2,048 are taken).
        Assert.NotEqual(FewTaps, Plan(new Conv2dGeometry(32, 64, 14, 14, 64, 1, 1), bias: false).Select(r => r.Kernel));
        // A stage too large for 32 KB: 2,048 filters of one tap, each with a row of 33 staged gradients.
        Assert.NotEqual(FewTaps, Plan(new Conv2dGeometry(2, 1, 14, 14, 2048, 1, 1), bias: false).Select(r => r.Kernel));
        backend.FewTapsFilterGradient = 0;
        backend.BlockedFewTapsFilterGradient = 0;
        try
        {
            Assert.Equal("FilterGradientNarrow", Plan(stem, bias: false)[0].Kernel);
        }
        finally
        {
            backend.FewTapsFilterGradient = 64;
            backend.BlockedFewTapsFilterGradient = 160;
        }

        List<Ilgpu.LaunchRecord> Plan(Conv2dGeometry g, bool bias)
        {
            using var x = backend.Allocate<float>(g.InputShape);
            using var dy = backend.Allocate<float>(g.OutputShape);
            using var dw = backend.Allocate<float>(g.WeightShape);
            using var db = backend.Allocate<float>(new Shape(g.K));
            return [.. backend.PlanLaunches(Ilgpu.IlgpuBackend.DeviceProfile.Hopper, () => backend.Conv2dBackwardFilter(g, x, dy, dw, bias ? db : null))];
        }
    }
}

/// <summary>
/// Which filter gradients take the blocked few-taps kernel (<see cref="Kernels.ConvolutionFewTapsKernels.FilterGradientBlocked"/>)
/// wherever it fits, planned for an H100 — <see cref="IlgpuCpuBlockedFewTapsFixture"/>'s test classes check its sums only
/// if they get there — beside the few-taps kernel, and that it takes layers of at most 160 taps by default.
/// </summary>
public sealed class BlockedFewTapsLaunchTests(IlgpuCpuBlockedFewTapsFixture fixture) : IClassFixture<IlgpuCpuBlockedFewTapsFixture>
{
    private static readonly string[] Blocked = ["FilterGradientBlocked", "SumChunks"];

    [Fact]
    public void Layers_whose_blocks_fit_a_group_take_the_blocked_kernel_in_chunks_for_the_multiprocessors()
    {
        var backend = (Ilgpu.IlgpuBackend)fixture.Require();
        Assert.Equal((4096, 0), (backend.BlockedFewTapsFilterGradient, backend.FewTapsFilterGradient));
        // ResNet-8's 16 → 16 3×3 layer: 144 taps, one block of 16 filters, 160 threads (144 in whole warps), a chunk a
        // group: 100,352 pixels in chunks of four batches of 32 for about six groups (1,024 threads) a multiprocessor.
        var resnet = new Conv2dGeometry(128, 16, 28, 28, 16, 3, 3, PadH: 1, PadW: 1);
        var stem = new Conv2dGeometry(128, 1, 28, 28, 16, 3, 3, PadH: 1, PadW: 1);
        var plan = Plan(resnet, bias: false);
        Assert.Equal(Blocked, plan.Select(r => r.Kernel));
        Assert.Equal((784L, 160L, 128L), (plan[0].Groups, plan[0].GroupSize, plan[0].SerialLoop));
        // Four chunks a multiprocessor when told (528 asked for): six batches of 32 a chunk, 523 chunks.
        backend.BlockedFewTapsChunksPerMultiprocessor = 4;
        try
        {
            Assert.Equal((523L, 192L), (Plan(resnet, bias: false)[0].Groups, Plan(resnet, bias: false)[0].SerialLoop));
        }
        finally
        {
            backend.BlockedFewTapsChunksPerMultiprocessor = null;
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => backend.BlockedFewTapsChunksPerMultiprocessor = 0);
        // With the bias, its column of ones: 145 columns. 16 → 32 at stride 2: two blocks, 288 threads.
        Assert.Equal(Blocked, Plan(resnet, bias: true).Select(r => r.Kernel));
        Assert.Equal(288L, Plan(new Conv2dGeometry(128, 16, 28, 28, 32, 3, 3, 2, 2, 1, 1), bias: false)[0].GroupSize);
        // The first layer too, with the few-taps kernel off; 32 → 32 at 3×3 (288 taps) stages 46 KB: the implicit GEMM.
        Assert.Equal(Blocked, Plan(stem, bias: false).Select(r => r.Kernel));
        Assert.Equal("FilterGradientNarrow", Plan(new Conv2dGeometry(128, 32, 14, 14, 32, 3, 3, PadH: 1, PadW: 1), bias: false)[0].Kernel);
        // At most 512 threads: 128 → 64 at 1×1 (four blocks of 128 taps) exactly 512; 16 → 64 at 3×3 (four blocks of 144
        // taps, its stage fits) 576, so the implicit GEMM's 64-filter tiles.
        Assert.Equal(Blocked, Plan(new Conv2dGeometry(32, 128, 14, 14, 64, 1, 1), bias: false).Select(r => r.Kernel));
        Assert.Equal(512L, Plan(new Conv2dGeometry(32, 128, 14, 14, 64, 1, 1), bias: false)[0].GroupSize);
        Assert.Equal("FilterGradient", Plan(new Conv2dGeometry(32, 16, 14, 14, 64, 3, 3, PadH: 1, PadW: 1), bias: false)[0].Kernel);
        // The 16 → 32 layer's 288 threads are more than this accelerator's groups of 128 hold; the test layers that its
        // classes check here do take it (two blocks, the second partial; a chunk ending inside a batch; a 1×1 layer).
        Assert.NotEqual(Blocked, Plan(new Conv2dGeometry(128, 16, 28, 28, 32, 3, 3, 2, 2, 1, 1), bias: false, backend.Profile).Select(r => r.Kernel));
        foreach (string name in (string[])["7x7 stride 2 stem, 20 filters", "first layer, 3 channels, 270 pixels", "1x1 stride 2, 16 filters from 6 channels"])
        {
            Assert.Equal(Blocked, Plan(Cases.Convolutions[name], bias: true, backend.Profile).Select(r => r.Kernel));
        }

        // The few-taps kernel, when on, keeps its layers whose blocked groups are small (the stem: 32 threads) and the
        // blocked one takes the rest (the 16 → 16 layer's 144 taps; a 1×1 layer of 64 channels, 64 → 32: 128 threads).
        backend.FewTapsFilterGradient = 64;
        try
        {
            Assert.Equal(["FilterGradient", "SumChunks"], Plan(stem, bias: false).Select(r => r.Kernel));
            Assert.Equal(Blocked, Plan(resnet, bias: false).Select(r => r.Kernel));
            Assert.Equal(Blocked, Plan(new Conv2dGeometry(32, 64, 14, 14, 32, 1, 1), bias: false).Select(r => r.Kernel));
            Assert.Equal(["FilterGradient", "SumChunks"], Plan(new Conv2dGeometry(32, 64, 14, 14, 16, 1, 1), bias: false).Select(r => r.Kernel));
        }
        finally
        {
            backend.FewTapsFilterGradient = 0;
        }

        backend.BlockedFewTapsFilterGradient = 0;
        try
        {
            Assert.Equal("FilterGradientNarrow", Plan(resnet, bias: false)[0].Kernel);
            Assert.Equal("FilterGradientNarrow", Plan(stem, bias: false)[0].Kernel);
        }
        finally
        {
            backend.BlockedFewTapsFilterGradient = 4096;
        }

        if (Environment.GetEnvironmentVariable("GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT") is null)
        {
            using var fresh = Backends.Open("ilgpu-cpu");
            Assert.Equal(160, ((Ilgpu.IlgpuBackend)fresh).BlockedFewTapsFilterGradient); // as timed on an H200
        }

        List<Ilgpu.LaunchRecord> Plan(Conv2dGeometry g, bool bias, Ilgpu.IlgpuBackend.DeviceProfile? profile = null)
        {
            using var x = backend.Allocate<float>(g.InputShape);
            using var dy = backend.Allocate<float>(g.OutputShape);
            using var dw = backend.Allocate<float>(g.WeightShape);
            using var db = backend.Allocate<float>(new Shape(g.K));
            return [.. backend.PlanLaunches(profile ?? Ilgpu.IlgpuBackend.DeviceProfile.Hopper, () => backend.Conv2dBackwardFilter(g, x, dy, dw, bias ? db : null))];
        }
    }
}

/// <summary>
/// The GPU-shaped CPU accelerator (<see cref="IlgpuCpuGpuGroupsFixture"/>) must take the launches a GPU takes, or its
/// test classes would only repeat the small-group ones: 256-thread GEMM and convolution groups, 128×128 GEMM tiles.
/// </summary>
public sealed class IlgpuCpuGpuGroupsLaunchTests(IlgpuCpuGpuGroupsFixture fixture) : IClassFixture<IlgpuCpuGpuGroupsFixture>
{
    [Fact]
    public void The_gpu_shaped_cpu_accelerator_launches_what_a_gpu_launches()
    {
        var backend = (Ilgpu.IlgpuBackend)fixture.Require();
        Assert.Equal(256, backend.Profile.MaxGroupThreads);
        using var a = backend.Allocate<float>(new Shape(200, 64));
        using var b = backend.Allocate<float>(new Shape(64, 200));
        using var c = backend.Allocate<float>(new Shape(200, 200));
        var gemm = backend.PlanLaunches(backend.Profile, () => backend.Gemm(false, false, 200, 200, 64, 1f, a, b, 0f, c));
        Assert.Contains(gemm, r => r.GroupSize == 256 && r.Groups == 4); // 128×128 tiles: 2 × 2 of them

        using var x = backend.Allocate<float>(new Shape(2, 8, 12, 12));
        using var w = backend.Allocate<float>(new Shape(64, 8, 3, 3));
        using var y = backend.Allocate<float>(new Shape(2, 64, 12, 12));
        var convolution = backend.PlanLaunches(backend.Profile, () => backend.Conv2dForward(new Conv2dGeometry(2, 8, 12, 12, 64, 3, 3, PadH: 1, PadW: 1), x, w, null, y));
        Assert.Contains(convolution, r => r.GroupSize == 256);
        Assert.All(gemm.Concat(convolution), r => Assert.True(r.GroupSize is 256 or Ilgpu.IlgpuBackend.AutoGroupAssumed, $"{r.Kernel}: group of {r.GroupSize}"));
    }
}
