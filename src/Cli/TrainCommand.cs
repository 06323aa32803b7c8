using System.CommandLine;
using GpuCnn.Distributed;
using System.Globalization;
using GpuCnn.IO;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>
/// <c>gpucnn train</c>: with no options, trains LeNet-5 on the bundled MNIST sample and writes lenet5.safetensors,
/// lenet5.png (loss and accuracy per epoch) and lenet5.metrics.json; the last line is "test accuracy: NN.NN%".
/// </summary>
internal static class TrainCommand
{
    public static Command Create(CliIo io)
    {
        var arch = new Option<string>("--arch")
        {
            Description = "Architecture spec, or a built-in architecture: lenet5 or resnet8.",
            DefaultValueFactory = _ => "lenet5",
        };
        var data = new Option<string?>("--data") { Description = "MNIST folder with the four standard IDX files (default: the bundled sample)." };
        var images = new Option<string?>("--images") { Description = "Training images (N, C, H, W) as .npy (with --labels)." };
        var labels = new Option<string?>("--labels") { Description = "Training labels (N) as .npy." };
        var testImages = new Option<string?>("--test-images") { Description = "Test images as .npy (with --test-labels)." };
        var testLabels = new Option<string?>("--test-labels") { Description = "Test labels as .npy." };
        var init = new Option<string?>("--init") { Description = "Start from these weights (.safetensors with PyTorch state_dict names, or .onnx)." };
        var epochs = new Option<int>("--epochs") { Description = "Epochs.", DefaultValueFactory = _ => 8 };
        var schedule = new Option<string>("--schedule") { Description = "Learning-rate schedule over epochs: cosine, step or constant.", DefaultValueFactory = _ => "cosine" };
        var stepSize = new Option<int>("--step-size") { Description = "With --schedule step: epochs between multiplications by --gamma.", DefaultValueFactory = _ => 1 };
        var gamma = CommonOptions.Number("--gamma", "With --schedule step: the factor applied every --step-size epochs.", 0.1f);
        var warmup = new Option<int>("--warmup") { Description = "Linear warm-up over the first N optimizer steps (batches), then the schedule.", DefaultValueFactory = _ => 0 };
        var augment = new Option<string?>("--augment") { Description = "Augment training batches on the device: crop=PAD (random crop after zero padding, before --normalize), flip (horizontal), or both: crop=2,flip." };
        var normalize = new Option<string?>("--normalize") { Description = "Normalise inputs per channel, (x - MEAN) / STD, in training, testing and in the saved model: MEAN,STD or C means then C stds." };
        var labelSmoothing = CommonOptions.Number("--label-smoothing", "PyTorch's cross_entropy label_smoothing for the training loss, in [0, 1].", 0f);
        var clipGradNorm = CommonOptions.OptionalNumber("--clip-grad-norm", "Scale each step's gradients to a total L2 norm of at most this (PyTorch's clip_grad_norm_).");
        var batchSize = CommonOptions.BatchSize(64);
        var lr = CommonOptions.OptionalNumber("--lr", "Learning rate (default 0.05 for sgd, 0.001 for adam and adamw).");
        var optimizer = new Option<string>("--optimizer") { Description = "sgd, adam or adamw (decoupled weight decay).", DefaultValueFactory = _ => "sgd" };
        var momentum = CommonOptions.Number("--momentum", "SGD momentum.", 0.9f);
        var weightDecay = CommonOptions.OptionalNumber("--weight-decay", "PyTorch's weight_decay: L2 for sgd and adam (default 0), decoupled for adamw (default 0.01).");
        var seed = new Option<int>("--seed") { Description = "Seed for initialisation and shuffling.", DefaultValueFactory = _ => 1 };
        var device = CommonOptions.Device();
        var output = new Option<string?>("--out") { Description = "Model file to write (default: the built-in architecture's name, or lenet5, .safetensors)." };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "Write a checkpoint (weights, optimizer state, position) here after every epoch." };
        var resume = new Option<string?>("--resume") { Description = "Continue from this checkpoint (--epochs counts the total)." };
        var layout = CommonOptions.Layout();
        var distributed = new Option<bool>("--distributed")
        {
            Description = "Data-parallel over the ranks of `mpirun -np N` (Open MPI): --batch-size is the global batch; rank 0 prints and writes.",
        };

        var command = new Command("train", "Train a network (default: LeNet-5 on the bundled MNIST sample).")
        {
            arch, data, images, labels, testImages, testLabels, init, epochs, batchSize, lr, optimizer, momentum, weightDecay,
            schedule, stepSize, gamma, warmup, labelSmoothing, clipGradNorm, augment, normalize, layout, seed, device, output, checkpoint, resume,
            distributed,
        };
        command.SetAction(parse =>
        {
            string optimizerName = parse.GetValue(optimizer)!.ToLowerInvariant() is "sgd" or "adam" or "adamw"
                ? parse.GetValue(optimizer)!.ToLowerInvariant()
                : throw new UsageException($"--optimizer must be sgd, adam or adamw, got '{parse.GetValue(optimizer)}'.");
            float smoothing = parse.GetValue(labelSmoothing);
            var settings = new TrainSettings(
                Arch: parse.GetValue(arch)!,
                Epochs: CommonOptions.Positive("--epochs", parse.GetValue(epochs)),
                BatchSize: CommonOptions.Positive("--batch-size", parse.GetValue(batchSize)),
                Optimizer: optimizerName,
                LearningRate: CommonOptions.NonNegative("--lr", parse.GetValue(lr) ?? (optimizerName == "sgd" ? 0.05f : 1e-3f)),
                Momentum: CommonOptions.NonNegative("--momentum", parse.GetValue(momentum)),
                WeightDecay: CommonOptions.NonNegative("--weight-decay", parse.GetValue(weightDecay) ?? (optimizerName == "adamw" ? 0.01f : 0f)),
                Schedule: parse.GetValue(schedule)!.ToLowerInvariant() switch
                {
                    "cosine" => LearningRateSchedule.Cosine,
                    "step" => LearningRateSchedule.Step,
                    "constant" => LearningRateSchedule.Constant,
                    _ => throw new UsageException($"--schedule must be cosine, step or constant, got '{parse.GetValue(schedule)}'."),
                },
                StepSize: CommonOptions.Positive("--step-size", parse.GetValue(stepSize)),
                Gamma: CommonOptions.NonNegative("--gamma", parse.GetValue(gamma)),
                Warmup: parse.GetValue(warmup) >= 0 ? parse.GetValue(warmup) : throw new UsageException($"--warmup must be ≥ 0, got {parse.GetValue(warmup)}."),
                LabelSmoothing: smoothing is >= 0f and <= 1f ? smoothing : throw new UsageException($"--label-smoothing must lie in [0, 1], got {smoothing.ToString(CultureInfo.InvariantCulture)}."),
                ClipGradNorm: parse.GetValue(clipGradNorm) is { } clip
                    ? float.IsFinite(clip) && clip > 0f ? clip : throw new UsageException($"--clip-grad-norm must be finite and positive, got {clip.ToString(CultureInfo.InvariantCulture)}.")
                    : null,
                Augment: parse.GetValue(augment) is { } augmentText ? Usage(() => Augmentation.Parse(augmentText)) : null,
                Normalize: parse.GetValue(normalize),
                Seed: parse.GetValue(seed),
                Out: parse.GetValue(output) ?? DefaultOutput(parse.GetValue(arch)!),
                Init: parse.GetValue(init),
                Checkpoint: parse.GetValue(checkpoint),
                Resume: parse.GetValue(resume));
            _ = ArchitectureSpec.Parse(settings.Arch); // a bad spec is a usage error before any data is read
            var imageLayout = CommonOptions.ParseLayout(parse.GetValue(layout)!);
            // Options given that this run's other choices leave unused: said, so that nobody believes they took effect.
            var unused = new List<string>();
            if (optimizerName != "sgd" && parse.GetResult(momentum) is { Implicit: false })
            {
                unused.Add($"--momentum applies to --optimizer sgd only; {optimizerName} ignores it (its first moment decays by beta1 = 0.9).");
            }

            foreach (var (option, name) in new (Option, string)[] { (stepSize, "--step-size"), (gamma, "--gamma") })
            {
                if (settings.Schedule != LearningRateSchedule.Step && parse.GetResult(option) is { Implicit: false })
                {
                    unused.Add($"{name} applies to --schedule step only; the {settings.Schedule.ToString().ToLowerInvariant()} schedule ignores it.");
                }
            }

            if (settings.Init is not null && settings.Resume is not null)
            {
                throw new UsageException("--init and --resume exclude each other: a checkpoint holds the weights it continues from.");
            }

            using ICommunicator ranks = parse.GetValue(distributed) ? MpiCommunicator.Start() : SingleProcess.Instance;
            try
            {
                if (settings.BatchSize % ranks.Size != 0)
                {
                    // Inside the try: a rank launched with another --batch-size (mpirun's "a : b") says so and ends the job,
                    // where its MPI_Finalize would have waited for ranks that wait for it.
                    throw new UsageException($"--batch-size {settings.BatchSize} is the global batch: the {ranks.Size} ranks must divide it.");
                }

                var rankIo = ranks.Rank == 0 ? io : io with { Out = TextWriter.Null, Error = TextWriter.Null }; // rank 0 speaks for the job; failures still reach stderr
                var files = new DataFiles(parse.GetValue(data), parse.GetValue(images), parse.GetValue(labels), parse.GetValue(testImages), parse.GetValue(testLabels));
                RequireDataOptions(files);
                if (ranks.Rank == 0)
                {
                    unused.ForEach(warning => io.Error.WriteLine($"warning: {warning}"));
                    CheckOutputs(settings, files, io);
                }

                var (train, test) = LoadData(files, rankIo.Error, offerNormalize: settings.Normalize is null, imageLayout);
                string deviceName = parse.GetValue(device)!;
                using var backend = ranks.Size > 1 ? RankDevice(deviceName, rankIo) : CommonOptions.OpenDevice(deviceName, rankIo.Error);
                return ranks.Size > 1
                    ? Train(rankIo, settings, train, test, backend, ranks)
                    : TrainWithFallback(io, settings, train, test, backend, auto: deviceName.Equals("auto", StringComparison.OrdinalIgnoreCase));
            }
            catch (Exception e) when (ranks is MpiCommunicator { Size: > 1 } job && !FoundByEveryRank(e))
            {
                // Alone, this rank's failure would leave the others waiting in their next collective until the timeout, and
                // its own MPI_Finalize would wait for them: say what went wrong now, then end the whole job. (Ranks that
                // differ, and a divergence, are found by every rank alike, from what the collectives carried: those end
                // as a single process's errors do, rank 0 printing them — the catch below.)
                io.Error.WriteLine($"error: rank {job.Rank} of {job.Size}: {GpuCnnCli.Describe(e)}");
                job.Abort(GpuCnnCli.ExitCodeOf(e));
                throw; // not reached: Abort ends the process
            }
            catch (Exception e) when (ranks is MpiCommunicator { Size: > 1, Rank: > 0 })
            {
                // Found by every rank alike: rank 0 says it for the job, as it says everything else.
                return GpuCnnCli.ExitCodeOf(e);
            }
        });
        return command;
    }

    /// <summary>
    /// What to run to go on from <paramref name="checkpoint"/>: --resume cannot be repeated, and excludes --init (the
    /// checkpoint holds the weights, and the normalisation --init brought).
    /// </summary>
    internal static string ResumeHint(TrainSettings settings, string checkpoint) =>
        settings.Resume == checkpoint ? "resume with the same command (its --resume is the checkpoint just written)"
        : settings.Resume is not null ? $"resume with the same command, --resume {checkpoint} in place of --resume {settings.Resume}"
        : settings.Init is not null ? $"resume with the same command without --init, plus: --resume {checkpoint}"
        : $"resume with the same command plus: --resume {checkpoint}";

    /// <summary>Failures every rank meets alike, from what the collectives carried (so no rank is left waiting).</summary>
    private static bool FoundByEveryRank(Exception e) =>
        e is RanksDifferException or TrainingDivergedException || e.InnerException is TrainingDivergedException;

    /// <summary>
    /// A rank's device: its own GPU (the rank's index on its machine, modulo the GPUs) for cuda, and auto where CUDA
    /// is there; otherwise its share of the machine's cores for cpu and auto.
    /// </summary>
    private static Backend RankDevice(string name, CliIo io)
    {
        string device = name.Trim().ToLowerInvariant();
        bool cuda = device == "cuda" || (device == "auto" && Backends.List().Any(d => d.Name == "cuda" && d.Available));
        if (cuda)
        {
            return Ilgpu.IlgpuDevices.OpenCuda(MpiCommunicator.LocalRank);
        }

        return device is "cpu" or "auto"
            ? new GpuCnn.Cpu.Fast.CpuBackend(Math.Max(1, Environment.ProcessorCount / MpiCommunicator.LocalSize), GpuCnn.Cpu.Fast.Simd.Best)
            : CommonOptions.OpenDevice(name, io.Error);
    }

    /// <summary>
    /// Every file the run will write, checked before any data is read (a bad path must not cost a whole run), and
    /// hyperparameters that cannot be meant, warned about.
    /// </summary>
    private static void CheckOutputs(TrainSettings settings, DataFiles inputs, CliIo io)
    {
        string stem = Path.ChangeExtension(settings.Out, null);
        CommonOptions.WritableFile("--out", settings.Out);
        CommonOptions.WritableFile("--out (its plot)", stem + ".png");
        CommonOptions.WritableFile("--out (its metrics)", stem + ".metrics.json");
        if (settings.Checkpoint is not null)
        {
            CommonOptions.WritableFile("--checkpoint", settings.Checkpoint);
        }

        // No output may replace another or an input; the model may replace its --init weights (fine-tuning in place),
        // and the checkpoint the one it resumes from.
        (string, string?)[] data = [("--images", inputs.Images), ("--labels", inputs.Labels), ("--test-images", inputs.TestImages), ("--test-labels", inputs.TestLabels),
            .. inputs.Images is null ? Idx.MnistFiles(inputs.Folder ?? CommonOptions.BundledSample()).Select(file => ((string, string?))(inputs.Folder is null ? "the bundled sample" : "--data", file)) : []];
        (string, string?) plot = ("--out (its plot)", stem + ".png"), metrics = ("--out (its metrics)", stem + ".metrics.json");
        (string, string?) checkpoint = ("--checkpoint", settings.Checkpoint), init = ("--init", settings.Init), resume = ("--resume", settings.Resume);
        CommonOptions.Apart("--out", settings.Out, [plot, metrics, checkpoint, resume, .. data]);
        CommonOptions.Apart("--out (its plot)", stem + ".png", [metrics, checkpoint, init, resume, .. data]);
        CommonOptions.Apart("--out (its metrics)", stem + ".metrics.json", [checkpoint, init, resume, .. data]);
        if (settings.Checkpoint is not null)
        {
            CommonOptions.Apart("--checkpoint", settings.Checkpoint, [init, .. data]);
        }

        if (settings.Optimizer == "sgd" && settings.Momentum >= 1f)
        {
            // PyTorch accepts it too, so a warning: the velocity then never decays and training almost surely diverges.
            io.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"warning: --momentum {settings.Momentum} is ≥ 1: SGD's velocity never decays and training will almost surely diverge (0.9 is usual)."));
        }
    }

    /// <summary>Runs a parser whose <see cref="ArgumentException"/> is a usage error (exit 2).</summary>
    private static T Usage<T>(Func<T> parse)
    {
        try
        {
            return parse();
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>"resnet8.safetensors" for --arch resnet8; "lenet5.safetensors" for LeNet-5 and for a spec written out.</summary>
    private static string DefaultOutput(string arch) =>
        (ArchitectureSpec.Named.ContainsKey(arch.Trim()) ? arch.Trim().ToLowerInvariant() : "lenet5") + ".safetensors";

    /// <summary>
    /// Trains on <paramref name="backend"/>; when the device was chosen by <c>auto</c> and it is an accelerator that
    /// faults (out of memory, a driver error), says so on stderr and trains again from the start on the CPU.
    /// </summary>
    internal static int TrainWithFallback(CliIo io, TrainSettings settings, Dataset train, Dataset? test, Backend backend, bool auto)
    {
        try
        {
            return Train(io, settings, train, test, backend);
        }
        catch (DeviceFaultException e) when (auto && backend is Ilgpu.IlgpuBackend)
        {
            io.Error.WriteLine($"warning: {e.Message}; falling back to the CPU");
            using var cpu = Backends.OpenCpuFallback();
            return Train(io, settings, train, test, cpu);
        }
    }

    /// <summary>
    /// Refuses, before training, an ONNX --out that would not read back: the untrained model's graph is the trained one's
    /// (e.g. a residual body of dropout alone exports as Add(x, x), which the reader does not take).
    /// </summary>
    private static void RequireOnnxReadsBack(Sequential model, string path)
    {
        try
        {
            var contents = Onnx.OnnxModel.Parse(Onnx.OnnxModel.ToBytes(model), path);
            ArchitectureSpec.Parse(contents.Spec);
        }
        catch (Exception e) when (e is FileFormatException or SpecException)
        {
            throw new UsageException($"--out '{path}': this model would be written as ONNX that does not read back ({e.Message}); write it as .safetensors.");
        }
    }

    private static int Train(CliIo io, TrainSettings settings, Dataset train, Dataset? test, Backend backend, ICommunicator? ranks = null)
    {
        ranks ??= SingleProcess.Instance;
        bool writes = ranks.Rank == 0;
        var sample = new Shape(train.Images.Shape.ToArray()[1..]);
        using var model = Sequential.Create(settings.Arch, sample, backend, settings.Seed);
        if (ModelFile.IsOnnx(settings.Out))
        {
            RequireOnnxReadsBack(model, settings.Out);
        }

        if (settings.Normalize is not null)
        {
            model.Normalization = Usage(() => ChannelNormalization.Parse(settings.Normalize, sample[0]));
        }

        if (settings.Init is not null)
        {
            string initPath = CommonOptions.ExistingFile("--init", settings.Init);
            IReadOnlyDictionary<string, Tensor> weights;
            ChannelNormalization? trainedWith = null;
            string? recorded = null;
            if (ModelFile.IsOnnx(initPath))
            {
                var onnx = Onnx.OnnxModel.Read(initPath);
                (weights, trainedWith) = (Onnx.OnnxModel.StateDict(onnx, model), onnx.Normalization);
            }
            else
            {
                var file = Safetensors.Read(initPath);
                if (CheckpointFile.IsCheckpoint(file.Metadata))
                {
                    throw CheckpointFile.NotAModel(initPath, "--init");
                }

                (weights, recorded) = (file.Tensors, file.Metadata.GetValueOrDefault("normalize"));
            }

            ModelFile.RequireFiniteWeights(weights, initPath);
            model.LoadStateDict(weights); // first: weights that do not fit say so before their metadata is read
            if (recorded is not null)
            {
                trainedWith = FileNormalization(recorded, sample[0], "--init", initPath);
            }

            AdoptNormalization(io, model, trainedWith, "the weights of --init", initPath, writes);
        }

        using Optimizer optimizer = settings.Optimizer == "sgd"
            ? new Sgd(backend, model.NamedParameters(), new SgdOptions(settings.LearningRate, settings.Momentum, 0f, settings.WeightDecay))
            : new Adam(backend, model.NamedParameters(), new AdamOptions(settings.LearningRate, WeightDecay: settings.WeightDecay,
                DecoupledWeightDecay: settings.Optimizer == "adamw"));
        var trainer = new Trainer(model, optimizer, new TrainingOptions(settings.Epochs, settings.BatchSize, settings.Seed, Schedule: settings.Schedule,
            StepSize: settings.StepSize, Gamma: settings.Gamma, WarmupSteps: settings.Warmup, LabelSmoothing: settings.LabelSmoothing,
            Augment: settings.Augment, ClipGradNorm: settings.ClipGradNorm), ranks);

        TrainingState? start = null;
        var resumeMetadata = settings.Resume is null ? null : Safetensors.Read(CommonOptions.ExistingFile("--resume", settings.Resume)).Metadata;
        if (settings.Resume is not null && model.Normalization is null && resumeMetadata?.GetValueOrDefault("normalize") is { } resumed and not "-")
        {
            // The run it continues normalised its inputs (by --normalize, or as its --init file's weights had been, and
            // --init cannot be given again with --resume): so does this one.
            AdoptNormalization(io, model, FileNormalization(resumed, sample[0], "--resume", settings.Resume), "the checkpoint of --resume", settings.Resume, writes);
        }

        var checkpointSettings = CheckpointSettings(settings, train, model.Normalization);
        var earlier = new List<EpochMetrics>(); // the epochs before --resume's checkpoint, as it recorded them
        var trained = new List<EpochMetrics>(); // this run's, as they finish
        if (settings.Resume is not null && resumeMetadata is not null)
        {
            start = CheckpointFile.Restore(CommonOptions.ExistingFile("--resume", settings.Resume), model, optimizer, checkpointSettings,
                SettingsAddedLater);
            if (Trainer.LastEpochNeeded(start) > settings.Epochs)
            {
                throw new UsageException($"--resume '{settings.Resume}' is {Trainer.Describe(start)}, past --epochs {settings.Epochs}: nothing is left to train. " +
                    $"Give --epochs {Trainer.LastEpochNeeded(start)} to {(start.Batch > 0 ? "finish its epoch and " : "")}write its model, more to train on.");
            }

            io.Error.WriteLine($"resuming from {settings.Resume}: epoch {start.Epoch}, after batch {start.Batch}");
            if (start.WrittenOn is { } writtenOn && writtenOn != CheckpointFile.DeviceOf(backend))
            {
                io.Error.WriteLine($"note: the checkpoint was written on {writtenOn}, this run uses {CheckpointFile.DeviceOf(backend)}: it " +
                    "continues, but its sums run in another order, so the weights will not be bitwise those of an uninterrupted run there.");
            }

            if (resumeMetadata.GetValueOrDefault(RanksKey) is { } writtenBy && writtenBy != Invariant(ranks.Size))
            {
                io.Error.WriteLine($"note: the checkpoint was written by {writtenBy} rank(s), this run has {ranks.Size}: it continues, but its " +
                    "gradients are summed in another order (and batch norm takes its statistics over each rank's share of a batch), so the " +
                    "weights will not be bitwise those of an uninterrupted run.");
            }

            // Cosine's rate at an epoch depends on the total (but epoch 1's, always the full rate): a checkpoint past epoch 1
            // trained with another span than this run's.
            bool spanUsed = start.Epoch > 2 || (start.Epoch == 2 && start.Batch > 0);
            if (settings.Schedule == LearningRateSchedule.Cosine && spanUsed && resumeMetadata.GetValueOrDefault(EpochsKey) is { } asked &&
                asked != Invariant(settings.Epochs))
            {
                io.Error.WriteLine($"note: the checkpoint's run asked for --epochs {asked}, this one for {settings.Epochs}: the cosine schedule " +
                    $"now spans {settings.Epochs} epochs, so the rates from epoch {start.Epoch} on follow it, and the weights will not be those " +
                    $"of an uninterrupted {settings.Epochs}-epoch run, whose earlier epochs had the same span.");
            }

            if (resumeMetadata.GetValueOrDefault(HistoryKey) is { } recorded)
            {
                // The epochs before the checkpoint's position (a mid-epoch checkpoint's own epoch runs again).
                earlier.AddRange(MetricsFile.ParseHistory(recorded, $"--resume '{settings.Resume}'").Where(e => e.Epoch < start.Epoch));
            }

            var unrecorded = Enumerable.Range(1, start.Epoch - 1).Except(earlier.Select(e => e.Epoch)).ToList();
            if (unrecorded.Count > 0)
            {
                string epochs = unrecorded.Count == unrecorded[^1] - unrecorded[0] + 1 && unrecorded.Count > 1
                    ? $"epochs {unrecorded[0]}–{unrecorded[^1]}" : $"epoch(s) {string.Join(", ", unrecorded)}";
                io.Error.WriteLine($"note: the checkpoint records no metrics for {epochs} (written before checkpoints carried them, or " +
                    "resumed from one that was): the plot and metrics leave them out.");
            }
        }

        string interruptPath = settings.Checkpoint ?? settings.Resume ?? Path.ChangeExtension(settings.Out, null) + ".checkpoint.safetensors";
        // Whether --checkpoint holds this run's weights: written by it, or the file it resumed from.
        bool checkpointGood = settings.Checkpoint is not null && settings.Resume is not null &&
            Path.GetFullPath(settings.Checkpoint) == Path.GetFullPath(settings.Resume);
        (string Path, TrainingState State)? lastWritten = null;
        void SaveCheckpoint(TrainingState state, bool interrupted)
        {
            if (writes && (settings.Checkpoint is not null || interrupted))
            {
                string path = interrupted ? interruptPath : settings.Checkpoint!;
                // Recorded, not compared on resume: the epochs so far (for a resumed run's plot and metrics) and the ranks.
                var recorded = new Dictionary<string, string>(checkpointSettings)
                {
                    [HistoryKey] = MetricsFile.FormatHistory(earlier.Concat(trained)),
                    [RanksKey] = Invariant(ranks.Size),
                    [EpochsKey] = Invariant(settings.Epochs),
                };
                CommonOptions.WriteOutput(interrupted && settings.Checkpoint is null ? "the interrupt checkpoint" : "--checkpoint", path,
                    () => CheckpointFile.Save(path, model, optimizer, state, recorded),
                    File.Exists(path) ? " The previous checkpoint there is intact." : "");
                checkpointGood |= path == settings.Checkpoint;
                lastWritten = (path, state);
            }
        }

        io.Error.WriteLine($"training {model.Spec} on {train.Count} samples of {sample} ({(test is null ? "no test set" : $"{test.Count} test samples")}), device {backend.Name}");
        IReadOnlyList<EpochMetrics> history;
        bool interruptedWhenDone;
        // Watched until the model, plot and metrics are written: a Ctrl+C among them must not kill the process between two
        // files. Under mpirun every rank is signalled, and the ranks agree on the batch to stop after.
        using var interruptible = io.Watch("finishing the current batch (or the epoch's evaluation) and writing a checkpoint, or the finished run's model");
        using (var progress = new ProgressDisplay(io.Error))
        {
            try
            {
                var watched = new DivergenceWatch(progress, io.Error, model.Classes, settings.LearningRate);
                history = trainer.Fit(train, test, epoch =>
                {
                    trained.Add(epoch);
                    progress.Clear();
                    io.Out.WriteLine(FormatEpoch(epoch));
                }, watched, start, state =>
                {
                    // The state after the last epoch is a finished run's, whenever Ctrl+C came: it goes to --checkpoint only,
                    // and a --resume file that --checkpoint does not name (the interrupt checkpoint's default) keeps its state.
                    SaveCheckpoint(state, io.Cancel.IsCancellationRequested && state.Epoch <= settings.Epochs);
                }, io.Cancel);
                // It came after the last batch: training had finished. Asked of any rank (every rank returns here).
                interruptedWhenDone = ranks.AnyRank(io.Cancel.IsCancellationRequested, new float[1]);
            }
            catch (TrainingInterruptedException e)
            {
                if (lastWritten != (interruptPath, e.State))
                {
                    // Another rank was asked to stop, before this one heard of it (with --checkpoint, Fit's call wrote
                    // this state to that same path already).
                    SaveCheckpoint(e.State, interrupted: true);
                }

                progress.Clear();
                io.Error.WriteLine($"interrupted {Trainer.Describe(e.State)}: checkpoint written to {interruptPath}.");
                io.Error.WriteLine(ResumeHint(settings, interruptPath));
                return 130; // the shell convention for a run ended by SIGINT
            }
            catch (TrainingDivergedException e)
            {
                string kept = checkpointGood ? $" The last good checkpoint {settings.Checkpoint} is intact;" : "";
                throw new InvalidOperationException($"{e.Message}{kept} {settings.Out} was not written.", e);
            }
        }

        if (!writes)
        {
            return 0;
        }

        string saved = settings.Checkpoint is null ? "" : $" The checkpoint {settings.Checkpoint} holds the weights of the last epoch.";
        CommonOptions.WriteOutput("--out", settings.Out, () => ModelFile.Save(model, settings.Out), saved);
        string stem = Path.ChangeExtension(settings.Out, null);
        var everyEpoch = earlier.Concat(history).ToList();
        CommonOptions.WriteOutput("--out (its plot)", stem + ".png", () => TrainingPlot.Write(stem + ".png", everyEpoch));
        // The last epoch already evaluated the final weights; a run resumed past its last epoch has no such epoch.
        Evaluation? final = test is null ? null : history.Count > 0 ? history[^1].Test : Trainer.Evaluate(model, test, settings.BatchSize);
        CommonOptions.WriteOutput("--out (its metrics)", stem + ".metrics.json", () => MetricsFile.Write(stem + ".metrics.json",
            settings with { Normalize = model.Normalization?.ToString() }, backend, everyEpoch, final)); // the normalisation used, wherever it came from
        io.Out.WriteLine($"wrote {settings.Out}, {stem}.png, {stem}.metrics.json");
        if (final is not null)
        {
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"test accuracy: {final.Accuracy * 100:F2}%"));
        }

        interruptedWhenDone |= io.Cancel.IsCancellationRequested; // or during the writes, which went on
        if (interruptedWhenDone)
        {
            // A script's `gpucnn train … && next` must stop as it would have a moment earlier; nothing was lost.
            io.Error.WriteLine($"interrupted after the last epoch's last batch: training had finished, so {settings.Out} and its plot and metrics were written.");
            return 130;
        }

        return 0;
    }

    /// <summary>
    /// Checkpoint metadata the command records but does not compare on resume: the epochs so far (their metrics, so that
    /// a resumed run's plot and metrics file cover the whole run), the ranks that trained and the --epochs asked for
    /// (resuming with another count, or another span of a cosine schedule, continues, with a note).
    /// </summary>
    private const string HistoryKey = "history", RanksKey = "ranks", EpochsKey = "epochs";

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Settings checkpoints did not always record, with the value the runs that wrote them had.</summary>
    private static readonly Dictionary<string, string> SettingsAddedLater = new(StringComparer.Ordinal) { ["clip_grad_norm"] = "-" };

    /// <summary>
    /// The weights of --init were trained on inputs normalised as <paramref name="trainedWith"/>: without --normalize the
    /// run takes that normalisation (and the model it writes keeps it — fine-tuning in place had dropped it, and with it
    /// what eval and predict feed the model); a --normalize that differs is used, with a warning.
    /// </summary>
    private static void AdoptNormalization(CliIo io, Sequential model, ChannelNormalization? trainedWith, string what, string path, bool writes)
    {
        if (trainedWith is null || trainedWith.Equals(model.Normalization))
        {
            return;
        }

        if (model.Normalization is { } given)
        {
            if (writes)
            {
                io.Error.WriteLine($"warning: --normalize {given} differs from {trainedWith}, which {what} '{path}' were trained with; training uses {given}.");
            }

            return;
        }

        model.Normalization = trainedWith;
        if (writes)
        {
            io.Error.WriteLine($"note: {what} '{path}' were trained on inputs normalised by {trainedWith}; this run normalises them so too.");
        }
    }

    /// <summary>A file's recorded normalisation for <paramref name="channels"/> inputs; one that does not fit names the option and file.</summary>
    private static ChannelNormalization FileNormalization(string text, int channels, string option, string path)
    {
        try
        {
            return ChannelNormalization.Parse(text, channels);
        }
        catch (ArgumentException e)
        {
            throw new FileFormatException($"{option} '{path}': its recorded normalisation does not fit these {channels}-channel inputs: {e.Message}", e);
        }
    }

    /// <summary>What a resumed run must share with the run that wrote the checkpoint, for a bitwise continuation.</summary>
    private static Dictionary<string, string> CheckpointSettings(TrainSettings s, Dataset train, ChannelNormalization? normalization)
    {
        var c = CultureInfo.InvariantCulture;
        return new Dictionary<string, string>
        {
            ["optimizer"] = s.Optimizer,
            ["lr"] = s.LearningRate.ToString("R", c),
            ["momentum"] = s.Optimizer == "sgd" ? s.Momentum.ToString("R", c) : "-",
            ["weight_decay"] = s.WeightDecay.ToString("R", c),
            ["batch_size"] = s.BatchSize.ToString(c),
            ["seed"] = s.Seed.ToString(c),
            ["schedule"] = s.Schedule.ToString().ToLowerInvariant(),
            ["step_size"] = s.Schedule == LearningRateSchedule.Step ? s.StepSize.ToString(c) : "-",
            ["gamma"] = s.Schedule == LearningRateSchedule.Step ? s.Gamma.ToString("R", c) : "-",
            ["warmup"] = s.Warmup.ToString(c),
            ["label_smoothing"] = s.LabelSmoothing.ToString("R", c),
            ["clip_grad_norm"] = s.ClipGradNorm?.ToString("R", c) ?? "-",
            ["augment"] = s.Augment?.ToString() ?? "-",
            ["normalize"] = normalization?.ToString() ?? "-", // the model's, canonical ("0.1, 0.2" resumes "0.1,0.2"), taken from --init's file where it came from there
            ["train_samples"] = train.Count.ToString(c),
        };
    }

    private static string FormatEpoch(EpochMetrics e)
    {
        var c = CultureInfo.InvariantCulture;
        string test = e.TestAccuracy is { } acc
            ? string.Create(c, $", test loss {e.TestLoss:F4}, test accuracy {acc * 100:F2}%")
            : "";
        return string.Create(c, $"epoch {e.Epoch}: loss {e.TrainLoss:F4}, accuracy {e.TrainAccuracy * 100:F2}%{test} ({e.Elapsed.TotalSeconds:F1} s)");
    }

    /// <summary>Where the data comes from: an MNIST folder (or the bundled sample), or .npy files.</summary>
    private sealed record DataFiles(string? Folder, string? Images, string? Labels, string? TestImages, string? TestLabels);

    /// <summary>The data options' combinations, refused before anything is made (CheckOutputs creates output folders).</summary>
    private static void RequireDataOptions(DataFiles files)
    {
        var (folder, images, labels, testImages, testLabels) = files;
        if (images is not null || labels is not null)
        {
            if (folder is not null)
            {
                throw new UsageException("give either --data or --images/--labels, not both.");
            }

            if (images is null || labels is null)
            {
                throw new UsageException("--images and --labels go together.");
            }

            if ((testImages is null) != (testLabels is null))
            {
                throw new UsageException("--test-images and --test-labels go together.");
            }
        }
        else if (testImages is not null || testLabels is not null)
        {
            throw new UsageException("--test-images/--test-labels need --images/--labels.");
        }
    }

    private static (Dataset Train, Dataset? Test) LoadData(DataFiles files, TextWriter notes, bool offerNormalize, CommonOptions.ImageLayout layout)
    {
        RequireDataOptions(files);
        var (folder, images, labels, testImages, testLabels) = files;
        if (images is not null && labels is not null)
        {
            var train = NpyDataset("--images", images, "--labels", labels);
            return (train, testImages is null ? null : NpyDataset("--test-images", testImages, "--test-labels", testLabels!));
        }

        var (mnistTrain, mnistTest) = Idx.ReadMnist(folder ?? CommonOptions.BundledSample());
        return (mnistTrain, mnistTest);

        Dataset NpyDataset(string imagesOption, string imagesPath, string labelsOption, string labelsPath)
        {
            var (x, y) = CommonOptions.ReadNpyData(imagesOption, imagesPath, labelsOption, labelsPath);
            CommonOptions.NoteRawPixels(notes, x, imagesOption, offerNormalize);
            return new Dataset(CommonOptions.FitImages(x, takes: null, imagesOption, imagesPath, notes, layout), y) // the model is built for them
            {
                Source = $"{imagesOption} '{imagesPath}', {labelsOption} '{labelsPath}'",
            };
        }
    }

}

/// <summary>What a training run was asked to do.</summary>
internal sealed record TrainSettings(string Arch, int Epochs, int BatchSize, string Optimizer, float LearningRate, float Momentum,
    float WeightDecay, LearningRateSchedule Schedule, int StepSize, float Gamma, int Warmup, float LabelSmoothing, float? ClipGradNorm,
    Augmentation? Augment, string? Normalize, int Seed, string Out, string? Init, string? Checkpoint, string? Resume);

/// <summary>
/// Passes progress on to the display, and warns when the mean training loss after the first batches
/// (<see cref="TrainingProgress.MeanLoss"/>) is far above that of guessing, ln(classes): the learning rate (or
/// momentum) blew the weights up at once. A warning, not an error: PyTorch trains on, and a loss can recover;
/// non-finite weights stop the run anyway (<see cref="TrainingDivergedException"/>).
/// </summary>
internal sealed class DivergenceWatch(ProgressDisplay display, TextWriter error, int classes, float learningRate) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value)
    {
        double guessing = Math.Log(Math.Max(2, classes));
        if (value.MeanLoss is { } loss && loss > 10 * guessing)
        {
            display.Clear();
            error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"warning: the mean training loss of the first {value.Batch} batches is {loss:G3}, far above ln({classes}) = {guessing:F2} for guessing: the weights are diverging; lower --lr ({learningRate})."));
        }

        display.Report(value);
    }
}
