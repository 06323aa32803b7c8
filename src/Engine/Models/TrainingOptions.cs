namespace GpuCnn.Models;

/// <summary>How the learning rate changes over epochs.</summary>
public enum LearningRateSchedule
{
    /// <summary>The optimizer's learning rate throughout.</summary>
    Constant,

    /// <summary>lr·½(1 + cos(π·(epoch − 1)/epochs)) in each epoch: full at the start, small at the end (PyTorch's CosineAnnealingLR stepped per epoch).</summary>
    Cosine,

    /// <summary>lr·γ^⌊(epoch − 1)/stepSize⌋: multiplied by γ every stepSize epochs (PyTorch's StepLR stepped per epoch).</summary>
    Step,
}

/// <summary>
/// Trainer settings: epochs, batch size, the shuffling seed, the learning-rate schedule (with <see cref="StepSize"/>
/// and <see cref="Gamma"/> for <see cref="LearningRateSchedule.Step"/>), a linear warm-up over the first
/// <see cref="WarmupSteps"/> optimizer steps, PyTorch's label smoothing for the training loss, augmentation of
/// the training batches on the device, and gradient clipping: with <see cref="ClipGradNorm"/> set, every step's
/// gradients are scaled to a total L2 norm of at most that before the update (PyTorch's clip_grad_norm_ between
/// backward and step; with several ranks, of the averaged gradients; <see cref="GradientClipper"/>).
/// </summary>
public sealed record TrainingOptions(int Epochs = 4, int BatchSize = 64, int Seed = 0, bool Shuffle = true,
    LearningRateSchedule Schedule = LearningRateSchedule.Constant, int StepSize = 1, float Gamma = 0.1f, int WarmupSteps = 0,
    float LabelSmoothing = 0f, Augmentation? Augment = null, float? ClipGradNorm = null)
{
    /// <summary>
    /// The learning rate of <paramref name="epoch"/> (1-based) for a base rate, at optimizer step
    /// <paramref name="step"/> (0-based: steps taken before this one; warm-up over by default): the schedule's
    /// per-epoch factor, times min(1, (step + 1)/warm-up) while warming up — PyTorch's LambdaLR stepped per batch.
    /// </summary>
    public float LearningRateAt(float baseRate, int epoch, int step = int.MaxValue)
    {
        // Fit validates the options before it asks; a direct caller gets the same errors, not a DivideByZeroException,
        // NaN or a negative rate (allocation-free unless it throws: the trainer asks every batch).
        Validate();
        Checks.Positive("LearningRateAt", nameof(epoch), epoch);
        if (step < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(step), step, $"LearningRateAt: step must be ≥ 0, got {step}.");
        }

        double factor = Schedule switch
        {
            LearningRateSchedule.Cosine => 0.5 * (1 + Math.Cos(Math.PI * (epoch - 1) / Epochs)),
            LearningRateSchedule.Step => Math.Pow(Backend.AsWritten(Gamma), (epoch - 1) / StepSize), // γ as written, as PyTorch holds it
            _ => 1,
        };
        if (step < WarmupSteps)
        {
            factor *= (step + 1.0) / WarmupSteps;
        }

        return (float)(Backend.AsWritten(baseRate) * factor); // the rate as written: PyTorch multiplies the Python float 0.1, not 0.1f
    }

    /// <summary>Throws naming the bad setting.</summary>
    public void Validate()
    {
        Checks.Positive("Training", "epochs", Epochs);
        Checks.Positive("Training", "batch size", BatchSize);
        Checks.Positive("Training", "step size", StepSize);
        Checks.FiniteNonNegative("Training", "gamma", Gamma);
        if (WarmupSteps < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, $"Training: warm-up steps must be ≥ 0, got {WarmupSteps}.");
        }

        if (!(LabelSmoothing >= 0f && LabelSmoothing <= 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"Training: label smoothing must lie in [0, 1], got {LabelSmoothing}."));
        }

        if (ClipGradNorm is { } clip && !(float.IsFinite(clip) && clip > 0f))
        {
            throw new ArgumentOutOfRangeException(nameof(ClipGradNorm), clip, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"Training: the gradient norm to clip to must be finite and positive, got {clip}."));
        }
    }
}
