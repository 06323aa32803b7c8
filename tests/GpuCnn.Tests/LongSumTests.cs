using GpuCnn.Cpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Sums over long channels (a million values, or 65,536 rows) on the routes that differ in how they add them: the reference (in double),
/// the CPU backend (float vector lanes in pieces, the pieces in double) and ILGPU (each thread's run compensated, then a
/// tree) — on ILGPU's CPU accelerator the groups are a few threads wide, its longest runs; its other test classes
/// take the same reductions at ten times the cost of these shapes (the bias gradient's and the squared norm's long
/// sums, cheap, run on the backends' own classes and the forced split reductions: BackendOpsTests, GradientClippingTests).
/// </summary>
public abstract class LongSumTests(BackendFixture fixture)
{
    private Backend Backend => fixture.Require();

    [Theory]
    [InlineData(4, 1, 500, 500)] // a channel of images: a run per image (one channel: the runs as long, half the ILGPU CPU accelerator's 40 s)
    [InlineData(65_536, 32)] // features: rows of whole vectors of channels (the CPU's lanes each down 65,536 rows)
    public void BatchNorm_sums_over_long_channels_keep_float_precision(params int[] dims)
    {
        // Long per-channel sums in float drift by up to 2⁻²⁴ a term where the terms are alike (dy = 0.1 + 0.05·x here,
        // all in [0.125, 0.175]): the reference had added in float (its mean 6e-6 off), the CPU backend in vector lanes
        // per image (dbias 2e-5 off), ILGPU in threads' long runs (invStd 4e-6 off). Each sum is held to 1e-6 of its
        // terms' magnitudes. PyTorch 1.13's CPU batch norm on such a tensor (dy = 0.1): its dbias 1.8e-4 off, the rest
        // within 1e-7. dy follows x so that dweight = Σ dy·x̂ (0.05·σ a value) and dx are far from 0: with a constant
        // dy both were 0, and a backend returning zeros there would have passed.
        var shape = new Shape(dims);
        var s = GradientCheckTests.BatchNormShapeOf(shape, training: true);
        float[] x = TestData.Uniform(shape.Size, 49, 0.5f, 1.5f), dy = new float[shape.Size];
        for (int i = 0; i < dy.Length; i++)
        {
            dy[i] = 0.1f + (0.05f * x[i]); // alike terms drift alike: random ones would round half up, half down
        }
        float[] weight = TestData.Uniform(s.Channels, 51, 0.5f, 1.5f), bias = TestData.Uniform(s.Channels, 52);
        float[] runningMean = new float[s.Channels], runningVar = [.. Enumerable.Repeat(1f, s.Channels)];
        double[] expectedRunningMean = TestData.Widen(runningMean), expectedRunningVar = TestData.Widen(runningVar);
        double[] y = new double[shape.Size], mean = new double[s.Channels], invStd = new double[s.Channels];
        double[] dx = new double[shape.Size], dweight = new double[s.Channels], dbias = new double[s.Channels];
        ReferenceMath.BatchNormForward<double>(s, TestData.Widen(x), TestData.Widen(weight), TestData.Widen(bias), expectedRunningMean,
            expectedRunningVar, y, mean, invStd);
        ReferenceMath.BatchNormBackward<double>(s, TestData.Widen(x), TestData.Widen(dy), TestData.Widen(weight), mean, invStd, dx, dweight, dbias);

        using var t = new BackendOpsTests.FusedBatchNormTensors(Backend, new BackendOpsTests.FusedBatchNormData(s, x, dy, weight, bias, runningMean, runningVar), shape);
        Backend.BatchNormForward(true, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
        Backend.BatchNormBackward(true, t.X, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);

        string what = $"{Backend.Name} batch norm {shape}";
        float[] actualMean = Backend.DownloadArray(t.Mean), actualInvStd = Backend.DownloadArray(t.InvStd);
        float[] actualRunningMean = Backend.DownloadArray(t.RunningMean), actualRunningVar = Backend.DownloadArray(t.RunningVar);
        float[] actualDweight = Backend.DownloadArray(t.Dweight), actualDbias = Backend.DownloadArray(t.Dbias);
        for (int c = 0; c < s.Channels; c++)
        {
            double magnitude = 0, squares = 0, gradient = 0, weighted = 0;
            for (int e = 0; e < s.Count; e++)
            {
                int i = s.Index(c, e);
                double deviation = x[i] - mean[c];
                (magnitude, squares) = (magnitude + Math.Abs(x[i]), squares + (deviation * deviation));
                (gradient, weighted) = (gradient + Math.Abs(dy[i]), weighted + Math.Abs(dy[i] * deviation * invStd[c]));
            }

            void Near(string name, double expected, double actual, double tolerance) =>
                Assert.True(Math.Abs(actual - expected) <= tolerance, $"{what}: channel {c}'s {name} {actual:R}, expected {expected:R} (±{tolerance:G2})");
            Near("mean", mean[c], actualMean[c], 1e-6 * magnitude / s.Count);
            Near("running mean", expectedRunningMean[c], actualRunningMean[c], 1e-6 * 0.1 * magnitude / s.Count);
            // invStd = (σ² + ε)^-½: a relative error r in the squares is r/2 in it.
            Near("invStd", invStd[c], actualInvStd[c], 1e-6 * invStd[c]);
            Near("running var", expectedRunningVar[c], actualRunningVar[c], 1e-6 * (0.9 + (0.1 * squares / (s.Count - 1))));
            Near("dbias", dbias[c], actualDbias[c], 1e-6 * gradient);
            Near("dweight", dweight[c], actualDweight[c], 1e-6 * weighted);
        }

        TensorAssert.Close(y, Backend.DownloadArray(t.Y), shape, 1e-4, 1e-4, $"{what} y");
        TensorAssert.Close(dx, Backend.DownloadArray(t.Dx), shape, 1e-4, 1e-4, $"{what} dx");
    }
}

public sealed class ReferenceLongSums(ReferenceFixture fixture) : LongSumTests(fixture), IClassFixture<ReferenceFixture>;

public sealed class CpuLongSums(CpuFixture fixture) : LongSumTests(fixture), IClassFixture<CpuFixture>;

public sealed class IlgpuCpuLongSums(IlgpuCpuFixture fixture) : LongSumTests(fixture), IClassFixture<IlgpuCpuFixture>;

public sealed class CudaLongSums(CudaFixture fixture) : LongSumTests(fixture), IClassFixture<CudaFixture>;
