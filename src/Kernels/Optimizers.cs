using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// SGD hyperparameters in PyTorch's terms (torch.optim.SGD); <paramref name="OneMinusDampening"/> is formed in double
/// from the dampening as written, as PyTorch forms <c>alpha=1 - dampening</c> from a Python float.
/// </summary>
public readonly record struct SgdParams(float LearningRate, float Momentum, float OneMinusDampening, float WeightDecay,
    int Nesterov, int FirstStep);

/// <summary>
/// One Adam or AdamW step in PyTorch's terms (torch.optim.Adam, torch.optim.AdamW). StepSize = lr / (1 − β1^t),
/// SqrtCorrection2 = √(1 − β2^t) and 1 − β are computed once on the host in double from the settings as PyTorch's
/// Python floats hold them, then rounded to float as PyTorch rounds a scalar for a float tensor. Adam's weight decay is
/// L2 (WeightDecay·p added to the gradient, DecayFactor 1); AdamW's is decoupled (WeightDecay 0, the parameter first
/// scaled by DecayFactor = 1 − lr·λ).
/// </summary>
public readonly record struct AdamParams(float StepSize, float SqrtCorrection2, float Beta1, float OneMinusBeta1, float Beta2,
    float OneMinusBeta2, float Epsilon, float WeightDecay, float DecayFactor)
{
    /// <summary>The parameters of step <paramref name="step"/> (counting from 1).</summary>
    public static AdamParams ForStep(double learningRate, double beta1, double beta2, double epsilon, double weightDecay,
        int step, bool decoupled = false) =>
        new((float)(learningRate / (1 - Math.Pow(beta1, step))), (float)Math.Sqrt(1 - Math.Pow(beta2, step)),
            (float)beta1, (float)(1 - beta1), (float)beta2, (float)(1 - beta2), (float)epsilon, decoupled ? 0f : (float)weightDecay,
            decoupled ? (float)(1 - (learningRate * weightDecay)) : 1f);
}

/// <summary>Parameter updates, one thread per parameter, with PyTorch's formulas. See docs/05-optimizers.md.</summary>
internal static class OptimizerKernels
{
    /// <summary>
    /// g = grad + λ·p (nothing added when λ = 0, as PyTorch skips it: 0·∞ would be NaN); v = g on the first step, else
    /// μ·v + (1 − dampening)·g; d = g + μ·v (Nesterov) or v; p −= lr·d. Without momentum, p −= lr·g and v is untouched.
    /// Rounded as PyTorch's CPU kernels round it (docs/05-optimizers.md): each <c>add(x, alpha=a)</c> one multiply-add
    /// (<typeparamref name="TMultiplyAdd"/>: fused, or a float product and sum on a device without doubles),
    /// <c>buf.mul_(μ)</c> a rounded product.
    /// </summary>
    public static void Sgd<TMultiplyAdd>(Index1D i, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> velocity, SgdParams h)
        where TMultiplyAdd : struct, IMultiplyAdd =>
        SgdAt<TMultiplyAdd>(param, grad, velocity, i, h);

    /// <summary>The SGD step of element <paramref name="i"/> (this kernel's and the tensor-list kernel's, so both give the same bits).</summary>
    internal static void SgdAt<TMultiplyAdd>(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> velocity, int i, SgdParams h)
        where TMultiplyAdd : struct, IMultiplyAdd
    {
        var fused = default(TMultiplyAdd);
        float g = h.WeightDecay != 0f ? fused.MultiplyAdd(param[i], h.WeightDecay, grad[i]) : grad[i];
        if (h.Momentum != 0f)
        {
            float v = h.FirstStep != 0 ? g : fused.MultiplyAdd(g, h.OneMinusDampening, Rounded.Multiply(velocity[i], h.Momentum));
            velocity[i] = v;
            g = h.Nesterov != 0 ? fused.MultiplyAdd(v, h.Momentum, g) : v;
        }

        param[i] = fused.MultiplyAdd(g, -h.LearningRate, param[i]);
    }

    /// <summary>
    /// p ← DecayFactor·p (AdamW); g = grad + λ·p (Adam, when λ ≠ 0); m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
    /// p −= StepSize · m / (√v / SqrtCorrection2 + ε). Rounded as PyTorch's CPU kernels round it (docs/05-optimizers.md):
    /// <c>add(x, alpha=a)</c> and <c>addcmul</c> one multiply-add each (<typeparamref name="TMultiplyAdd"/>), the
    /// products, quotients, root and the last sum each rounded.
    /// </summary>
    public static void Adam<TMultiplyAdd>(Index1D i, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m,
        ArrayView<float> v, AdamParams h)
        where TMultiplyAdd : struct, IMultiplyAdd =>
        AdamAt<TMultiplyAdd>(param, grad, m, v, i, h);

    /// <summary>The Adam step of element <paramref name="i"/> (this kernel's and the tensor-list kernel's).</summary>
    internal static void AdamAt<TMultiplyAdd>(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, int i, AdamParams h)
        where TMultiplyAdd : struct, IMultiplyAdd
    {
        var fused = default(TMultiplyAdd);
        float p = Rounded.Multiply(param[i], h.DecayFactor);
        float g = h.WeightDecay != 0f ? fused.MultiplyAdd(p, h.WeightDecay, grad[i]) : grad[i];
        float mi = fused.MultiplyAdd(g, h.OneMinusBeta1, Rounded.Multiply(m[i], h.Beta1));
        float vi = fused.MultiplyAdd(Rounded.Multiply(h.OneMinusBeta2, g), g, Rounded.Multiply(v[i], h.Beta2));
        m[i] = mi;
        v[i] = vi;
        float denominator = Rounded.Add(XMath.Sqrt(vi) / h.SqrtCorrection2, h.Epsilon);
        param[i] = Rounded.Add(p, Rounded.Multiply(-h.StepSize, mi) / denominator);
    }
}
