using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// clip_grad_norm_ (L2) on every backend: the norm, the scaling, PyTorch's handling of NaN and ∞ (its clamp keeps a
/// NaN coefficient; an infinite norm gives 0, and ∞·0 = NaN). Agreement with the reference on random tensors is the
/// catalogue's "clip grad norm" case; three clipped SGD steps against PyTorch are the "clip_sgd" parity fixture.
/// </summary>
public abstract class GradientClippingTests(BackendFixture fixture)
{
    private const string Spec = "flatten,dense(2)"; // parameters 1.weight (2,3) and 1.bias (2)

    [Fact]
    public void Gradients_are_scaled_to_the_largest_norm_and_the_total_is_reported()
    {
        var backend = fixture.Require();
        using var model = Sequential.Create(Spec, [3], backend);
        var (weight, bias) = Gradients(model);
        // ‖g‖ = √(3² + 4² + 12²) = 13 over both tensors.
        backend.Upload<float>([3f, 0f, 0f, 4f, 0f, 0f], weight);
        backend.Upload<float>([0f, -12f], bias);

        using var clipper = new GradientClipper(backend, model.NamedParameters(), maxNorm: 6.5f);
        Assert.True(float.IsNaN(clipper.LastTotalNorm()));
        clipper.Clip();

        Assert.Equal(13f, clipper.LastTotalNorm());
        float scale = 6.5f / (13f + 1e-6f);
        TensorAssert.Close([3 * scale, 0, 0, 4 * scale, 0, 0], backend.DownloadArray(weight), [6], 1e-7, 1e-6, $"{backend.Name} weight gradient");
        TensorAssert.Close([0, -12 * scale], backend.DownloadArray(bias), [2], 1e-7, 1e-6, $"{backend.Name} bias gradient");

        // Under the largest norm: the coefficient is exactly 1 and the gradients keep their bits.
        float[] before = backend.DownloadArray(weight);
        using var loose = new GradientClipper(backend, model.NamedParameters(), maxNorm: 100f);
        loose.Clip();
        Assert.Equal(6.5f, loose.LastTotalNorm(), 1e-5f);
        Assert.Equal(before, backend.DownloadArray(weight));
    }

    [Fact]
    public void The_epsilon_counts_where_the_norm_is_tiny()
    {
        var backend = fixture.Require();
        using var model = Sequential.Create(Spec, [3], backend);
        var (weight, bias) = Gradients(model);
        backend.Upload<float>([1e-6f, 0f, 0f, 0f, 0f, 0f], weight);
        backend.Fill(bias, 0f);
        using var clipper = new GradientClipper(backend, model.NamedParameters(), maxNorm: 1e-7f);
        clipper.Clip();
        // 1e-7 / (1e-6 + 1e-6) = 0.05: without the epsilon it would be 0.1.
        Assert.Equal(5e-8f, backend.DownloadArray(weight)[0], 1e-12f);
    }

    [Fact]
    public void A_nan_or_infinite_gradient_spoils_the_step_as_it_does_in_pytorch()
    {
        var backend = fixture.Require();
        using var model = Sequential.Create(Spec, [3], backend);
        var (weight, bias) = Gradients(model);
        using var clipper = new GradientClipper(backend, model.NamedParameters(), maxNorm: 1f);

        // NaN: the total and the coefficient are NaN (torch.clamp keeps it; a GPU's min would have returned 1).
        backend.Upload<float>([1f, float.NaN, 2f, 3f, 4f, 5f], weight);
        backend.Upload<float>([1f, 2f], bias);
        clipper.Clip();
        Assert.True(float.IsNaN(clipper.LastTotalNorm()));
        Assert.All(backend.DownloadArray(weight).Concat(backend.DownloadArray(bias)), g => Assert.True(float.IsNaN(g)));

        // ∞: the coefficient is 1/(∞ + 1e-6) = 0, so finite gradients become 0 (−0 for negative ones) and ∞·0 = NaN.
        backend.Upload<float>([1f, float.PositiveInfinity, -2f, 3f, 4f, 5f], weight);
        backend.Upload<float>([1f, 2f], bias);
        clipper.Clip();
        Assert.Equal(float.PositiveInfinity, clipper.LastTotalNorm());
        float[] clipped = backend.DownloadArray(weight);
        Assert.True(float.IsNaN(clipped[1]));
        Assert.Equal([0f, -0f, 0f, 0f, 0f], [clipped[0], clipped[2], clipped[3], clipped[4], clipped[5]]);
        Assert.True(float.IsNegative(clipped[2]));
        Assert.Equal([0f, 0f], backend.DownloadArray(bias));
    }

    [Fact]
    public void The_squared_norm_of_a_million_values_keeps_float_precision()
    {
        // A million squares of 0.1 added one after another in float had lost 1.4 % on the reference backend (PyTorch
        // 1.13's clip_grad_norm_ reports a norm of 100.036 for 100; the CPU backend's lanes and ILGPU's chunks each add
        // a few thousand).
        var backend = fixture.Require();
        float[] x = new float[1_000_000];
        Array.Fill(x, 0.1f);
        using var tx = backend.Upload<float>([x.Length], x);
        using var sums = backend.Allocate<float>([1]);
        backend.SquaredNorm(tx, sums, 0);
        double expected = (double)(0.1f * 0.1f) * x.Length;
        TensorAssert.Close([expected], backend.DownloadArray(sums), [1], 0, 1e-6, $"{backend.Name} squared norm of a million values of 0.1");
    }

    [Fact]
    public void Bad_arguments_name_what_is_wrong()
    {
        var backend = fixture.Require();
        using var model = Sequential.Create(Spec, [3], backend);
        using var sums = backend.Allocate<float>([2]);
        using var coefficient = backend.Allocate<float>([2]);
        var (weight, _) = Gradients(model);

        Assert.Equal("SquaredNorm: slot 2 lies outside sums (2). (Parameter 'slot')" + Environment.NewLine + "Actual value was 2.",
            Assert.Throws<ArgumentOutOfRangeException>(() => backend.SquaredNorm(weight, sums, 2)).Message);
        Assert.StartsWith("ClipCoefficient: the largest gradient norm must be finite and positive, got 0.",
            Assert.Throws<ArgumentOutOfRangeException>(() => backend.ClipCoefficient(sums, 0f, coefficient)).Message, StringComparison.Ordinal);
        Assert.StartsWith("ScaleBy: x and coefficient share storage; a GPU would read the coefficient while scaling it.",
            Assert.Throws<ArgumentException>(() => backend.ScaleBy(coefficient.View([1, 2]), coefficient)).Message, StringComparison.Ordinal);
        Assert.StartsWith("gradient clipping: the largest norm must be finite and positive, got NaN.",
            Assert.Throws<ArgumentOutOfRangeException>(() => new GradientClipper(backend, model.NamedParameters(), float.NaN)).Message, StringComparison.Ordinal);
        Assert.StartsWith("Training: the gradient norm to clip to must be finite and positive, got -1.",
            Assert.Throws<ArgumentOutOfRangeException>(() => new TrainingOptions(ClipGradNorm: -1f).Validate()).Message, StringComparison.Ordinal);
    }

    private static (DeviceTensor<float> Weight, DeviceTensor<float> Bias) Gradients(Sequential model)
    {
        var parameters = model.NamedParameters().ToDictionary(p => p.Key, p => p.Parameter);
        return (parameters["1.weight"].Gradient, parameters["1.bias"].Gradient);
    }
}

public sealed class ReferenceGradientClipping(ReferenceFixture fixture) : GradientClippingTests(fixture), IClassFixture<ReferenceFixture>;

public sealed class CpuGradientClipping(CpuFixture fixture) : GradientClippingTests(fixture), IClassFixture<CpuFixture>;

public sealed class IlgpuCpuGradientClipping(IlgpuCpuFixture fixture) : GradientClippingTests(fixture), IClassFixture<IlgpuCpuFixture>;

public sealed class IlgpuCpuGpuGroupsGradientClipping(IlgpuCpuGpuGroupsFixture fixture) : GradientClippingTests(fixture), IClassFixture<IlgpuCpuGpuGroupsFixture>;

public sealed class IlgpuCpuSplitGradientClipping(IlgpuCpuSplitFixture fixture) : GradientClippingTests(fixture), IClassFixture<IlgpuCpuSplitFixture>;

public sealed class CudaGradientClipping(CudaFixture fixture) : GradientClippingTests(fixture), IClassFixture<CudaFixture>;

public sealed class OpenCLGradientClipping(OpenCLFixture fixture) : GradientClippingTests(fixture), IClassFixture<OpenCLFixture>;

/// <summary>The command line's --clip-grad-norm: refused when not positive, and part of what a checkpoint must match.</summary>
public sealed class GradientClippingCliTests
{
    private const string Spec = "conv(3,3),relu,flatten,dense(4)";

    [Fact]
    public void The_option_is_checked_and_a_checkpoint_resumes_only_with_the_same_clipping()
    {
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 16);
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--batch-size", "8",
            "--device", "reference", "--out", temp.File("m.safetensors")];

        var zero = CliRunner.Run([.. common, "--clip-grad-norm", "0"]);
        Assert.Equal(2, zero.ExitCode); // a usage error
        Assert.Equal("error: --clip-grad-norm must be finite and positive, got 0.", zero.ErrorLine);

        string checkpoint = temp.File("c.safetensors");
        var first = CliRunner.Run([.. common, "--epochs", "1", "--clip-grad-norm", "0.5", "--checkpoint", checkpoint]);
        Assert.True(first.ExitCode == 0, first.Error);
        var unclipped = CliRunner.Run([.. common, "--epochs", "2", "--resume", checkpoint]);
        Assert.Equal(1, unclipped.ExitCode);
        Assert.EndsWith("was written with clip_grad_norm 0.5, this run has -; resume with the same settings.", unclipped.ErrorLine, StringComparison.Ordinal);
        var clipped = CliRunner.Run([.. common, "--epochs", "2", "--clip-grad-norm", "0.5", "--resume", checkpoint]);
        Assert.True(clipped.ExitCode == 0, clipped.Error);
        // A checkpoint from before the option (no clip_grad_norm, and no checksum then) resumes with clipping off only;
        // one that lacks any other setting is refused.
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "1", "--checkpoint", checkpoint]).ExitCode);
        ReliabilityTests.WriteWithout(checkpoint, "clip_grad_norm");
        Assert.Equal(1, CliRunner.Run([.. common, "--epochs", "2", "--clip-grad-norm", "0.5", "--resume", checkpoint]).ExitCode);
        var old = CliRunner.Run([.. common, "--epochs", "2", "--resume", checkpoint]);
        Assert.True(old.ExitCode == 0, old.Error);
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "1", "--checkpoint", checkpoint]).ExitCode);
        ReliabilityTests.WriteWithout(checkpoint, "augment");
        Assert.EndsWith("was written with augment (none), this run has -; resume with the same settings.",
            CliRunner.Run([.. common, "--epochs", "2", "--resume", checkpoint]).ErrorLine, StringComparison.Ordinal);
    }
}
