using GpuCnn.Distributed;

namespace GpuCnn.Models;

/// <summary>
/// Mini-batch training on one backend. The dataset is uploaded once; batches are gathered on the device from a
/// per-epoch permutation; loss and correct counts accumulate on the device and come back once per epoch.
/// </summary>
/// <remarks>
/// With a <see cref="ICommunicator"/> of several ranks (data parallelism, as DistributedDataParallel): every rank holds
/// the same model, takes its contiguous share of each global batch of <see cref="TrainingOptions.BatchSize"/> samples
/// (which the ranks must divide), and before each optimizer step the gradients — each rank's mean, weighted by its share
/// — are summed over the ranks in one call on one flat buffer, so every rank applies the same step. Buffers (batch
/// norm's running statistics) are broadcast from rank 0 before each step, as DDP's broadcast_buffers does, so batch
/// norm normalises with each rank's own batch statistics (no SyncBN). Evaluation splits the test set across the ranks
/// and sums the counts. A stop asked of any rank (the token given to Fit) rides the next gradient sum as one more float
/// (or a one-float vote at an epoch's end), so that every rank stops after the same batch.
/// </remarks>
public sealed class Trainer(Sequential model, Optimizer optimizer, TrainingOptions options, ICommunicator? communicator = null)
{
    /// <summary>Batches of epoch 1 after which <see cref="TrainingProgress.MeanLoss"/> is reported once.</summary>
    public const int EarlyCheckBatches = 10;

    /// <summary>The model.</summary>
    public Sequential Model { get; } = model ?? throw new ArgumentNullException(nameof(model));

    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; } = Updating(optimizer, model);

    private static Optimizer Updating(Optimizer optimizer, Sequential model)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(model);
        optimizer.ThrowIfDisposed("Trainer");
        optimizer.CheckUpdates(model, "Trainer");
        return optimizer;
    }

    /// <summary>The settings (checked when the trainer is made, and again by Fit).</summary>
    public TrainingOptions Options { get; } = Validated(options);

    private static TrainingOptions Validated(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }

    /// <summary>The ranks training together (<see cref="SingleProcess"/> unless given).</summary>
    public ICommunicator Communicator { get; } = communicator ?? SingleProcess.Instance;

    /// <summary>
    /// Trains until epoch <see cref="TrainingOptions.Epochs"/> (counted in total, from <paramref name="resume"/> if
    /// given; each call starts at epoch 1 unless resumed, so a second Fit repeats the same epochs' shuffles and
    /// epoch-based schedule — to go on, resume from the state <paramref name="onCheckpoint"/> last received with a larger Epochs).
    /// The optimizer goes on from its own state either way (its momentum or moments and, unless
    /// <paramref name="resume"/> gives one, its step count: Adam's bias correction and the warm-up count on).
    /// The optimizer's learning rate at the call is the schedule's base rate: Fit sets the scheduled rate before every
    /// batch and puts the base rate back when it returns, so a rate set during Fit (in <paramref name="onEpoch"/>, as
    /// a plateau rule would) lasts until the next batch only — a schedule is chosen through <see cref="TrainingOptions"/>.
    /// <paramref name="onEpoch"/> sees each epoch's metrics; <paramref name="onCheckpoint"/> receives the state after
    /// every finished epoch and, when <paramref name="cancel"/> fires, after the current batch (or at the end of the
    /// epoch whose last batch, evaluation or <paramref name="onEpoch"/> it fired in), before
    /// <see cref="TrainingInterruptedException"/> is thrown; once the last epoch's last batch has run, Fit finishes
    /// (nothing is left to stop), and the caller can see the token to say so. With several ranks the ranks agree: a
    /// token fired on any rank stops every rank after the same batch (the one whose gradients were being summed when it
    /// fired, or the next), each receiving the same state and throwing, its own token in the exception (one rank
    /// stopping alone would leave the others waiting in a collective). A NaN or infinite loss throws
    /// <see cref="TrainingDivergedException"/> at the end of its epoch, before any checkpoint of that epoch.
    /// </summary>
    public IReadOnlyList<EpochMetrics> Fit(Dataset train, Dataset? test = null, Action<EpochMetrics>? onEpoch = null,
        IProgress<TrainingProgress>? progress = null, TrainingState? resume = null, Action<TrainingState>? onCheckpoint = null,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        using var use = Model.Use("Trainer.Fit");
        using var stepping = Optimizer.Use("Trainer.Fit");
        Optimizer.ThrowIfDisposed("Trainer.Fit"); // disposed since the trainer was made: refused before a batch changes batch norm's statistics
        Options.Validate();
        // First, before any check a rank could fail alone while the others wait for it in a collective.
        if (Communicator.Size > 1)
        {
            Distributed.RankAgreement.Require(Communicator, Distributed.RankAgreement.Facts(this, train, test, resume ?? TrainingState.Start));
        }

        CheckData(Model, train, "training data");
        if (test is not null)
        {
            CheckData(Model, test, "test data");
        }

        if (Options.Augment is { } augment && Model.InputShape.Rank != 3)
        {
            throw new ArgumentException($"augment {augment}: crops and flips need (C,H,W) images, the model's input is {Model.InputShape}.");
        }

        int ranks = Communicator.Size;
        if (Options.BatchSize % ranks != 0)
        {
            throw new ArgumentException($"Fit: the batch size {Options.BatchSize} is the global batch; the {ranks} ranks must divide it.");
        }

        Model.RequireBatchFits("Fit", LargestShare(train.Count));
        var state = resume ?? TrainingState.Start;
        int batchCount = (train.Count + Options.BatchSize - 1) / Options.BatchSize;
        if (state.Epoch < 1 || state.Batch < 0 || state.Batch > batchCount)
        {
            throw new ArgumentException($"Fit: resume state (epoch {state.Epoch}, batch {state.Batch}) does not fit {batchCount} batches per epoch.", nameof(resume));
        }

        if (LastEpochNeeded(state) > Options.Epochs)
        {
            // Nothing would train, and the caller would take a model of more epochs than it asked for as its result.
            throw new ArgumentException($"Fit: the resume state is {Describe(state)}, past the {Options.Epochs} epoch(s) asked for.", nameof(resume));
        }

        CheckBatchNormBatches(train.Count, ranks);

        var backend = Model.Backend;
        var history = new List<EpochMetrics>();
        using var data = new DeviceDataset(backend, train);
        using var testData = test is null ? null : new DeviceDataset(backend, test);
        using var metrics = new RunningMetrics(backend);
        using var loss = backend.Allocate<float>([1]);
        using var batches = new BatchBuffers(backend, Model);
        using var clipper = Options.ClipGradNorm is { } maxNorm ? new GradientClipper(backend, Optimizer.Parameters, maxNorm) : null;
        float baseRate = Optimizer.LearningRate;
        using var ranked = ranks > 1 ? new RankSync(Model, Communicator) : null;
        if (resume is not null)
        {
            // Only a resumed run sets the count: a plain second Fit keeps the moments, and a count restarted at 0 beside
            // them would take SGD's next step as its first (momentum dropped) and undo Adam's bias correction. After
            // the allocations: a device out of memory leaves the count as it was.
            Optimizer.RestoreStepCount(state.OptimizerSteps);
        }

        bool agreedStop = false; // with several ranks: a rank's token fired during the last gradient sum
        try
        {
            for (int epoch = state.Epoch; epoch <= Options.Epochs; epoch++)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                bool resumed = epoch == state.Epoch;
                backend.Upload<int>(EpochOrder(train.Count, epoch), data.Order);
                Model.Train();
                // A resumed epoch's sums so far come from the checkpoint once: rank 0 holds them, the other ranks start
                // at 0 (each rank's sums are added over the ranks at the epoch's end).
                bool carries = resumed && Communicator.Rank == 0;
                metrics.Reset(carries ? state.LossSum : 0f, carries ? state.CorrectSum : 0f);
                int local = 0; // samples this rank has seen this epoch (its shares, when several ranks train)
                for (int b = resumed ? state.Batch : 0; b < batchCount; b++)
                {
                    if (ranked is null ? cancel.IsCancellationRequested : agreedStop)
                    {
                        var partial = CheckFinite(ranked is null ? metrics.Read() : ranked.Sum(metrics.Read()), epoch);
                        ranked?.BroadcastBuffers(); // every rank stops holding the state rank 0 saves
                        var stopped = new TrainingState(epoch, b, Optimizer.StepCount, partial.LossSum, partial.Correct);
                        onCheckpoint?.Invoke(stopped);
                        throw new TrainingInterruptedException(stopped, cancel);
                    }

                    Optimizer.LearningRate = Options.LearningRateAt(baseRate, epoch, Optimizer.StepCount); // a field: no allocation

                    int start = b * Options.BatchSize, size = Math.Min(Options.BatchSize, train.Count - start);
                    var (begin, count) = ranked is null ? (start, size) : ranked.Share(start, size, whole: size == Options.BatchSize);
                    // Dropout and augmentation draw by position in the global batch: a rank's share draws what one
                    // process would for those samples.
                    uint key = BatchKey(epoch, b);
                    Model.SetRandomKey(Kernels.CounterRandom.Derive(key, 1), begin - start);
                    ranked?.BroadcastBuffers();
                    if (count > 0)
                    {
                        var (_, dlogits) = ForwardBatch(Model, data, batches, begin, count, metrics, loss, b + 1, Options.LabelSmoothing,
                            Options.Augment, Kernels.CounterRandom.Derive(key, 2), begin - start);
                        Model.Backward(dlogits);
                    }
                    else
                    {
                        // No samples here this step (a partial batch's share): the ranks that had some counted it in
                        // their batch norms' num_batches_tracked, as one process would; every rank keeps the same state.
                        foreach (var (_, counter) in Model.NamedCounters())
                        {
                            counter.Value++;
                        }
                    }

                    // A stop asked on any rank travels with the gradients: every rank learns it from the same sum.
                    agreedStop = ranked?.SumGradients(count > 0 ? (float)count / size : 0f, cancel.IsCancellationRequested) ?? false;
                    local += count;
                    clipper?.Clip();
                    Optimizer.Step();
                    double? early = null;
                    if (epoch == 1 && b + 1 == Math.Min(EarlyCheckBatches, batchCount) && progress is not null)
                    {
                        early = metrics.Read().LossSum / (double)(ranked is null ? Math.Min((b + 1) * Options.BatchSize, train.Count) : Math.Max(1, local));
                    }

                    progress?.Report(new TrainingProgress(epoch, Options.Epochs, b + 1, batchCount, early));
                }

                var sums = CheckFinite(ranked is null ? metrics.Read() : ranked.Sum(metrics.Read()), epoch);
                // Every rank evaluates with rank 0's running statistics, as it saves them; broadcast before the check, so
                // that every rank checks the same buffers and a divergence stops all ranks alike.
                ranked?.BroadcastBuffers();
                if (Model.FirstNonFiniteTensor() is { } spoiled)
                {
                    throw new TrainingDivergedException(epoch, spoiled, Optimizer.LearningRate, buffer: !Model.NamedParameters().Any(p => p.Key == spoiled));
                }

                // Each rank evaluates its share of the test set in chunks of its training share (the global batch over
                // the ranks): chunks of the global batch had needed N times the activations training fitted in.
                var evaluation = testData is null ? null : Evaluate(Model, Options.BatchSize / ranks, testData, batches, metrics, loss, Communicator);
                var result = new EpochMetrics(epoch, (double)sums.LossSum / train.Count, (double)sums.Correct / train.Count, evaluation?.Loss,
                    evaluation?.Accuracy, clock.Elapsed, evaluation);
                history.Add(result);
                onEpoch?.Invoke(result);
                // Asked during the epoch's last batch, its evaluation or onEpoch: stop at the epoch's end, whose checkpoint
                // holds it, rather than after the next epoch's first batch. Read before the checkpoint, so that the
                // checkpoint handler has seen the request too (one coming later stops after the next batch).
                bool stop = epoch < Options.Epochs &&
                    (ranked is null ? cancel.IsCancellationRequested : agreedStop || ranked.AgreeToStop(cancel.IsCancellationRequested));
                var next = new TrainingState(epoch + 1, 0, Optimizer.StepCount, 0f, 0f);
                onCheckpoint?.Invoke(next);
                if (stop)
                {
                    throw new TrainingInterruptedException(next, cancel);
                }
            }
        }
        finally
        {
            Optimizer.LearningRate = baseRate;
            Model.ForgetForward();
        }

        return history;
    }

    /// <summary>Loss, accuracy and confusion matrix of the model on <paramref name="dataset"/>.</summary>
    public static Evaluation Evaluate(Sequential model, Dataset dataset, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(dataset);
        Checks.Positive("Evaluate", nameof(batchSize), batchSize);
        using var use = model.Use("Trainer.Evaluate");
        CheckData(model, dataset, "evaluation data");
        using var data = new DeviceDataset(model.Backend, dataset);
        using var metrics = new RunningMetrics(model.Backend);
        using var loss = model.Backend.Allocate<float>([1]);
        using var batches = new BatchBuffers(model.Backend, model);
        return Evaluate(model, batchSize, data, batches, metrics, loss, SingleProcess.Instance);
    }

    /// <summary>
    /// The most samples one rank takes of any batch of an epoch of <paramref name="count"/> samples: a whole batch's
    /// share, or the last partial batch's, which <see cref="RankSync.Share"/> spreads over fewer ranks.
    /// </summary>
    private int LargestShare(int count)
    {
        int ranks = Communicator.Size, last = count % Options.BatchSize;
        int whole = count >= Options.BatchSize ? Options.BatchSize / ranks : 0;
        int sharing = RankSync.Sharers(last, whole: false, ranks);
        return Math.Max(whole, last == 0 ? 0 : (last + sharing - 1) / sharing);
    }

    /// <summary>The random key of training batch <paramref name="batch"/> (0-based) of <paramref name="epoch"/>: it depends only on (seed, epoch, batch).</summary>
    internal uint BatchKey(int epoch, int batch) =>
        Kernels.CounterRandom.Derive(Kernels.CounterRandom.Derive(Kernels.CounterRandom.Hash(0x7F4A7C15u, unchecked((uint)Options.Seed)), (uint)epoch), (uint)batch);

    /// <summary>The sample order of an epoch: a seeded shuffle that depends only on (seed, epoch), so a resumed run repeats it.</summary>
    internal int[] EpochOrder(int count, int epoch)
    {
        int[] order = Enumerable.Range(0, count).ToArray();
        if (Options.Shuffle)
        {
            new Random(unchecked((Options.Seed * 1_000_003) + epoch)).Shuffle(order);
        }

        return order;
    }

    private RunningMetrics.Sums CheckFinite(RunningMetrics.Sums sums, int epoch) =>
        sums.DivergedAtBatch is { } batch ? throw new TrainingDivergedException(epoch, batch, Optimizer.LearningRate) : sums;

    /// <summary>The evaluation of this rank's share of the samples, summed over the ranks.</summary>
    private static Evaluation Evaluate(Sequential model, int batchSize, DeviceDataset data, BatchBuffers batches,
        RunningMetrics metrics, DeviceTensor<float> loss, ICommunicator ranks)
    {
        var backend = model.Backend;
        batchSize = Math.Min(batchSize, model.LargestBatch().Batch); // smaller where a batch that large could not run at all
        metrics.Reset(0f, 0f);
        using var predictions = backend.Allocate<int>([data.Count]);
        bool training = model.Training;
        int first = (int)((long)data.Count * ranks.Rank / ranks.Size), last = (int)((long)data.Count * (ranks.Rank + 1) / ranks.Size);
        model.Eval();
        try
        {
            for (int start = first; start < last; start += batchSize)
            {
                int size = Math.Min(batchSize, last - start);
                var (logits, _) = ForwardBatch(model, data, batches, start, size, metrics, loss, start / batchSize + 1, labelSmoothing: 0f,
                    augment: null, augmentKey: 0, firstSample: 0);
                backend.Argmax(logits, predictions, start);
            }
        }
        finally
        {
            model.ForgetForward();
            if (training)
            {
                model.Train();
            }
        }

        var sums = metrics.Read();
        int[] predicted = backend.DownloadArray(predictions);
        var confusion = new int[model.Classes, model.Classes];
        for (int i = first; i < last; i++)
        {
            confusion[data.HostLabels[i], predicted[i]]++;
        }

        if (ranks.Size > 1)
        {
            // Loss, correct and the confusion counts, summed over the ranks (whole numbers: exact in float up to 2^24).
            int classes = model.Classes;
            var all = new float[2 + (classes * classes)];
            (all[0], all[1]) = (sums.LossSum, sums.Correct);
            for (int t = 0; t < classes; t++)
            {
                for (int p = 0; p < classes; p++)
                {
                    all[2 + (t * classes) + p] = confusion[t, p];
                }
            }

            ranks.AllReduceSum(all);
            sums = sums with { LossSum = all[0], Correct = all[1] };
            for (int t = 0; t < classes; t++)
            {
                for (int p = 0; p < classes; p++)
                {
                    confusion[t, p] = (int)all[2 + (t * classes) + p];
                }
            }
        }

        return new Evaluation((double)sums.LossSum / data.Count, (double)sums.Correct / data.Count, data.Count, confusion);
    }

    /// <summary>
    /// Samples order[start … start+size) through the model on the device: gather, forward, loss and its gradient,
    /// metrics. Returns the logits and the loss gradient (both owned by the model and the batch buffers). Label
    /// smoothing and augmentation apply to training batches only: evaluation sees the images as they are and reports
    /// plain cross-entropy.
    /// </summary>
    private static (DeviceTensor<float> Logits, DeviceTensor<float> DLogits) ForwardBatch(Sequential model, DeviceDataset data,
        BatchBuffers batches, int start, int size, RunningMetrics metrics, DeviceTensor<float> loss, int batchIndex, float labelSmoothing,
        Augmentation? augment, uint augmentKey, int firstSample)
    {
        var backend = model.Backend;
        var (x, y, dlogits) = batches.For(size);
        backend.GatherRows(data.Images, data.Order, start, x);
        backend.GatherRows(data.Labels, data.Order, start, y);
        if (augment is not null)
        {
            var augmented = batches.Augmented(size);
            backend.RandomCropFlip(x, augmented, augment.CropPadding, augment.HorizontalFlip, augmentKey, firstSample);
            x = augmented;
        }

        var logits = model.Forward(x);
        backend.SoftmaxCrossEntropy(logits, y, dlogits, loss, labelSmoothing);
        metrics.Accumulate(logits, y, loss, batchIndex);
        return (logits, dlogits);
    }

    /// <summary>
    /// Refuses, before the first step, a run in which some rank would train a batch norm on one value per channel
    /// (PyTorch's "Expected more than 1 value per channel when training"): the epoch's last batch holding one sample
    /// before a batch norm after a dense layer or a 1×1 map. The backend's own error came in the middle of the first
    /// epoch and named neither the layer nor the cause. Every rank decides alike (from the facts they agreed on).
    /// </summary>
    private void CheckBatchNormBatches(int samples, int ranks)
    {
        int last = samples % Options.BatchSize;
        // The smallest share any rank trains: a whole batch splits evenly; a partial one over as many ranks as can take
        // two samples each (RankSync.Sharers). Fewer samples than a batch make no whole one.
        int smallest = samples >= Options.BatchSize ? Options.BatchSize / ranks : int.MaxValue;
        if (last > 0)
        {
            smallest = Math.Min(smallest, last / RankSync.Sharers(last, whole: false, ranks));
        }

        foreach (var (name, layer) in BatchNorms(Model.Layers, ""))
        {
            long valuesPerChannel = (long)smallest * layer.InputShape.SizeFrom(1);
            if (valuesPerChannel < 2)
            {
                string cause = last == 1
                    ? $"the epoch's last batch holds 1 of the {samples} samples (batch size {Options.BatchSize}); choose a batch size that leaves more than one"
                    : $"each of the {ranks} ranks trains {smallest} sample(s) of a batch of {Options.BatchSize}; give a larger batch";
                throw new ArgumentException($"Fit: batch norm '{name}' would train on {valuesPerChannel} value per channel ({layer.InputShape} a sample), and needs more than one, as PyTorch's batch_norm: {cause}.");
            }
        }
    }

    /// <summary>The model's batch norms with their state_dict prefixes ("3", "1.body.4"), residual blocks' included.</summary>
    private static IEnumerable<(string Name, BatchNorm Layer)> BatchNorms(IReadOnlyList<Layer> layers, string prefix)
    {
        for (int i = 0; i < layers.Count; i++)
        {
            if (layers[i] is BatchNorm norm)
            {
                yield return ($"{prefix}{i}", norm);
            }
            else if (layers[i] is Residual block)
            {
                foreach (var inner in BatchNorms(block.Body, $"{prefix}{i}.body.").Concat(BatchNorms(block.Shortcut, $"{prefix}{i}.shortcut.")))
                {
                    yield return inner;
                }
            }
        }
    }

    private static void CheckData(Sequential model, Dataset data, string what)
    {
        what = data.Source is { } source ? $"{what} ({source})" : what;
        var expected = new Shape([data.Count, .. model.InputShape.ToArray()]);
        if (data.Images.Shape != expected)
        {
            throw new ArgumentException($"{what}: images have shape {data.Images.Shape}, the model expects (N,{string.Join(",", model.InputShape.ToArray())}).");
        }

        if (data.Count == 0)
        {
            throw new ArgumentException($"{what}: the dataset is empty.");
        }

        data.ValidateLabels(model.Classes, what);
    }

    /// <summary>
    /// What the ranks exchange each step: gradients as one flat buffer (and after them whether any rank was asked to
    /// stop), buffers from rank 0, the epoch's sums. Each list
    /// goes through one device buffer (<see cref="Backend.CopyToFlat"/>), so that a GPU makes one copy each way rather
    /// than a synchronous copy per tensor.
    /// </summary>
    private sealed class RankSync : IDisposable
    {
        private readonly Sequential _model;
        private readonly ICommunicator _ranks;
        private readonly DeviceTensor<float>[] _gradientList, _bufferList;
        private readonly Flat _gradients, _buffers;
        private readonly float[] _vote = new float[1];

        public RankSync(Sequential model, ICommunicator ranks)
        {
            (_model, _ranks) = (model, ranks);
            _gradientList = [.. model.NamedParameters().Select(p => p.Parameter.Gradient)];
            _bufferList = [.. model.NamedBuffers().Select(b => b.Buffer)];
            _gradients = new Flat(model.Backend, _gradientList.Sum(g => g.Length), votes: 1);
            try
            {
                _buffers = new Flat(model.Backend, _bufferList.Sum(b => b.Length));
            }
            catch
            {
                _gradients.Device?.Dispose(); // out of device memory for the second: free the first
                throw;
            }
        }

        /// <summary>
        /// How many of <paramref name="ranks"/> ranks share a batch of <paramref name="size"/> samples: all of them for a
        /// whole batch; for the epoch's last, partial one as many as can each take two samples or more (at least one).
        /// The one rule Share splits by and the trainer's up-front checks size shares by.
        /// </summary>
        public static int Sharers(int size, bool whole, int ranks) => whole ? ranks : Math.Clamp(size / 2, 1, ranks);

        /// <summary>
        /// This rank's contiguous share [begin, begin + count) of the global batch [start, start + size), rounded so that
        /// rank 0 has samples whenever the batch has any (its running statistics are the ones broadcast). A whole batch
        /// splits evenly; the epoch's last, partial one over as many ranks as can each take two samples or more — a
        /// share of one would stop training in batch norm after a dense layer ("more than one value per channel"),
        /// which one process training the same batch does not meet; the other ranks take none.
        /// </summary>
        public (int Begin, int Count) Share(int start, int size, bool whole)
        {
            int ranks = Sharers(size, whole, _ranks.Size);
            if (_ranks.Rank >= ranks)
            {
                return (start + size, 0);
            }

            int begin = start + (int)(((long)size * _ranks.Rank + ranks - 1) / ranks);
            int end = start + (int)(((long)size * (_ranks.Rank + 1) + ranks - 1) / ranks);
            return (begin, end - begin);
        }

        /// <summary>
        /// Each gradient ← Σ over ranks of weight_r · gradient_r (weight: the rank's share of the batch; the mean over
        /// it). Returns whether any rank asked to <paramref name="stop"/>: its vote is one more float of the same sum.
        /// </summary>
        public bool SumGradients(float weight, bool stop)
        {
            var backend = _model.Backend;
            var values = _gradients.Values;
            if (_gradients.Device is not { } device)
            {
                return AgreeToStop(stop); // a model without parameters (every rank builds the same model, so none of them sums)
            }

            if (weight == 0f)
            {
                values.Clear(); // no samples here this step: nothing to add
            }
            else
            {
                backend.CopyToFlat(_gradientList, device, weight);
                backend.Download<float>(device, values);
            }

            _gradients.Host[^1] = stop ? 1f : 0f;
            _ranks.AllReduceSum(_gradients.Host);
            backend.Upload<float>(values, device);
            backend.CopyFromFlat(device, _gradientList);
            return _gradients.Host[^1] > 0f;
        }

        /// <summary>Whether any rank asked to <paramref name="stop"/> (every rank must call it).</summary>
        public bool AgreeToStop(bool stop) => _ranks.AnyRank(stop, _vote);

        /// <summary>Every rank takes rank 0's buffers (batch norm's running statistics).</summary>
        public void BroadcastBuffers()
        {
            if (_buffers.Device is not { } device)
            {
                return;
            }

            var backend = _model.Backend;
            backend.CopyToFlat(_bufferList, device);
            backend.Download<float>(device, _buffers.Host);
            _ranks.Broadcast(_buffers.Host, 0);
            backend.Upload<float>(_buffers.Host, device);
            backend.CopyFromFlat(device, _bufferList);
        }

        /// <summary>
        /// The epoch's loss and correct sums over the ranks; diverged at the first batch any rank diverged at (a slot per
        /// rank for it: the reduction only sums).
        /// </summary>
        public RunningMetrics.Sums Sum(RunningMetrics.Sums local)
        {
            var all = new float[2 + _ranks.Size];
            (all[0], all[1], all[2 + _ranks.Rank]) = (local.LossSum, local.Correct, local.DivergedAtBatch ?? 0);
            _ranks.AllReduceSum(all);
            int? first = null;
            for (int r = 0; r < _ranks.Size; r++)
            {
                if (all[2 + r] > 0f && (first is null || all[2 + r] < first))
                {
                    first = (int)all[2 + r];
                }
            }

            return new RunningMetrics.Sums(all[0], all[1], first);
        }

        public void Dispose()
        {
            _gradients.Device?.Dispose();
            _buffers.Device?.Dispose();
        }

        /// <summary>
        /// A list's values on the host and, when there are any, in one device buffer; the host array holds
        /// <paramref name="votes"/> more floats after them, summed in the same collective.
        /// </summary>
        private sealed class Flat(Backend backend, int length, int votes = 0)
        {
            public float[] Host { get; } = new float[length + votes];

            public Span<float> Values => Host.AsSpan(0, length);

            public DeviceTensor<float>? Device { get; } = length > 0 ? backend.Allocate<float>([length]) : null;
        }
    }

    /// <summary>The last epoch a run resumed from <paramref name="state"/> has trained in: its epoch when inside it, the one before at its start.</summary>
    internal static int LastEpochNeeded(TrainingState state) => state.Batch > 0 ? state.Epoch : state.Epoch - 1;

    /// <summary>"in epoch 3 after batch 5" or "after epoch 8".</summary>
    internal static string Describe(TrainingState state) =>
        state.Batch > 0 ? $"in epoch {state.Epoch} after batch {state.Batch}" : $"after epoch {state.Epoch - 1}";

    /// <summary>A dataset resident on the device, plus the sample order (in file order until training shuffles it).</summary>
    private sealed class DeviceDataset : IDisposable
    {
        private readonly Dataset _dataset;

        public DeviceDataset(Backend backend, Dataset dataset)
        {
            _dataset = dataset;
            Images = backend.Upload(dataset.Images);
            try
            {
                Labels = backend.Upload<int>([dataset.Count], dataset.Labels);
                Order = backend.Upload<int>([dataset.Count], Enumerable.Range(0, dataset.Count).ToArray());
            }
            catch
            {
                Dispose(); // out of device memory after the images: free them
                throw;
            }
        }

        public DeviceTensor<float> Images { get; }

        public DeviceTensor<int> Labels { get; } = null!;

        public DeviceTensor<int> Order { get; } = null!;

        public int Count => _dataset.Count;

        public int[] HostLabels => _dataset.Labels;

        public void Dispose()
        {
            Images.Dispose();
            Labels?.Dispose();
            Order?.Dispose();
        }
    }

    /// <summary>Per-batch-size device buffers: inputs, labels, logits gradient.</summary>
    private sealed class BatchBuffers(Backend backend, Sequential model) : IDisposable
    {
        private readonly Dictionary<int, (DeviceTensor<float> X, DeviceTensor<int> Y, DeviceTensor<float> DLogits)> _buffers = [];
        private readonly Dictionary<int, DeviceTensor<float>> _augmented = [];

        public DeviceTensor<float> Augmented(int size)
        {
            if (!_augmented.TryGetValue(size, out var buffer))
            {
                buffer = backend.Allocate<float>(new Shape([size, .. model.InputShape.ToArray()]));
                _augmented[size] = buffer;
            }

            return buffer;
        }

        public (DeviceTensor<float> X, DeviceTensor<int> Y, DeviceTensor<float> DLogits) For(int size)
        {
            if (!_buffers.TryGetValue(size, out var buffers))
            {
                var x = backend.Allocate<float>(new Shape([size, .. model.InputShape.ToArray()]));
                DeviceTensor<int>? y = null;
                try
                {
                    y = backend.Allocate<int>([size]);
                    buffers = (x, y, backend.Allocate<float>([size, model.Classes]));
                }
                catch
                {
                    x.Dispose(); // out of device memory part-way: keep nothing the buffers would not free
                    y?.Dispose();
                    throw;
                }

                _buffers[size] = buffers;
            }

            return buffers;
        }

        public void Dispose()
        {
            foreach (var (x, y, d) in _buffers.Values)
            {
                x.Dispose();
                y.Dispose();
                d.Dispose();
            }

            foreach (var buffer in _augmented.Values)
            {
                buffer.Dispose();
            }
        }
    }
}
