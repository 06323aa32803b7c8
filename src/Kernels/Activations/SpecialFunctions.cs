using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// The error function, which neither .NET nor ILGPU provides. Float (kernels, CPU backend): the Maclaurin series
/// below 1, and above it Abramowitz &amp; Stegun 7.1.26, a rational approximation in t = 1/(1 + 0.3275911·|x|)
/// times e^{−x²} with absolute error ≤ 1.5e-7 (2.5e-7 evaluated in float, about what float holds near ±1); it needs
/// only XMath.Exp, so it compiles for every accelerator. Double (the reference):
/// the Maclaurin series below 2.5 and the continued fraction of erfc above, within 1e-14 of the true value.
/// </summary>
public static class SpecialFunctions
{
    /// <summary>erf x in float, |error| ≤ 2.5e-7.</summary>
    public static float Erf(float x)
    {
        float a = XMath.Abs(x);
        if (a < 1f)
        {
            // Below 1 the rational form loses bits to 1 − (a product near 1): the Maclaurin series through x²³
            // instead, Σ (−1)ⁿ x^{2n+1} / (n! (2n+1)) · 2/√π, in Horner form in z = x².
            float z = x * x;
            float series = -1f / 918086400f;
            series = (series * z) + (1f / 76204800f);
            series = (series * z) - (1f / 6894720f);
            series = (series * z) + (1f / 685440f);
            series = (series * z) - (1f / 75600f);
            series = (series * z) + (1f / 9360f);
            series = (series * z) - (1f / 1320f);
            series = (series * z) + (1f / 216f);
            series = (series * z) - (1f / 42f);
            series = (series * z) + 0.1f;
            series = (series * z) - (1f / 3f);
            series = (series * z) + 1f;
            return 1.1283791670955126f * x * series;
        }

        float t = 1f / (1f + (0.3275911f * a));
        float poly = ((((((1.061405429f * t) - 1.453152027f) * t) + 1.421413741f) * t) - 0.284496736f) * t;
        float y = 1f - ((poly + 0.254829592f) * t * XMath.Exp(-a * a));
        return x < 0f ? -y : y;
    }

    /// <summary>erf x in double, |error| &lt; 1e-14.</summary>
    public static double Erf(double x)
    {
        double a = Math.Abs(x);
        double result;
        if (a < 2.5)
        {
            // erf a = 2/√π Σ (−1)ⁿ a^{2n+1} / (n! (2n+1)); the largest term is about e^{a²}, so cancellation costs < 3 digits.
            double term = a, sum = a, square = a * a;
            for (int n = 1; n < 200; n++)
            {
                term *= -square / n;
                double add = term / ((2 * n) + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum))
                {
                    break;
                }
            }

            result = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc a = e^{−a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …)))), evaluated from the 80th level up.
            double fraction = a;
            for (int k = 80; k >= 1; k--)
            {
                fraction = a + (k / 2.0 / fraction);
            }

            result = 1 - (Math.Exp(-a * a) / (Math.Sqrt(Math.PI) * fraction));
        }

        return x < 0 ? -result : result;
    }
}
