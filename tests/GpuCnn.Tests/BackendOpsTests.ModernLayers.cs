using GpuCnn.Cpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The modern layers' operations on every backend against the reference in double.</summary>
public abstract partial class BackendOpsTests
{
    public static TheoryData<bool, int[]> BatchNormCases => new()
    {
        { true, [2, 3, 4, 5] },
        { true, [7, 5] },
        { false, [2, 3, 4, 5] },
        { false, [7, 5] },
    };

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(BatchNormCases))]
    public void BatchNorm_forward_and_backward_match_reference(bool training, int[] dims)
    {
        var shape = new Shape(dims);
        var s = GradientCheckTests.BatchNormShapeOf(shape, training);
        var channels = new Shape(s.Channels);
        float[] x = TestData.Uniform(shape.Size, 31, -2f, 3f), dy = TestData.Uniform(shape.Size, 32);
        float[] weight = TestData.Uniform(s.Channels, 33), bias = TestData.Uniform(s.Channels, 34);
        float[] runningMean = TestData.Uniform(s.Channels, 35), runningVar = TestData.Uniform(s.Channels, 36, 0.5f, 2f);
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
        string what = $"{Backend.Name} batch norm {(training ? "training" : "evaluation")} {shape}";
        TensorAssert.Close(y, Backend.DownloadArray(ty), shape, Atol, Rtol, $"{what} y");
        TensorAssert.Close(mean, Backend.DownloadArray(tmean), channels, Atol, Rtol, $"{what} mean");
        TensorAssert.Close(invStd, Backend.DownloadArray(tinv), channels, Atol, Rtol, $"{what} invStd");
        TensorAssert.Close(expectedMean, Backend.DownloadArray(trm), channels, Atol, Rtol, $"{what} running mean");
        TensorAssert.Close(expectedVar, Backend.DownloadArray(trv), channels, Atol, Rtol, $"{what} running var");
        TensorAssert.Close(dx, Backend.DownloadArray(tdx), shape, Atol, Rtol, $"{what} dx");
        TensorAssert.Close(dweight, Backend.DownloadArray(tdw), channels, Atol, Rtol, $"{what} dweight");
        TensorAssert.Close(dbias, Backend.DownloadArray(tdb), channels, Atol, Rtol, $"{what} dbias");
    }

    [Fact]
    public void BatchNorm_rejects_what_cannot_work()
    {
        using var x = Backend.Allocate<float>(new Shape(1, 3));
        using var c = Backend.Allocate<float>(new Shape(3));
        var single = Assert.Throws<ArgumentException>(() => Backend.BatchNormForward(true, x, c, c, c, c, 0.1f, 1e-5f, x, c, c));
        Assert.Contains("BatchNormForward: training needs more than one value per channel (x is (1,3))", single.Message, StringComparison.Ordinal);
        var momentum = Assert.Throws<ArgumentOutOfRangeException>(() => Backend.BatchNormForward(false, x, c, c, c, c, 1.5f, 1e-5f, x, c, c));
        Assert.Contains("momentum must lie in (0, 1], got 1.5", momentum.Message, StringComparison.Ordinal);
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
        ReferenceMath.Dropout<double>(TestData.Widen(x), expected, p, 1f / (1f - p), key);

        using var tx = Put(x, [count]);
        using var ty = Poisoned([count]);
        Backend.Dropout(tx, ty, p, key);
        float[] y = Backend.DownloadArray(ty);
        TensorAssert.Close(expected, y, new Shape(count), 0, 1e-7, $"{Backend.Name} dropout({p})");

        // PyTorch's inverted dropout: a kept element is x·(1/(1 − p)) in float; about a fraction p is zeroed.
        float scale = 1f / (1f - p);
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
