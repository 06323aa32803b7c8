using GpuCnn.Cpu;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>One self-test row.</summary>
internal sealed record SelfTestResult(string Check, string Shape, double MaxDiff, bool Passed);

/// <summary>The checks behind <c>gpucnn selftest</c>.</summary>
internal static class SelfTest
{
    private const int ShapesPerCheck = OperationCases.ShapesPerFamily;

    /// <summary>
    /// Every operation of the shared catalogue (<see cref="OperationCases.CrossChecks"/>, the same cases the tests run
    /// on every backend) on <paramref name="device"/> against the reference, at random shapes.
    /// </summary>
    public static IEnumerable<SelfTestResult> CrossChecks(Backend device, int seed)
    {
        using var reference = new ReferenceBackend();
        foreach (var operation in OperationCases.CrossChecks(seed))
        {
            SelfTestResult result;
            try
            {
                var (diff, passed) = operation.Compare(device, reference);
                result = new SelfTestResult(operation.Name, operation.Shape, diff, passed);
            }
            catch (Exception e) when (e is DeviceFaultException or InvalidOperationException)
            {
                result = new SelfTestResult(operation.Name, operation.Shape + " " + e.Message, double.NaN, false);
            }

            yield return result;
        }
    }

    /// <summary>The reference's backward passes against central finite differences, in double.</summary>
    public static IEnumerable<SelfTestResult> GradientChecks(int seed)
    {
        var random = new Random(seed + 1);
        for (int i = 0; i < ShapesPerCheck; i++)
        {
            var g = OperationCases.RandomConvolution(random, small: true);
            double[] x = Doubles(random, g.InputSize), w = Doubles(random, g.WeightSize), b = Doubles(random, g.K), probe = Doubles(random, g.OutputSize);
            double Loss()
            {
                var y = new double[g.OutputSize];
                ReferenceMath.Conv2dForward<double>(g, x, w, b, y);
                return y.Zip(probe, (u, v) => u * v).Sum();
            }

            var dx = new double[g.InputSize];
            var dw = new double[g.WeightSize];
            var db = new double[g.K];
            ReferenceMath.Conv2dBackwardData<double>(g, probe, w, dx);
            ReferenceMath.Conv2dBackwardFilter<double>(g, x, probe, dw, db);
            double diff = Math.Max(MaxDiff(FiniteDifferences.Central(x, Loss), dx), Math.Max(MaxDiff(FiniteDifferences.Central(w, Loss), dw), MaxDiff(FiniteDifferences.Central(b, Loss), db)));
            yield return new SelfTestResult("gradient check: conv2d (reference)", $"x({g.N},{g.C},{g.H},{g.W}) w({g.K},{g.C},{g.R},{g.S}) s{g.StrideH} p{g.PadH}", diff, diff < 1e-6);
        }

        for (int i = 0; i < ShapesPerCheck; i++)
        {
            var p = OperationCases.RandomPool(random);
            double[] x = OperationCases.Distinct(random, p.InputSize).Select(v => (double)v).ToArray(), probe = Doubles(random, p.OutputSize);
            double Loss()
            {
                var y = new double[p.OutputSize];
                ReferenceMath.MaxPool2dForward<double>(p, x, y, new int[p.OutputSize]);
                var a = new double[p.OutputSize];
                ReferenceMath.AvgPool2dForward<double>(p, x, a);
                return y.Zip(probe, (u, v) => u * v).Sum() + a.Zip(probe, (u, v) => u * v).Sum();
            }

            var switches = new int[p.OutputSize];
            ReferenceMath.MaxPool2dForward<double>(p, x, new double[p.OutputSize], switches);
            var dmax = new double[p.InputSize];
            var davg = new double[p.InputSize];
            ReferenceMath.MaxPool2dBackward<double>(p, probe, switches, dmax);
            ReferenceMath.AvgPool2dBackward<double>(p, probe, davg);
            double diff = MaxDiff(FiniteDifferences.Central(x, Loss), dmax.Zip(davg, (u, v) => u + v).ToArray());
            yield return new SelfTestResult("gradient check: max+avg pool (reference)", $"x({p.N},{p.C},{p.H},{p.W}) k{p.KernelH}x{p.KernelW} s{p.StrideH}{(p.CeilMode ? " ceil" : "")}", diff, diff < 1e-6);
        }

        {
            int batch = 5, classes = 7;
            double[] z = Doubles(random, batch * classes);
            int[] labels = Enumerable.Range(0, batch).Select(_ => random.Next(classes)).ToArray();
            var dz = new double[z.Length];
            ReferenceMath.SoftmaxCrossEntropy<double>(z, labels, dz, batch, classes);
            double diff = MaxDiff(FiniteDifferences.Central(z, () => ReferenceMath.SoftmaxCrossEntropy<double>(z, labels, new double[z.Length], batch, classes)), dz);
            yield return new SelfTestResult("gradient check: softmax cross-entropy", "(5,7)", diff, diff < 1e-6);
        }
    }

    private static double[] Doubles(Random random, int count) => [.. OperationCases.Values(random, count).Select(v => (double)v)];

    /// <summary>The largest |a − b|; NaN when any difference is NaN (LINQ's Max ranks NaN below every number, so one would pass).</summary>
    internal static double MaxDiff(double[] a, double[] b)
    {
        double worst = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double diff = Math.Abs(a[i] - b[i]);
            if (double.IsNaN(diff))
            {
                return double.NaN;
            }

            worst = Math.Max(worst, diff);
        }

        return worst;
    }
}
