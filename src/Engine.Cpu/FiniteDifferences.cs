namespace GpuCnn.Cpu;

/// <summary>Numerical gradients for checking the analytic backward passes (in double: float32 differences are too noisy).</summary>
internal static class FiniteDifferences
{
    /// <summary>
    /// ∂loss/∂values[i] ≈ (loss(v + ε) − loss(v − ε)) / 2ε for every element, perturbing <paramref name="values"/> in
    /// place (each element is restored). For losses at most quadratic in one element the truncation error vanishes and
    /// what remains is rounding, about 1e-16·|loss|/ε.
    /// </summary>
    public static double[] Central(double[] values, Func<double> loss, double epsilon = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(loss);
        var gradient = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            double saved = values[i];
            values[i] = saved + epsilon;
            double plus = loss();
            values[i] = saved - epsilon;
            double minus = loss();
            values[i] = saved;
            gradient[i] = (plus - minus) / (2 * epsilon);
        }

        return gradient;
    }
}
