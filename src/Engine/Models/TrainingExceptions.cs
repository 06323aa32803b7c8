namespace GpuCnn.Models;

/// <summary>
/// Training stopped on request (e.g. Ctrl+C) after finishing a batch; <see cref="State"/> says where, and
/// <see cref="OperationCanceledException.CancellationToken"/> is the token that asked (so <c>catch
/// (OperationCanceledException e) when (e.CancellationToken == token)</c> catches it).
/// </summary>
public sealed class TrainingInterruptedException(TrainingState state, CancellationToken cancellationToken = default)
    : OperationCanceledException($"training interrupted at epoch {state.Epoch}, after batch {state.Batch}", cancellationToken)
{
    /// <summary>Where training stopped.</summary>
    public TrainingState State { get; } = state;
}

/// <summary>
/// The loss, or a parameter, became NaN or infinite; the message names the epoch and the batch or the parameter
/// (e.g. <c>0.weight</c>) and suggests a remedy. Nothing is written after it.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>The loss of batch <paramref name="batch"/> of <paramref name="epoch"/> was not finite.</summary>
    public TrainingDivergedException(int epoch, int batch, float learningRate)
        : base($"the loss became NaN or infinite at epoch {epoch}, batch {batch}; training stopped. {Remedy(learningRate)}")
    {
        (Epoch, Batch) = (epoch, batch);
    }

    /// <summary>
    /// Parameter <paramref name="parameter"/> (or, with <paramref name="buffer"/>, a buffer such as batch norm's
    /// running variance) held NaN or ±∞ at the end of <paramref name="epoch"/>.
    /// </summary>
    public TrainingDivergedException(int epoch, string parameter, float learningRate, bool buffer = false)
        : base($"{(buffer ? "buffer" : "parameter")} '{parameter}' became NaN or infinite in epoch {epoch}; training stopped. {Remedy(learningRate)}")
    {
        (Epoch, Parameter) = (epoch, parameter);
    }

    /// <summary>Creates the exception.</summary>
    public TrainingDivergedException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public TrainingDivergedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public TrainingDivergedException(string message, Exception inner)
        : base(message, inner)
    {
    }

    /// <summary>The epoch (1-based).</summary>
    public int Epoch { get; }

    /// <summary>The batch within the epoch (1-based) whose loss was not finite; 0 when a parameter was.</summary>
    public int Batch { get; }

    /// <summary>The state-dict name of the first parameter that was not finite; null when the loss was.</summary>
    public string? Parameter { get; }

    private static string Remedy(float learningRate) =>
        $"Try a lower learning rate than {learningRate.ToString("G", System.Globalization.CultureInfo.InvariantCulture)}.";
}
