using System.Globalization;
using System.Text;
using Xunit.Sdk;

namespace GpuCnn.Tests.Support;

/// <summary>
/// The one tolerance-aware tensor comparer: |expected − actual| ≤ atol + rtol·|expected| everywhere, where NaN
/// matches only NaN and an infinity only the same infinity.
/// </summary>
public static class TensorAssert
{
    /// <summary>Fails with the max abs/rel difference, the worst index as a multi-index and the first mismatches.</summary>
    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, Shape shape, double atol, double rtol,
        string what)
    {
        var widened = new double[actual.Length];
        for (int i = 0; i < actual.Length; i++)
        {
            widened[i] = actual[i];
        }

        Close(expected, widened, shape, atol, rtol, what);
    }

    /// <summary>As above, for float expectations (PyTorch fixtures).</summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, Shape shape, double atol, double rtol,
        string what)
    {
        var widened = new double[expected.Length];
        for (int i = 0; i < expected.Length; i++)
        {
            widened[i] = expected[i];
        }

        Close(widened, actual, shape, atol, rtol, what);
    }

    /// <summary>As above, for double results (finite-difference gradient checks).</summary>
    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, Shape shape, double atol, double rtol,
        string what)
    {
        if (expected.Length != actual.Length || expected.Length != shape.Size)
        {
            throw new XunitException($"{what}: expected {expected.Length} values, got {actual.Length}, shape {shape}.");
        }

        double maxAbs = 0, maxRel = 0;
        int worst = -1, failures = 0;
        var report = new StringBuilder();
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            // NaN matches NaN and ∞ the same ∞ (PyTorch's non-finite results); anything else must be close.
            bool same = (double.IsNaN(e) && double.IsNaN(a)) || (double.IsInfinity(e) && e == a);
            double diff = same ? 0 : Math.Abs(e - a);
            bool ok = same || (!double.IsNaN(a) && !double.IsNaN(e) && diff <= atol + rtol * Math.Abs(e));
            if (!ok && (worst < 0 || double.IsNaN(diff) || diff > maxAbs))
            {
                worst = i;
            }

            if (!double.IsNaN(diff))
            {
                maxAbs = Math.Max(maxAbs, diff);
                maxRel = Math.Max(maxRel, diff / Math.Max(Math.Abs(e), 1e-30));
            }
            else
            {
                maxAbs = double.NaN;
            }

            if (!ok && failures++ < 5)
            {
                report.Append(CultureInfo.InvariantCulture, $"  at {Format(shape, i)}: expected {e:G9}, actual {a:G9}\n");
            }
        }

        if (failures > 0)
        {
            throw new XunitException(
                $"{what}: {failures} of {expected.Length} values differ beyond atol {atol:G3} + rtol {rtol:G3} " +
                $"(max abs diff {maxAbs:G3}, max rel diff {maxRel:G3}, worst at {Format(shape, worst)}).\n{report}");
        }
    }

    /// <summary>Bitwise equality (reproducibility).</summary>
    public static void Identical<T>(ReadOnlySpan<T> first, ReadOnlySpan<T> second, string what)
        where T : unmanaged, IEquatable<T>
    {
        var firstBytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(first);
        var secondBytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(second);
        if (!firstBytes.SequenceEqual(secondBytes))
        {
            for (int i = 0; i < first.Length; i++)
            {
                if (!first[i].Equals(second[i]))
                {
                    throw new XunitException($"{what}: runs differ at flat index {i}: {first[i]} vs {second[i]}.");
                }
            }

            throw new XunitException($"{what}: runs differ bitwise (e.g. NaN payloads or signed zeros).");
        }
    }

    /// <summary>The multi-index of flat position <paramref name="flat"/>, e.g. "(0,2,1,3)".</summary>
    public static string Format(Shape shape, int flat)
    {
        if (flat < 0)
        {
            return "-";
        }

        var index = new int[shape.Rank];
        for (int axis = shape.Rank - 1; axis >= 0; axis--)
        {
            index[axis] = flat % shape[axis];
            flat /= shape[axis];
        }

        return $"({string.Join(",", index)})";
    }

    /// <summary>
    /// After a full collection, no tensor of <paramref name="backend"/> was finalized undisposed: since a dropped tensor
    /// stops being counted once collected, a leak shows in <see cref="Backend.BytesAllocated"/> only until then.
    /// </summary>
    public static void NothingDroppedUndisposed(Backend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.True(backend.TensorsForgotten == 0, $"{backend.TensorsForgotten} tensor(s) of {backend.Name} were dropped without Dispose (leaked, then collected)");
    }
}
