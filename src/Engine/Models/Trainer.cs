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

/// <summary>One epoch's results.</summary>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double? TestLoss, double? TestAccuracy,
    TimeSpan Elapsed);

/// <summary>Where training is, reported after each batch (the values are host-side counters; nothing is synchronised).</summary>
public readonly record struct TrainingProgress(int Epoch, int Epochs, int Batch, int Batches);

/// <summary>Loss, accuracy and the confusion matrix over a dataset.</summary>
public sealed record Evaluation(double Loss, double Accuracy, int Count, int[,] Confusion)
{
    /// <summary>Rows are true classes, columns predicted classes.</summary>
    public int Classes => Confusion.GetLength(0);
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

    /// <summary>Trains for the configured epochs; <paramref name="onEpoch"/> sees each epoch's metrics.</summary>
    public IReadOnlyList<EpochMetrics> Fit(Dataset train, Dataset? test = null, Action<EpochMetrics>? onEpoch = null,
        IProgress<TrainingProgress>? progress = null, int firstEpoch = 1, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        Options.Validate();
        CheckData(Model, train, "training data");
        if (test is not null)
        {
            CheckData(Model, test, "test data");
        }

        var backend = Model.Backend;
        var history = new List<EpochMetrics>();
        using var data = new DeviceDataset(backend, train);
        using var testData = test is null ? null : new DeviceDataset(backend, test);
        using var metrics = backend.Allocate<float>([2]);
        using var loss = backend.Allocate<float>([1]);
        var batches = new BatchBuffers(backend, Model);
        float baseRate = Optimizer.LearningRate;
        try
        {
            int batchCount = (train.Count + Options.BatchSize - 1) / Options.BatchSize;
            for (int epoch = firstEpoch; epoch <= Options.Epochs; epoch++)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                Optimizer.LearningRate = Options.LearningRateAt(baseRate, epoch);
                backend.Upload<int>(EpochOrder(train.Count, epoch), data.Order);
                backend.Fill(metrics, 0f);
                for (int b = 0; b < batchCount; b++)
                {
                    cancel.ThrowIfCancellationRequested();
                    int start = b * Options.BatchSize, size = Math.Min(Options.BatchSize, train.Count - start);
                    var (x, y, dlogits) = batches.For(size);
                    backend.GatherRows(data.Images, data.Order, start, x);
                    backend.GatherRows(data.Labels, data.Order, start, y);
                    var logits = Model.Forward(x);
                    backend.SoftmaxCrossEntropy(logits, y, dlogits, loss);
                    backend.AccumulateMetrics(logits, y, loss, metrics);
                    Model.Backward(dlogits);
                    Optimizer.Step();
                    progress?.Report(new TrainingProgress(epoch, Options.Epochs, b + 1, batchCount));
                }

                float[] sums = backend.DownloadArray(metrics);
                var evaluation = testData is null ? null : Evaluate(Model, Options.BatchSize, testData, batches, metrics, loss);
                var result = new EpochMetrics(epoch, (double)sums[0] / train.Count, (double)sums[1] / train.Count, evaluation?.Loss,
                    evaluation?.Accuracy, clock.Elapsed);
                history.Add(result);
                onEpoch?.Invoke(result);
            }
        }
        finally
        {
            Optimizer.LearningRate = baseRate;
            batches.Dispose();
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
        using var metrics = model.Backend.Allocate<float>([2]);
        using var loss = model.Backend.Allocate<float>([1]);
        var batches = new BatchBuffers(model.Backend, model);
        try
        {
            return Evaluate(model, batchSize, data, batches, metrics, loss);
        }
        finally
        {
            batches.Dispose();
        }
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

    private static Evaluation Evaluate(Sequential model, int batchSize, DeviceDataset data, BatchBuffers batches,
        DeviceTensor<float> metrics, DeviceTensor<float> loss)
    {
        var backend = model.Backend;
        backend.Upload<int>(Enumerable.Range(0, data.Count).ToArray(), data.Order);
        backend.Fill(metrics, 0f);
        using var predictions = backend.Allocate<int>([data.Count]);
        for (int start = 0; start < data.Count; start += batchSize)
        {
            int size = Math.Min(batchSize, data.Count - start);
            var (x, y, dlogits) = batches.For(size);
            backend.GatherRows(data.Images, data.Order, start, x);
            backend.GatherRows(data.Labels, data.Order, start, y);
            var logits = model.Forward(x);
            backend.SoftmaxCrossEntropy(logits, y, dlogits, loss);
            backend.AccumulateMetrics(logits, y, loss, metrics);
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
