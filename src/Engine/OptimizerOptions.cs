namespace GpuCnn;

/// <summary>torch.optim.SGD's hyperparameters: lr, momentum μ, dampening, weight decay λ, Nesterov.</summary>
public sealed record SgdOptions(float LearningRate, float Momentum = 0f, float Dampening = 0f, float WeightDecay = 0f,
    bool Nesterov = false)
{
    /// <summary>Throws naming the bad hyperparameter.</summary>
    public void Validate()
    {
        Checks.FiniteNonNegative("SGD", "learning rate", LearningRate);
        Checks.FiniteNonNegative("SGD", "momentum", Momentum);
        Checks.FiniteNonNegative("SGD", "dampening", Dampening);
        Checks.FiniteNonNegative("SGD", "weight decay", WeightDecay);
        if (Nesterov && (Momentum <= 0f || Dampening != 0f))
        {
            throw new ArgumentException("SGD: Nesterov momentum requires a positive momentum and zero dampening (as in PyTorch).");
        }
    }
}

/// <summary>
/// torch.optim.Adam's hyperparameters, or torch.optim.AdamW's with <paramref name="DecoupledWeightDecay"/> (the
/// decay shrinks the parameters directly, p ← (1 − lr·λ)·p, instead of adding λ·p to the gradient); the defaults
/// are PyTorch's Adam's (AdamW's default weight decay is 0.01: see <see cref="AdamW"/>).
/// </summary>
public sealed record AdamOptions(float LearningRate = 1e-3f, float Beta1 = 0.9f, float Beta2 = 0.999f,
    float Epsilon = 1e-8f, float WeightDecay = 0f, bool DecoupledWeightDecay = false)
{
    /// <summary>torch.optim.AdamW's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01.</summary>
    public static AdamOptions AdamW(float learningRate = 1e-3f, float weightDecay = 0.01f) =>
        new(learningRate, WeightDecay: weightDecay, DecoupledWeightDecay: true);

    /// <summary>Throws naming the bad hyperparameter.</summary>
    public void Validate()
    {
        Checks.FiniteNonNegative("Adam", "learning rate", LearningRate);
        Checks.FiniteNonNegative("Adam", "epsilon", Epsilon);
        Checks.FiniteNonNegative("Adam", "weight decay", WeightDecay);
        if (!(Beta1 >= 0f && Beta1 < 1f) || !(Beta2 >= 0f && Beta2 < 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(Beta1), string.Create(System.Globalization.CultureInfo.InvariantCulture, $"Adam: betas must lie in [0, 1), got ({Beta1}, {Beta2})."));
        }
    }
}
