using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>Non-finite data is refused when loaded; a run whose weights go bad stops, and nothing non-finite is written.</summary>
public sealed class NonFiniteTrainingTests
{
    private const string Spec = "conv(4,3),relu,maxpool(2),flatten,dense(10)";

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Train_refuses_images_with_nan_or_infinity_naming_the_file_sample_and_count(float bad)
    {
        using var temp = Fixtures.TempFolder();
        var images = Tensor.Random([64, 1, 12, 12], 1);
        images.Data[(5 * 144) + 17] = bad;
        images.Data[(9 * 144) + 3] = bad;
        Npy.Write(temp.File("x.npy"), images);
        Npy.Write(temp.File("y.npy"), new Npy.Array([64], "i4", [.. Enumerable.Range(0, 64).SelectMany(i => BitConverter.GetBytes(i % 10))]));
        var result = CliRunner.Run("train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"),
            "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--out", temp.File("m.safetensors"));
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"error: {temp.File("x.npy")}: 2 non-finite values (NaN or ±∞) in the images, the first in sample 5 (0-based); fix or drop those samples.", result.ErrorLine);
        Assert.False(File.Exists(temp.File("m.safetensors")));
    }

    [Fact]
    public void Predict_refuses_nan_images_unless_allowed_and_then_gives_nan_logits_for_that_sample_only()
    {
        using var temp = Fixtures.TempFolder();
        using (var backend = new ReferenceBackend())
        using (var model = Sequential.Create("flatten,dense(3)", [1, 2, 2], backend, seed: 1))
        {
            ModelFile.Save(model, temp.File("m.safetensors"));
        }

        var images = Tensor.Random([3, 1, 2, 2], 2);
        images.Data[4 + 1] = float.NaN; // sample 1
        Npy.Write(temp.File("x.npy"), images);
        string[] args = ["predict", "--model", temp.File("m.safetensors"), "--input", temp.File("x.npy"), "--output", temp.File("y.npy"), "--device", "cpu"];
        var refused = CliRunner.Run(args);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("1 non-finite value (NaN or ±∞) in the images, the first in sample 1", refused.ErrorLine, StringComparison.Ordinal);

        var allowed = CliRunner.Run([.. args, "--allow-nonfinite"]);
        Assert.True(allowed.ExitCode == 0, allowed.Error);
        var logits = Npy.ReadTensor(temp.File("y.npy")).Data;
        Assert.All(logits[..3], v => Assert.True(float.IsFinite(v)));
        Assert.All(logits[3..6], v => Assert.True(float.IsNaN(v))); // as PyTorch: NaN stays in its sample
        Assert.All(logits[6..], v => Assert.True(float.IsFinite(v)));
    }

    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void The_first_non_finite_parameter_is_found_on_the_device(string device)
    {
        using var backend = Backends.Open(device);
        using var model = Sequential.Create(Spec, [1, 12, 12], backend, seed: 1);
        Assert.Null(model.FirstNonFiniteTensor());
        var state = model.StateDict();
        state["4.weight"].Data[123] = float.NegativeInfinity;
        state["0.bias"].Data[2] = float.NaN;
        model.LoadStateDict(state);
        Assert.Equal("0.bias", model.FirstNonFiniteTensor());
    }

    [Fact]
    public void Training_stops_when_a_parameter_goes_bad_even_if_the_loss_stays_finite()
    {
        // A parameter that never reaches the loss, spoiled from the start: only the parameter check can see it.
        using var backend = new CpuBackend();
        using var model = new Sequential([new Flatten(), new SpoiledLayer(), new Dense(10)], [1, 4, 4], backend);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        var data = new Dataset(Tensor.Random([32, 1, 4, 4], 3), [.. Enumerable.Range(0, 32).Select(i => i % 10)]);
        var epochs = new List<EpochMetrics>();
        var error = Assert.Throws<TrainingDivergedException>(() => new Trainer(model, sgd, new TrainingOptions(Epochs: 3, BatchSize: 8)).Fit(data, onEpoch: epochs.Add));
        Assert.Equal("1.unused", error.Parameter);
        Assert.Equal(1, error.Epoch);
        Assert.Empty(epochs); // stopped before the epoch was reported (or checkpointed)
        Assert.StartsWith("parameter '1.unused' became NaN or infinite in epoch 1; training stopped.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Training_stops_when_a_running_statistic_goes_bad_even_if_the_loss_stays_finite()
    {
        // Training mode normalises with batch statistics, so an infinite running variance never reaches the loss;
        // the end-of-epoch check names the buffer instead of leaving it to fail the save after the run.
        using var backend = new CpuBackend();
        using var model = Sequential.Create("conv(2,3,bias=false),batchnorm,relu,flatten,dense(10)", [1, 6, 6], backend, seed: 1);
        var state = model.StateDict();
        state["1.running_var"].Data[1] = float.PositiveInfinity;
        model.LoadStateDict(state);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        var data = new Dataset(Tensor.Random([16, 1, 6, 6], 3), [.. Enumerable.Range(0, 16).Select(i => i % 10)]);
        var error = Assert.Throws<TrainingDivergedException>(() => new Trainer(model, sgd, new TrainingOptions(Epochs: 2, BatchSize: 8)).Fit(data));
        Assert.Equal("1.running_var", error.Parameter);
        Assert.StartsWith("buffer '1.running_var' became NaN or infinite in epoch 1; training stopped.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Model_files_and_checkpoints_with_non_finite_weights_are_never_written()
    {
        using var temp = Fixtures.TempFolder();
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("flatten,dense(3)", [1, 2, 2], backend, seed: 1);
        var state = model.StateDict();
        state["1.bias"].Data[1] = float.PositiveInfinity;
        model.LoadStateDict(state);
        var error = Assert.Throws<InvalidOperationException>(() => ModelFile.Save(model, temp.File("m.safetensors")));
        Assert.Contains("tensor '1.bias' holds +∞ at element 1", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("m.safetensors")));

        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f, 0.9f));
        Assert.Throws<InvalidOperationException>(() => CheckpointFile.Save(temp.File("c.safetensors"), model, sgd, TrainingState.Start, new Dictionary<string, string>()));
        Assert.False(File.Exists(temp.File("c.safetensors")));
    }

    /// <summary>A pass-through layer with a parameter that is NaN from the start and never gets a gradient.</summary>
    private sealed class SpoiledLayer : Layer
    {
        private Parameter? _unused;

        public override string Spec => "spoiled";

        public override IReadOnlyList<Parameter> Parameters => _unused is null ? [] : [_unused];

        public override DeviceTensor<float> Forward(DeviceTensor<float> x) => x;

        public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) => needInputGradient ? dy : null;

        protected override Shape InferOutputShape(Shape input) => input;

        protected override void CreateParameters(Random init)
        {
            _unused = CreateParameter("unused", new Shape(4), 4, init);
            Backend.Upload<float>([1f, float.NaN, 2f, 3f], _unused.Value);
            Backend.Fill(_unused.Gradient, 0f);
        }
    }
}
