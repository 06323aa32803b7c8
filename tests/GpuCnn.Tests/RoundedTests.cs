using GpuCnn.Kernels;

namespace GpuCnn.Tests;

/// <summary>
/// The kernels' fused multiply-add off CUDA (<see cref="Rounded.MultiplyAddInDouble"/>) against .NET's
/// <see cref="MathF.FusedMultiplyAdd"/> (IEEE 754's, in hardware here): edge cases, the double-rounding trap, and random
/// operands with heavy cancellation.
/// </summary>
public sealed class RoundedTests
{
    public static TheoryData<float, float, float> EdgeCases => new()
    {
        // 24929 · 673·2⁻²⁴ = 1 + 2⁻²⁴, the midpoint between 1 and the next float; + 2⁻⁸⁰ lies just past it. A plain
        // double sum loses 2⁻⁸⁰ and then rounds the tie to even (1); the exact result rounds up.
        { 24929f, 673f * MathF.Pow(2, -24), MathF.Pow(2, -80) },
        { 24929f, 673f * MathF.Pow(2, -24), -MathF.Pow(2, -80) },
        { -24929f, 673f * MathF.Pow(2, -24), -MathF.Pow(2, -80) },
        { -24929f, 673f * MathF.Pow(2, -24), MathF.Pow(2, -80) },
        { 1f, 1f, -1f },
        { -0f, 1f, 0f },
        { 0f, -1f, -0f },
        { float.MaxValue, 2f, -float.MaxValue },
        { float.MaxValue, 2f, 0f },
        { float.Epsilon, 0.5f, 0f },
        { float.Epsilon, 0.5f, float.Epsilon },
        { 1e-30f, 1e-30f, 1e-45f },
        { float.PositiveInfinity, 0f, 1f },
        { float.PositiveInfinity, 1f, float.NegativeInfinity },
        { float.NaN, 1f, 1f },
        { 3f, 1f / 3f, -1f },
    };

    [Theory]
    [MemberData(nameof(EdgeCases))]
    public void Multiply_add_in_double_is_rounded_once(float a, float b, float c) =>
        AssertSame(a, b, c);

    [Fact]
    public void Multiply_add_in_double_matches_the_hardware_on_random_operands()
    {
        var random = new Random(20261128);
        for (int n = 0; n < 2_000_000; n++)
        {
            float a = RandomFloat(random), b = RandomFloat(random);
            // Half the time c nearly cancels the product (the rounding of a·b and what lies below it decide).
            float c = n % 2 == 0 ? RandomFloat(random) : -(a * b) * (1f + (float)(random.NextDouble() - 0.5) * 1e-6f);
            AssertSame(a, b, c);
        }
    }

    /// <summary>Exponents from −75 to 75: products and sums from float's subnormals to past its largest value.</summary>
    private static float RandomFloat(Random random) =>
        (float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-75, 76)));

    private static void AssertSame(float a, float b, float c)
    {
        float expected = MathF.FusedMultiplyAdd(a, b, c), actual = Rounded.MultiplyAddInDouble(a, b, c);
        if (BitConverter.SingleToInt32Bits(expected) != BitConverter.SingleToInt32Bits(actual) && !(float.IsNaN(expected) && float.IsNaN(actual)))
        {
            Assert.Fail($"fma({a:R}, {b:R}, {c:R}): expected {expected:R}, got {actual:R}");
        }
    }
}
