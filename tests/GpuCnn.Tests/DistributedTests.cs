using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Data-parallel training over Open MPI ranks (`mpirun -np 2 gpucnn train --distributed`) against one process with the
/// same global batch; skipped, saying so, where mpirun is not installed.
/// </summary>
public sealed class DistributedTests
{
    private const string Spec = "conv(4,3,pad=1),relu,maxpool(2),flatten,dense(4)";

    [Theory]
    [InlineData(null)]
    [InlineData("0.05")] // clipping: the averaged gradients are clipped, as one process clips its batch's
    public void Two_ranks_train_as_one_process_and_repeat_bitwise(string? clipGradNorm)
    {
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 200);
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "2", "--batch-size", "20",
            "--device", "cpu", .. clipGradNorm is null ? Array.Empty<string>() : ["--clip-grad-norm", clipGradNorm]];
        Assert.Equal(0, CliRunner.Run([.. common, "--out", temp.File("one.safetensors")]).ExitCode);
        Mpirun(2, [.. common, "--distributed", "--out", temp.File("two.safetensors")]);
        Mpirun(2, [.. common, "--distributed", "--out", temp.File("again.safetensors")]);

        // The same mean gradient summed in another order: the weights agree to float rounding (6e-8 absolute after 20 steps).
        var one = GpuCnn.IO.Safetensors.Read(temp.File("one.safetensors")).Tensors;
        var two = GpuCnn.IO.Safetensors.Read(temp.File("two.safetensors")).Tensors;
        foreach (var (key, tensor) in one)
        {
            TensorAssert.Close(tensor.Data, two[key].Data, tensor.Shape, 1e-6, 1e-5, key);
        }

        ReliabilityTests.AssertSameWeights(temp.File("two.safetensors"), temp.File("again.safetensors")); // reruns: bitwise
    }

    [Fact]
    public void Checkpoint_and_resume_work_with_two_ranks()
    {
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 96);
        string[] common = ["train", "--arch", "conv(4,3,pad=1),batchnorm,relu,maxpool(2),flatten,dense(4)", "--images", temp.File("x.npy"), "--labels",
            temp.File("y.npy"), "--batch-size", "16", "--device", "cpu", "--distributed"];
        Mpirun(2, [.. common, "--epochs", "2", "--out", temp.File("straight.safetensors")]);
        Mpirun(2, [.. common, "--epochs", "1", "--checkpoint", temp.File("c.safetensors"), "--out", temp.File("first.safetensors")]);
        string resumed = Mpirun(2, [.. common, "--epochs", "2", "--resume", temp.File("c.safetensors"), "--out", temp.File("resumed.safetensors")]);
        Assert.Single(resumed.Split('\n'), l => l.Contains("epoch 2:", StringComparison.Ordinal)); // rank 0 alone prints (and only epoch 2 ran)
        ReliabilityTests.AssertSameWeights(temp.File("straight.safetensors"), temp.File("resumed.safetensors"));

        // One process resuming the two ranks' checkpoint continues, and says why its weights will differ.
        Assert.Equal("2", IO.Safetensors.Read(temp.File("c.safetensors")).Metadata["ranks"]);
        var alone = CliRunner.Run([.. common[..^1], "--epochs", "2", "--resume", temp.File("c.safetensors"), "--out", temp.File("alone.safetensors")]);
        Assert.True(alone.ExitCode == 0, alone.Error);
        Assert.Contains("note: the checkpoint was written by 2 rank(s), this run has 1: it continues", alone.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("GPUCNN_TEST_HANG_RANK", "rank 0 of 2: no answer from the other ranks for 3 s")]
    [InlineData("GPUCNN_TEST_DIE_RANK", "mpirun detected that one or more processes exited with non-zero status")]
    public async Task A_hung_or_dead_rank_stops_the_job_in_bounded_time(string fault, string said)
    {
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 40);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var run = CliProcess.Start(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"],
            ["train", "--distributed", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "1", "--batch-size", "8",
                "--device", "cpu", "--out", temp.File("m.safetensors")],
            // 3 s for the hung rank; the dead one is mpirun's to notice, and rank 0's timeout must not beat it on a loaded host.
            new Dictionary<string, string> { [fault] = "1", ["GPUCNN_MPI_TIMEOUT_S"] = fault == "GPUCNN_TEST_HANG_RANK" ? "3" : "30" });
        var output = run.StandardOutput.ReadToEndAsync();
        var errors = run.StandardError.ReadToEndAsync();
        Assert.True(run.WaitForExit(90_000), "the job did not stop");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains(said, await errors + await output, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
        Assert.False(File.Exists(temp.File("m.safetensors")));
    }

    [Theory]
    [InlineData("9", null, "--batch-size 9 is the global batch: the 2 ranks must divide it.")]
    [InlineData("8", "abc", "GPUCNN_MPI_TIMEOUT_S 'abc' is not a number of seconds of at least 1.")] // "Infinity" had thrown mid-collective
    public async Task A_usage_error_under_mpirun_is_said_and_ends_the_job(string batch, string? timeout, string said)
    {
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 40);
        using var run = CliProcess.Start(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"],
            ["train", "--distributed", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "1", "--batch-size", batch,
                "--device", "cpu", "--out", temp.File("m.safetensors")],
            timeout is null ? [] : new Dictionary<string, string> { ["GPUCNN_MPI_TIMEOUT_S"] = timeout });
        var output = run.StandardOutput.ReadToEndAsync();
        var errors = run.StandardError.ReadToEndAsync();
        Assert.True(run.WaitForExit(60_000), "the job did not stop");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains(said, await errors + await output, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("m.safetensors")));
    }

    [Fact]
    public async Task A_rank_started_with_another_batch_size_ends_the_job_saying_so()
    {
        // mpirun's "a : b" starts the ranks with different command lines: rank 1's --batch-size 9 is not divided by 2.
        // Its check once sat before the try that aborts the job: its MPI_Finalize then waited for rank 0, which waited in
        // its first collective until the timeout (10 minutes), and the error was never printed.
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 40);
        string[] Rank(string batch) => ["train", "--distributed", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"),
            "--epochs", "1", "--batch-size", batch, "--device", "cpu", "--out", temp.File("m.safetensors")];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var run = CliProcess.Start(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "1"],
            [.. Rank("8"), ":", "-np", "1", .. CliProcess.Command, .. Rank("9")], new Dictionary<string, string> { ["GPUCNN_MPI_TIMEOUT_S"] = "60" });
        var output = run.StandardOutput.ReadToEndAsync();
        var errors = run.StandardError.ReadToEndAsync();
        Assert.True(run.WaitForExit(90_000), "the job did not stop");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("rank 1 of 2: --batch-size 9 is the global batch: the 2 ranks must divide it.", await errors + await output, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(45), $"took {clock.Elapsed}: the job waited for a timeout");
        Assert.False(File.Exists(temp.File("m.safetensors")));
    }

    /// <summary>
    /// Batch norm under data parallelism, without MPI (ranks as threads): each rank normalises with its own batch's
    /// statistics, rank 0's running statistics are broadcast before every step and before evaluation, so at the end
    /// every rank holds the same parameters and buffers, and the evaluation counts every test sample once.
    /// </summary>
    [Fact]
    public void Ranks_agree_on_every_parameter_and_buffer_with_batch_norm()
    {
        var data = TrainingTests.QuadrantData(64, seed: 2);
        var test = TrainingTests.QuadrantData(30, seed: 3);
        var ranks = ThreadCommunicator.Create(2);
        var results = new (Dictionary<string, float[]> State, GpuCnn.Models.Evaluation? Test)[2];
        Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, rank =>
        {
            using var backend = new GpuCnn.Cpu.Fast.CpuBackend(1, GpuCnn.Cpu.Fast.Simd.Best);
            using var model = GpuCnn.Models.Sequential.Create("conv(4,3,pad=1,bias=false),batchnorm,relu,flatten,dense(4)", [1, 8, 8], backend, seed: 4);
            using var sgd = new GpuCnn.Models.Sgd(backend, model.NamedParameters(), new GpuCnn.SgdOptions(0.1f, 0.9f));
            var history = new GpuCnn.Models.Trainer(model, sgd, new GpuCnn.Models.TrainingOptions(2, 16, Seed: 1), ranks[rank]).Fit(data, test);
            results[rank] = (model.StateDict().ToDictionary(p => p.Key, p => p.Value.Data), history[^1].Test);
        });

        Assert.Contains(results[0].State, p => p.Key.EndsWith("running_mean", StringComparison.Ordinal) && p.Value.Any(v => v != 0f));
        foreach (var (key, values) in results[0].State)
        {
            TensorAssert.Identical<float>(values, results[1].State[key], key);
        }

        Assert.Equal(30, results[0].Test!.Confusion.Cast<int>().Sum());
        Assert.Equal(results[0].Test!.Accuracy, results[1].Test!.Accuracy);
    }

    /// <summary>
    /// 35 samples in global batches of 16 leave a last batch of 3: split 2 + 1, the rank with one sample had stopped the
    /// run in batch norm after a dense layer (one value per channel) at the end of epoch 1, where one process trains the
    /// batch of 3. A partial batch now goes to as many ranks as can take two samples each.
    /// </summary>
    [Theory]
    [InlineData(35)] // a last batch of 3: 2 + 1 before
    [InlineData(34)] // a last batch of 2, as many as the ranks: 1 + 1 before
    public void A_last_partial_batch_gives_no_rank_a_single_sample(int samples)
    {
        var data = TrainingTests.QuadrantData(samples, seed: 5);
        var ranks = ThreadCommunicator.Create(2);
        var states = new Dictionary<string, float[]>[2];
        Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, rank =>
        {
            using var backend = new GpuCnn.Cpu.Fast.CpuBackend(1, GpuCnn.Cpu.Fast.Simd.Best);
            using var model = GpuCnn.Models.Sequential.Create("conv(4,3,pad=1),relu,flatten,dense(8),batchnorm,relu,dense(4)", [1, 8, 8], backend, seed: 4);
            using var sgd = new GpuCnn.Models.Sgd(backend, model.NamedParameters(), new GpuCnn.SgdOptions(0.1f, 0.9f));
            new GpuCnn.Models.Trainer(model, sgd, new GpuCnn.Models.TrainingOptions(2, 16, Seed: 1), ranks[rank]).Fit(data);
            states[rank] = model.StateDict().ToDictionary(p => p.Key, p => p.Value.Data);
        });

        foreach (var (key, values) in states[0])
        {
            Assert.True(values.All(float.IsFinite), key);
            TensorAssert.Identical<float>(values, states[1][key], key);
        }

        Assert.Equal(6f, states[0]["4.num_batches_tracked"][0]); // three batches an epoch, the last one on rank 0 alone
    }

    /// <summary>
    /// Fewer samples than one global batch: 3 samples, batch 4, 4 ranks — rank 0 trains all three (a share of one would
    /// stop batch norm after a dense layer), the others none. The batch-norm check had counted a whole batch's share
    /// (4 / 4 = 1) that no rank trains, and refused the run.
    /// </summary>
    [Fact]
    public void Fewer_samples_than_a_batch_train_on_one_rank_past_the_batch_norm_check()
    {
        var data = TrainingTests.QuadrantData(3, seed: 5);
        var ranks = ThreadCommunicator.Create(4);
        var states = new Dictionary<string, float[]>[4];
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, rank =>
        {
            using var backend = new GpuCnn.Cpu.ReferenceBackend();
            using var model = GpuCnn.Models.Sequential.Create("flatten,dense(8),batchnorm,relu,dense(4)", [1, 8, 8], backend, seed: 4);
            using var sgd = new GpuCnn.Models.Sgd(backend, model.NamedParameters(), new GpuCnn.SgdOptions(0.1f));
            new GpuCnn.Models.Trainer(model, sgd, new GpuCnn.Models.TrainingOptions(1, 4, Seed: 1), ranks[rank]).Fit(data);
            states[rank] = model.StateDict().ToDictionary(p => p.Key, p => p.Value.Data);
        });

        Assert.Equal(1f, states[0]["2.num_batches_tracked"][0]);
        for (int rank = 1; rank < 4; rank++)
        {
            foreach (var (key, values) in states[0])
            {
                TensorAssert.Identical<float>(values, states[rank][key], $"rank {rank} {key}");
            }
        }
    }

    /// <summary>
    /// A NaN in rank 1's share of batch 2 makes that batch's loss NaN there only: every rank must stop naming batch 2
    /// (rank 0's own record, none, had been reported as "batch 0").
    /// </summary>
    [Fact]
    public void A_divergence_on_one_rank_is_named_by_its_batch_on_every_rank()
    {
        var data = TrainingTests.QuadrantData(32, seed: 6);
        data.Images.Data[(27 * 64) + 5] = float.NaN; // sample 27: the seeded order puts it in batch 2, in rank 1's half
        var ranks = ThreadCommunicator.Create(2);
        var stopped = new GpuCnn.Models.TrainingDivergedException?[2];
        Parallel.For(0, 2, new ParallelOptions { MaxDegreeOfParallelism = 2 }, rank =>
        {
            using var backend = new GpuCnn.Cpu.Fast.CpuBackend(1, GpuCnn.Cpu.Fast.Simd.Best);
            using var model = GpuCnn.Models.Sequential.Create("conv(2,3,pad=1),relu,flatten,dense(4)", [1, 8, 8], backend, seed: 4);
            using var sgd = new GpuCnn.Models.Sgd(backend, model.NamedParameters(), new GpuCnn.SgdOptions(0.1f));
            stopped[rank] = Assert.Throws<GpuCnn.Models.TrainingDivergedException>(
                () => new GpuCnn.Models.Trainer(model, sgd, new GpuCnn.Models.TrainingOptions(1, 16, Seed: 1), ranks[rank]).Fit(data));
        });

        Assert.All(stopped, e => Assert.Equal((1, 2), (e!.Epoch, e.Batch)));
    }

    /// <summary>
    /// Dropout masks and augmentation crops are drawn by each sample's position in the global batch, so two ranks
    /// (threads) train as one process does with the same global batch, to float rounding; drawn by local position,
    /// sample i of every rank had shared one crop and mask and the weights differed in the first digits.
    /// </summary>
    [Fact]
    public void Ranks_draw_dropout_masks_and_crops_as_one_process_does()
    {
        var data = TrainingTests.QuadrantData(64, seed: 2);
        var options = new GpuCnn.Models.TrainingOptions(2, 16, Seed: 1, Augment: new GpuCnn.Models.Augmentation(2, HorizontalFlip: true));
        Dictionary<string, float[]> Train(int size)
        {
            var ranks = ThreadCommunicator.Create(size);
            var states = new Dictionary<string, float[]>[size];
            Parallel.For(0, size, new ParallelOptions { MaxDegreeOfParallelism = size }, rank =>
            {
                using var backend = new GpuCnn.Cpu.Fast.CpuBackend(1, GpuCnn.Cpu.Fast.Simd.Best);
                using var model = GpuCnn.Models.Sequential.Create("conv(4,3,pad=1),relu,dropout(0.5),flatten,dense(4)", [1, 8, 8], backend, seed: 4);
                using var sgd = new GpuCnn.Models.Sgd(backend, model.NamedParameters(), new GpuCnn.SgdOptions(0.1f, 0.9f));
                new GpuCnn.Models.Trainer(model, sgd, options, ranks[rank]).Fit(data);
                states[rank] = model.StateDict().ToDictionary(p => p.Key, p => p.Value.Data);
            });
            return states[0];
        }

        var one = Train(1);
        var two = Train(2);
        foreach (var (key, values) in one)
        {
            TensorAssert.Close(values, two[key], new Shape(values.Length), 1e-6, 1e-5, key);
        }
    }

    /// <summary>
    /// A stop asked on one rank (its token fired after batch <paramref name="askedEpoch"/>.<paramref name="askedBatch"/>)
    /// stops every rank after the same batch — the request travels with the next batch's gradient sum, or with the
    /// epoch's end — each receiving the same checkpoint state and throwing with its own token; Fit called again from
    /// that state trains on to the uninterrupted run's weights, bit for bit. The token of a rank was once not watched at
    /// all: with several ranks no stop was possible but mpirun's, which ends the job without a checkpoint.
    /// </summary>
    [Theory]
    [InlineData(1, 3, 1, 4)] // during epoch 1: after the next batch (the 4th) every rank stops
    [InlineData(1, 5, 2, 0)] // before the epoch's last batch: its sum carries it, the stop comes at the epoch's end
    [InlineData(1, 6, 2, 0)] // after the last batch: the epoch's end agrees on it
    [InlineData(2, 6, 0, 0)] // after the last epoch's last batch: nothing is left to stop, Fit finishes
    public void A_stop_asked_on_one_rank_stops_every_rank_after_the_same_batch(int askedEpoch, int askedBatch, int stopEpoch, int stopBatch)
    {
        var data = TrainingTests.QuadrantData(48, seed: 2); // 6 batches of 8 an epoch
        var options = new GpuCnn.Models.TrainingOptions(2, 8, Seed: 1);
        (Dictionary<string, float[]> Weights, GpuCnn.Models.TrainingState? Stopped, List<GpuCnn.Models.TrainingState> Checkpoints, bool OwnToken)[] Train(
            int size, bool interrupt)
        {
            var ranks = ThreadCommunicator.Create(size);
            var results = new (Dictionary<string, float[]>, GpuCnn.Models.TrainingState?, List<GpuCnn.Models.TrainingState>, bool)[size];
            Parallel.For(0, size, new ParallelOptions { MaxDegreeOfParallelism = size }, rank =>
            {
                using var backend = new GpuCnn.Cpu.Fast.CpuBackend(1, GpuCnn.Cpu.Fast.Simd.Best);
                using var model = GpuCnn.Models.Sequential.Create("conv(4,3,pad=1),batchnorm,relu,flatten,dense(4)", [1, 8, 8], backend, seed: 4);
                using var sgd = new GpuCnn.Models.Sgd(backend, model.NamedParameters(), new GpuCnn.SgdOptions(0.1f, 0.9f));
                var trainer = new GpuCnn.Models.Trainer(model, sgd, options, ranks[rank]);
                using var cancel = new CancellationTokenSource();
                var asker = new ReliabilityTests.SyncProgress(p =>
                {
                    if (interrupt && rank == size - 1 && p.Epoch == askedEpoch && p.Batch == askedBatch)
                    {
                        cancel.Cancel();
                    }
                });
                var checkpoints = new List<GpuCnn.Models.TrainingState>();
                GpuCnn.Models.TrainingState? stopped = null;
                bool ownToken = false;
                try
                {
                    trainer.Fit(data, progress: asker, onCheckpoint: checkpoints.Add, cancel: cancel.Token);
                }
                catch (GpuCnn.Models.TrainingInterruptedException e)
                {
                    (stopped, ownToken) = (e.State, e.CancellationToken == cancel.Token);
                    trainer.Fit(data, resume: e.State); // continued from the stop, with the same model and optimizer
                }

                results[rank] = (model.StateDict().ToDictionary(p => p.Key, p => p.Value.Data), stopped, checkpoints, ownToken);
            });
            return results;
        }

        var straight = Train(2, interrupt: false);
        var stopped = Train(2, interrupt: true);
        foreach (var rank in stopped)
        {
            if (stopEpoch == 0)
            {
                Assert.Null(rank.Stopped);
            }
            else
            {
                var state = Assert.IsType<GpuCnn.Models.TrainingState>(rank.Stopped);
                Assert.Equal((stopEpoch, stopBatch), (state.Epoch, state.Batch));
                Assert.Equal(state, rank.Checkpoints[^1]); // the checkpoint before the exception
                Assert.Equal(stopped[0].Stopped, state); // partial sums included
                Assert.True(rank.OwnToken);
            }

            foreach (var (key, values) in straight[0].Weights)
            {
                TensorAssert.Identical<float>(values, rank.Weights[key], key); // every rank, continued, as the straight run
            }
        }
    }

    /// <summary>Trains <see cref="Spec"/> on thread ranks, each made by <paramref name="make"/> (rank → seed, learning rate); returns each rank's history or error.</summary>
    private static (IReadOnlyList<GpuCnn.Models.EpochMetrics>? History, Exception? Error)[] ThreadRanks(int size, Func<int, (int Seed, float Rate)> make,
        GpuCnn.Models.TrainingState? resume = null)
    {
        var data = TrainingTests.QuadrantData(48, seed: 2);
        var ranks = ThreadCommunicator.Create(size);
        var results = new (IReadOnlyList<GpuCnn.Models.EpochMetrics>?, Exception?)[size];
        Parallel.For(0, size, new ParallelOptions { MaxDegreeOfParallelism = size }, rank =>
        {
            var (seed, rate) = make(rank);
            using var backend = new GpuCnn.Cpu.Fast.CpuBackend(1, GpuCnn.Cpu.Fast.Simd.Best);
            using var model = GpuCnn.Models.Sequential.Create(Spec, [1, 8, 8], backend, seed: seed);
            using var sgd = new GpuCnn.Models.Sgd(backend, model.NamedParameters(), new GpuCnn.SgdOptions(rate, 0.9f));
            try
            {
                results[rank] = (new GpuCnn.Models.Trainer(model, sgd, new GpuCnn.Models.TrainingOptions(1, 12, Seed: 1), ranks[rank]).Fit(data, resume: resume), null);
            }
            catch (InvalidOperationException e)
            {
                results[rank] = (null, e);
            }
        });
        return results;
    }

    [Fact]
    public void Ranks_started_to_train_different_things_all_stop_at_once_naming_the_first_difference()
    {
        // Another seed on rank 1: its weights differ from rank 0's, which a run would have averaged into a model no one asked for.
        var seeds = ThreadRanks(2, rank => (rank == 0 ? 4 : 7, 0.1f));
        Assert.All(seeds, r => Assert.Null(r.History));
        Assert.StartsWith("distributed: rank 1 differs from rank 0 in the model's initial weights (--seed, --init or --resume) (rank 0's: ",
            seeds[0].Error!.Message, StringComparison.Ordinal);
        Assert.Contains("; rank 1's: ", seeds[1].Error!.Message, StringComparison.Ordinal); // the rank that differs says its own value too

        var rates = ThreadRanks(2, rank => (4, rank == 1 ? 0.5f : 0.1f));
        Assert.All(rates, r => Assert.StartsWith("distributed: rank 1 differs from rank 0 in the optimizer (rank 0's: Sgd SgdOptions { LearningRate = 0.1,",
            r.Error!.Message, StringComparison.Ordinal));
    }

    [Fact]
    public void A_mid_epoch_resume_counts_the_checkpoints_partial_sums_once_over_the_ranks()
    {
        // Stopped after 2 of 4 batches with these sums; one process and two ranks must report the same epoch.
        var resume = new GpuCnn.Models.TrainingState(1, 2, 2, 20f, 9f);
        var one = ThreadRanks(1, _ => (4, 0.1f), resume)[0].History!;
        var two = ThreadRanks(2, _ => (4, 0.1f), resume);
        Assert.InRange(one[0].TrainAccuracy, 0, 1);
        Assert.Equal(one[0].TrainAccuracy, two[0].History![0].TrainAccuracy, 6);
        Assert.Equal(one[0].TrainLoss, two[1].History![0].TrainLoss, 5);
    }

    [Fact]
    public async Task A_rank_that_fails_alone_ends_the_job_at_once_saying_why()
    {
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 40);
        File.WriteAllText(temp.File("blocker"), "a file where a folder would have to be");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Only rank 0 checks the outputs: rank 1 goes on to its first collective. The default timeout is 10 minutes.
        using var run = CliProcess.Start(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"],
            ["train", "--distributed", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "1", "--batch-size", "8",
                "--device", "cpu", "--out", temp.File("blocker/sub/m.safetensors")]);
        var output = run.StandardOutput.ReadToEndAsync();
        var errors = run.StandardError.ReadToEndAsync();
        Assert.True(run.WaitForExit(90_000), "the job did not stop");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains($"error: rank 0 of 2: --out '{temp.File("blocker/sub/m.safetensors")}': its folder", await errors + await output, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task Ranks_started_differently_stop_with_one_message_from_rank_0()
    {
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 40);
        string[] Train(string seed) => ["train", "--distributed", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"),
            "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--seed", seed, "--out", temp.File("m.safetensors")];
        // Open MPI's MPMD form, `mpirun -np 1 A : -np 1 B`: one rank with --seed 1, one with --seed 2.
        using var run = CliProcess.Start(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "1"],
            [.. Train("1"), ":", "-np", "1", .. CliProcess.Command, .. Train("2")]);
        var output = run.StandardOutput.ReadToEndAsync();
        string errors = await run.StandardError.ReadToEndAsync() + await output;
        Assert.True(run.WaitForExit(90_000), "the job did not stop");
        Assert.Equal(1, run.ExitCode);
        string said = Assert.Single(errors.Split('\n'), l => l.Contains("differs from rank 0", StringComparison.Ordinal)); // each rank had printed it
        Assert.StartsWith("error: distributed: rank 1 differs from rank 0 in the model's initial weights", said, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("m.safetensors")));
    }

    [Fact]
    public void Distributed_without_mpirun_says_what_to_do()
    {
        Assert.SkipWhen(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null, "this process runs under mpirun");
        var run = CliRunner.Run("train", "--distributed", "--epochs", "1", "--out", Path.Combine(Path.GetTempPath(), "unused.safetensors"));
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("error: --distributed needs mpirun: start the ranks with `mpirun -np N gpucnn train --distributed …` (Open MPI).", run.ErrorLine);
    }

    [Fact]
    public void Without_open_mpi_the_error_says_what_to_install()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "libmpi.so.40 is a Linux library name");
        // As under mpirun, but with the library pointed somewhere empty (GPUCNN_MPI_LIBRARY): what a machine without Open MPI sees.
        using var run = CliProcess.Start(["env"], ["train", "--distributed", "--epochs", "1", "--out", Path.Combine(Path.GetTempPath(), "unused.safetensors")],
            new Dictionary<string, string> { ["OMPI_COMM_WORLD_SIZE"] = "1", ["GPUCNN_MPI_LIBRARY"] = "/nonexistent/libmpi.so.40" });
        string errors = run.StandardError.ReadToEnd();
        run.WaitForExit();
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("error: --distributed needs Open MPI's libmpi.so.40, which was not found at /nonexistent/libmpi.so.40 (Debian/Ubuntu: apt-get install openmpi-bin).",
            Assert.Single(errors.Split('\n'), l => l.StartsWith("error:", StringComparison.Ordinal)).TrimEnd());
    }

    /// <summary>
    /// A stop asked of rank 1 alone (SIGUSR1 to its process; Ctrl+C and `kill -USR1` to mpirun reach every rank) stops
    /// both ranks after the same batch: rank 0, which was not asked, writes the interrupt checkpoint and says so, every
    /// rank ends with 130, and the job resumed from the checkpoint ends with the uninterrupted run's weights. Before, a
    /// rank's signal was not watched: SIGUSR1 killed rank 1 and mpirun ended the job without a checkpoint.
    /// </summary>
    [Fact]
    public async Task A_stop_asked_of_one_rank_stops_the_job_with_rank_0s_checkpoint_and_resumes_bitwise()
    {
        SkipWithoutMpirun();
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 1000);
        // 20 epochs of about 0.1 s: the signal, sent once epoch 1 is printed, lands long before the end (kill takes milliseconds).
        string[] common = ["train", "--distributed", "--arch", "conv(16,3,pad=1),relu,conv(16,3,pad=1),relu,maxpool(2),flatten,dense(4)", "--images",
            temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "20", "--batch-size", "20", "--device", "cpu"];
        using (var run = CliProcess.Start(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2"], [.. common, "--out", temp.File("m.safetensors")]))
        {
            var errors = run.StandardError.ReadToEndAsync();
            string? line;
            while ((line = run.StandardOutput.ReadLine()) is not null && !line.Contains("epoch 1:", StringComparison.Ordinal))
            {
            }

            Assert.NotNull(line);
            System.Diagnostics.Process.Start("kill", ["-USR1", RankProcess(run.Id, 1).ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
            string output = run.StandardOutput.ReadToEnd();
            Assert.True(run.WaitForExit(60_000), "the job went on after the stop");
            string said = await errors;
            Assert.True(run.ExitCode == 130, $"exit code {run.ExitCode}:\n{output}\n{said}");
            Assert.DoesNotContain("epoch 20:", output, StringComparison.Ordinal);
            Assert.Contains($"checkpoint written to {temp.File("m.checkpoint.safetensors")}", said + output, StringComparison.Ordinal);
            Assert.False(File.Exists(temp.File("m.safetensors")));
        }

        Mpirun(2, [.. common, "--resume", temp.File("m.checkpoint.safetensors"), "--out", temp.File("resumed.safetensors")]);
        Mpirun(2, [.. common, "--out", temp.File("straight.safetensors")]);
        ReliabilityTests.AssertSameWeights(temp.File("straight.safetensors"), temp.File("resumed.safetensors"));
    }

    /// <summary>The process id of rank <paramref name="rank"/> among the children of mpirun (<paramref name="mpirun"/>), found through /proc.</summary>
    private static int RankProcess(int mpirun, int rank)
    {
        foreach (string folder in Directory.GetDirectories("/proc"))
        {
            try
            {
                string status = File.ReadAllText(Path.Combine(folder, "status"));
                bool child = status.Split('\n').Any(l => l.StartsWith("PPid:", StringComparison.Ordinal) && int.Parse(l[5..].Trim(),
                    System.Globalization.CultureInfo.InvariantCulture) == mpirun);
                if (child && File.ReadAllText(Path.Combine(folder, "environ")).Split('\0').Contains($"OMPI_COMM_WORLD_RANK={rank}"))
                {
                    return int.Parse(Path.GetFileName(folder), System.Globalization.CultureInfo.InvariantCulture);
                }
            }
            catch (IOException)
            {
                // not a process, or one that ended while read
            }
        }

        throw new InvalidOperationException($"no child of mpirun ({mpirun}) is rank {rank}");
    }

    /// <summary>Runs the CLI as <paramref name="ranks"/> ranks and returns rank 0's output; fails with every rank's errors.</summary>
    private static string Mpirun(int ranks, string[] args)
    {
        using var run = CliProcess.Start(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture)], args);
        var errors = run.StandardError.ReadToEndAsync();
        string output = run.StandardOutput.ReadToEnd();
        Assert.True(run.WaitForExit(120_000), "mpirun did not finish in 2 minutes");
        Assert.True(run.ExitCode == 0, $"mpirun exit code {run.ExitCode}:\n{output}\n{errors.Result}");
        return output;
    }

    private static void SkipWithoutMpirun() =>
        Assert.SkipUnless((Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Any(d => File.Exists(Path.Combine(d, "mpirun"))),
            "mpirun (Open MPI) is not installed; .ci/run installs openmpi-bin");
}
