namespace GpuCnn.Models;

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
