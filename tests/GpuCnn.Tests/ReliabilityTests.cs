using System.Diagnostics;
using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;
using GpuCnn.Ilgpu;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>Checkpoints and resume, interruption, divergence, device memory limits and leaks.</summary>
public sealed class ReliabilityTests
{
    private const string Spec = "conv(4,3,pad=1),relu,maxpool(2),flatten,dense(4)";

    [Theory]
    [InlineData("reference")]
    [InlineData("ilgpu-cpu")]
    public void Two_epochs_straight_equal_one_epoch_plus_resume_bitwise(string device)
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 40);
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--batch-size", "8",
            "--optimizer", "adam", "--device", device];
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "2", "--out", temp.File("straight.safetensors")]).ExitCode);

        var first = CliRunner.Run([.. common, "--epochs", "1", "--checkpoint", temp.File("c.safetensors"), "--out", temp.File("one.safetensors")]);
        Assert.True(first.ExitCode == 0, first.Error);
        var resumed = CliRunner.Run([.. common, "--epochs", "2", "--checkpoint", temp.File("c.safetensors"), "--resume", temp.File("c.safetensors"), "--out", temp.File("resumed.safetensors")]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains("resuming from", resumed.Error, StringComparison.Ordinal);
        Assert.Single(resumed.Out.Split('\n'), l => l.StartsWith("epoch ", StringComparison.Ordinal)); // only epoch 2 ran

        AssertSameWeights(temp.File("straight.safetensors"), temp.File("resumed.safetensors"));

        // The checkpoint is now after epoch 2: fewer --epochs would train nothing and write a model of more epochs than
        // asked for (with an empty plot and metrics over the run's own); the same --epochs writes its model again.
        var fewer = CliRunner.Run([.. common, "--epochs", "1", "--resume", temp.File("c.safetensors"), "--out", temp.File("fewer.safetensors")]);
        Assert.Equal(2, fewer.ExitCode);
        Assert.Equal($"error: --resume '{temp.File("c.safetensors")}' is after epoch 2, past --epochs 1: nothing is left to train. Give --epochs 2 to write its model, more to train on.",
            fewer.ErrorLine);
        Assert.False(File.Exists(temp.File("fewer.safetensors")));
        var same = CliRunner.Run([.. common, "--epochs", "2", "--resume", temp.File("c.safetensors"), "--out", temp.File("again.safetensors")]);
        Assert.True(same.ExitCode == 0, same.Error);
        AssertSameWeights(temp.File("straight.safetensors"), temp.File("again.safetensors"));
    }

    [Fact]
    public void A_resumed_runs_plot_and_metrics_cover_the_epochs_before_its_checkpoint_which_records_its_ranks()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 40);
        // A constant rate: a cosine schedule's epoch 2 depends on --epochs, which the first run sets lower.
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--batch-size", "8",
            "--device", "reference", "--schedule", "constant"];
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "3", "--out", temp.File("straight.safetensors")]).ExitCode);
        string checkpoint = temp.File("c.safetensors");
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "2", "--checkpoint", checkpoint, "--out", temp.File("two.safetensors")]).ExitCode);
        Assert.Equal("1", Safetensors.Read(checkpoint).Metadata["ranks"]);

        var resumed = CliRunner.Run([.. common, "--epochs", "3", "--resume", checkpoint, "--out", temp.File("resumed.safetensors")]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.DoesNotContain("note:", resumed.Error, StringComparison.Ordinal); // same device, same ranks, a history
        // Epochs 1 and 2 from the checkpoint, 3 from this run: the losses of the uninterrupted run, digit for digit.
        Assert.Equal(TrainLosses(temp.File("straight.metrics.json")), TrainLosses(temp.File("resumed.metrics.json")));

        // A checkpoint from before they were recorded: the run resumes and says its plot and metrics leave epochs 1–2 out;
        // a checkpoint of that run holds epochs 3 on, and a run resumed from it says so again.
        WriteWithout(checkpoint, "history");
        WriteWithout(checkpoint, "ranks");
        var old = CliRunner.Run([.. common, "--epochs", "3", "--resume", checkpoint, "--checkpoint", temp.File("later.safetensors"),
            "--out", temp.File("old.safetensors")]);
        Assert.True(old.ExitCode == 0, old.Error);
        Assert.Contains("note: the checkpoint records no metrics for epochs 1–2 (written before checkpoints carried them, or resumed from one that was)",
            old.Error, StringComparison.Ordinal);
        Assert.Equal(new[] { 3 }, TrainLosses(temp.File("old.metrics.json")).Select(e => e.Epoch));
        var later = CliRunner.Run([.. common, "--epochs", "4", "--resume", temp.File("later.safetensors"), "--out", temp.File("later.safetensors.out")]);
        Assert.True(later.ExitCode == 0, later.Error);
        Assert.Contains("note: the checkpoint records no metrics for epochs 1–2 (", later.Error, StringComparison.Ordinal);
        Assert.Equal(new[] { 3, 4 }, TrainLosses(temp.File("later.safetensors.metrics.json")).Select(e => e.Epoch));

        // A history that is not one names the file (the checkpoint holds no checksum since WriteWithout: it is read as is).
        var contents = Safetensors.Read(checkpoint);
        foreach (var (history, said) in new[] { ("[{\"epoch\": \"two\"}]", "is not a valid list"), ("[{}]", "is not a valid list"),
            ("[{\"epoch\":2,\"train_loss\":1,\"train_accuracy\":0,\"test_loss\":null,\"test_accuracy\":null,\"seconds\":1}," +
             "{\"epoch\":1,\"train_loss\":1,\"train_accuracy\":0,\"test_loss\":null,\"test_accuracy\":null,\"seconds\":1}]", "is not a list of epochs numbered from 1 upwards") })
        {
            Safetensors.Write(checkpoint, contents.Tensors, new Dictionary<string, string>(contents.Metadata) { ["history"] = history });
            var damaged = CliRunner.Run([.. common, "--epochs", "3", "--resume", checkpoint, "--out", temp.File("damaged.safetensors")]);
            Assert.Equal(1, damaged.ExitCode);
            Assert.StartsWith($"error: --resume '{checkpoint}': its epoch history {said}", damaged.ErrorLine, StringComparison.Ordinal);
        }

        static List<(int Epoch, double Loss)> TrainLosses(string metrics)
        {
            using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(metrics));
            return [.. document.RootElement.GetProperty("epochs").EnumerateArray()
                .Select(e => (e.GetProperty("epoch").GetInt32(), e.GetProperty("train_loss").GetDouble()))];
        }
    }

    [Fact]
    public void Resuming_a_cosine_run_with_more_epochs_says_the_schedule_now_spans_them()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 16);
        string checkpoint = temp.File("c.safetensors");
        string[] train = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--device", "reference",
            "--batch-size", "8", "--checkpoint", checkpoint];
        Assert.Equal(0, CliRunner.Run([.. train, "--epochs", "2", "--out", temp.File("two.safetensors")]).ExitCode);
        Assert.Equal("2", Safetensors.Read(checkpoint).Metadata["epochs"]);

        var longer = CliRunner.Run([.. train, "--epochs", "4", "--resume", checkpoint, "--out", temp.File("four.safetensors")]);
        Assert.True(longer.ExitCode == 0, longer.Error);
        Assert.Contains("note: the checkpoint's run asked for --epochs 2, this one for 4: the cosine schedule now spans 4 epochs, so the " +
            "rates from epoch 3 on follow it", longer.Error, StringComparison.Ordinal);

        // After epoch 1 alone, the span had not mattered (epoch 1 runs at the full rate whatever it is): nothing to say.
        Assert.Equal(0, CliRunner.Run([.. train, "--epochs", "1", "--out", temp.File("one.safetensors")]).ExitCode);
        var fromOne = CliRunner.Run([.. train, "--epochs", "3", "--resume", checkpoint, "--out", temp.File("three.safetensors")]);
        Assert.True(fromOne.ExitCode == 0, fromOne.Error);
        Assert.DoesNotContain("note:", fromOne.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_checkpoint_given_where_a_model_goes_is_named_as_one()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 16);
        string checkpoint = temp.File("c.safetensors");
        string[] train = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--device", "reference",
            "--batch-size", "8", "--epochs", "1"];
        Assert.Equal(0, CliRunner.Run([.. train, "--checkpoint", checkpoint, "--out", temp.File("m.safetensors")]).ExitCode);
        string said = $"'{checkpoint}' is a gpucnn training checkpoint, not a model: continue it with train --resume, or use the model train --out wrote.";

        // Its weights are "model.…": loaded as a model they had been "tensor '0.weight' is missing", naming no file.
        var predict = CliRunner.Run(["predict", "--model", checkpoint, "--input", temp.File("x.npy"), "--output", temp.File("p.npy")]);
        Assert.Equal(1, predict.ExitCode);
        Assert.StartsWith($"error: model file {said}", predict.ErrorLine, StringComparison.Ordinal);
        var init = CliRunner.Run([.. train, "--init", checkpoint, "--out", temp.File("again.safetensors")]);
        Assert.Equal(1, init.ExitCode);
        Assert.StartsWith($"error: --init {said}", init.ErrorLine, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("p.npy")) || File.Exists(temp.File("again.safetensors")));
    }

    [Fact]
    public void Resuming_with_different_settings_is_refused()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 16);
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--device", "reference", "--out", temp.File("m.safetensors")];
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "1", "--checkpoint", temp.File("c.safetensors")]).ExitCode);
        var result = CliRunner.Run([.. common, "--epochs", "2", "--lr", "0.5", "--resume", temp.File("c.safetensors")]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("was written with lr 0.05, this run has 0.5", result.ErrorLine, StringComparison.Ordinal);

        var notCheckpoint = CliRunner.Run([.. common[..^1], temp.File("m2.safetensors"), "--epochs", "2", "--resume", temp.File("m.safetensors")]);
        Assert.EndsWith("is not a gpucnn checkpoint (a model file? load it as initial weights instead). (--init)", notCheckpoint.ErrorLine, StringComparison.Ordinal);
    }

    /// <summary>
    /// SGD without momentum keeps no momentum buffer (PyTorch's is None): no state, no memory the size of the model.
    /// A checkpoint that carries zero buffers, as plain SGD wrote them before, still restores.
    /// </summary>
    [Fact]
    public void Plain_sgd_keeps_no_momentum_buffers_and_restores_a_checkpoint_that_carries_them()
    {
        using var temp = Fixtures.TempFolder();
        using var backend = new ReferenceBackend();
        var settings = new Dictionary<string, string> { ["optimizer"] = "sgd" };
        using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 3);
        using (var withBuffers = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f, 0.9f)))
        {
            Assert.Equal(model.NamedParameters().Count(), withBuffers.StateTensors().Count());
            CheckpointFile.Save(temp.File("c.safetensors"), model, withBuffers, new TrainingState(1, 0, 4, 0f, 0f), settings);
        }

        using var resumed = Sequential.Create(Spec, [1, 8, 8], backend, seed: 4);
        using var plain = new Sgd(backend, resumed.NamedParameters(), new SgdOptions(0.1f));
        Assert.Empty(plain.StateTensors());
        Assert.Equal(new TrainingState(1, 0, 4, 0f, 0f), CheckpointFile.Restore(temp.File("c.safetensors"), resumed, plain, settings) with { WrittenOn = null });
        Assert.Equal(4, plain.StepCount);
        foreach (var (key, tensor) in model.StateDict())
        {
            TensorAssert.Identical<float>(tensor.Data, resumed.StateDict()[key].Data, key);
        }

        // Its steps are p −= lr·g, as before.
        var before = resumed.StateDict();
        foreach (var (_, parameter) in resumed.NamedParameters())
        {
            backend.Fill(parameter.Gradient, 1f);
        }

        plain.Step();
        foreach (var (key, tensor) in resumed.StateDict())
        {
            TensorAssert.Identical<float>(Array.ConvertAll(before[key].Data, v => v - 0.1f), tensor.Data, key + " after a step");
        }
    }

    [Theory]
    [InlineData(LearningRateSchedule.Cosine, 0, Spec)]
    [InlineData(LearningRateSchedule.Step, 11, Spec)] // the interruption (step 8) falls inside the warm-up; crops and flips too
    [InlineData(LearningRateSchedule.Constant, 3, "conv(4,3,pad=1,bias=false),batchnorm,relu,maxpool(2),flatten,dropout(0.3),dense(4),batchnorm")] // running statistics and dropout masks too
    public void An_interruption_mid_epoch_resumes_bitwise(LearningRateSchedule schedule, int warmup, string spec)
    {
        using var temp = Fixtures.TempFolder();
        var data = TrainingTests.QuadrantData(40, seed: 1);
        var options = new TrainingOptions(Epochs: 3, BatchSize: 8, Seed: 2, Schedule: schedule, StepSize: 1, Gamma: 0.5f, WarmupSteps: warmup,
            LabelSmoothing: 0.05f, Augment: schedule == LearningRateSchedule.Step ? new Augmentation(1, true) : null);
        var settings = new Dictionary<string, string> { ["test"] = "1" };
        using var backend = IlgpuDevices.OpenCpuAccelerator();

        var straightEpochs = new List<EpochMetrics>();
        float[] straight = Weights(Train(backend, data, options, null, null, null, epochs: straightEpochs));

        // Stop after batch 3 of epoch 2 (as Ctrl+C does): the trainer finishes the batch and hands over its state.
        using var cancel = new CancellationTokenSource();
        var interrupted = Assert.Throws<TrainingInterruptedException>(() => Train(backend, data, options, null,
            (model, optimizer, state) => CheckpointFile.Save(temp.File("c.safetensors"), model, optimizer, state, settings),
            (epoch, batch) => { if (epoch == 2 && batch == 3) { cancel.Cancel(); } }, cancel.Token));
        Assert.Equal(new TrainingState(2, 3, 5 + 3, interrupted.State.LossSum, interrupted.State.CorrectSum), interrupted.State);
        Assert.Equal(cancel.Token, interrupted.CancellationToken); // what `catch (OperationCanceledException e) when (e.CancellationToken == token)` tests

        var resumedEpochs = new List<EpochMetrics>();
        float[] resumed = Weights(Train(backend, data, options, temp.File("c.safetensors"), null, null, epochs: resumedEpochs));
        TensorAssert.Identical<float>(straight, resumed, "straight vs interrupted and resumed");
        // The interrupted epoch's loss and accuracy count its first three batches once, from the checkpoint's partial sums.
        Assert.Equal([2, 3], resumedEpochs.Select(e => e.Epoch));
        Assert.Equal(straightEpochs.Skip(1).Select(e => (e.TrainLoss, e.TrainAccuracy)), resumedEpochs.Select(e => (e.TrainLoss, e.TrainAccuracy)));

        Sequential Train(Backend on, Dataset d, TrainingOptions o, string? resumeFrom, Action<Sequential, Optimizer, TrainingState>? save,
            Action<int, int>? afterBatch, CancellationToken token = default, List<EpochMetrics>? epochs = null)
        {
            var model = Sequential.Create(spec, [1, 8, 8], on, seed: 3);
            using var optimizer = new Sgd(on, model.NamedParameters(), new SgdOptions(0.1f, 0.9f, WeightDecay: 0.01f, Nesterov: true));
            var start = resumeFrom is null ? null : CheckpointFile.Restore(resumeFrom, model, optimizer, settings);
            new Trainer(model, optimizer, o).Fit(d, null, epochs is null ? null : epochs.Add, afterBatch is null ? null : new SyncProgress(p => afterBatch(p.Epoch, p.Batch)),
                start, save is null ? null : s => save(model, optimizer, s), token);
            return model;
        }
    }

    [Fact]
    public void A_stop_asked_for_as_an_epoch_ends_stops_there_with_one_checkpoint_and_after_the_last_epoch_lets_fit_finish()
    {
        var data = TrainingTests.QuadrantData(16, seed: 1); // two batches an epoch
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 3);
        using var optimizer = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        var trainer = new Trainer(model, optimizer, new TrainingOptions(Epochs: 2, BatchSize: 8, Seed: 2));
        var saved = new List<TrainingState>();

        // Asked for in onEpoch (after the epoch's evaluation): the epoch's checkpoint is the stop's, written once.
        using var cancel = new CancellationTokenSource();
        var stopped = Assert.Throws<TrainingInterruptedException>(() =>
            trainer.Fit(data, null, e => { if (e.Epoch == 1) { cancel.Cancel(); } }, null, null, saved.Add, cancel.Token));
        Assert.Equal(new TrainingState(2, 0, 2, 0f, 0f), stopped.State);
        Assert.Equal(cancel.Token, stopped.CancellationToken);
        Assert.Equal([stopped.State], saved);

        // Asked for as the last epoch ends: nothing is left to stop, so Fit returns and the caller sees the token.
        saved.Clear();
        using var late = new CancellationTokenSource();
        var history = trainer.Fit(data, null, e => { if (e.Epoch == 2) { late.Cancel(); } }, null, stopped.State, saved.Add, late.Token);
        Assert.Equal(2, Assert.Single(history).Epoch);
        Assert.Equal(new TrainingState(3, 0, 4, 0f, 0f), Assert.Single(saved));
    }

    [Fact]
    public void A_diverging_loss_stops_naming_epoch_and_batch_and_keeps_the_last_good_checkpoint()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 32);
        File.WriteAllText(temp.File("m.safetensors"), "an earlier model");
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--device", "reference",
            "--batch-size", "8", "--momentum", "0", "--schedule", "constant", "--out", temp.File("m.safetensors"), "--checkpoint", temp.File("c.safetensors")];

        var result = CliRunner.Run([.. common, "--lr", "1e30", "--epochs", "2"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Matches(@"^error: the loss became NaN or infinite at epoch 1, batch \d; training stopped\. Try a lower learning rate than 1E\+30\.", result.ErrorLine);
        Assert.Equal("an earlier model", File.ReadAllText(temp.File("m.safetensors")));
        Assert.False(File.Exists(temp.File("c.safetensors"))); // no checkpoint of a diverged epoch

        // With a good epoch behind it, a later divergence leaves that epoch's checkpoint as it was.
        using var backend = new ReferenceBackend();
        var data = TrainingTests.QuadrantData(32, seed: 4);
        using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 5);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        var settings = new Dictionary<string, string>();
        new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 8)).Fit(data, onCheckpoint: s => CheckpointFile.Save(temp.File("good.safetensors"), model, sgd, s, settings));
        byte[] good = File.ReadAllBytes(temp.File("good.safetensors"));
        sgd.LearningRate = 1e30f;
        var diverged = Assert.Throws<TrainingDivergedException>(() => new Trainer(model, sgd, new TrainingOptions(Epochs: 2, BatchSize: 8))
            .Fit(data, resume: new TrainingState(2, 0, sgd.StepCount, 0, 0), onCheckpoint: s => CheckpointFile.Save(temp.File("good.safetensors"), model, sgd, s, settings)));
        Assert.Equal(2, diverged.Epoch);
        Assert.Equal(good, File.ReadAllBytes(temp.File("good.safetensors")));
    }

    [Fact]
    public void Device_memory_is_flat_over_hundreds_of_training_steps()
    {
        using var backend = IlgpuDevices.OpenCpuAccelerator();
        var data = TrainingTests.QuadrantData(60, seed: 6);
        using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 7);
        using var adam = new Adam(backend, model.NamedParameters(), new AdamOptions(0.01f));
        var bytes = new List<long>();
        new Trainer(model, adam, new TrainingOptions(Epochs: 16, BatchSize: 4)).Fit(data, TrainingTests.QuadrantData(12, seed: 8),
            progress: new SyncProgress(_ => bytes.Add(backend.BytesAllocated)));
        Assert.Equal(240, bytes.Count);
        Assert.All(bytes.Skip(1), b => Assert.Equal(bytes[0], b));
    }

    [Fact]
    public void Running_out_of_device_memory_is_a_clear_error()
    {
        using var backend = IlgpuDevices.OpenCpuAccelerator();
        backend.MemoryLimitBytes = 1000;
        var error = Assert.Throws<DeviceOutOfMemoryException>(() => Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend));
        Assert.Matches(@"^ilgpu-cpu: out of device memory allocating Single\(\d+(,\d+)*\) \([\d.]+ [KMG]?i?B\) with [\d.]+ [KMG]?i?B already in use and a limit of 1000 B", error.Message);
        Assert.EndsWith("use smaller batches.", error.Message, StringComparison.Ordinal); // the engine names no CLI flag
    }

    /// <summary>
    /// A tensor dropped without Dispose stops being counted once the collector has taken it: its memory is gone with it
    /// (a host array; an ILGPU buffer frees itself), and a memory limit had gone on counting it — the next allocation
    /// under the limit failed as if the device were full.
    /// </summary>
    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void A_tensor_dropped_without_dispose_stops_counting_once_collected(string device)
    {
        using var backend = Backends.Open(device);
        long before = backend.BytesAllocated;
        backend.MemoryLimitBytes = before + (3 * 4096 * sizeof(float));
        using var kept = backend.Allocate<float>([4096]);
        using var view = kept.View([64, 64]); // a view's finalizer frees nothing of its owner's
        var held = new List<DeviceTensor<float>>();
        AllocateUndisposed(backend, held, 2); // the limit reached
        Assert.Throws<DeviceOutOfMemoryException>(() => backend.Allocate<float>([4096]));
        held.Clear(); // dropped, never disposed (held until now: a collection before the check would have taken them)
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.Equal(before + (4096 * sizeof(float)), backend.BytesAllocated);
        Assert.Equal(2, backend.TensorsForgotten);
        using var again = backend.Allocate<float>([2 * 4096]); // room again, as in the memory itself
        Assert.False(kept.IsDisposed);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void AllocateUndisposed(Backend backend, List<DeviceTensor<float>> into, int count)
    {
        for (int i = 0; i < count; i++)
        {
            into.Add(backend.Allocate<float>([4096]));
        }
    }

    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Running_out_of_device_memory_half_way_leaves_nothing_allocated(string device)
    {
        // A caller who catches the error and retries with a smaller model or batch must get all the memory back: a
        // hundred limits spread over what ResNet-8 (convolutions, batch norm, residual blocks) needs and forty over its
        // Adam state, so that the allocation that fails falls in one layer after another — a weight, a gradient, a
        // running mean, a moment.
        using var backend = Backends.Open(device);
        long model, adam;
        using (var probe = Sequential.Create(ArchitectureSpec.ResNet8, [1, 12, 12], backend))
        {
            model = backend.BytesAllocated;
            using var state = new Adam(backend, probe.NamedParameters(), new AdamOptions());
            adam = backend.BytesAllocated - model;
        }

        long idle = backend.BytesAllocated; // the CPU backend's own scratch, made at its first operation
        model -= idle;
        int failures = 0;
        for (long limit = idle; limit < idle + model; limit += 1 + (model / 97))
        {
            backend.MemoryLimitBytes = limit;
            Assert.Throws<DeviceOutOfMemoryException>(() => Sequential.Create(ArchitectureSpec.ResNet8, [1, 12, 12], backend));
            Assert.True(backend.BytesAllocated == idle, $"{backend.BytesAllocated - idle} bytes left allocated after a build failed at a limit of {limit}");
            failures++;
        }

        backend.MemoryLimitBytes = long.MaxValue;
        using var net = Sequential.Create(ArchitectureSpec.ResNet8, [1, 12, 12], backend);
        for (long limit = idle + model; limit < idle + model + adam; limit += 1 + (adam / 40))
        {
            backend.MemoryLimitBytes = limit;
            Assert.Throws<DeviceOutOfMemoryException>(() => new Adam(backend, net.NamedParameters(), new AdamOptions()));
            Assert.Equal(idle + model, backend.BytesAllocated);
            failures++;
        }

        // The tensors that fail a check after they would have been made are not made at all.
        backend.MemoryLimitBytes = long.MaxValue;
        var mismatch = Assert.Throws<ArgumentException>(() => backend.Upload<float>([2, 3], new float[5]));
        Assert.StartsWith("Upload: shape (2,3) holds 6 elements, the values 5.", mismatch.Message, StringComparison.Ordinal);
        Assert.Equal(idle + model, backend.BytesAllocated);
        Assert.True(failures > 100, $"only {failures} limits tried");
        TensorAssert.NothingDroppedUndisposed(backend); // a failed build's tensors freed, not left to the collector
    }

    [Fact]
    public void A_normalisation_that_cannot_be_made_leaves_the_models_in_place()
    {
        using var backend = new CpuBackend();
        using var model = Sequential.Create(Spec, [3, 4, 4], backend, seed: 1);
        model.Normalization = new ChannelNormalization([0.5f, 0.5f, 0.5f], [2f, 2f, 2f]);
        using var x = backend.Upload<float>([1, 3, 4, 4], [.. Enumerable.Range(0, 48).Select(i => i / 48f)]);
        float[] before = backend.DownloadArray(model.Forward(x));

        backend.MemoryLimitBytes = backend.BytesAllocated + 12; // room for the new means, not for the deviations too
        Assert.Throws<DeviceOutOfMemoryException>(() => model.Normalization = new ChannelNormalization([0f, 0f, 0f], [1f, 1f, 1f]));
        backend.MemoryLimitBytes = long.MaxValue;
        Assert.Equal([0.5f, 0.5f, 0.5f], model.Normalization!.Mean);
        Assert.Equal(before, backend.DownloadArray(model.Forward(x))); // still normalised as before, not from freed tensors
    }

    [Fact]
    public void An_accelerator_fault_under_auto_falls_back_to_the_cpu_with_a_warning()
    {
        // The fault a GPU raises when it runs out of memory, provoked on ILGPU's CPU accelerator by a memory cap.
        using var temp = Fixtures.TempFolder();
        var data = TrainingTests.QuadrantData(16, seed: 1);
        var settings = new Cli.TrainSettings(Spec, Epochs: 1, BatchSize: 8, "sgd", 0.05f, 0.9f, 0f, LearningRateSchedule.Constant,
            StepSize: 1, Gamma: 0.1f, Warmup: 0, LabelSmoothing: 0f, ClipGradNorm: null, Augment: null, Normalize: null,
            Seed: 1, Out: temp.File("m.safetensors"), Init: null, Checkpoint: null, Resume: null);
        var output = new StringWriter();
        var error = new StringWriter();
        using var accelerator = IlgpuDevices.OpenCpuAccelerator();
        accelerator.MemoryLimitBytes = 4096;

        int code = Cli.TrainCommand.TrainWithFallback(new Cli.CliIo(output, error, default), settings, data, null, accelerator, auto: true);
        Assert.Equal(0, code);
        Assert.Matches(@"warning: ilgpu-cpu: out of device memory allocating .*; falling back to the CPU", error.ToString());
        Assert.True(File.Exists(temp.File("m.safetensors")));

        // Asked for by name, the same fault is an error, not a fallback.
        using var named = IlgpuDevices.OpenCpuAccelerator();
        named.MemoryLimitBytes = 4096;
        Assert.Throws<DeviceOutOfMemoryException>(() =>
            Cli.TrainCommand.TrainWithFallback(new Cli.CliIo(output, error, default), settings, data, null, named, auto: false));
    }

    [Fact]
    public void The_resume_hint_is_a_command_that_runs()
    {
        // "The same command plus --resume" repeated a --resume, or kept an --init that --resume excludes.
        var plain = new Cli.TrainSettings(Spec, Epochs: 1, BatchSize: 8, "sgd", 0.05f, 0.9f, 0f, LearningRateSchedule.Constant,
            StepSize: 1, Gamma: 0.1f, Warmup: 0, LabelSmoothing: 0f, ClipGradNorm: null, Augment: null, Normalize: null,
            Seed: 1, Out: "m.safetensors", Init: null, Checkpoint: null, Resume: null);
        Assert.Equal("resume with the same command plus: --resume ck", Cli.TrainCommand.ResumeHint(plain, "ck"));
        Assert.Equal("resume with the same command without --init, plus: --resume ck", Cli.TrainCommand.ResumeHint(plain with { Init = "w.safetensors" }, "ck"));
        Assert.Equal("resume with the same command, --resume ck in place of --resume old", Cli.TrainCommand.ResumeHint(plain with { Resume = "old" }, "ck"));
        Assert.Equal("resume with the same command (its --resume is the checkpoint just written)", Cli.TrainCommand.ResumeHint(plain with { Resume = "ck" }, "ck"));
    }

    [Fact]
    public void Ctrl_c_writes_a_checkpoint_and_says_how_to_resume()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "sends SIGINT with kill(1)");
        using var temp = Fixtures.TempFolder();
        // 2,000 images: an epoch of one to three seconds on the reference backend, so that the signal sent when epoch 1
        // ends lands in epoch 2 or 3 even on a loaded machine (3,000 had this test at 30 s).
        WriteQuadrants(temp, 2000);
        string[] common = ["train", "--arch", "conv(8,3,pad=1),relu,conv(8,3,pad=1),relu,flatten,dense(4)", "--images", temp.File("x.npy"),
            "--labels", temp.File("y.npy"), "--device", "reference", "--epochs", "3", "--batch-size", "16"];
        // A job started in the background by a non-interactive shell (`dotnet test … &`, nohup) inherits SIGINT as
        // ignored, and .NET, as Unix programs do, then leaves it ignored: the child gets SIGINT's default disposition.
        using var process = CliProcess.Start(["env", "--default-signal=INT"], [.. common, "--out", temp.File("m.safetensors")]);
        string? firstEpoch = process.StandardOutput.ReadLine(); // epoch 1 done: now stop epoch 2 part-way
        Assert.StartsWith("epoch 1:", firstEpoch, StringComparison.Ordinal);
        Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        Assert.True(process.WaitForExit(60_000), "the process did not stop after SIGINT");
        string stderr = process.StandardError.ReadToEnd(), stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.ExitCode == 130, $"exit code {process.ExitCode}, not 130; output after epoch 1:\n{stdout}\nerrors:\n{stderr}");
        string checkpoint = temp.File("m.checkpoint.safetensors");
        Assert.Contains($"resume with the same command plus: --resume {checkpoint}", stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("m.safetensors")));

        var resumed = CliRunner.Run([.. common, "--resume", checkpoint, "--out", temp.File("resumed.safetensors")]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Equal(0, CliRunner.Run([.. common, "--out", temp.File("straight.safetensors")]).ExitCode);
        AssertSameWeights(temp.File("straight.safetensors"), temp.File("resumed.safetensors"));
    }

    [Fact]
    public void Ctrl_c_after_an_epochs_last_batch_stops_at_that_epochs_end_and_after_the_last_one_keeps_the_finished_run()
    {
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 40);
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--device", "reference",
            "--batch-size", "8", "--epochs", "2"];
        Assert.Equal(0, CliRunner.Run([.. common, "--out", temp.File("straight.safetensors")]).ExitCode);

        // Ctrl+C while epoch 1 ends (its line is printed after its evaluation, before its checkpoint): training stops
        // there, with the checkpoint of the epoch's end, and resumes to the same weights.
        var first = RunInterruptedAtLine("epoch 1:", [.. common, "--out", temp.File("m.safetensors")]);
        string checkpoint = temp.File("m.checkpoint.safetensors");
        Assert.True(first.ExitCode == 130, $"exit code {first.ExitCode}: {first.Error}");
        Assert.Contains($"interrupted after epoch 1: checkpoint written to {checkpoint}", first.Error, StringComparison.Ordinal);
        Assert.Single(first.Out.Split('\n'), l => l.StartsWith("epoch ", StringComparison.Ordinal));
        Assert.False(File.Exists(temp.File("m.safetensors")));
        var resumed = CliRunner.Run([.. common, "--resume", checkpoint, "--out", temp.File("resumed.safetensors")]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        AssertSameWeights(temp.File("straight.safetensors"), temp.File("resumed.safetensors"));

        // Ctrl+C while the last epoch ends: training had finished, so the model, plot and metrics are written and no
        // interrupt checkpoint is; the exit code still says the run was interrupted, so that `train && next` stops.
        var last = RunInterruptedAtLine("epoch 2:", [.. common, "--out", temp.File("late.safetensors")]);
        Assert.True(last.ExitCode == 130, $"exit code {last.ExitCode}: {last.Error}");
        Assert.Contains("interrupted after the last epoch's last batch: training had finished", last.Error, StringComparison.Ordinal);
        AssertSameWeights(temp.File("straight.safetensors"), temp.File("late.safetensors"));
        Assert.True(File.Exists(temp.File("late.metrics.json")));
        Assert.False(File.Exists(temp.File("late.checkpoint.safetensors")));

        // Resumed without --checkpoint, the --resume file is the interrupt checkpoint: a finished run leaves it as it was.
        Assert.Equal(0, CliRunner.Run([.. common[..^1], "1", "--checkpoint", temp.File("c.safetensors"), // --epochs 1
            "--out", temp.File("one.safetensors")]).ExitCode);
        byte[] before = File.ReadAllBytes(temp.File("c.safetensors"));
        var finished = RunInterruptedAtLine("epoch 2:", [.. common, "--resume", temp.File("c.safetensors"), "--out", temp.File("two.safetensors")]);
        Assert.True(finished.ExitCode == 130, $"exit code {finished.ExitCode}: {finished.Error}");
        Assert.Equal(before, File.ReadAllBytes(temp.File("c.safetensors")));
        AssertSameWeights(temp.File("straight.safetensors"), temp.File("two.safetensors"));
    }

    /// <summary>Runs the CLI in-process and presses Ctrl+C (as Program's handler does) when it prints a line starting so.</summary>
    private static CliRunner.Result RunInterruptedAtLine(string prefix, string[] args)
    {
        using var interrupt = new Cli.Interrupt();
        var output = new InterruptingWriter(interrupt, prefix);
        var error = new StringWriter();
        int code = Cli.GpuCnnCli.Run(args, output, error, interrupt);
        Assert.True(output.Pressed, $"no line started with '{prefix}': {output}");
        return new CliRunner.Result(code, output.ToString(), error.ToString());
    }

    private sealed class InterruptingWriter(Cli.Interrupt interrupt, string prefix) : StringWriter(System.Globalization.CultureInfo.InvariantCulture)
    {
        public bool Pressed { get; private set; }

        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (!Pressed && value is not null && value.StartsWith(prefix, StringComparison.Ordinal))
            {
                Pressed = true;
                Assert.NotNull(interrupt.Request()); // train watches for it: a clean stop, not the end of the process
            }
        }
    }

    [Fact]
    public void Ctrl_c_ends_a_command_that_cannot_stop_cleanly_at_once()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "sends SIGINT with kill(1)");
        // The reference backend's bench runs for minutes; only train turns a first Ctrl+C into a clean stop.
        using var process = CliProcess.Start(["env", "--default-signal=INT"], ["bench", "--device", "reference"]);
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null && !line.StartsWith("name ", StringComparison.Ordinal))
        {
        }

        Assert.NotNull(line);
        Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        Assert.True(process.WaitForExit(30_000), "bench went on after SIGINT");
        Assert.Equal(130, process.ExitCode);
        Assert.DoesNotContain("interrupt (", process.StandardError.ReadToEnd(), StringComparison.Ordinal);
    }

    /// <summary>
    /// SIGTERM (a job scheduler's notice before it kills, mpirun's to every rank on Ctrl+C) and SIGUSR1 (which mpirun
    /// forwards without ending the job) stop training as Ctrl+C does: after the current batch, with a checkpoint. Before,
    /// SIGTERM ended the process at once and SIGUSR1 killed it.
    /// </summary>
    [Theory]
    [InlineData("TERM")]
    [InlineData("USR1")]
    public async Task Sigterm_and_sigusr1_stop_training_cleanly_as_ctrl_c_does(string signal)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "sends signals with kill(1)");
        using var temp = Fixtures.TempFolder();
        WriteQuadrants(temp, 2000);
        // 40 epochs of about 0.1 s: the signal, sent once epoch 1 is printed, lands long before the end.
        using var process = CliProcess.Start(["env"], ["train", "--arch", "conv(16,3,pad=1),relu,conv(16,3,pad=1),relu,maxpool(2),flatten,dense(4)",
            "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--device", "cpu", "--batch-size", "20", "--epochs", "40",
            "--out", temp.File("m.safetensors")]);
        var errors = process.StandardError.ReadToEndAsync();
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null && !line.StartsWith("epoch 1:", StringComparison.Ordinal))
        {
        }

        Assert.NotNull(line);
        Process.Start("kill", [$"-{signal}", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
        string output = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), $"train went on after SIG{signal}");
        string said = await errors;
        Assert.True(process.ExitCode == 130, $"exit code {process.ExitCode}: {said}");
        Assert.Contains($"interrupt (SIG{signal}): finishing the current batch", said, StringComparison.Ordinal);
        Assert.Contains($"checkpoint written to {temp.File("m.checkpoint.safetensors")}", said, StringComparison.Ordinal);
        Assert.DoesNotContain("epoch 40:", output, StringComparison.Ordinal);
        Assert.InRange(int.Parse(Safetensors.Read(temp.File("m.checkpoint.safetensors")).Metadata["epoch"], System.Globalization.CultureInfo.InvariantCulture), 1, 40);
        Assert.False(File.Exists(temp.File("m.safetensors")));
    }

    internal static void AssertSameWeights(string expectedPath, string actualPath)
    {
        var expected = Safetensors.Read(expectedPath).Tensors;
        var actual = Safetensors.Read(actualPath).Tensors;
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (key, tensor) in expected)
        {
            TensorAssert.Identical<float>(tensor.Data, actual[key].Data, key);
        }
    }

    private static float[] Weights(Sequential model)
    {
        using (model)
        {
            return [.. model.StateDict().OrderBy(p => p.Key, StringComparer.Ordinal).SelectMany(p => p.Value.Data)];
        }
    }

    internal static void WriteQuadrants(TempFolder temp, int count)
    {
        var data = TrainingTests.QuadrantData(count, seed: 1);
        Npy.Write(temp.File("x.npy"), data.Images);
        Npy.Write(temp.File("y.npy"), new Npy.Array([count], "i4", [.. data.Labels.SelectMany(BitConverter.GetBytes)]));
    }

    /// <summary>Rewrites a checkpoint as one written before <paramref name="key"/> was recorded (and checksums) were.</summary>
    internal static void WriteWithout(string checkpoint, string key)
    {
        var contents = Safetensors.Read(checkpoint);
        var metadata = contents.Metadata.Where(m => m.Key != key && m.Key != "checksum").ToDictionary(m => m.Key, m => m.Value);
        Safetensors.Write(checkpoint, contents.Tensors, metadata);
    }

    /// <summary>IProgress that runs on the reporting thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    internal sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
