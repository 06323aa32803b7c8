using System.Globalization;

namespace GpuCnn.Kernels;

/// <summary>LeakyReLU(α): y = x for x &gt; 0, α·x otherwise; f′ = 1 or α (from y too when α ≥ 0).</summary>
public readonly struct LeakyRelu(float alpha) : IDerivativeFromOutput
{
    /// <summary>The negative slope (PyTorch's default is 0.01).</summary>
    public float Alpha { get; } = alpha;

    /// <inheritdoc/>
    public string Spec => $"leakyrelu({Alpha.ToString("R", CultureInfo.InvariantCulture)})";

    /// <inheritdoc/>
    public bool DerivableFromOutput => Alpha >= 0f;

    /// <inheritdoc/>
    public float Forward(float x) => x > 0f ? x : Alpha * x;

    /// <inheritdoc/>
    public double Forward(double x) => x > 0 ? x : Alpha * x;

    /// <inheritdoc/>
    public float Backward(float x, float y, float dy) => x > 0f ? dy : Alpha * dy;

    /// <inheritdoc/>
    public double Backward(double x, double y, double dy) => x > 0 ? dy : Alpha * dy;

    /// <inheritdoc/>
    public float BackwardFromOutput(float y, float dy) => y > 0f ? dy : Alpha * dy;

    /// <inheritdoc/>
    public double BackwardFromOutput(double y, double dy) => y > 0 ? dy : Alpha * dy;
}
