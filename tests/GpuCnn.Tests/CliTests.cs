using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using GpuCnn.Cpu;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Onnx;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The gpucnn command line, run in-process: outputs, files, exit codes and one-line errors.</summary>
public sealed partial class CliTests
{
    [Fact]
    public void Devices_lists_every_kind_and_the_auto_choice()
    {
        var result = CliRunner.Run("devices");
        Assert.Equal(0, result.ExitCode);
        foreach (string name in (string[])["cuda", "opencl", "reference", "ilgpu-cpu"])
        {
            Assert.Contains(name, result.Out, StringComparison.Ordinal);
        }

        Assert.Equal($"auto picks: {Backends.AutoChoice(Backends.List())}", result.LastLine);
        var path = Assert.Single(result.Out.Split('\n'), l => l.StartsWith("cpu path: ", StringComparison.Ordinal));
        Assert.Matches(@"^cpu path: (Vector512|Vector256|Vector128|Scalar) on \d+ threads \(instruction sets: [^)]+\); measured FMA peak \d+\.\d GFLOP/s; 3x3 Winograd (Off|Auto|Always)$", path);
        Assert.True(double.Parse(path.Split("peak ")[1].Split(' ')[0], CultureInfo.InvariantCulture) > 0, path);
    }

    [Fact]
    public void Train_on_npy_data_writes_model_plot_and_metrics_and_ends_with_test_accuracy()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 48, 1);
        WriteQuadrants(temp, "test", 16, 2);
        var result = CliRunner.Run("train", "--arch", "conv(4,3,pad=1),relu,maxpool(2),flatten,dense(4)",
            "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"),
            "--test-images", temp.File("test-x.npy"), "--test-labels", temp.File("test-y.npy"),
            "--epochs", "3", "--batch-size", "8", "--lr", "0.1", "--device", "reference", "--out", temp.File("quad.safetensors"));

        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Matches(TestAccuracyLine(), result.LastLine);
        Assert.Equal(3, result.Out.Split('\n').Count(l => l.StartsWith("epoch ", StringComparison.Ordinal)));
        Assert.Equal("conv(4,3,pad=1),relu,maxpool(2),flatten,dense(4)", Safetensors.Read(temp.File("quad.safetensors")).Metadata["arch"]);
        Assert.Equal("1x8x8", Safetensors.Read(temp.File("quad.safetensors")).Metadata["input"]);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(temp.File("quad.png"))[..4]);
        using var metrics = JsonDocument.Parse(File.ReadAllText(temp.File("quad.metrics.json")));
        Assert.Equal(3, metrics.RootElement.GetProperty("epochs").GetArrayLength());
        double accuracy = metrics.RootElement.GetProperty("test").GetProperty("accuracy").GetDouble();
        Assert.EndsWith((accuracy * 100).ToString("F2", CultureInfo.InvariantCulture) + "%", result.LastLine, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Selftest_passes_every_check_on_the_device(string device)
    {
        var result = CliRunner.Run("selftest", "--device", device);
        Assert.True(result.ExitCode == 0, result.Out);
        var passed = Regex.Match(result.LastLine, @"^(\d+) of \1 checks passed$");
        Assert.True(passed.Success, result.LastLine);
        Assert.True(int.Parse(passed.Groups[1].Value, CultureInfo.InvariantCulture) >= 50, result.LastLine); // not an empty catalogue (72 checks on the host backends, 267 on ILGPU)
        if (device == "ilgpu-cpu")
        {
            Assert.Contains("tiled/gemm", result.Out, StringComparison.Ordinal); // both kernel ladders ran
            Assert.Contains("simple/conv2d backward-data", result.Out, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Bench_quick_writes_rows_with_exactly_the_agreed_fields()
    {
        using var temp = Fixtures.TempFolder();
        var result = CliRunner.Run("bench", "--device", "cpu", "--quick", "--only", "gemm-256", "conv-lenet1", "maxpool2x2-fwd", "--json", temp.File("bench.json"));
        Assert.True(result.ExitCode == 0, result.Error);
        using var json = JsonDocument.Parse(File.ReadAllText(temp.File("bench.json")));
        var rows = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(["gemm-256-quick", "conv-lenet1-fwd-quick", "conv-lenet1-bwd-quick", "maxpool2x2-fwd-quick"], rows.Select(r => r.GetProperty("name").GetString()));
        Assert.All(rows, r => Assert.Equal(["name", "device", "ms", "gflops"], r.EnumerateObject().Select(p => p.Name)));
        Assert.All(rows, r => Assert.True(r.GetProperty("ms").GetDouble() > 0));
        Assert.Equal(JsonValueKind.Null, rows[^1].GetProperty("gflops").ValueKind); // pooling is about bandwidth
        Assert.Equal("cpu", rows[0].GetProperty("device").GetString());
        Assert.Contains("measured FMA peak: ", result.Out, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^gemm-256-quick +\d+\.\d+ +\d+\.\d +\d+\.\d ", result.Out); // ms, GFLOP/s, % of peak
    }

    [Fact]
    public void Eval_prints_the_confusion_matrix_and_accuracy_of_a_saved_model()
    {
        using var temp = Fixtures.TempFolder();
        using (var backend = new ReferenceBackend())
        using (var model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend, seed: 1))
        {
            ModelFile.Save(model, temp.File("lenet.safetensors"));
        }

        var result = CliRunner.Run("eval", "--model", temp.File("lenet.safetensors"), "--data", Fixtures.MnistSample, "--device", "reference");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("confusion matrix", result.Out, StringComparison.Ordinal);
        Assert.Matches(@"^accuracy: \d{1,3}\.\d\d% \(2000 samples\)$", result.LastLine);

        // The test split alone is enough, and a file without metadata (as PyTorch saves one) takes --arch.
        Directory.CreateDirectory(temp.File("t10k"));
        foreach (string file in Directory.GetFiles(Fixtures.MnistSample, "t10k-*"))
        {
            File.Copy(file, Path.Combine(temp.File("t10k"), Path.GetFileName(file)));
        }

        Safetensors.Write(temp.File("bare.safetensors"), Safetensors.Read(temp.File("lenet.safetensors")).Tensors);
        var bare = CliRunner.Run("eval", "--model", temp.File("bare.safetensors"), "--data", temp.File("t10k"), "--device", "reference");
        Assert.Equal(1, bare.ExitCode);
        Assert.EndsWith("has no \"arch\" in its metadata; give the architecture spec. (--arch)", bare.ErrorLine, StringComparison.Ordinal);
        var named = CliRunner.Run("eval", "--model", temp.File("bare.safetensors"), "--data", temp.File("t10k"), "--device", "reference", "--arch", "lenet5");
        Assert.True(named.ExitCode == 0, named.Error);
        Assert.Equal(result.Out, named.Out);
    }

    [Fact]
    public void A_model_file_with_non_finite_weights_or_a_broken_arch_is_refused_naming_the_file()
    {
        using var temp = Fixtures.TempFolder();
        using (var backend = new ReferenceBackend())
        using (var model = Sequential.Create("flatten,dense(4)", [1, 2, 2], backend, seed: 1))
        {
            var state = model.StateDict();
            state["1.weight"].Data[5] = float.NaN;
            Safetensors.Write(temp.File("nan.safetensors"), state, new Dictionary<string, string> { ["arch"] = "flatten,dense(4)", ["input"] = "1x2x2" });
            Safetensors.Write(temp.File("arch.safetensors"), model.StateDict(), new Dictionary<string, string> { ["arch"] = "flatten,dense(4", ["input"] = "1x2x2" });
            var withExtra = model.StateDict();
            withExtra["2.weight"] = new Tensor([1]);
            ModelFile.Save(model, temp.File("ok.safetensors"));
            Safetensors.Write(temp.File("extra.safetensors"), withExtra, new Dictionary<string, string> { ["arch"] = "flatten,dense(4)", ["input"] = "1x2x2" });
        }

        WriteQuadrants(temp, "train", 8, 1);
        string nan = $"error: model file '{temp.File("nan.safetensors")}': tensor '1.weight' holds NaN at element 5; a model with NaN or infinite weights is not loaded.";
        var predict = CliRunner.Run("predict", "--model", temp.File("nan.safetensors"), "--input", temp.File("train-x.npy"), "--output", temp.File("y.npy"));
        Assert.Equal((1, nan), (predict.ExitCode, predict.ErrorLine));
        var init = CliRunner.Run("train", "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"), "--arch", "flatten,dense(4)",
            "--init", temp.File("nan.safetensors"), "--device", "reference", "--out", temp.File("m.safetensors"));
        Assert.Equal((1, nan), (init.ExitCode, init.ErrorLine));

        // A defect inside a file is not a command-line mistake: exit code 1, and the file named.
        var arch = CliRunner.Run("predict", "--model", temp.File("arch.safetensors"), "--input", temp.File("train-x.npy"), "--output", temp.File("y.npy"));
        Assert.Equal(1, arch.ExitCode);
        Assert.StartsWith($"error: model file '{temp.File("arch.safetensors")}': its metadata \"arch\" 'flatten,dense(4' on input (1,2,2) does not build: unbalanced '('",
            arch.ErrorLine, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("y.npy")));
        var extra = CliRunner.Run("predict", "--model", temp.File("extra.safetensors"), "--input", temp.File("train-x.npy"), "--output", temp.File("y.npy"));
        Assert.Equal(1, extra.ExitCode);
        Assert.StartsWith($"error: model file '{temp.File("extra.safetensors")}': its weights do not fit its metadata \"arch\": weights: tensor '2.weight' does not belong to this model",
            extra.ErrorLine, StringComparison.Ordinal);
        using (var reference = new ReferenceBackend())
        {
            // An input shape the caller gives is the caller's: the file is not blamed for weights that do not fit it.
            var given = Record.Exception(() => ModelFile.Load(temp.File("ok.safetensors"), reference, inputShape: new Shape(1, 3, 3)));
            Assert.IsNotType<FileFormatException>(given);
            Assert.IsType<SpecException>(given); // the layer that does not fit the given shape, named
        }

        // A small file whose arch asks for far more values than it holds fails before they are allocated.
        Safetensors.Write(temp.File("huge.safetensors"), new Dictionary<string, Tensor> { ["1.weight"] = new([1]) },
            new Dictionary<string, string> { ["arch"] = "flatten,dense(1000000),dense(4)", ["input"] = "1x2x2" });
        var huge = CliRunner.Run("predict", "--model", temp.File("huge.safetensors"), "--input", temp.File("train-x.npy"), "--output", temp.File("y.npy"));
        Assert.Equal(1, huge.ExitCode);
        Assert.EndsWith("layer 2 'dense(1000000)' on input (4): its weight (1000000,4) would hold 4000000 values, more than are left in the weights to load (1).",
            huge.ErrorLine, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(2, "error: unknown device 'tpu'", "train", "--device", "tpu")]
    [InlineData(2, "error: --lr must be a finite number ≥ 0, got -1", "train", "--lr", "-1")]
    [InlineData(2, "error: --batch-size must be a positive integer, got 0", "train", "--batch-size", "0")]
    [InlineData(2, "error: --epochs must be a positive integer, got 0", "train", "--epochs", "0")]
    [InlineData(2, "error: --optimizer must be sgd, adam or adamw, got 'rmsprop'", "train", "--optimizer", "rmsprop")]
    [InlineData(2, "error: layer 2 'dance(10)': unknown layer 'dance'", "train", "--arch", "flatten,dance(10)")]
    [InlineData(2, "error: layer 3 'conv(16,40)' on input (6,14,14): kernel 40x40 is larger than the padded input 14x14", "train", "--arch", "conv(6,5,pad=2),maxpool(2),conv(16,40),flatten,dense(10)", "--epochs", "1")]
    [InlineData(2, "error: layer 2 'residual(conv(8,3,stride=2,pad=1); conv(4,1))' on input (4,28,28): the body gives (8,14,14) but the shortcut gives (4,28,28); they must match to be added.", "train", "--arch", "conv(4,3,pad=1),residual(conv(8,3,stride=2,pad=1); conv(4,1)),flatten,dense(10)", "--epochs", "1")]
    [InlineData(2, "error: --images and --labels go together", "train", "--images", "x.npy")]
    [InlineData(2, "error: layer 2 'batchnorm(momentum=2)': batchnorm: momentum 2 lies outside [0, 1].", "train", "--arch", "conv(4,3),batchnorm(momentum=2),flatten,dense(10)")]
    [InlineData(2, "error: layer 2 'dropout(1.5)': dropout: p 1.5 lies outside [0, 1).", "train", "--arch", "conv(4,3),dropout(1.5),flatten,dense(10)")]
    [InlineData(2, "error: layer 2 'globalavgpool' on input (784): needs a (C,H,W) input, got (784); global pooling averages each channel's plane", "train", "--arch", "flatten,globalavgpool,dense(10)", "--epochs", "1")]
    [InlineData(2, "error: augment: 'rotate' is not crop=PAD (PAD from 1 to 1000) or flip.", "train", "--augment", "rotate")]
    [InlineData(2, "error: normalize: '0.5' has 1 numbers; give MEAN,STD or 1 means then 1 standard deviations for 1-channel inputs.", "train", "--normalize", "0.5", "--epochs", "1")]
    [InlineData(2, "error: --label-smoothing must lie in [0, 1], got 2.", "train", "--label-smoothing", "2")]
    [InlineData(2, "error: --schedule must be cosine, step or constant, got 'linear'.", "train", "--schedule", "linear")]
    [InlineData(2, "error: --warmup must be ≥ 0, got -1.", "train", "--warmup", "-1")]
    [InlineData(1, "error: MNIST folder 'no/such/folder' does not exist", "train", "--data", "no/such/folder")]
    [InlineData(1, "error: --model: file 'missing.safetensors' does not exist", "eval", "--model", "missing.safetensors")]
    [InlineData(2, "error: Unrecognized command or argument '--frobnicate'", "train", "--frobnicate")]
    [InlineData(2, "error: Cannot parse argument 'abc' for option '--lr' as a number.", "train", "--lr", "abc")]
    [InlineData(2, "error: Cannot parse argument '2.5' for option '--epochs' as an integer.", "train", "--epochs", "2.5")]
    // A decimal comma: System.CommandLine's own parse took it for a thousands separator (0,05 read as 5).
    [InlineData(2, "error: Cannot parse argument '0,05' for option '--lr' as a number (a point marks decimals: 0.05, not 0,05).", "train", "--lr", "0,05")]
    [InlineData(2, "error: Cannot parse argument '0,1' for option '--label-smoothing' as a number (a point marks decimals", "train", "--label-smoothing", "0,1")]
    [InlineData(2, "error: Cannot parse argument '0,9' for option '--momentum' as a number (a point marks decimals", "train", "--momentum", "0,9")]
    [InlineData(2, "error: Cannot parse argument '1,5' for option '--clip-grad-norm' as a number (a point marks decimals", "train", "--clip-grad-norm", "1,5")]
    [InlineData(2, "error: --images is empty; give a file path.", "train", "--images", "", "--labels", "y.npy")]
    [InlineData(2, "error: --labels is empty; give a file path.", "train", "--images", "x.npy", "--labels", " ")]
    [InlineData(2, "error: --model is empty; give a file path.", "eval", "--model", "")]
    [InlineData(2, "error: --input-shape 'abc' is not a shape", "export", "--model", "m.safetensors", "--output", "m.onnx", "--input-shape", "abc")]
    [InlineData(2, "error: Option '--model' is required", "predict", "--input", "x.npy", "--output", "y.npy")]
    [InlineData(2, "error: --out is empty; give a file path.", "train", "--out", "")]
    [InlineData(2, "error: --init and --resume exclude each other: a checkpoint holds the weights it continues from.", "train", "--init", "a.safetensors", "--resume", "b.safetensors")]
    public void Bad_input_is_one_error_line_with_the_right_exit_code(int exitCode, string message, params string[] args)
    {
        var result = CliRunner.Run(args);
        Assert.Equal(exitCode, result.ExitCode);
        Assert.StartsWith(message, result.ErrorLine, StringComparison.Ordinal);
    }

    [Fact]
    public void A_data_option_mistake_is_said_before_any_output_folder_is_made()
    {
        using var temp = Fixtures.TempFolder();
        var result = CliRunner.Run("train", "--images", temp.File("x.npy"), "--out", Path.Combine(temp.File("new"), "m.safetensors"));
        Assert.Equal((2, "error: --images and --labels go together."), (result.ExitCode, result.ErrorLine));
        Assert.False(Directory.Exists(temp.File("new"))); // the output check had made it first
    }

    [Fact]
    public void A_folder_given_for_a_file_a_file_for_a_folder_and_arch_with_an_onnx_model_are_named_as_such()
    {
        using var temp = Fixtures.TempFolder();
        string file = temp.File("notes.txt"), onnx = temp.File("m.onnx");
        File.WriteAllText(file, "not data");
        File.WriteAllText(onnx, "not read: --arch is refused first");

        var model = CliRunner.Run("eval", "--model", temp.Path);
        Assert.Equal(1, model.ExitCode);
        Assert.StartsWith($"error: --model: '{temp.Path}' is a folder, not a file.", model.ErrorLine, StringComparison.Ordinal);
        var images = CliRunner.Run("train", "--images", temp.Path, "--labels", file, "--out", temp.File("m.safetensors"));
        Assert.Equal(1, images.ExitCode);
        Assert.Contains($"'{temp.Path}' is a folder, not a file.", images.ErrorLine, StringComparison.Ordinal);
        var data = CliRunner.Run("train", "--data", file, "--out", temp.File("m.safetensors"));
        Assert.Equal(1, data.ExitCode);
        Assert.StartsWith($"error: MNIST folder '{file}' is a file; give the folder that holds the four IDX files.", data.ErrorLine, StringComparison.Ordinal);

        // --arch with the data's sample shape is for files without an architecture; an ONNX graph is its own.
        var arch = CliRunner.Run("predict", "--model", onnx, "--arch", "lenet5", "--input", file, "--output", temp.File("p.npy"));
        Assert.Equal(2, arch.ExitCode);
        Assert.StartsWith($"error: --arch is for safetensors files without an architecture: model file '{onnx}' is ONNX", arch.ErrorLine, StringComparison.Ordinal);
        Assert.Equal(2, CliRunner.Run("eval", "--model", onnx, "--arch", "lenet5").ExitCode);
    }

    [Theory]
    [InlineData("warning: --momentum applies to --optimizer sgd only; adam ignores it", "--optimizer", "adam", "--momentum", "0.5")]
    [InlineData("warning: --gamma applies to --schedule step only; the cosine schedule ignores it.", "--gamma", "0.5")]
    [InlineData("warning: --step-size applies to --schedule step only; the constant schedule ignores it.", "--schedule", "constant", "--step-size", "3")]
    public void An_option_the_runs_other_choices_leave_unused_is_warned_about(string warning, params string[] options)
    {
        using var temp = Fixtures.TempFolder();
        var result = CliRunner.Run(["train", "--epochs", "1", "--device", "reference", "--arch", "flatten,dense(10)", .. options,
            "--out", temp.File("m.safetensors")]);
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains(warning, result.Error, StringComparison.Ordinal);

        // Where they apply, or left at their defaults, nothing is said.
        var quiet = CliRunner.Run(["train", "--epochs", "1", "--device", "reference", "--arch", "flatten,dense(10)", "--schedule", "step",
            "--gamma", "0.5", "--momentum", "0.5", "--out", temp.File("quiet.safetensors")]);
        Assert.True(quiet.ExitCode == 0, quiet.Error);
        Assert.DoesNotContain("warning:", quiet.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_sizes_its_runs_from_a_warm_run_not_the_compiling_first_one()
    {
        // A row whose first run takes 700 ms (a kernel compiling) and later ones 2 ms: 20 runs, as for any fast row; sized
        // from the first run it had got 3 (every GPU row that met a new kernel, in the H200 log). More than 3 is asked,
        // not 20: a loaded host may stretch every warm 2 ms (the fastest of three or more counts) past the 25 ms that 20 runs need.
        int runs = 0;
        var slowFirst = new OperationCase("slow-first", "()", null, _ => new Sleeper(() => Thread.Sleep(runs++ == 0 ? 700 : 2)));
        using var backend = new ReferenceBackend();
        var result = GpuCnn.Cli.Bench.BenchSuite.Measure(backend, slowFirst);
        Assert.True(result.Repetitions > 3, $"{result.Repetitions} runs: sized from the compiling first run");

        var both = CliRunner.Run("bench", "--device", "cpu", "--launches", "--json", "plan.json");
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("--json writes timed rows; --launches times nothing", both.Error, StringComparison.Ordinal);
    }

    private sealed class Sleeper(Action run) : IPreparedCase
    {
        public void Run() => run();

        public float[] Outputs() => [];

        public void Dispose()
        {
        }
    }

    [Fact]
    public void Tile_groups_of_64_threads_plan_four_times_the_groups_and_a_misspelt_size_is_a_clear_error()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        string[] args = ["bench", "--device", "ilgpu-cpu", "--launches", "--only", "gemm-1024"];
        var planned = CliProcess.RunWithEnvironment(args, "GPUCNN_TILE_GROUP_THREADS", "64");
        Assert.True(planned.ExitCode == 0, planned.Error);
        // 256 tiles of 64 × 64, the depth split 4 ways: 1,024 groups of 64 threads, one wave of eight per multiprocessor.
        Assert.Matches(@"gemm-1024\s+Tiled\s+1024\s+0\.97\s+64\s+\d+\s+256\s+dominant, ok", planned.Out);

        var misspelt = CliProcess.RunWithEnvironment(args, "GPUCNN_TILE_GROUP_THREADS", "100");
        Assert.Equal(1, misspelt.ExitCode);
        Assert.Equal("error: GPUCNN_TILE_GROUP_THREADS is '100'; expected 256, 128 or 64.", misspelt.Error.Trim());
    }

    [Fact]
    public void Narrow_layers_plan_16_filter_forwards_unless_told_32_or_64_and_a_misspelt_count_is_a_clear_error()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        string[] args = ["bench", "--device", "ilgpu-cpu", "--launches", "--only", "conv-lenet2-bwd"];
        // LeNet's second layer (16 filters from 6 channels): backward data (6 filters) on 16-filter tiles; the filter
        // gradient (150 taps and the bias, one block of 16 filters) on the blocked few-taps kernel, 160 threads a group.
        var narrowest = CliRunner.Run(args);
        Assert.True(narrowest.ExitCode == 0, narrowest.Error);
        Assert.Matches(@"conv-lenet2-bwd\s+ForwardNarrow16\s+245\s", narrowest.Out);
        Assert.Matches(@"conv-lenet2-bwd\s+FilterGradientBlocked\s+200\s+\S+\s+160\s", narrowest.Out);
        Assert.Contains("implicit-GEMM tiles of 16 filters for forwards of ≤ 16", narrowest.Out, StringComparison.Ordinal);
        Assert.Contains("few-taps filter gradients of ≤ 64 taps (blocked: ≤ 160)", narrowest.Out, StringComparison.Ordinal);

        var narrow = CliProcess.RunWithEnvironment(args, "GPUCNN_IMPLICIT_GEMM_FILTERS", "32");
        Assert.True(narrow.ExitCode == 0, narrow.Error);
        Assert.Matches(@"conv-lenet2-bwd\s+ForwardNarrow\s+245\s", narrow.Out);
        Assert.Contains("implicit-GEMM tiles of 32 filters for layers of ≤ 32", narrow.Out, StringComparison.Ordinal); // the report names the setting

        var wide = CliProcess.RunWithEnvironment(args, "GPUCNN_IMPLICIT_GEMM_FILTERS", "64");
        Assert.True(wide.ExitCode == 0, wide.Error);
        Assert.Matches(@"conv-lenet2-bwd\s+Forward\s+245\s", wide.Out);
        Assert.Contains("implicit-GEMM tiles of 64 filters", wide.Out, StringComparison.Ordinal);

        // The blocked kernel off: the filter gradient on the implicit GEMM's 32-filter tiles.
        var unblocked = CliProcess.RunWithEnvironment(args, "GPUCNN_BLOCKED_FEW_TAPS_FILTER_GRADIENT", "0");
        Assert.True(unblocked.ExitCode == 0, unblocked.Error);
        Assert.Matches(@"conv-lenet2-bwd\s+FilterGradientNarrow\s+200\s", unblocked.Out);
        Assert.Contains("(blocked: ≤ 0)", unblocked.Out, StringComparison.Ordinal);

        var misspelt = CliProcess.RunWithEnvironment(args, "GPUCNN_IMPLICIT_GEMM_FILTERS", "8");
        Assert.Equal(1, misspelt.ExitCode);
        Assert.Equal("error: GPUCNN_IMPLICIT_GEMM_FILTERS is '8'; expected 64, 32 or 16.", misspelt.Error.Trim());
    }

    [Theory]
    [InlineData("GPUCNN_GEMM_ALGORITHM", "Tiled8X", "error: GPUCNN_GEMM_ALGORITHM is 'Tiled8X'; expected Auto, Naive, Tiled, Tiled8x8.")]
    [InlineData("GPUCNN_CONV_ALGORITHM", "7", "error: GPUCNN_CONV_ALGORITHM is '7'; expected ")] // Enum.TryParse had taken a number naming nothing
    [InlineData("GPUCNN_DEPTH_SPLITS", "four", "error: GPUCNN_DEPTH_SPLITS is 'four'; expected an integer ≥ 1.")]
    [InlineData("GPUCNN_SPLIT_MINIMUM_GROUPS", "-1", "error: GPUCNN_SPLIT_MINIMUM_GROUPS is '-1'; expected an integer ≥ 0.")] // 0 is no floor, the default
    public void A_misspelt_kernel_setting_is_an_error_not_the_default_measured_under_its_name(string variable, string value, string said)
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        var result = CliProcess.RunWithEnvironment(["bench", "--device", "ilgpu-cpu", "--launches", "--only", "gemm-256"], variable, value);
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith(said, result.Error.Trim(), StringComparison.Ordinal);
    }

    [Fact]
    public void The_blocked_filter_gradients_chunks_follow_the_multiprocessors_unless_told_and_a_bad_count_is_a_clear_error()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        string[] args = ["bench", "--device", "ilgpu-cpu", "--launches", "--only", "conv-lenet2-bwd"];
        // 6,400 pixels in 200 batches of 32: a chunk each by default (792 asked for); one a multiprocessor (132) makes
        // chunks of two batches, 100 of them.
        var one = CliProcess.RunWithEnvironment(args, "GPUCNN_BLOCKED_FEW_TAPS_CHUNKS", "1");
        Assert.True(one.ExitCode == 0, one.Error);
        Assert.Matches(@"conv-lenet2-bwd\s+FilterGradientBlocked\s+100\s+\S+\s+160\s+\d+\s+64\s", one.Out);
        Assert.Contains("(blocked: ≤ 160, chunks a multiprocessor: 1)", one.Out, StringComparison.Ordinal);

        var bad = CliProcess.RunWithEnvironment(args, "GPUCNN_BLOCKED_FEW_TAPS_CHUNKS", "0");
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal("error: GPUCNN_BLOCKED_FEW_TAPS_CHUNKS is '0'; expected the chunks a multiprocessor, 1 to 32.", bad.Error.Trim());
    }

    [Fact]
    public void Batch_norm_stages_its_chunk_merges_unless_told_from_memory_and_a_misspelt_switch_is_a_clear_error()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        string[] args = ["bench", "--device", "ilgpu-cpu", "--launches", "--quick", "--only", "batchnorm"];
        // batchnorm-relu-16x28-quick: 16 channels of 6,272 values, 3 chunks each (a chunk holds at least 2,048), merged
        // by a group a channel (6 floats staged: 32 threads), or by a thread a channel when told; batchnorm1d-relu-512-quick:
        // 64 features of 16 values, one chunk each, always by a thread a channel (nothing to stage).
        var staged = CliRunner.Run(args);
        Assert.True(staged.ExitCode == 0, staged.Error);
        Assert.Matches(@"batchnorm-relu-16x28-quick\s+MergeStatisticsStaged\s+16\s+\S+\s+32\s+24\s", staged.Out);
        Assert.Matches(@"batchnorm-relu-16x28-quick\s+MergeGradientSumsStaged\s+16\s+\S+\s+32\s+24\s", staged.Out);
        Assert.Matches(@"batchnorm1d-relu-512-quick\s+MergeStatistics\s+\d+\s", staged.Out);
        Assert.DoesNotMatch(@"batchnorm1d-relu-512-quick\s+\w+Staged", staged.Out);
        Assert.DoesNotContain("merges from memory", staged.Out, StringComparison.Ordinal);

        var fromMemory = CliProcess.RunWithEnvironment(args, "GPUCNN_BATCH_NORM_STAGED_MERGE", "0");
        Assert.True(fromMemory.ExitCode == 0, fromMemory.Error);
        Assert.Matches(@"batchnorm-relu-16x28-quick\s+MergeStatistics\s+1\s", fromMemory.Out);
        Assert.DoesNotContain("Staged", fromMemory.Out, StringComparison.Ordinal);
        Assert.Contains("batch norm's merges from memory", fromMemory.Out, StringComparison.Ordinal);

        var misspelt = CliProcess.RunWithEnvironment(args, "GPUCNN_BATCH_NORM_STAGED_MERGE", "yes");
        Assert.Equal(1, misspelt.ExitCode);
        Assert.Equal("error: GPUCNN_BATCH_NORM_STAGED_MERGE is 'yes'; expected 1 (merge each channel's chunks from shared memory) or 0 (from memory).",
            misspelt.Error.Trim());
    }

    [Fact]
    public void Tensor_lists_launch_once_unless_told_a_launch_per_tensor_and_a_misspelt_switch_is_a_clear_error()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        string[] args = ["bench", "--device", "ilgpu-cpu", "--launches", "--only", "sgd-resnet8"];
        var lists = CliRunner.Run(args);
        Assert.True(lists.ExitCode == 0, lists.Error);
        Assert.Equal(1, Regex.Count(lists.Out, @"^sgd-resnet8\s+SgdList\s+304\s", RegexOptions.Multiline));

        var each = CliProcess.RunWithEnvironment(args, "GPUCNN_TENSOR_LISTS", "0");
        Assert.True(each.ExitCode == 0, each.Error);
        Assert.Equal(9, Regex.Count(each.Out, @"^sgd-resnet8\s+Sgd\s", RegexOptions.Multiline)); // a launch per tensor (the report lists the 29 as their 9 distinct grids)
        Assert.DoesNotContain("SgdList", each.Out, StringComparison.Ordinal);

        var misspelt = CliProcess.RunWithEnvironment(args, "GPUCNN_TENSOR_LISTS", "yes");
        Assert.Equal(1, misspelt.ExitCode);
        Assert.Equal("error: GPUCNN_TENSOR_LISTS is 'yes'; expected 1 (a launch per 32 tensors) or 0 (a launch per tensor).", misspelt.Error.Trim());
    }

    [Fact]
    public void Bench_launches_plans_every_row_for_a_hopper_gpu_without_running_it()
    {
        var result = CliRunner.Run("bench", "--device", "ilgpu-cpu", "--launches", "--only", "conv-lenet1", "gemm-1024");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("planned for 132 multiprocessors", result.Out, StringComparison.Ordinal);
        // LeNet's first-layer filter gradient by the few-taps kernel (25 taps): its 50,176 pixels in 523 chunks of 96, four
        // groups per multiprocessor, 5,528 bytes of stage; then a group per weight and bias adds the chunks (the bias
        // gradient rides along).
        Assert.Matches(@"conv-lenet1-bwd\s+FilterGradient\s+523\s+1\.98\s+256\s+5528\s+96\s+dominant, ok", result.Out);
        Assert.Matches(@"conv-lenet1-bwd\s+SumChunks\s+156\s+", result.Out);
        Assert.DoesNotMatch(@"conv-lenet1-bwd\s+BiasGradient", result.Out);
        // 64 tiles of 128 × 128, the depth split 4 ways: one wave of two groups per multiprocessor, 16 stages each.
        Assert.Matches(@"gemm-1024\s+Tiled\s+256\s+0\.97\s+256\s+\d+\s+256\s+dominant", result.Out);
        Assert.Equal(2, CliRunner.Run("bench", "--device", "cpu", "--launches").ExitCode);
    }

    [Fact]
    public void A_floor_on_the_groups_splits_deeper_where_the_depth_allows_and_a_many_class_loss_runs_a_group_a_row()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        string[] args = ["bench", "--device", "ilgpu-cpu", "--launches", "--only", "gemm-1024", "conv-lenet2-bwd", "conv1x1s2-64-fwd", "softmax-ce"];
        var floored = CliProcess.RunWithEnvironment(args, "GPUCNN_SPLIT_MINIMUM_GROUPS", "264");
        Assert.True(floored.ExitCode == 0, floored.Error);
        Assert.Contains("depth splits of at least 264 groups", floored.Out, StringComparison.Ordinal);
        // 64 tiles: 4 splits made 256 groups, 5 would leave a partial wave, so the floor takes the cheapest above it (8).
        Assert.Matches(@"gemm-1024\s+Tiled\s+512\s+1\.94\s+256\s+\d+\s+128\s+dominant, ok", floored.Out);
        // LeNet's second layer's backward data (6 filters of 16 channels, depth 400): 5 splits of 49 tiles by default, 10 floored.
        Assert.Matches(@"conv-lenet2-bwd\s+ForwardNarrow16\s+490\s+1\.86\s+", floored.Out);
        // A depth of 32 (4 stages of 8) is too short to split at all: the row keeps its 25 groups.
        Assert.Matches(@"conv1x1s2-64-fwd\s+Forward\s+25\s+", floored.Out);
        // 256 rows of 1,000 classes: a group of 256 threads a row, four classes a thread, three passes; then the mean.
        Assert.Matches(@"softmax-ce-256x1000\s+SoftmaxCrossEntropyRowGroups\s+256\s+\S+\s+256\s+1024\s+12\s+dominant", floored.Out);
        Assert.Matches(@"softmax-ce-256x1000\s+MeanInOrder\s+1\s+", floored.Out);

        var plain = CliRunner.Run("bench", "--device", "ilgpu-cpu", "--launches", "--only", "conv-lenet2-bwd");
        Assert.True(plain.ExitCode == 0, plain.Error);
        Assert.DoesNotContain("depth splits of at least", plain.Out, StringComparison.Ordinal);
        Assert.Matches(@"conv-lenet2-bwd\s+ForwardNarrow16\s+245\s+0\.93\s+", plain.Out);
    }

    [Fact]
    public void The_command_line_adds_the_flag_that_helps_to_engine_messages_that_name_none()
    {
        Assert.Equal("cuda: out of device memory allocating Single(64,6,28,28) (1.2 MiB); use smaller batches. (--batch-size)",
            Cli.GpuCnnCli.Describe(new DeviceOutOfMemoryException("cuda: out of device memory allocating Single(64,6,28,28) (1.2 MiB); use smaller batches.")));
        Assert.EndsWith("give the architecture spec. (--arch)",
            Cli.GpuCnnCli.Describe(new ArgumentException("model file 'm' has no \"arch\" in its metadata; give the architecture spec.", "path")), StringComparison.Ordinal);
        Assert.Equal("plain failure", Cli.GpuCnnCli.Describe(new InvalidOperationException("plain failure")));
    }

    [Fact]
    public void Cuda_without_a_gpu_is_an_error_not_a_fallback()
    {
        Assert.SkipWhen(Backends.List().Single(d => d.Name == "cuda").Available, "this machine has CUDA");
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 8, 1);
        var result = CliRunner.Run("train", "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"),
            "--arch", "flatten,dense(4)", "--device", "cuda", "--out", temp.File("m.safetensors"));
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("error: cuda: no CUDA device found.", result.ErrorLine, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("m.safetensors")));
    }

    [Fact]
    public void Init_weights_that_do_not_fit_the_spec_name_the_tensor_and_verbose_adds_the_trace()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 8, 1);
        string[] args = ["train", "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"),
            "--arch", "conv(3,3),relu,flatten,dense(4)", "--init", Fixtures.Torch("sgd.init.safetensors"), "--device", "reference",
            "--out", temp.File("m.safetensors")];
        var result = CliRunner.Run(args);
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("error: weights: tensor '0.weight' has shape (4,1,3,3), the model needs (3,1,3,3).", result.ErrorLine, StringComparison.Ordinal);

        var verbose = CliRunner.Run([.. args, "--verbose"]);
        Assert.Contains("   at GpuCnn.", verbose.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Init_takes_the_normalisation_its_weights_were_trained_with_and_fine_tuning_in_place_keeps_it()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 16, 1);
        string model = temp.File("m.safetensors");
        string[] train = ["train", "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"), "--arch", "conv(2,3),relu,flatten,dense(4)",
            "--epochs", "1", "--batch-size", "8", "--device", "cpu"];
        Assert.Equal(0, CliRunner.Run([.. train, "--normalize", "0.25,2", "--out", model]).ExitCode);

        // In place without --normalize: the file's normalisation is taken, said, and written again (it had been dropped).
        var again = CliRunner.Run([.. train, "--init", model, "--out", model]);
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.Contains($"note: the weights of --init '{model}' were trained on inputs normalised by 0.25,2; this run normalises them so too.", again.Error, StringComparison.Ordinal);
        Assert.Equal("0.25,2", Safetensors.Read(model).Metadata["normalize"]);

        // Another --normalize is this run's choice: used, with a warning.
        var other = CliRunner.Run([.. train, "--init", model, "--normalize", "0,1", "--out", temp.File("n.safetensors")]);
        Assert.True(other.ExitCode == 0, other.Error);
        Assert.Contains("warning: --normalize 0,1 differs from 0.25,2, which the weights of --init", other.Error, StringComparison.Ordinal);
        Assert.Equal("0,1", Safetensors.Read(temp.File("n.safetensors")).Metadata["normalize"]);

        // Resumed (where --init may not be given again), the run normalises as the one it continues did.
        Assert.Equal(0, CliRunner.Run([.. train, "--init", model, "--checkpoint", temp.File("c.safetensors"), "--out", temp.File("first.safetensors")]).ExitCode);
        var resumed = CliRunner.Run([.. train[..7], "--epochs", "2", .. train[9..], "--resume", temp.File("c.safetensors"), "--out", temp.File("resumed.safetensors")]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains($"note: the checkpoint of --resume '{temp.File("c.safetensors")}' were trained on inputs normalised by 0.25,2", resumed.Error, StringComparison.Ordinal);
        Assert.Equal("0.25,2", Safetensors.Read(temp.File("resumed.safetensors")).Metadata["normalize"]);
        Assert.Contains("\"normalize\": \"0.25,2\"", File.ReadAllText(temp.File("resumed.metrics.json")), StringComparison.Ordinal);
    }

    [Fact]
    public void Labels_outside_the_class_count_and_count_mismatches_are_refused()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 8, 1);
        Npy.Write(temp.File("bad-y.npy"), new Npy.Array([8], "i4", [.. Enumerable.Range(0, 8).SelectMany(i => BitConverter.GetBytes(i == 3 ? 9 : 0))]));
        var outside = CliRunner.Run("train", "--images", temp.File("train-x.npy"), "--labels", temp.File("bad-y.npy"),
            "--arch", "flatten,dense(4)", "--device", "reference", "--out", temp.File("m.safetensors"));
        Assert.Equal(1, outside.ExitCode);
        // The files are named (it had said "training data" alone).
        Assert.StartsWith($"error: training data (--images '{temp.File("train-x.npy")}', --labels '{temp.File("bad-y.npy")}'): label 9 of sample 3 is outside the model's 4 classes",
            outside.ErrorLine, StringComparison.Ordinal);

        Npy.Write(temp.File("short-y.npy"), new Npy.Array([3], "i4", new byte[12]));
        var mismatch = CliRunner.Run("train", "--images", temp.File("train-x.npy"), "--labels", temp.File("short-y.npy"), "--device", "reference");
        Assert.Equal(2, mismatch.ExitCode);
        Assert.StartsWith("error: --images/--labels: 8 images but 3 labels", mismatch.ErrorLine, StringComparison.Ordinal);
    }

    [Fact]
    public void The_catalogue_and_selftest_comparisons_fail_on_a_nan_or_an_infinity_the_reference_lacks()
    {
        // 1e-3·(1 + ∞) had passed any device value against a reference ∞; LINQ's Max had ranked a NaN difference last.
        Assert.True(GpuCnn.Cpu.OperationCase.Agrees(float.PositiveInfinity, float.PositiveInfinity));
        Assert.True(GpuCnn.Cpu.OperationCase.Agrees(float.NaN, float.NaN));
        Assert.False(GpuCnn.Cpu.OperationCase.Agrees(float.PositiveInfinity, 0f));
        Assert.False(GpuCnn.Cpu.OperationCase.Agrees(float.PositiveInfinity, float.NegativeInfinity));
        Assert.False(GpuCnn.Cpu.OperationCase.Agrees(1f, float.NaN));
        Assert.True(GpuCnn.Cpu.OperationCase.Agrees(1000f, 1000.5f));
        Assert.False(GpuCnn.Cpu.OperationCase.Agrees(1f, 1.01f));
        Assert.True(double.IsNaN(GpuCnn.Cli.SelfTest.MaxDiff([1, 2], [1, double.NaN])));
        Assert.Equal(0.5, GpuCnn.Cli.SelfTest.MaxDiff([1, 2], [1.5, 2]));
    }

    [Fact]
    public void Predict_names_input_when_its_images_are_not_the_models_shape()
    {
        using var temp = Fixtures.TempFolder();
        using (var backend = new ReferenceBackend())
        using (var model = Sequential.Create("flatten,dense(4)", [1, 4, 4], backend, seed: 1))
        {
            ModelFile.Save(model, temp.File("m.safetensors"));
        }

        WriteQuadrants(temp, "train", 8, 1); // 1x8x8 images
        var result = CliRunner.Run("predict", "--model", temp.File("m.safetensors"), "--input", temp.File("train-x.npy"), "--output", temp.File("y.npy"));
        Assert.Equal((2, $"error: --input '{temp.File("train-x.npy")}': images of shape (1,8,8) each, the model takes (1,4,4)."), (result.ExitCode, result.ErrorLine));
        Assert.False(File.Exists(temp.File("y.npy")));
    }

    [Fact]
    public void Train_writes_onnx_where_out_names_an_onnx_file_and_fine_tunes_it_in_place()
    {
        // --out m.onnx had been written as safetensors under that name: unreadable as ONNX, and --init m.onnx --out m.onnx
        // replaced the user's ONNX model with it.
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 8, 1);
        string[] common = ["train", "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"), "--arch", "conv(3,3),relu,flatten,dense(4)",
            "--device", "reference", "--epochs", "1", "--out", temp.File("m.onnx")];
        var first = CliRunner.Run(common);
        Assert.True(first.ExitCode == 0, first.Error);
        var trained = OnnxModel.Read(temp.File("m.onnx"));
        Assert.Equal("conv(3,3),relu,flatten,dense(4)", ArchitectureSpec.Format(ArchitectureSpec.Parse(trained.Spec)));

        var again = CliRunner.Run([.. common, "--init", temp.File("m.onnx")]);
        Assert.True(again.ExitCode == 0, again.Error);
        var tuned = OnnxModel.Read(temp.File("m.onnx"));
        Assert.Equal(trained.Spec, tuned.Spec);
        Assert.NotEqual(trained.Weights["0.weight"].Data, tuned.Weights["0.weight"].Data);

        // A model whose ONNX would not read back (a residual body of dropout alone is Add(x, x)) is refused before training.
        var unreadable = CliRunner.Run("train", "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"), "--arch", "conv(3,3),residual(dropout(0.5)),flatten,dense(4)",
            "--device", "reference", "--epochs", "1", "--out", temp.File("odd.onnx"));
        Assert.Equal(2, unreadable.ExitCode);
        Assert.StartsWith($"error: --out '{temp.File("odd.onnx")}': this model would be written as ONNX that does not read back", unreadable.ErrorLine, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("odd.onnx")));
    }

    [Fact]
    public void Predict_eval_and_export_take_a_normalisation_for_files_without_one_and_raw_pixels_get_a_note()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 8, 1);
        using (var reference = new ReferenceBackend())
        {
            // As PyTorch saves one: weights, but no normalisation (torchvision's Normalize lived outside the model).
            using var small = Sequential.Create("flatten,dense(4)", [1, 8, 8], reference, seed: 2);
            ModelFile.Save(small, temp.File("plain.safetensors"));
            small.Normalization = ChannelNormalization.Parse("0.5,0.25", 1);
            ModelFile.Save(small, temp.File("own.safetensors"));
            using var mnist = Sequential.Create("flatten,dense(10)", [1, 28, 28], reference, seed: 3);
            ModelFile.Save(mnist, temp.File("mnist.safetensors"));
        }

        var images = Npy.ReadTensor(temp.File("train-x.npy"));
        Npy.Write(temp.File("normalised-x.npy"), new Tensor(images.Shape, [.. images.Data.Select(v => (v - 0.5f) / 0.25f)]));
        string[] Predict(string model, string input, string output) => ["predict", "--model", temp.File(model), "--input", temp.File(input), "--output", temp.File(output), "--device", "reference"];
        var given = CliRunner.Run([.. Predict("plain.safetensors", "train-x.npy", "given.npy"), "--normalize", "0.5,0.25"]);
        var byHand = CliRunner.Run(Predict("plain.safetensors", "normalised-x.npy", "by-hand.npy"));
        Assert.True(given.ExitCode == 0 && byHand.ExitCode == 0, given.Error + byHand.Error);
        TensorAssert.Close(Array.ConvertAll(Npy.ReadTensor(temp.File("by-hand.npy")).Data, v => (double)v), Npy.ReadTensor(temp.File("given.npy")).Data,
            new Shape(8, 4), 1e-5, 1e-5, "--normalize against inputs normalised by hand");

        // A file's own normalisation is what its weights were trained with: the same is accepted, another refused.
        Assert.Equal(0, CliRunner.Run([.. Predict("own.safetensors", "train-x.npy", "own.npy"), "--normalize", "0.5,0.25"]).ExitCode);
        var other = CliRunner.Run([.. Predict("own.safetensors", "train-x.npy", "other.npy"), "--normalize", "0.1,0.3"]);
        Assert.Equal(2, other.ExitCode);
        Assert.Contains($"model file '{temp.File("own.safetensors")}' records its own input normalisation, 0.5,0.25", other.ErrorLine, StringComparison.Ordinal);

        // export and eval take it too.
        var export = CliRunner.Run("export", "--model", temp.File("plain.safetensors"), "--output", temp.File("plain.onnx"), "--normalize", "0.5,0.25");
        Assert.True(export.ExitCode == 0, export.Error);
        using (var reference = new ReferenceBackend())
        using (var exported = ModelFile.Load(temp.File("plain.onnx"), reference))
        {
            Assert.Equal(ChannelNormalization.Parse("0.5,0.25", 1), exported.Normalization);
        }

        var eval = CliRunner.Run("eval", "--model", temp.File("mnist.safetensors"), "--device", "reference", "--normalize", "0.1307,0.3081");
        Assert.True(eval.ExitCode == 0, eval.Error);
        var miscounted = CliRunner.Run("eval", "--model", temp.File("mnist.safetensors"), "--device", "reference", "--normalize", "1,2,3");
        Assert.Equal((2, "error: --normalize: normalize: '1,2,3' has 3 numbers; give MEAN,STD or 1 means then 1 standard deviations for 1-channel inputs."),
            (miscounted.ExitCode, miscounted.ErrorLine));

        // Raw 8-bit pixels in an .npy are used as they are (IDX files are scaled to [0, 1]): a note says so.
        Npy.Write(temp.File("raw-x.npy"), new Tensor(images.Shape, [.. images.Data.Select(v => MathF.Min(255, MathF.Round(v * 200)))]));
        var raw = CliRunner.Run(Predict("plain.safetensors", "raw-x.npy", "raw.npy"));
        Assert.Equal(0, raw.ExitCode);
        Assert.Contains("note: --input holds whole numbers from 0 to ", raw.Error, StringComparison.Ordinal);
        Assert.Contains("(raw 8-bit pixels?)", raw.Error, StringComparison.Ordinal);
        Assert.Contains("divide by 255 (or give --normalize) if", raw.Error, StringComparison.Ordinal);
        // A model that records its own normalisation refuses --normalize, so the note does not offer it.
        var rawOwn = CliRunner.Run(Predict("own.safetensors", "raw-x.npy", "raw-own.npy"));
        Assert.Equal(0, rawOwn.ExitCode);
        Assert.Contains("divide by 255 if the model takes [0, 1]", rawOwn.Error, StringComparison.Ordinal);
        var rawTraining = CliRunner.Run("train", "--images", temp.File("raw-x.npy"), "--labels", temp.File("train-y.npy"), "--arch", "flatten,dense(4)",
            "--device", "reference", "--epochs", "1", "--out", temp.File("raw.safetensors"));
        Assert.Equal(0, rawTraining.ExitCode);
        Assert.Contains("note: --images holds whole numbers from 0 to ", rawTraining.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("note:", given.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Images_without_a_channel_axis_take_one_and_channels_last_images_are_refused_with_the_transpose()
    {
        // (N, H, W) arrays (Keras' MNIST) had been refused; (N, H, W, C) ones had trained a model of H channels on W × C
        // pictures without a word (or failed far off, in a pooling layer).
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 8, 1);
        var images = Npy.ReadTensor(temp.File("train-x.npy"));
        Npy.Write(temp.File("hw-x.npy"), new Tensor([8, 8, 8], images.Data)); // (N, 1, 8, 8) without its channel axis
        Npy.Write(temp.File("hwc-x.npy"), new Tensor([8, 8, 8, 1], images.Data)); // the same pixels, channels last
        string[] Train(string x, string output) => ["train", "--images", temp.File(x), "--labels", temp.File("train-y.npy"), "--arch", "conv(2,3),relu,flatten,dense(4)",
            "--device", "reference", "--epochs", "1", "--batch-size", "4", "--out", temp.File(output)];
        var channels = CliRunner.Run(Train("train-x.npy", "nchw.safetensors"));
        var withoutAxis = CliRunner.Run(Train("hw-x.npy", "nhw.safetensors"));
        Assert.True(channels.ExitCode == 0 && withoutAxis.ExitCode == 0, channels.Error + withoutAxis.Error);
        Assert.Contains($"note: --images '{temp.File("hw-x.npy")}' holds (8,8,8), (N, H, W): read as one channel, (8,1,8,8).", withoutAxis.Error, StringComparison.Ordinal);
        Assert.Contains("on 8 samples of (1,8,8) (no test set)", withoutAxis.Error, StringComparison.Ordinal); // the shape the model is built for
        Assert.Equal(Safetensors.Read(temp.File("nchw.safetensors")).Tensors["0.weight"].Data, Safetensors.Read(temp.File("nhw.safetensors")).Tensors["0.weight"].Data);

        var channelsLast = CliRunner.Run(Train("hwc-x.npy", "nhwc.safetensors"));
        Assert.Equal((2, $"error: --images '{temp.File("hwc-x.npy")}': images (8,8,8,1) look channels-last, (N, H, W, C); the engine takes (N, C, H, W): " +
            "give --layout nhwc, or save them as x.transpose(0, 3, 1, 2) (--layout nchw takes them as they are)."), (channelsLast.ExitCode, channelsLast.ErrorLine));
        Assert.False(File.Exists(temp.File("nhwc.safetensors")));
        // --layout nhwc transposes them (the same model as from the channels-first file); nchw takes them as they are.
        var transposed = CliRunner.Run([.. Train("hwc-x.npy", "transposed.safetensors"), "--layout", "nhwc"]);
        Assert.True(transposed.ExitCode == 0, transposed.Error);
        Assert.Equal(Safetensors.Read(temp.File("nchw.safetensors")).Tensors["0.weight"].Data, Safetensors.Read(temp.File("transposed.safetensors")).Tensors["0.weight"].Data);
        var insisted = CliRunner.Run(["train", "--images", temp.File("hwc-x.npy"), "--labels", temp.File("train-y.npy"), "--arch", "flatten,dense(4)",
            "--device", "reference", "--epochs", "1", "--out", temp.File("insisted.safetensors"), "--layout", "nchw"]);
        Assert.True(insisted.ExitCode == 0, insisted.Error);
        Assert.Contains("on 8 samples of (8,8,1) (no test set)", insisted.Error, StringComparison.Ordinal);
        var misspelt = CliRunner.Run([.. Train("hwc-x.npy", "misspelt.safetensors"), "--layout", "hwc"]);
        Assert.Equal((2, "error: --layout must be auto, nchw or nhwc, got 'hwc'."), (misspelt.ExitCode, misspelt.ErrorLine));
        // Non-square pictures cannot be told apart from (N, C, H, W) alone: they train, with a note.
        Npy.Write(temp.File("hwc-wide-x.npy"), new Tensor([8, 16, 4, 1], images.Data));
        var wide = CliRunner.Run(["train", "--images", temp.File("hwc-wide-x.npy"), "--labels", temp.File("train-y.npy"), "--arch", "flatten,dense(4)",
            "--device", "reference", "--epochs", "1", "--batch-size", "4", "--out", temp.File("wide.safetensors")]);
        Assert.True(wide.ExitCode == 0, wide.Error);
        Assert.Contains($"note: --images '{temp.File("hwc-wide-x.npy")}' holds (8,16,4,1): taken as (N, C, H, W); if they are channels-last, (N, H, W, C), give --layout nhwc.",
            wide.Error, StringComparison.Ordinal);

        // predict fits them to the model the same way, and names channels-last images against the model's shape.
        string[] Predict(string x, string output) => ["predict", "--model", temp.File("nchw.safetensors"), "--input", temp.File(x), "--output", temp.File(output), "--device", "reference"];
        Assert.Equal(0, CliRunner.Run(Predict("train-x.npy", "nchw.npy")).ExitCode);
        var predicted = CliRunner.Run(Predict("hw-x.npy", "nhw.npy"));
        Assert.True(predicted.ExitCode == 0, predicted.Error);
        Assert.Equal(Npy.ReadTensor(temp.File("nchw.npy")).Data, Npy.ReadTensor(temp.File("nhw.npy")).Data);
        var predictedLast = CliRunner.Run(Predict("hwc-x.npy", "nhwc.npy"));
        Assert.Equal((2, $"error: --input '{temp.File("hwc-x.npy")}': images of shape (8,8,1) each, the model takes (1,8,8); they look channels-last, (N, H, W, C): " +
            "give --layout nhwc, or save them as x.transpose(0, 3, 1, 2)."), (predictedLast.ExitCode, predictedLast.ErrorLine));
        var predictedTransposed = CliRunner.Run([.. Predict("hwc-x.npy", "transposed.npy"), "--layout", "nhwc"]);
        Assert.True(predictedTransposed.ExitCode == 0, predictedTransposed.Error);
        Assert.Equal(Npy.ReadTensor(temp.File("nchw.npy")).Data, Npy.ReadTensor(temp.File("transposed.npy")).Data);
        // eval fits them to the model the same way.
        var evaluated = CliRunner.Run("eval", "--model", temp.File("nchw.safetensors"), "--images", temp.File("hwc-x.npy"), "--labels", temp.File("train-y.npy"), "--device", "reference");
        Assert.Equal((2, $"error: --images '{temp.File("hwc-x.npy")}': images of shape (8,8,1) each, the model takes (1,8,8); they look channels-last, (N, H, W, C): " +
            "give --layout nhwc, or save them as x.transpose(0, 3, 1, 2)."), (evaluated.ExitCode, evaluated.ErrorLine));
    }

    [Fact]
    public void Eval_takes_npy_images_and_labels_as_train_does()
    {
        // eval had read MNIST folders only: a model trained on .npy data could not be evaluated on its own test set.
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, "train", 8, 1);
        WriteQuadrants(temp, "test", 12, 2);
        var train = CliRunner.Run("train", "--images", temp.File("train-x.npy"), "--labels", temp.File("train-y.npy"), "--test-images", temp.File("test-x.npy"),
            "--test-labels", temp.File("test-y.npy"), "--arch", "conv(2,3),relu,flatten,dense(4)", "--device", "reference", "--epochs", "2", "--batch-size", "4",
            "--out", temp.File("m.safetensors"));
        Assert.True(train.ExitCode == 0, train.Error);
        var eval = CliRunner.Run("eval", "--model", temp.File("m.safetensors"), "--images", temp.File("test-x.npy"), "--labels", temp.File("test-y.npy"), "--device", "reference");
        Assert.True(eval.ExitCode == 0, eval.Error);
        // The same figures as the training run's last test evaluation.
        string last = train.Out.Split('\n').Last(line => line.StartsWith("test accuracy: ", StringComparison.Ordinal)).Trim();
        Assert.Contains(last[5..] + " (12 samples)", eval.Out, StringComparison.Ordinal);

        // Features (N, F) for a model of dense layers, as predict takes them.
        var features = Npy.ReadTensor(temp.File("train-x.npy"));
        Npy.Write(temp.File("features.npy"), new Tensor([8, 64], features.Data));
        Assert.Equal(0, CliRunner.Run("train", "--images", temp.File("features.npy"), "--labels", temp.File("train-y.npy"), "--arch", "dense(4)", "--device", "reference",
            "--epochs", "1", "--out", temp.File("mlp.safetensors")).ExitCode);
        var mlp = CliRunner.Run("eval", "--model", temp.File("mlp.safetensors"), "--images", temp.File("features.npy"), "--labels", temp.File("train-y.npy"), "--device", "reference");
        Assert.True(mlp.ExitCode == 0, mlp.Error);
        Assert.Contains("(8 samples)", mlp.Out, StringComparison.Ordinal);

        var both = CliRunner.Run("eval", "--model", temp.File("m.safetensors"), "--data", temp.Path, "--images", temp.File("test-x.npy"), "--labels", temp.File("test-y.npy"));
        Assert.Equal((2, "error: give either --data or --images/--labels, not both."), (both.ExitCode, both.ErrorLine));
        var alone = CliRunner.Run("eval", "--model", temp.File("m.safetensors"), "--labels", temp.File("test-y.npy"));
        Assert.Equal((2, "error: --images and --labels go together."), (alone.ExitCode, alone.ErrorLine));
    }

    [Fact]
    public void Training_outputs_may_not_replace_the_mnist_files_it_reads()
    {
        // --out and --checkpoint had been kept apart from .npy inputs only: --out onto --data's test labels replaced them.
        using var temp = Fixtures.TempFolder();
        string folder = temp.File("mnist");
        Directory.CreateDirectory(folder);
        foreach (string file in Directory.GetFiles(GpuCnn.Cli.CommonOptions.BundledSample()))
        {
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        }

        string labels = Path.Combine(folder, "t10k-labels-idx1-ubyte.gz");
        byte[] before = File.ReadAllBytes(labels);
        var replaced = CliRunner.Run("train", "--data", folder, "--epochs", "1", "--device", "reference", "--out", labels);
        Assert.Equal((2, $"error: --out '{labels}' is the same file as --data, which writing it would replace; give another path."), (replaced.ExitCode, replaced.ErrorLine));
        string images = Path.Combine(folder, "train-images-idx3-ubyte.gz");
        byte[] imagesBefore = File.ReadAllBytes(images);
        var checkpoint = CliRunner.Run("train", "--data", folder, "--epochs", "1", "--device", "reference", "--out", temp.File("m.safetensors"), "--checkpoint", images);
        Assert.Equal((2, $"error: --checkpoint '{images}' is the same file as --data, which writing it would replace; give another path."), (checkpoint.ExitCode, checkpoint.ErrorLine));
        // A name the reader looks for first, absent here, would be read next time in place of the .gz beside it.
        string shadow = Path.Combine(folder, "t10k-images-idx3-ubyte");
        var shadowing = CliRunner.Run("train", "--data", folder, "--epochs", "1", "--device", "reference", "--out", shadow);
        Assert.Equal(2, shadowing.ExitCode);
        Assert.False(File.Exists(shadow));
        Assert.Equal(before, File.ReadAllBytes(labels));
        Assert.Equal(imagesBefore, File.ReadAllBytes(images));
    }

    [Fact]
    public void Confusion_matrix_columns_stay_apart_at_any_count()
    {
        // A count of 100,000 or more had run into its neighbour in columns six wide.
        var writer = new StringWriter();
        GpuCnn.Cli.EvalCommand.WriteConfusion(writer, new Evaluation(0.5, 0.9, 1_234_568, new[,] { { 1_234_567, 0 }, { 1, 0 } }));
        string[] lines = writer.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(["0", "1"], lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["0", "1234567", "0"], lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["1", "1", "0"], lines[3].Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    private static void WriteQuadrants(TempFolder temp, string prefix, int count, int seed)
    {
        var data = TrainingTests.QuadrantData(count, seed);
        Npy.Write(temp.File($"{prefix}-x.npy"), data.Images);
        Npy.Write(temp.File($"{prefix}-y.npy"), new Npy.Array([count], "i8", [.. data.Labels.SelectMany(l => BitConverter.GetBytes((long)l))]));
    }

    [GeneratedRegex(@"^test accuracy: \d{1,3}\.\d\d%$")]
    private static partial Regex TestAccuracyLine();
}
