namespace GpuCnn.Models;

/// <summary>Images (N, C, H, W) with integer class labels (N).</summary>
public sealed class Dataset
{
    /// <summary>Pairs images with labels; their counts must agree.</summary>
    public Dataset(Tensor images, int[] labels)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.Shape.Rank < 2)
        {
            throw new ArgumentException($"Dataset: images must be (N, …), got {images.Shape}.", nameof(images));
        }

        if (images.Shape[0] != labels.Length)
        {
            throw new ArgumentException($"Dataset: {images.Shape[0]} images but {labels.Length} labels; the counts must match.", nameof(labels));
        }

        Images = images;
        Labels = labels;
    }

    /// <summary>The images.</summary>
    public Tensor Images { get; }

    /// <summary>The labels.</summary>
    public int[] Labels { get; }

    /// <summary>The number of samples.</summary>
    public int Count => Labels.Length;

    /// <summary>Throws when a label lies outside [0, classes), naming the first bad sample.</summary>
    public void ValidateLabels(int classes, string what)
    {
        for (int i = 0; i < Labels.Length; i++)
        {
            if ((uint)Labels[i] >= (uint)classes)
            {
                throw new ArgumentException($"{what}: label {Labels[i]} of sample {i} is outside the model's {classes} classes (0…{classes - 1}).");
            }
        }
    }
}

/// <summary>How the learning rate changes over epochs.</summary>
public enum LearningRateSchedule
{
    /// <summary>The optimizer's learning rate throughout.</summary>
    Constant,

    /// <summary>lr·½(1 + cos(π·(epoch − 1)/epochs)) in each epoch: full at the start, small at the end (PyTorch's CosineAnnealingLR stepped per epoch).</summary>
    Cosine,
}

/// <summary>Trainer settings: epochs, batch size, the shuffling seed, the learning-rate schedule.</summary>
public sealed record TrainingOptions(int Epochs = 4, int BatchSize = 64, int Seed = 0, bool Shuffle = true,
    LearningRateSchedule Schedule = LearningRateSchedule.Constant)
{
    /// <summary>The learning rate of <paramref name="epoch"/> (1-based) for a base rate.</summary>
    public float LearningRateAt(float baseRate, int epoch) => Schedule == LearningRateSchedule.Cosine
        ? (float)(baseRate * 0.5 * (1 + Math.Cos(Math.PI * (epoch - 1) / Epochs)))
        : baseRate;

    /// <summary>Throws naming the bad setting.</summary>
    public void Validate()
    {
        Checks.Positive("Training", "epochs", Epochs);
        Checks.Positive("Training", "batch size", BatchSize);
    }
}

/// <summary>One epoch's results; <paramref name="Test"/> holds the test evaluation (with its confusion matrix) when there is test data.</summary>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double? TestLoss, double? TestAccuracy,
    TimeSpan Elapsed, Evaluation? Test = null);

/// <summary>Where training is, reported after each batch (the values are host-side counters; nothing is synchronised).</summary>
public readonly record struct TrainingProgress(int Epoch, int Epochs, int Batch, int Batches);

/// <summary>Loss, accuracy and the confusion matrix over a dataset.</summary>
public sealed record Evaluation(double Loss, double Accuracy, int Count, int[,] Confusion)
{
    /// <summary>Rows are true classes, columns predicted classes.</summary>
    public int Classes => Confusion.GetLength(0);
}

/// <summary>
/// Where a training run stands: the epoch in progress (1-based), batches of it already done, optimizer steps, and
/// the epoch's metric sums so far. A run resumed from it continues bitwise as if never stopped (same backend).
/// </summary>
public sealed record TrainingState(int Epoch, int Batch, int OptimizerSteps, float LossSum, float CorrectSum)
{
    /// <summary>The state before anything ran.</summary>
    public static TrainingState Start { get; } = new(1, 0, 0, 0f, 0f);
}

/// <summary>Training stopped on request (e.g. Ctrl+C) after finishing a batch; <see cref="State"/> says where.</summary>
public sealed class TrainingInterruptedException(TrainingState state)
    : OperationCanceledException($"training interrupted at epoch {state.Epoch}, after batch {state.Batch}")
{
    /// <summary>Where training stopped.</summary>
    public TrainingState State { get; } = state;
}

/// <summary>The loss became NaN or infinite; the message names the epoch and batch and suggests a remedy.</summary>
public sealed class TrainingDivergedException(int epoch, int batch, float learningRate)
    : Exception($"the loss became NaN or infinite at epoch {epoch}, batch {batch}; training stopped. " +
        $"Try a lower learning rate than {learningRate.ToString("G", System.Globalization.CultureInfo.InvariantCulture)}.")
{
    /// <summary>The epoch (1-based).</summary>
    public int Epoch { get; } = epoch;

    /// <summary>The batch within the epoch (1-based).</summary>
    public int Batch { get; } = batch;
}

/// <summary>
/// Mini-batch training on one backend. The dataset is uploaded once; batches are gathered on the device from a
/// per-epoch permutation; loss and correct counts accumulate on the device and come back once per epoch.
/// </summary>
public sealed class Trainer(Sequential model, Optimizer optimizer, TrainingOptions options)
{
    /// <summary>The model.</summary>
    public Sequential Model { get; } = model ?? throw new ArgumentNullException(nameof(model));

    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; } = optimizer ?? throw new ArgumentNullException(nameof(optimizer));

    /// <summary>The settings.</summary>
    public TrainingOptions Options { get; } = options ?? throw new ArgumentNullException(nameof(options));

    /// <summary>
    /// Trains until epoch <see cref="TrainingOptions.Epochs"/> (counted in total, from <paramref name="resume"/> if
    /// given). <paramref name="onEpoch"/> sees each epoch's metrics; <paramref name="onCheckpoint"/> receives the
    /// state after every finished epoch and, when <paramref name="cancel"/> fires, after the current batch, before
    /// <see cref="TrainingInterruptedException"/> is thrown. A NaN or infinite loss throws
    /// <see cref="TrainingDivergedException"/> at the end of its epoch, before any checkpoint of that epoch.
    /// </summary>
    public IReadOnlyList<EpochMetrics> Fit(Dataset train, Dataset? test = null, Action<EpochMetrics>? onEpoch = null,
        IProgress<TrainingProgress>? progress = null, TrainingState? resume = null, Action<TrainingState>? onCheckpoint = null,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        Options.Validate();
        CheckData(Model, train, "training data");
        if (test is not null)
        {
            CheckData(Model, test, "test data");
        }

        var state = resume ?? TrainingState.Start;
        int batchCount = (train.Count + Options.BatchSize - 1) / Options.BatchSize;
        if (state.Epoch < 1 || state.Batch < 0 || state.Batch > batchCount)
        {
            throw new ArgumentException($"Fit: resume state (epoch {state.Epoch}, batch {state.Batch}) does not fit {batchCount} batches per epoch.", nameof(resume));
        }

        var backend = Model.Backend;
        var history = new List<EpochMetrics>();
        using var data = new DeviceDataset(backend, train);
        using var testData = test is null ? null : new DeviceDataset(backend, test);
        using var metrics = backend.Allocate<float>([3]);
        using var loss = backend.Allocate<float>([1]);
        using var batches = new BatchBuffers(backend, Model);
        float baseRate = Optimizer.LearningRate;
        Optimizer.RestoreStepCount(state.OptimizerSteps);
        try
        {
            for (int epoch = state.Epoch; epoch <= Options.Epochs; epoch++)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                bool resumed = epoch == state.Epoch;
                Optimizer.LearningRate = Options.LearningRateAt(baseRate, epoch);
                backend.Upload<int>(EpochOrder(train.Count, epoch), data.Order);
                backend.Upload<float>(resumed ? [state.LossSum, state.CorrectSum, -1f] : [0f, 0f, -1f], metrics);
                for (int b = resumed ? state.Batch : 0; b < batchCount; b++)
                {
                    if (cancel.IsCancellationRequested)
                    {
                        float[] partial = CheckFinite(backend.DownloadArray(metrics), epoch);
                        var stopped = new TrainingState(epoch, b, Optimizer.StepCount, partial[0], partial[1]);
                        onCheckpoint?.Invoke(stopped);
                        throw new TrainingInterruptedException(stopped);
                    }

                    int start = b * Options.BatchSize, size = Math.Min(Options.BatchSize, train.Count - start);
                    var (_, dlogits) = ForwardBatch(Model, data, batches, start, size, metrics, loss, b + 1);
                    Model.Backward(dlogits);
                    Optimizer.Step();
                    progress?.Report(new TrainingProgress(epoch, Options.Epochs, b + 1, batchCount));
                }

                float[] sums = CheckFinite(backend.DownloadArray(metrics), epoch);
                var evaluation = testData is null ? null : Evaluate(Model, Options.BatchSize, testData, batches, metrics, loss);
                var result = new EpochMetrics(epoch, (double)sums[0] / train.Count, (double)sums[1] / train.Count, evaluation?.Loss,
                    evaluation?.Accuracy, clock.Elapsed, evaluation);
                history.Add(result);
                onEpoch?.Invoke(result);
                onCheckpoint?.Invoke(new TrainingState(epoch + 1, 0, Optimizer.StepCount, 0f, 0f));
            }
        }
        finally
        {
            Optimizer.LearningRate = baseRate;
        }

        return history;
    }

    /// <summary>Loss, accuracy and confusion matrix of the model on <paramref name="dataset"/>.</summary>
    public static Evaluation Evaluate(Sequential model, Dataset dataset, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(dataset);
        Checks.Positive("Evaluate", nameof(batchSize), batchSize);
        CheckData(model, dataset, "evaluation data");
        using var data = new DeviceDataset(model.Backend, dataset);
        using var metrics = model.Backend.Allocate<float>([3]);
        using var loss = model.Backend.Allocate<float>([1]);
        using var batches = new BatchBuffers(model.Backend, model);
        return Evaluate(model, batchSize, data, batches, metrics, loss);
    }

    /// <summary>The sample order of an epoch: a seeded shuffle that depends only on (seed, epoch), so a resumed run repeats it.</summary>
    public int[] EpochOrder(int count, int epoch)
    {
        int[] order = Enumerable.Range(0, count).ToArray();
        if (Options.Shuffle)
        {
            new Random(unchecked((Options.Seed * 1_000_003) + epoch)).Shuffle(order);
        }

        return order;
    }

    private float[] CheckFinite(float[] sums, int epoch)
    {
        if (sums[2] >= 0f)
        {
            throw new TrainingDivergedException(epoch, (int)sums[2], Optimizer.LearningRate);
        }

        return sums;
    }

    private static Evaluation Evaluate(Sequential model, int batchSize, DeviceDataset data, BatchBuffers batches,
        DeviceTensor<float> metrics, DeviceTensor<float> loss)
    {
        var backend = model.Backend;
        backend.Upload<int>(Enumerable.Range(0, data.Count).ToArray(), data.Order);
        backend.Upload<float>([0f, 0f, -1f], metrics);
        using var predictions = backend.Allocate<int>([data.Count]);
        for (int start = 0; start < data.Count; start += batchSize)
        {
            int size = Math.Min(batchSize, data.Count - start);
            var (logits, _) = ForwardBatch(model, data, batches, start, size, metrics, loss, start / batchSize + 1);
            backend.Argmax(logits, predictions, start);
        }

        float[] sums = backend.DownloadArray(metrics);
        int[] predicted = backend.DownloadArray(predictions);
        var confusion = new int[model.Classes, model.Classes];
        for (int i = 0; i < data.Count; i++)
        {
            confusion[data.HostLabels[i], predicted[i]]++;
        }

        return new Evaluation((double)sums[0] / data.Count, (double)sums[1] / data.Count, data.Count, confusion);
    }

    /// <summary>
    /// Samples order[start … start+size) through the model on the device: gather, forward, loss and its gradient,
    /// metrics. Returns the logits and the loss gradient (both owned by the model and the batch buffers).
    /// </summary>
    private static (DeviceTensor<float> Logits, DeviceTensor<float> DLogits) ForwardBatch(Sequential model, DeviceDataset data,
        BatchBuffers batches, int start, int size, DeviceTensor<float> metrics, DeviceTensor<float> loss, int batchIndex)
    {
        var backend = model.Backend;
        var (x, y, dlogits) = batches.For(size);
        backend.GatherRows(data.Images, data.Order, start, x);
        backend.GatherRows(data.Labels, data.Order, start, y);
        var logits = model.Forward(x);
        backend.SoftmaxCrossEntropy(logits, y, dlogits, loss);
        backend.AccumulateMetrics(logits, y, loss, metrics, batchIndex);
        return (logits, dlogits);
    }

    private static void CheckData(Sequential model, Dataset data, string what)
    {
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

    /// <summary>A dataset resident on the device, plus a device buffer for the sample order.</summary>
    private sealed class DeviceDataset(Backend backend, Dataset dataset) : IDisposable
    {
        public DeviceTensor<float> Images { get; } = backend.Upload(dataset.Images);

        public DeviceTensor<int> Labels { get; } = backend.Upload<int>([dataset.Count], dataset.Labels);

        public DeviceTensor<int> Order { get; } = backend.Allocate<int>([dataset.Count]);

        public int Count => dataset.Count;

        public int[] HostLabels => dataset.Labels;

        public void Dispose()
        {
            Images.Dispose();
            Labels.Dispose();
            Order.Dispose();
        }
    }

    /// <summary>Per-batch-size device buffers: inputs, labels, logits gradient.</summary>
    private sealed class BatchBuffers(Backend backend, Sequential model) : IDisposable
    {
        private readonly Dictionary<int, (DeviceTensor<float> X, DeviceTensor<int> Y, DeviceTensor<float> DLogits)> _buffers = [];

        public (DeviceTensor<float> X, DeviceTensor<int> Y, DeviceTensor<float> DLogits) For(int size)
        {
            if (!_buffers.TryGetValue(size, out var buffers))
            {
                buffers = (backend.Allocate<float>(new Shape([size, .. model.InputShape.ToArray()])),
                    backend.Allocate<int>([size]), backend.Allocate<float>([size, model.Classes]));
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
        }
    }
}
