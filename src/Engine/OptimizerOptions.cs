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

/// <summary>torch.optim.Adam's hyperparameters; the defaults are PyTorch's.</summary>
public sealed record AdamOptions(float LearningRate = 1e-3f, float Beta1 = 0.9f, float Beta2 = 0.999f,
    float Epsilon = 1e-8f, float WeightDecay = 0f)
{
    /// <summary>Throws naming the bad hyperparameter.</summary>
    public void Validate()
    {
        Checks.FiniteNonNegative("Adam", "learning rate", LearningRate);
        Checks.FiniteNonNegative("Adam", "epsilon", Epsilon);
        Checks.FiniteNonNegative("Adam", "weight decay", WeightDecay);
        if (!(Beta1 >= 0f && Beta1 < 1f) || !(Beta2 >= 0f && Beta2 < 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(Beta1), $"Adam: betas must lie in [0, 1), got ({Beta1}, {Beta2}).");
        }
    }
}
