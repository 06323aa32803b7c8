namespace GpuCnn.Models;

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
