using GpuCnn.Cpu;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The modern layers' operations on every backend against the reference in double.</summary>
public abstract partial class BackendOpsTests
{
    /// <summary>(N,C,H,W) and (N, features), the latter also with whole vectors of features and some left over (CpuBackendTests adds the CPU's split across its team).</summary>
    public static TheoryData<bool, int[]> BatchNormCases => new()
    {
        { true, [2, 3, 4, 5] },
        { true, [7, 5] },
        { true, [9, 37] },
        { false, [2, 3, 4, 5] },
        { false, [7, 5] },
        { false, [9, 37] },
    };

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(BatchNormCases))]
    public void BatchNorm_forward_and_backward_match_reference(bool training, int[] dims)
    {
        var shape = new Shape(dims);
        var s = GradientCheckTests.BatchNormShapeOf(shape, training);
        float[] x = TestData.Uniform(shape.Size, 31, -2f, 3f), dy = TestData.Uniform(shape.Size, 32);
        float[] weight = TestData.Uniform(s.Channels, 33), bias = TestData.Uniform(s.Channels, 34);
        float[] runningMean = TestData.Uniform(s.Channels, 35), runningVar = TestData.Uniform(s.Channels, 36, 0.5f, 2f);
        BatchNormMatchesReference(training, shape, x, dy, weight, bias, runningMean, runningVar,
            $"{Backend.Name} batch norm {(training ? "training" : "evaluation")} {shape}");
    }

    /// <summary>Both passes of batch norm on the backend against the reference in double: y, the statistics, the running ones, dx, dweight, dbias.</summary>
    private void BatchNormMatchesReference(bool training, Shape shape, float[] x, float[] dy, float[] weight, float[] bias, float[] runningMean,
        float[] runningVar, string what)
    {
        var s = GradientCheckTests.BatchNormShapeOf(shape, training);
        var channels = new Shape(s.Channels);
        double[] expectedMean = TestData.Widen(runningMean), expectedVar = TestData.Widen(runningVar);
        double[] y = new double[shape.Size], mean = new double[s.Channels], invStd = new double[s.Channels];
        double[] dx = new double[shape.Size], dweight = new double[s.Channels], dbias = new double[s.Channels];
        ReferenceMath.BatchNormForward<double>(s, TestData.Widen(x), TestData.Widen(weight), TestData.Widen(bias), expectedMean, expectedVar,
            y, mean, invStd);
        ReferenceMath.BatchNormBackward<double>(s, TestData.Widen(x), TestData.Widen(dy), TestData.Widen(weight), mean, invStd, dx, dweight, dbias);

        using var tx = Put(x, shape);
        using var tdy = Put(dy, shape);
        using var tw = Put(weight, channels);
        using var tb = Put(bias, channels);
        using var trm = Put(runningMean, channels);
        using var trv = Put(runningVar, channels);
        using var ty = Poisoned(shape);
        using var tmean = Poisoned(channels);
        using var tinv = Poisoned(channels);
        using var tdx = Poisoned(shape);
        using var tdw = Poisoned(channels);
        using var tdb = Poisoned(channels);
        Backend.BatchNormForward(training, tx, tw, tb, trm, trv, 0.1f, 1e-5f, ty, tmean, tinv);
        Backend.BatchNormBackward(training, tx, tdy, tw, tmean, tinv, tdx, tdw, tdb);
        TensorAssert.Close(y, Backend.DownloadArray(ty), shape, Atol, Rtol, $"{what} y");
        TensorAssert.Close(mean, Backend.DownloadArray(tmean), channels, Atol, Rtol, $"{what} mean");
        TensorAssert.Close(invStd, Backend.DownloadArray(tinv), channels, Atol, Rtol, $"{what} invStd");
        TensorAssert.Close(expectedMean, Backend.DownloadArray(trm), channels, Atol, Rtol, $"{what} running mean");
        TensorAssert.Close(expectedVar, Backend.DownloadArray(trv), channels, Atol, Rtol, $"{what} running var");
        TensorAssert.Close(dx, Backend.DownloadArray(tdx), shape, Atol, Rtol, $"{what} dx");
        TensorAssert.Close(dweight, Backend.DownloadArray(tdw), channels, Atol, Rtol, $"{what} dweight");
        TensorAssert.Close(dbias, Backend.DownloadArray(tdb), channels, Atol, Rtol, $"{what} dbias");
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData(4, 3, 1, 2)] // channel by channel, 8 values a channel
    [InlineData(4, 37)] // features: whole vectors of channels and some left over, 4 values a channel
    public void BatchNorm_keeps_its_precision_when_the_mean_dwarfs_the_spread(params int[] dims)
    {
        // Values near 300 that differ by hundredths: an affine dx = a·dz + b·x + d cancels terms of 10⁷ here and lost
        // 1 % of dx, and an affine y = scale·x + shift terms of 10⁴; the centred forms keep float precision. The
        // statistics are given (in double, rounded to float: the backward's inputs, evaluation's running statistics)
        // so that only each pass's own arithmetic is measured.
        var shape = new Shape(dims);
        var s = GradientCheckTests.BatchNormShapeOf(shape, training: true);
        var channels = new Shape(s.Channels);
        float[] x = TestData.Uniform(shape.Size, 41, 300f, 300.01f), dy = TestData.Uniform(shape.Size, 42), weight = TestData.Uniform(s.Channels, 43, 0.5f, 2f);
        double[] y = new double[shape.Size], exactMean = new double[s.Channels], exactInvStd = new double[s.Channels];
        ReferenceMath.BatchNormForward<double>(s, TestData.Widen(x), TestData.Widen(weight), new double[s.Channels], new double[s.Channels],
            new double[s.Channels], y, exactMean, exactInvStd);
        float[] mean = [.. exactMean.Select(v => (float)v)], invStd = [.. exactInvStd.Select(v => (float)v)];
        double[] dx = new double[shape.Size], dweight = new double[s.Channels], dbias = new double[s.Channels];
        ReferenceMath.BatchNormBackward<double>(s, TestData.Widen(x), TestData.Widen(dy), TestData.Widen(weight), TestData.Widen(mean), TestData.Widen(invStd),
            dx, dweight, dbias);

        using var tx = Put(x, shape);
        using var tdy = Put(dy, shape);
        using var tw = Put(weight, channels);
        using var tmean = Put(mean, channels);
        using var tinv = Put(invStd, channels);
        using var tdx = Poisoned(shape);
        using var tdw = Poisoned(channels);
        using var tdb = Poisoned(channels);
        Backend.BatchNormBackward(true, tx, tdy, tw, tmean, tinv, tdx, tdw, tdb);
        double largest = dx.Max(Math.Abs);
        TensorAssert.Close(dx, Backend.DownloadArray(tdx), shape, 1e-4 * largest, 0, $"{Backend.Name} batch norm dx {shape} (largest {largest:G3})");

        float[] variance = [.. exactInvStd.Select(v => (float)((1 / (v * v)) - 1e-5))];
        float[] bias = TestData.Uniform(s.Channels, 44);
        var evaluation = s with { Training = 0 };
        double[] expectedY = new double[shape.Size], unusedMean = new double[s.Channels], unusedInvStd = new double[s.Channels];
        ReferenceMath.BatchNormForward<double>(evaluation, TestData.Widen(x), TestData.Widen(weight), TestData.Widen(bias), TestData.Widen(mean),
            TestData.Widen(variance), expectedY, unusedMean, unusedInvStd);
        using var tb = Put(bias, channels);
        using var trm = Put(mean, channels);
        using var trv = Put(variance, channels);
        using var ty = Poisoned(shape);
        Backend.BatchNormForward(false, tx, tw, tb, trm, trv, 0.1f, 1e-5f, ty, tmean, tinv);
        largest = expectedY.Max(Math.Abs);
        TensorAssert.Close(expectedY, Backend.DownloadArray(ty), shape, 1e-4 * largest, 0, $"{Backend.Name} batch norm evaluation y {shape} (largest {largest:G3})");
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData(4, 4, 1, 2)] // channel by channel, 8 values a channel
    [InlineData(4, 37)] // features: whole vectors of channels and some left over
    public void BatchNorm_training_statistics_hold_for_channels_far_from_zero(params int[] dims)
    {
        // Channel 0 is 2e38 everywhere: its float sum overflowed, and a mean of infinity made its y NaN (PyTorch 1.13's
        // CPU batch_norm gives −inf). Channel 1 is 1e19 ± 1e13: a float sum rounds the mean by a fair part of the
        // spread, and the running variance came out 0.3 % off (PyTorch's 0.8 %). Channel 2 is 1e38 then −1e38: a sum
        // of offsets from the first value overflows (PyTorch: y = bias, finite means). Channel 3 alternates −2e38 and
        // 2e38: x − x₀ overflows, and had made the mean ∞ and y NaN (a plain sum gives 0). The mean of the offsets,
        // each taken from halves and scaled as it is added, keeps all four to float rounding.
        var shape = new Shape(dims);
        var s = GradientCheckTests.BatchNormShapeOf(shape, training: true);
        var channels = new Shape(s.Channels);
        float[] x = TestData.Uniform(shape.Size, 45), spread = TestData.Uniform(s.Count, 46);
        for (int e = 0; e < s.Count; e++)
        {
            x[s.Index(0, e)] = 2e38f;
            x[s.Index(1, e)] = 1e19f + (1e13f * spread[e]);
            x[s.Index(2, e)] = e == 0 ? 1e38f : -1e38f;
            x[s.Index(3, e)] = e % 2 == 0 ? -2e38f : 2e38f;
        }

        float[] weight = TestData.Uniform(s.Channels, 47, 0.5f, 2f), bias = TestData.Uniform(s.Channels, 48);
        float[] runningMean = new float[s.Channels], runningVar = [.. Enumerable.Repeat(1f, s.Channels)];
        double[] y = new double[shape.Size], mean = new double[s.Channels], invStd = new double[s.Channels];
        double[] expectedRunningMean = TestData.Widen(runningMean), expectedRunningVar = TestData.Widen(runningVar);
        ReferenceMath.BatchNormForward<double>(s, TestData.Widen(x), TestData.Widen(weight), TestData.Widen(bias), expectedRunningMean,
            expectedRunningVar, y, mean, invStd);

        using var t = new FusedBatchNormTensors(this, new FusedBatchNormData(s, x, new float[shape.Size], weight, bias, runningMean, runningVar), shape);
        Backend.BatchNormForward(true, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
        string what = $"{Backend.Name} batch norm {shape}, channels of 2e38, 1e19 ± 1e13, ±1e38 and ±2e38";
        // The means to a few float roundings of the channel's largest value: −2e38 + 2e38·(1 ± 2⁻²⁴) is a mean of 2e31
        // where chunks' shares are inexact.
        float[] actualMean = Backend.DownloadArray(t.Mean), actualRunningMean = Backend.DownloadArray(t.RunningMean);
        for (int c = 0; c < s.Channels; c++)
        {
            double largest = Enumerable.Range(0, s.Count).Max(e => Math.Abs((double)x[s.Index(c, e)]));
            Assert.True(Math.Abs(actualMean[c] - mean[c]) <= 1e-6 * (largest + 1), $"{what}: channel {c}'s mean {actualMean[c]}, expected {mean[c]}");
            Assert.True(Math.Abs(actualRunningMean[c] - expectedRunningMean[c]) <= 1e-6 * (largest + 1),
                $"{what}: channel {c}'s running mean {actualRunningMean[c]}, expected {expectedRunningMean[c]}");
        }

        // Channels 2 and 3 have variances past float (~1e76): their invStd is 0, their running variance +∞ and their y
        // the bias, as PyTorch's. y of channel 1 is (x − mean)·invStd with the mean rounded to a float 1e12 apart: a
        // tenth of a standard deviation off in any float arithmetic (PyTorch's y differs by 0.06). These are left out
        // of the comparisons with the reference in double and checked here.
        float[] actualInvStd = Backend.DownloadArray(t.InvStd), actualRunningVar = Backend.DownloadArray(t.RunningVar), actual = Backend.DownloadArray(t.Y);
        foreach (int c in (int[])[2, 3])
        {
            Assert.True(actualInvStd[c] == 0f && float.IsPositiveInfinity(actualRunningVar[c]),
                $"{what}: channel {c}'s invStd {actualInvStd[c]} and running var {actualRunningVar[c]}, expected 0 and +∞");
            (invStd[c], actualInvStd[c], expectedRunningVar[c], actualRunningVar[c]) = (0, 0, 0, 0);
            for (int e = 0; e < s.Count; e++)
            {
                Assert.True(actual[s.Index(c, e)] == bias[c], $"{what}: channel {c}'s y {actual[s.Index(c, e)]}, expected the bias {bias[c]}");
                (y[s.Index(c, e)], actual[s.Index(c, e)]) = (0, 0);
            }
        }

        TensorAssert.Close(invStd, actualInvStd, channels, 1e-6, 1e-4, $"{what}: invStd");
        TensorAssert.Close(expectedRunningVar, actualRunningVar, channels, 1e-6, 1e-4, $"{what}: running var");
        for (int e = 0; e < s.Count; e++)
        {
            (y[s.Index(1, e)], actual[s.Index(1, e)]) = (0, 0);
        }

        TensorAssert.Close(y, actual, shape, Atol, Rtol, $"{what}: y");
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Random_batch_norm_shapes_and_offsets_match_reference()
    {
        bool emulated = Backend is Ilgpu.IlgpuBackend;
        var random = new Random(20261128);
        for (int i = 0; i < (emulated ? 10 : 120); i++)
        {
            // (N, C, H, W) or (N, features); channel means from −10 to 10 over spreads of 0.5 to 3; both modes.
            bool planes = random.Next(2) == 0, training = random.Next(3) != 0;
            int n = random.Next(4, 8), c = random.Next(1, 40); // at least 4 values a channel: with 2, x̂ = ±1 whatever x is, and dx is rounding noise
            var shape = planes ? new Shape(n, c, random.Next(1, 6), random.Next(1, 6)) : new Shape(n, c);
            float offset = (float)((random.NextDouble() * 20) - 10), spread = (float)(0.5 + (random.NextDouble() * 2.5));
            float[] x = [.. TestData.Uniform(shape.Size, 700 + i, -spread, spread).Select(v => v + offset)];
            float[] dy = TestData.Uniform(shape.Size, 800 + i), weight = TestData.Uniform(c, 900 + i, 0.5f, 2f), bias = TestData.Uniform(c, 1000 + i);
            float[] runningMean = [.. TestData.Uniform(c, 1100 + i).Select(v => v + offset)], runningVar = TestData.Uniform(c, 1200 + i, 0.5f, 2f);
            BatchNormMatchesReference(training, shape, x, dy, weight, bias, runningMean, runningVar,
                $"{Backend.Name} sweep case {i}: batch norm {(training ? "training" : "evaluation")} {shape}, mean {offset:F2}, spread {spread:F2}");
        }
    }

    /// <summary>
    /// Fused batch norm cases: every activation in training on (N,C,H,W) and in evaluation on (N, features); for ReLU
    /// and Sigmoid also the other way round, planes of 1,200 values (longer than the CPU's 1,024-value pieces), and
    /// (N, features) inputs with whole vectors of features and some left over (the CPU's feature-vectorised path).
    /// Tensors large enough for the CPU to split their channels across its team: CpuBackendTests.
    /// </summary>
    public static TheoryData<string, bool, int[]> FusedBatchNormCases
    {
        get
        {
            var cases = new TheoryData<string, bool, int[]>();
            foreach (string spec in (string[])[.. LayerRegistry.ActivationNames, "leakyrelu(0.1)"])
            {
                cases.Add(spec, true, [2, 3, 4, 5]);
                cases.Add(spec, false, [7, 5]);
            }

            foreach (string spec in (string[])["relu", "sigmoid"])
            {
                cases.Add(spec, false, [2, 3, 4, 5]);
                cases.Add(spec, true, [7, 5]);
                cases.Add(spec, true, [2, 2, 40, 30]);
                cases.Add(spec, true, [9, 37]);
                cases.Add(spec, false, [9, 37]);
            }

            return cases;
        }
    }

    /// <summary>
    /// ReLU6 clips at both ends on every path — the CPU's vector loops included (1,000 values in [−12, 12]: whole
    /// vectors and a tail) — and its gradient is cut at both, from x and from y alone; 0, −0 and 6 themselves too.
    /// </summary>
    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Relu6_clips_at_zero_and_six_forward_and_backward()
    {
        var f = Cases.Activation("relu6");
        Shape shape = new(1000);
        float[] x = [.. TestData.Uniform(shape.Size, 61).Select(v => 12f * v)], gy = TestData.Uniform(shape.Size, 62);
        (x[0], x[1], x[2], x[3], x[4]) = (6f, 0f, -0f, MathF.BitDecrement(6f), MathF.BitIncrement(6f));
        using var dx = Put(x, shape);
        using var dy = Poisoned(shape);
        f.Apply(Backend, dx, dy);
        float[] y = Backend.DownloadArray(dy);
        TensorAssert.Close([.. x.Select(v => f.Evaluate(v))], y, shape, 0, 0, $"{Backend.Name} relu6 forward");
        Assert.True(y.Count(v => v == 6f) > 100 && y.Count(v => v == 0f) > 100, "both clips reached");

        double[] expectedGx = [.. Enumerable.Range(0, shape.Size).Select(i => f.EvaluateBackward(x[i], y[i], gy[i]))];
        using var dgy = Put(gy, shape);
        using var dgx = Poisoned(shape);
        f.ApplyBackward(Backend, dx, dy, dgy, dgx);
        TensorAssert.Close(expectedGx, Backend.DownloadArray(dgx), shape, 0, 0, $"{Backend.Name} relu6 backward");
        using var fromOutput = Poisoned(shape);
        f.ApplyBackwardFromOutput(Backend, dy, dgy, fromOutput);
        TensorAssert.Close(expectedGx, Backend.DownloadArray(fromOutput), shape, 0, 0, $"{Backend.Name} relu6 backward from y");
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(FusedBatchNormCases))]
    public void BatchNorm_fuses_the_activation_after_it_forward_and_backward(string spec, bool training, int[] dims)
    {
        var f = Cases.Activation(spec);
        var shape = new Shape(dims);
        var data = FusedBatchNormData.Random(shape, training);
        var expected = data.Expected(f);
        using var t = new FusedBatchNormTensors(this, data, shape);
        f.BatchNormForward(Backend, training, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
        string what = $"{Backend.Name} batch norm + {spec} {(training ? "training" : "evaluation")} {shape}";
        TensorAssert.Close(expected.Y, Backend.DownloadArray(t.Y), shape, Atol, Rtol, $"{what} y");
        if (!f.CanFuse)
        {
            var refused = Assert.Throws<NotSupportedException>(() =>
                f.BatchNormBackward(Backend, training, t.X, t.Y, t.Dy, t.Weight, t.Mean, t.InvStd, null, t.Dweight, t.Dbias));
            Assert.Contains("no derivative from its output alone", refused.Message, StringComparison.Ordinal);
            return;
        }

        f.BatchNormBackward(Backend, training, t.X, t.Y, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);
        t.Expect(expected, what, Atol, Rtol);

        // A first layer wants no dx: the sums alone, the same.
        var channels = new Shape(data.S.Channels);
        using var alone = Poisoned(channels);
        using var aloneBias = Poisoned(channels);
        f.BatchNormBackward(Backend, training, t.X, t.Y, t.Dy, t.Weight, t.Mean, t.InvStd, null, alone, aloneBias);
        TensorAssert.Close(expected.Dweight, Backend.DownloadArray(alone), channels, Atol, Rtol, $"{what} dweight without dx");
        TensorAssert.Close(expected.Dbias, Backend.DownloadArray(aloneBias), channels, Atol, Rtol, $"{what} dbias without dx");
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData("relu", "x")]
    [InlineData("relu", "y")]
    [InlineData("relu", "dy")]
    [InlineData("sigmoid", "x")]
    [InlineData("sigmoid", "dy")]
    public void Fused_batch_norm_backward_may_write_dx_over_its_inputs(string spec, string over)
    {
        var f = Cases.Activation(spec);
        foreach (var shape in (Shape[])[new(3, 4, 5, 7), new(9, 37)]) // planes, and features (the CPU's vector-of-channels path)
        {
            var data = FusedBatchNormData.Random(shape, training: true);
            var channels = new Shape(data.S.Channels);
            using var tw = Put(data.Weight, channels);
            using var tb = Put(data.Bias, channels);
            using var trm = Put(data.RunningMean, channels);
            using var trv = Put(data.RunningVar, channels);
            using var tmean = Poisoned(channels);
            using var tinv = Poisoned(channels);
            using var tdw = Poisoned(channels);
            using var tdb = Poisoned(channels);
            float[] Gradient(bool aliased)
            {
                using var tx = Put(data.X, shape);
                using var tdy = Put(data.Dy, shape);
                using var ty = Poisoned(shape);
                using var separate = Poisoned(shape);
                f.BatchNormForward(Backend, true, tx, tw, tb, trm, trv, 0.1f, 1e-5f, ty, tmean, tinv);
                var dx = !aliased ? separate : over switch { "x" => tx, "y" => ty, _ => tdy };
                f.BatchNormBackward(Backend, true, tx, ty, tdy, tw, tmean, tinv, dx, tdw, tdb);
                return Backend.DownloadArray(dx);
            }

            TensorAssert.Identical(Gradient(aliased: false), Gradient(aliased: true), $"{Backend.Name} batch norm + {spec} {shape}, dx written over {over}");
        }
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Fused_relu_keeps_nan_as_pytorch_does()
    {
        // Add: relu(NaN + b) is NaN.
        float[] a = TestData.Uniform(40, 73), b = TestData.Uniform(40, 74);
        a[5] = float.NaN;
        var relu = Cases.Activation("relu");
        using var ta = Put(a, [40]);
        using var tb = Put(b, [40]);
        using var ty = Poisoned([40]);
        relu.AddForward(Backend, ta, tb, ty);
        TensorAssert.Close([.. a.Select((value, i) => relu.Evaluate((double)value + b[i]))], Backend.DownloadArray(ty), new Shape(40), Atol, Rtol,
            $"{Backend.Name} add + relu with a NaN");
        Assert.True(float.IsNaN(Backend.DownloadArray(ty)[5]));

        // Batch norm: a NaN in channel 1 makes its statistics and every y of it NaN (ReLU keeps them); backward, dy
        // passes where y is NaN, so that channel's dbias stays finite while dweight and dx are NaN — as the composition.
        var shape = new Shape(2, 3, 4, 5);
        var data = FusedBatchNormData.Random(shape, training: true);
        data.X[(1 * 20) + 7] = float.NaN;
        var expected = data.Expected(relu);
        using var t = new FusedBatchNormTensors(this, data, shape);
        relu.BatchNormForward(Backend, true, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
        relu.BatchNormBackward(Backend, true, t.X, t.Y, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);
        string what = $"{Backend.Name} batch norm + relu with a NaN";
        TensorAssert.Close(expected.Y, Backend.DownloadArray(t.Y), shape, Atol, Rtol, $"{what} y");
        t.Expect(expected, what, Atol, Rtol);
        Assert.True(double.IsFinite(expected.Dbias[1]) && double.IsNaN(expected.Dweight[1]), "the case tests what it says");
    }

    /// <summary>
    /// Every activation on 9,000 values (several of the CPU's 4,096-value blocks); ReLU and Sigmoid also on 70,001, over
    /// the CPU's split threshold: two ranges, the second starting inside a block.
    /// </summary>
    public static TheoryData<string, int> FusedAddCases
    {
        get
        {
            var cases = new TheoryData<string, int>();
            foreach (string spec in (string[])[.. LayerRegistry.ActivationNames, "leakyrelu(0.1)", "leakyrelu(-0.2)"])
            {
                cases.Add(spec, 9_000);
            }

            cases.Add("relu", 70_001);
            cases.Add("sigmoid", 70_001);
            return cases;
        }
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(FusedAddCases))]
    public void Add_fuses_the_activation_after_it(string spec, int count)
    {
        Assert.SkipWhen(count > 9_000 && Backend is Ilgpu.IlgpuBackend { IsGpu: false },
            "the 70,001-value case is the CPU backend's split threshold; ILGPU's CPU accelerator has none and takes seconds to emulate it");
        var f = Cases.Activation(spec);
        float[] a = TestData.Uniform(count, 71, -2f, 2f), b = TestData.Uniform(count, 72, -2f, 2f);
        double[] expected = [.. a.Select((value, i) => f.Evaluate((double)value + b[i]))];
        using var ta = Put(a, [count]);
        using var tb = Put(b, [count]);
        using var ty = Poisoned([count]);
        f.AddForward(Backend, ta, tb, ty);
        TensorAssert.Close(expected, Backend.DownloadArray(ty), new Shape(count), Atol, Rtol, $"{Backend.Name} add + {spec}");
        f.AddForward(Backend, ta, tb, ta); // in place, as the plain add allows
        TensorAssert.Close(expected, Backend.DownloadArray(ta), new Shape(count), Atol, Rtol, $"{Backend.Name} add + {spec} in place");
    }

    /// <summary>A fused batch norm test's tensors on a backend: the inputs uploaded, the outputs poisoned (NaN).</summary>
    internal sealed class FusedBatchNormTensors : IDisposable
    {
        private readonly Backend _backend;

        public FusedBatchNormTensors(BackendOpsTests test, FusedBatchNormData data, Shape shape)
            : this(test.Backend, data, shape)
        {
        }

        public FusedBatchNormTensors(Backend backend, FusedBatchNormData data, Shape shape)
        {
            _backend = backend;
            var channels = new Shape(data.S.Channels);
            DeviceTensor<float> Put(float[] values, Shape at) => backend.Upload<float>(at, values);
            DeviceTensor<float> Poisoned(Shape at)
            {
                var tensor = backend.Allocate<float>(at);
                backend.Fill(tensor, float.NaN);
                return tensor;
            }

            (X, Dy, Y, Dx) = (Put(data.X, shape), Put(data.Dy, shape), Poisoned(shape), Poisoned(shape));
            (Weight, Bias) = (Put(data.Weight, channels), Put(data.Bias, channels));
            (RunningMean, RunningVar) = (Put(data.RunningMean, channels), Put(data.RunningVar, channels));
            (Mean, InvStd, Dweight, Dbias) = (Poisoned(channels), Poisoned(channels), Poisoned(channels), Poisoned(channels));
        }

        public DeviceTensor<float> X { get; }

        public DeviceTensor<float> Dy { get; }

        public DeviceTensor<float> Y { get; }

        public DeviceTensor<float> Dx { get; }

        public DeviceTensor<float> Weight { get; }

        public DeviceTensor<float> Bias { get; }

        public DeviceTensor<float> RunningMean { get; }

        public DeviceTensor<float> RunningVar { get; }

        public DeviceTensor<float> Mean { get; }

        public DeviceTensor<float> InvStd { get; }

        public DeviceTensor<float> Dweight { get; }

        public DeviceTensor<float> Dbias { get; }

        /// <summary>dx, dweight and dbias against the composition's.</summary>
        public void Expect((double[] Y, double[] Dx, double[] Dweight, double[] Dbias) expected, string what, double atol, double rtol)
        {
            var backend = _backend;
            TensorAssert.Close(expected.Dx, backend.DownloadArray(Dx), X.Shape, atol, rtol, $"{what} dx");
            TensorAssert.Close(expected.Dweight, backend.DownloadArray(Dweight), Weight.Shape, atol, rtol, $"{what} dweight");
            TensorAssert.Close(expected.Dbias, backend.DownloadArray(Dbias), Weight.Shape, atol, rtol, $"{what} dbias");
        }

        public void Dispose()
        {
            foreach (var tensor in (DeviceTensor<float>[])[X, Dy, Y, Dx, Weight, Bias, RunningMean, RunningVar, Mean, InvStd, Dweight, Dbias])
            {
                tensor.Dispose();
            }
        }
    }

    /// <summary>Inputs of a fused batch norm test, and what the composition gives in double.</summary>
    internal sealed record FusedBatchNormData(Kernels.BatchNormShape S, float[] X, float[] Dy, float[] Weight, float[] Bias, float[] RunningMean,
        float[] RunningVar)
    {
        public static FusedBatchNormData Random(Shape shape, bool training)
        {
            var s = GradientCheckTests.BatchNormShapeOf(shape, training);
            return new(s, TestData.Uniform(shape.Size, 61, -2f, 3f), TestData.Uniform(shape.Size, 62), TestData.Uniform(s.Channels, 63),
                TestData.Uniform(s.Channels, 64), TestData.Uniform(s.Channels, 65), TestData.Uniform(s.Channels, 66, 0.5f, 2f));
        }

        /// <summary>The forward's mean and invStd and the running statistics after it, in double.</summary>
        public (double[] Mean, double[] InvStd, double[] RunningMean, double[] RunningVar) ExpectedStatistics()
        {
            double[] z = new double[X.Length], mean = new double[S.Channels], invStd = new double[S.Channels];
            double[] runningMean = TestData.Widen(RunningMean), runningVar = TestData.Widen(RunningVar);
            ReferenceMath.BatchNormForward<double>(S, TestData.Widen(X), TestData.Widen(Weight), TestData.Widen(Bias), runningMean, runningVar, z,
                mean, invStd);
            return (mean, invStd, runningMean, runningVar);
        }

        /// <summary>Batch norm, then f (none when null), in double; backward from dz = dy·f′ at the normalised value z.</summary>
        public (double[] Y, double[] Dx, double[] Dweight, double[] Dbias) Expected(ActivationLayer? f)
        {
            double[] z = new double[X.Length], mean = new double[S.Channels], invStd = new double[S.Channels];
            ReferenceMath.BatchNormForward<double>(S, TestData.Widen(X), TestData.Widen(Weight), TestData.Widen(Bias), TestData.Widen(RunningMean),
                TestData.Widen(RunningVar), z, mean, invStd);
            double[] y = f is null ? z : [.. z.Select(f.Evaluate)];
            double[] dz = f is null ? TestData.Widen(Dy) : [.. z.Select((value, i) => f.EvaluateBackward(value, y[i], Dy[i]))];
            double[] dx = new double[X.Length], dweight = new double[S.Channels], dbias = new double[S.Channels];
            ReferenceMath.BatchNormBackward<double>(S, TestData.Widen(X), dz, TestData.Widen(Weight), mean, invStd, dx, dweight, dbias);
            return (y, dx, dweight, dbias);
        }
    }

    [Fact]
    public void Fused_batch_norm_backward_refuses_a_function_without_a_derivative_from_its_output()
    {
        using var x = Backend.Allocate<float>(new Shape(4, 3));
        using var c = Backend.Allocate<float>(new Shape(3));
        var error = Assert.Throws<ArgumentException>(() =>
            Backend.BatchNormBackward(true, x, x, x, c, c, c, x, c, c, new Kernels.LeakyRelu(-0.2f)));
        Assert.Contains("BatchNormBackward: leakyrelu(-0.2) has no derivative from its output alone", error.Message, StringComparison.Ordinal);
        using var wrong = Backend.Allocate<float>(new Shape(4, 2));
        var shape = Assert.Throws<ArgumentException>(() => Backend.BatchNormBackward(true, x, wrong, x, c, c, c, x, c, c, default(Kernels.Relu)));
        Assert.Contains("BatchNormBackward: y has shape (4,2), expected (4,3)", shape.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BatchNorm_rejects_what_cannot_work()
    {
        using var x = Backend.Allocate<float>(new Shape(1, 3));
        using var c = Backend.Allocate<float>(new Shape(3));
        var single = Assert.Throws<ArgumentException>(() => Backend.BatchNormForward(true, x, c, c, c, c, 0.1f, 1e-5f, x, c, c));
        Assert.Contains("BatchNormForward: training needs more than one value per channel (x is (1,3))", single.Message, StringComparison.Ordinal);
        var momentum = Assert.Throws<ArgumentOutOfRangeException>(() => Backend.BatchNormForward(false, x, c, c, c, c, 1.5f, 1e-5f, x, c, c));
        Assert.Contains("momentum must lie in [0, 1], got 1.5", momentum.Message, StringComparison.Ordinal);
        using var wrong = Backend.Allocate<float>(new Shape(4));
        var channels = Assert.Throws<ArgumentException>(() => Backend.BatchNormForward(false, x, wrong, c, c, c, 0.1f, 1e-5f, x, c, c));
        Assert.Contains("BatchNormForward: weight has shape (4), expected (3)", channels.Message, StringComparison.Ordinal);
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData(0f)]
    [InlineData(0.3f)]
    [InlineData(0.9f)]
    public void Dropout_matches_reference_and_pytorch_semantics(float p)
    {
        const int count = 20_000;
        const uint key = 12345;
        float[] x = TestData.Uniform(count, 41, 0.5f, 2f);
        var expected = new double[count];
        ReferenceMath.Dropout<double>(TestData.Widen(x), expected, p, Backend.InvertedScale(p), key);

        using var tx = Put(x, [count]);
        using var ty = Poisoned([count]);
        Backend.Dropout(tx, ty, p, key);
        float[] y = Backend.DownloadArray(ty);
        TensorAssert.Close(expected, y, new Shape(count), 0, 1e-7, $"{Backend.Name} dropout({p})");

        // PyTorch's inverted dropout: a kept element is x·(1/(1 − p)) in float; about a fraction p is zeroed.
        float scale = Backend.InvertedScale(p);
        int dropped = 0;
        for (int i = 0; i < count; i++)
        {
            Assert.True(y[i] == 0f || y[i] == x[i] * scale, $"element {i}: {y[i]} is neither 0 nor x·{scale}");
            dropped += y[i] == 0f ? 1 : 0;
        }

        Assert.InRange(dropped / (double)count, p - 0.015, p + 0.015); // 4.6σ of a binomial fraction at p = 0.3 over 20,000 draws (the key is fixed: the test cannot flake)

        // The same key gives the same mask; another key another one.
        using var again = Poisoned([count]);
        Backend.Dropout(tx, again, p, key);
        TensorAssert.Identical<float>(y, Backend.DownloadArray(again), "same key");
        if (p > 0f)
        {
            Backend.Dropout(tx, again, p, key + 1);
            Assert.NotEqual(y, Backend.DownloadArray(again));
        }
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Dropout_and_crops_of_a_share_draw_what_the_whole_batch_draws_for_those_samples()
    {
        // Ranks sharing a global batch pass where their share starts: samples 4…8 of one call must equal a second call
        // on those samples with firstSample 4 (the whole batch's draws, not those of samples 0…4 again).
        Shape whole = new(9, 2, 4, 5), share = new(5, 2, 4, 5);
        int start = 4, sample = share.SizeFrom(1);
        float[] x = TestData.Uniform(whole.Size, 53, 0.5f, 2f);
        float[] tail = x[(start * sample)..];
        using var tx = Put(x, whole);
        using var tshare = Put(tail, share);
        using var wholeOut = Poisoned(whole);
        using var shareOut = Poisoned(share);

        Backend.Dropout(tx, wholeOut, 0.5f, 77);
        Backend.Dropout(tshare, shareOut, 0.5f, 77, firstSample: start);
        float[] expected = Backend.DownloadArray(wholeOut)[(start * sample)..];
        TensorAssert.Identical<float>(expected, Backend.DownloadArray(shareOut), $"{Backend.Name} dropout of a share");
        Backend.Dropout(tshare, shareOut, 0.5f, 77);
        Assert.NotEqual(expected, Backend.DownloadArray(shareOut)); // from 0 the share would draw samples 0…4's masks

        Backend.RandomCropFlip(tx, wholeOut, 2, flip: true, 78);
        Backend.RandomCropFlip(tshare, shareOut, 2, flip: true, 78, firstSample: start);
        expected = Backend.DownloadArray(wholeOut)[(start * sample)..];
        TensorAssert.Identical<float>(expected, Backend.DownloadArray(shareOut), $"{Backend.Name} crops of a share");
        Backend.RandomCropFlip(tshare, shareOut, 2, flip: true, 78);
        Assert.NotEqual(expected, Backend.DownloadArray(shareOut));

        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.Dropout(tx, wholeOut, 0.5f, 77, firstSample: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.RandomCropFlip(tx, wholeOut, 2, true, 78, firstSample: -1));
    }

    [Fact]
    public void Dropout_keeps_nan_and_infinity_as_nan_where_it_drops_them_as_pytorch_does()
    {
        // PyTorch multiplies by the scaled mask, so a dropped NaN or ±∞ is 0·NaN or 0·∞ = NaN: it is not hidden from the
        // loss (a choice between x·scale and 0 had made it vanish). Its backward is the same operation on dy.
        const uint key = 99;
        float[] values = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, -1.5f, 2f];
        float[] x = [.. Enumerable.Range(0, 200).Select(i => values[i % values.Length])];
        using var tx = Put(x, [x.Length]);
        using var ty = Poisoned([x.Length]);
        Backend.Dropout(tx, ty, 0.5f, key);
        float[] y = Backend.DownloadArray(ty);
        int droppedNonFinite = 0;
        for (int i = 0; i < x.Length; i++)
        {
            bool kept = Kernels.CounterRandom.Uniform(key, (uint)i) >= 0.5f;
            float expected = kept ? x[i] * 2f : float.IsFinite(x[i]) ? 0f : float.NaN;
            Assert.True(expected.Equals(y[i]), $"{Backend.Name} element {i}: dropout of {x[i]} ({(kept ? "kept" : "dropped")}) gave {y[i]}, expected {expected}");
            droppedNonFinite += !kept && !float.IsFinite(x[i]) ? 1 : 0;
        }

        Assert.True(droppedNonFinite > 20, $"only {droppedNonFinite} non-finite values dropped");
    }

    [Fact]
    public void Dropout_rejects_p_outside_zero_to_one()
    {
        using var x = Backend.Allocate<float>(new Shape(4));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Backend.Dropout(x, x, 1f, 0));
        Assert.Contains("Dropout: p must lie in [0, 1), got 1", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData(0, false)]
    [InlineData(2, true)]
    [InlineData(5, true)] // padding larger than the image: some samples are all zeros
    public void RandomCropFlip_and_normalization_match_reference(int padding, bool flip)
    {
        Shape shape = new(9, 2, 4, 5);
        float[] x = TestData.Uniform(shape.Size, 51);
        var crop = new Kernels.CropFlip(2, 4, 5, padding, flip ? 1 : 0, Key: 99);
        var expected = new double[shape.Size];
        ReferenceMath.RandomCropFlip<double>(crop, TestData.Widen(x), expected, 9);
        using var tx = Put(x, shape);
        using var ty = Poisoned(shape);
        Backend.RandomCropFlip(tx, ty, padding, flip, 99);
        TensorAssert.Close(expected, Backend.DownloadArray(ty), shape, 0, 0, $"{Backend.Name} crop {padding} flip {flip}");

        float[] mean = [0.25f, -1f], std = [0.5f, 3f];
        var normalized = new double[shape.Size];
        ReferenceMath.NormalizeChannels<double>(expected, normalized, TestData.Widen(mean), TestData.Widen(std), 2, 20);
        using var tmean = Put(mean, [2]);
        using var tstd = Put(std, [2]);
        Backend.NormalizeChannels(ty, ty, tmean, tstd);
        TensorAssert.Close(normalized, Backend.DownloadArray(ty), shape, 1e-6, 1e-6, $"{Backend.Name} normalize");
    }
}
