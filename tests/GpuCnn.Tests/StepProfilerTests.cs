using System.Text.Json;
using GpuCnn.Cpu.Fast;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The layer-by-layer step profile (<see cref="StepProfiler"/>, <c>gpucnn profile</c>).</summary>
public sealed class StepProfilerTests
{
    private const string Spec = "conv(4,3,pad=1),batchnorm,relu,residual(conv(4,3,pad=1),relu,conv(4,3,pad=1); conv(4,1)),relu,maxpool(2),flatten,dense(3)";

    [Theory]
    [InlineData("cpu")]
    [InlineData("reference")]
    [InlineData("ilgpu-cpu")]
    public void Every_layer_nested_ones_included_gets_a_row_in_model_order_and_the_rows_add_up(string device)
    {
        using var backend = Backends.Open(device);
        using var model = Sequential.Create(Spec, [2, 8, 8], backend, seed: 1);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0f, 0.9f));
        using var x = backend.Upload(Tensor.Random([5, 2, 8, 8], seed: 2));
        using var labels = backend.Upload<int>([5], [0, 1, 2, 0, 1]);

        var profile = StepProfiler.Run(model, sgd, x, labels, steps: 3, warmupSteps: 1, warmupTime: TimeSpan.Zero);

        Assert.Equal(["0", "1", "2", "3", "3.body.0", "3.body.1", "3.body.2", "3.shortcut.0", "4", "5", "6", "7"], profile.Layers.Select(l => l.Name));
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], profile.Layers.Select(l => l.Depth));
        Assert.Equal(["relu", "relu", "relu"], profile.Layers.Where(l => l.FusedIntoPrevious).Select(l => l.Spec)); // after the batch norm, the first conv and the block
        Assert.Equal("conv(4,1)", profile.Layers.Single(l => l.Name == "3.shortcut.0").Spec);
        Assert.Equal(new Shape(4, 4, 4), profile.Layers.Single(l => l.Name == "5").OutputShape);
        Assert.All(profile.Layers.Where(l => l.Spec.StartsWith("conv", StringComparison.Ordinal)), l => Assert.True(l.ForwardMs > 0 && l.BackwardMs > 0, l.Name));

        // A block's time includes its layers' (their intervals lie inside its own; medians, so with a margin).
        var block = profile.Layers.Single(l => l.Name == "3");
        Assert.True(block.TotalMs >= profile.Layers.Where(l => l.Depth == 1).Sum(l => l.TotalMs) * 0.5);
        Assert.True(profile.StepMs > 0 && profile.LossMs > 0 && profile.UpdateMs > 0);
        Assert.Equal((true, 5, 3), (profile.Training, profile.BatchSize, profile.Steps));
        Assert.Equal(8, sgd.StepCount); // (1 + 3) whole steps, each followed by a timed one
    }

    [Fact]
    public void Profiled_steps_are_training_steps_bit_for_bit()
    {
        float[] Weights(bool profiled)
        {
            using var backend = new CpuBackend(threads: 2, Simd.Best);
            using var model = Sequential.Create(Spec, [2, 8, 8], backend, seed: 3);
            using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.05f, 0.9f));
            using var x = backend.Upload(Tensor.Random([6, 2, 8, 8], seed: 4));
            using var labels = backend.Upload<int>([6], [0, 1, 2, 2, 1, 0]);
            using var dlogits = backend.Allocate<float>([6, 3]);
            using var loss = backend.Allocate<float>([1]);
            if (profiled)
            {
                StepProfiler.Run(model, sgd, x, labels, steps: 2, warmupSteps: 1, warmupTime: TimeSpan.Zero); // 6 steps
            }
            else
            {
                for (int s = 0; s < 6; s++)
                {
                    backend.SoftmaxCrossEntropy(model.Forward(x), labels, dlogits, loss);
                    model.Backward(dlogits);
                    sgd.Step();
                }
            }

            return [.. model.StateDict().OrderBy(p => p.Key, StringComparer.Ordinal).SelectMany(p => p.Value.Data)];
        }

        Assert.Equal(Weights(profiled: false), Weights(profiled: true));
    }

    [Fact]
    public void The_timer_comes_off_after_a_profile_and_after_a_layer_that_throws_inside_one()
    {
        using var backend = new CpuBackend(threads: 1, Simd.Best);
        var failing = new ThrowsOnForward(2, 6); // the timed forwards of the first profile and of the inference one
        using var model = new Sequential([.. ArchitectureSpec.Parse("conv(4,3,pad=1)"), failing, .. ArchitectureSpec.Parse("flatten,dense(3)")], [2, 8, 8], backend);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0f));
        using var x = backend.Upload(Tensor.Random([3, 2, 8, 8], seed: 2));
        using var labels = backend.Upload<int>([3], [0, 1, 2]);

        Assert.Throws<InvalidOperationException>(() => StepProfiler.Run(model, sgd, x, labels, steps: 1, warmupSteps: 0, warmupTime: TimeSpan.Zero));
        Assert.False(model.IsTimed);
        StepProfiler.Run(model, sgd, x, labels, steps: 1, warmupSteps: 0, warmupTime: TimeSpan.Zero);
        Assert.False(model.IsTimed);
        Assert.Throws<InvalidOperationException>(() => StepProfiler.RunInference(model, x, steps: 1, warmupSteps: 0, warmupTime: TimeSpan.Zero));
        Assert.False(model.IsTimed);
        Assert.True(model.Training);
    }

    [Fact]
    public void Whole_steps_and_layer_timed_steps_alternate()
    {
        // In turn, so that both see the machine in the same state (one run after the other, the whole steps had run
        // while .NET was still optimising methods in the background).
        using var backend = new CpuBackend(threads: 1, Simd.Best);
        var watcher = new TimedWatcher();
        using var model = new Sequential([.. ArchitectureSpec.Parse("conv(4,3,pad=1)"), watcher, .. ArchitectureSpec.Parse("flatten,dense(3)")], [2, 8, 8], backend);
        watcher.Model = model;
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0f));
        using var x = backend.Upload(Tensor.Random([3, 2, 8, 8], seed: 2));
        using var labels = backend.Upload<int>([3], [0, 1, 2]);

        StepProfiler.Run(model, sgd, x, labels, steps: 2, warmupSteps: 1, warmupTime: TimeSpan.Zero);
        StepProfiler.RunInference(model, x, steps: 1, warmupSteps: 1, warmupTime: TimeSpan.Zero);

        Assert.Equal([false, true, false, true, false, true, false, true, false, true], watcher.Timed);
    }

    /// <summary>Hands x on, noting for each forward whether the model's layers were being timed.</summary>
    private sealed class TimedWatcher : Layer
    {
        public Sequential? Model { get; set; }

        public List<bool> Timed { get; } = [];

        public override string Spec => "watch";

        public override DeviceTensor<float> Forward(DeviceTensor<float> x)
        {
            Timed.Add(Model!.IsTiming);
            return x;
        }

        public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) => needInputGradient ? dy : null;

        protected override Shape InferOutputShape(Shape input) => input;
    }

    /// <summary>Hands x on, and throws on the forward calls numbered in <c>calls</c> (from 1).</summary>
    private sealed class ThrowsOnForward(params int[] calls) : Layer
    {
        private int _calls;

        public override string Spec => "throws";

        public override DeviceTensor<float> Forward(DeviceTensor<float> x) =>
            calls.Contains(++_calls) ? throw new InvalidOperationException("planted") : x;

        public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) => needInputGradient ? dy : null;

        protected override Shape InferOutputShape(Shape input) => input;
    }

    [Fact]
    public void Inference_times_forward_passes_in_evaluation_mode_and_changes_nothing()
    {
        using var backend = new CpuBackend(threads: 2, Simd.Best);
        using var model = Sequential.Create(Spec, [2, 8, 8], backend, seed: 5);
        using var x = backend.Upload(Tensor.Random([4, 2, 8, 8], seed: 6));
        var before = model.StateDict();
        float[] evaluated = backend.DownloadArray(EvalForward());

        var profile = StepProfiler.RunInference(model, x, steps: 3, warmupSteps: 1, warmupTime: TimeSpan.Zero);

        Assert.False(profile.Training);
        Assert.True(model.Training); // the mode it had
        Assert.Equal(12, profile.Layers.Count);
        Assert.All(profile.Layers, l => Assert.Equal(0, l.BackwardMs));
        Assert.All(profile.Layers.Where(l => l.Spec.StartsWith("conv", StringComparison.Ordinal)), l => Assert.True(l.ForwardMs > 0, l.Name));
        Assert.Equal((0d, 0d), (profile.LossMs, profile.UpdateMs));
        Assert.True(profile.StepMs > 0);
        // Evaluation mode: the batch norm's running statistics are used, not updated.
        Assert.All(model.StateDict(), p => Assert.Equal(before[p.Key].Data, p.Value.Data));
        Assert.Equal(evaluated, backend.DownloadArray(EvalForward()));

        DeviceTensor<float> EvalForward()
        {
            model.Eval();
            var y = model.Forward(x);
            model.Train();
            return y;
        }
    }

    [Fact]
    public void Bad_arguments_name_what_is_wrong()
    {
        using var backend = new CpuBackend(threads: 1, Simd.Best);
        using var model = Sequential.Create(Spec, [2, 8, 8], backend, seed: 1);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0f));
        using var x = backend.Upload(Tensor.Random([5, 2, 8, 8], seed: 2));
        using var labels = backend.Upload<int>([4], [0, 1, 2, 0]);
        var e = Assert.Throws<ArgumentException>(() => StepProfiler.Run(model, sgd, x, labels));
        Assert.Contains("labels have shape (4), the images a batch of 5", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => StepProfiler.Run(model, sgd, x, labels, steps: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => StepProfiler.Run(model, sgd, x, labels, warmupTime: TimeSpan.FromSeconds(-1)));

        // Another model's optimizer would step that model with its stale gradients while this one never moved.
        using var other = Sequential.Create(Spec, [2, 8, 8], backend, seed: 2);
        using var five = backend.Upload<int>([5], [0, 1, 2, 0, 1]);
        float[] before = backend.DownloadArray(other.NamedParameters().First().Parameter.Value);
        using var othersSgd = new Sgd(backend, other.NamedParameters(), new SgdOptions(0.1f));
        Assert.StartsWith("StepProfiler.Run: the optimizer's parameter '0.weight' is not a parameter of this model",
            Assert.Throws<ArgumentException>(() => StepProfiler.Run(model, othersSgd, x, five, steps: 1, warmupSteps: 0, warmupTime: TimeSpan.Zero)).Message,
            StringComparison.Ordinal);
        Assert.Equal(before, backend.DownloadArray(other.NamedParameters().First().Parameter.Value));
    }

    [Fact]
    public void The_warm_up_lasts_its_least_time_as_well_as_its_steps()
    {
        // So that .NET has compiled the step's code at full optimisation before anything is timed.
        using var backend = new CpuBackend(threads: 1, Simd.Best);
        using var model = Sequential.Create(Spec, [2, 8, 8], backend, seed: 1);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0f));
        using var x = backend.Upload(Tensor.Random([4, 2, 8, 8], seed: 2));
        using var labels = backend.Upload<int>([4], [0, 1, 2, 0]);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        StepProfiler.Run(model, sgd, x, labels, steps: 1, warmupSteps: 0, warmupTime: TimeSpan.FromSeconds(1));

        // Steps of about a millisecond: only a second's stall before the first step would leave no warm-up pair.
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1), $"{clock.Elapsed}");
        Assert.True(sgd.StepCount >= 4, $"{sgd.StepCount} steps"); // at least one warm-up pair before the timed one
        Assert.Equal(TimeSpan.FromSeconds(0.5), StepProfiler.DefaultWarmupTime);
    }

    [Fact]
    public void Profile_command_prints_a_row_per_layer_and_writes_the_json()
    {
        using var temp = Fixtures.TempFolder();
        var result = CliRunner.Run("profile", "--arch", Spec, "--input-shape", "2,8,8", "--batch-size", "4", "--steps", "2", "--device", "cpu",
            "--json", temp.File("profile.json"));
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Matches(@"(?m)^  3\.body\.0 +conv\(4,3,pad=1\) +4x8x8 +\d+\.\d{3} +\d+\.\d{3} +\d+\.\d{3} +\d+\.\d%$", result.Out);
        Assert.Matches(@"(?m)^2 +relu .*\(fused into the layer before\)$", result.Out);
        Assert.Matches(@"(?m)^whole step, no synchronisation between layers +\d+\.\d{3}", result.Out);

        using var json = JsonDocument.Parse(File.ReadAllText(temp.File("profile.json")));
        var root = json.RootElement;
        Assert.Equal("cpu", root.GetProperty("device").GetString());
        Assert.Equal(4, root.GetProperty("batch").GetInt32());
        var layers = root.GetProperty("layers").EnumerateArray().ToList();
        Assert.Equal(12, layers.Count);
        Assert.Equal(["name", "spec", "depth", "output_shape", "fused", "forward_ms", "backward_ms"], layers[0].EnumerateObject().Select(p => p.Name));
        Assert.Equal([4, 4, 4], layers[9].GetProperty("output_shape").EnumerateArray().Select(d => d.GetInt32()));
        Assert.True(root.GetProperty("step_ms").GetDouble() > 0);
        Assert.Equal("training", root.GetProperty("mode").GetString());
    }

    [Fact]
    public void Profile_command_times_inference_with_forward_rows_only()
    {
        var result = CliRunner.Run("profile", "--arch", Spec, "--input-shape", "2,8,8", "--batch-size", "4", "--steps", "2", "--device", "cpu", "--inference");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("inference, batch 4 of (2,8,8), evaluation mode", result.Out, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^  3\.body\.0 +conv\(4,3,pad=1\) +4x8x8 +\d+\.\d{3} +0\.000 ", result.Out);
        Assert.Matches(@"(?m)^whole pass, no synchronisation between layers +\d+\.\d{3}", result.Out);
        Assert.DoesNotContain("update", result.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(2, "error: layer 1 'conv(4,3,pad=1)' on input (1,28): ", "--input-shape", "1,28")]
    [InlineData(2, "error: --input-shape 'a,b' is not a shape such as 1,28,28 or 1x28x28.", "--input-shape", "a,b")]
    [InlineData(2, "error: --steps must be a positive integer, got 0", "--steps", "0")]
    [InlineData(2, "error: --optimizer must be sgd, adam or adamw, got 'lbfgs'", "--optimizer", "lbfgs")]
    public void Profile_command_refuses_bad_options_in_one_line(int exitCode, string message, params string[] args)
    {
        var result = CliRunner.Run(["profile", "--arch", "conv(4,3,pad=1),flatten,dense(3)", "--device", "cpu", .. args]);
        Assert.Equal(exitCode, result.ExitCode);
        Assert.StartsWith(message, result.ErrorLine, StringComparison.Ordinal);
    }
}
