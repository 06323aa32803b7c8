namespace GpuCnn.Models;

/// <summary>One epoch's results; <paramref name="Test"/> holds the test evaluation (with its confusion matrix) when there is test data.</summary>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double? TestLoss, double? TestAccuracy,
    TimeSpan Elapsed, Evaluation? Test = null);

/// <summary>
/// Where training is, reported after each batch (host-side counters; nothing is synchronised), and once, after the
/// first <see cref="Trainer.EarlyCheckBatches"/> batches of epoch 1, <paramref name="MeanLoss"/>: the mean training
/// loss so far (one synchronisation), so that a start that diverges is seen at once rather than after an epoch.
/// </summary>
public readonly record struct TrainingProgress(int Epoch, int Epochs, int Batch, int Batches, double? MeanLoss = null);

/// <summary>Loss, accuracy and the confusion matrix over a dataset.</summary>
public sealed record Evaluation(double Loss, double Accuracy, int Count, int[,] Confusion)
{
    /// <summary>Rows are true classes, columns predicted classes.</summary>
    public int Classes => Confusion.GetLength(0);
}

/// <summary>
/// Where a training run stands: the epoch in progress (1-based), batches of it already done, optimizer steps, and
/// the epoch's metric sums so far. A run resumed from it continues bitwise as if never stopped (same backend, vector
/// path and thread count).
/// </summary>
public sealed record TrainingState(int Epoch, int Batch, int OptimizerSteps, float LossSum, float CorrectSum)
{
    /// <summary>The backend the checkpoint was written on (<see cref="IO.CheckpointFile.DeviceOf"/>), when known.</summary>
    public string? WrittenOn { get; init; }

    /// <summary>The state before anything ran.</summary>
    public static TrainingState Start { get; } = new(1, 0, 0, 0f, 0f);
}
