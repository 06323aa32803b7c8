using GpuCnn.Cpu;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>One self-test row.</summary>
internal sealed record SelfTestResult(string Check, string Shape, double MaxDiff, bool Passed);

/// <summary>The checks behind <c>gpucnn selftest</c>.</summary>
internal static class SelfTest
{
    private const int ShapesPerCheck = 3;

    /// <summary>Every operation on <paramref name="device"/> against the reference (float) at random shapes.</summary>
    public static IEnumerable<SelfTestResult> CrossChecks(Backend device, int seed)
    {
        using var reference = new ReferenceBackend();
        var random = new Random(seed);
        for (int i = 0; i < ShapesPerCheck; i++)
        {
            var g = RandomConvolution(random);
            float[] x = Values(random, g.InputSize), w = Values(random, g.WeightSize), b = Values(random, g.K), dy = Values(random, g.OutputSize);
            string shape = $"x({g.N},{g.C},{g.H},{g.W}) w({g.K},{g.C},{g.R},{g.S}) s{g.StrideH}x{g.StrideW} p{g.PadH}x{g.PadW}";
            yield return Compare("conv2d forward", shape, device, reference, be =>
            {
                using var tx = be.Upload<float>(g.InputShape, x);
                using var tw = be.Upload<float>(g.WeightShape, w);
                using var tb = be.Upload<float>([g.K], b);
                using var ty = Poisoned(be, g.OutputShape);
                be.Conv2dForward(g, tx, tw, tb, ty);
                return be.DownloadArray(ty);
            });
            yield return Compare("conv2d backward-data", shape, device, reference, be =>
            {
                using var tdy = be.Upload<float>(g.OutputShape, dy);
                using var tw = be.Upload<float>(g.WeightShape, w);
                using var tdx = Poisoned(be, g.InputShape);
                be.Conv2dBackwardData(g, tdy, tw, tdx);
                return be.DownloadArray(tdx);
            });
            yield return Compare("conv2d backward-filter + bias", shape, device, reference, be =>
            {
                using var tx = be.Upload<float>(g.InputShape, x);
                using var tdy = be.Upload<float>(g.OutputShape, dy);
                using var tdw = Poisoned(be, g.WeightShape);
                using var tdb = Poisoned(be, [g.K]);
                be.Conv2dBackwardFilter(g, tx, tdy, tdw, tdb);
                return [.. be.DownloadArray(tdw), .. be.DownloadArray(tdb)];
            });
        }

        for (int i = 0; i < ShapesPerCheck; i++)
        {
            var p = RandomPool(random);
            float[] x = Distinct(random, p.InputSize), dy = Values(random, p.OutputSize);
            string shape = $"x({p.N},{p.C},{p.H},{p.W}) k{p.KernelH}x{p.KernelW} s{p.StrideH}x{p.StrideW} p{p.PadH}x{p.PadW}";
            yield return Compare("maxpool forward + switches, backward", shape, device, reference, be =>
            {
                using var tx = be.Upload<float>(p.InputShape, x);
                using var ty = Poisoned(be, p.OutputShape);
                using var sw = be.Allocate<int>(p.OutputShape);
                using var tdy = be.Upload<float>(p.OutputShape, dy);
                using var tdx = Poisoned(be, p.InputShape);
                be.MaxPool2dForward(p, tx, ty, sw);
                be.MaxPool2dBackward(p, tdy, sw, tdx);
                return [.. be.DownloadArray(ty), .. be.DownloadArray(sw).Select(v => (float)v), .. be.DownloadArray(tdx)];
            });
            yield return Compare("avgpool forward, backward", shape, device, reference, be =>
            {
                using var tx = be.Upload<float>(p.InputShape, x);
                using var ty = Poisoned(be, p.OutputShape);
                using var tdy = be.Upload<float>(p.OutputShape, dy);
                using var tdx = Poisoned(be, p.InputShape);
                be.AvgPool2dForward(p, tx, ty);
                be.AvgPool2dBackward(p, tdy, tdx);
                return [.. be.DownloadArray(ty), .. be.DownloadArray(tdx)];
            });
        }

        for (int i = 0; i < ShapesPerCheck; i++)
        {
            int m = random.Next(1, 90), n = random.Next(1, 90), k = random.Next(1, 90);
            bool ta = random.Next(2) == 0, tb = random.Next(2) == 0;
            float[] a = Values(random, m * k), b = Values(random, k * n), c = Values(random, m * n);
            yield return Compare("gemm", $"{m}x{n}x{k} tA={ta} tB={tb} a=1.5 b=0.5", device, reference, be =>
            {
                using var ta1 = be.Upload<float>([m * k], a);
                using var tb1 = be.Upload<float>([k * n], b);
                using var tc = be.Upload<float>([m * n], c);
                be.Gemm(ta, tb, m, n, k, 1.5f, ta1, tb1, 0.5f, tc);
                return be.DownloadArray(tc);
            });
        }

        foreach (string name in LayerRegistry.ActivationNames)
        {
            var f = LayerRegistry.CreateActivation(name);
            float[] x = Values(random, 300), dy = Values(random, 300);
            yield return Compare($"{f.Spec} forward, backward", "(3,100)", device, reference, be =>
            {
                using var tx = be.Upload<float>([3, 100], x);
                using var ty = Poisoned(be, [3, 100]);
                using var tdy = be.Upload<float>([3, 100], dy);
                using var tdx = Poisoned(be, [3, 100]);
                f.Apply(be, tx, ty);
                f.ApplyBackward(be, tx, ty, tdy, tdx);
                return [.. be.DownloadArray(ty), .. be.DownloadArray(tdx)];
            });
        }

        {
            int batch = random.Next(1, 300), classes = random.Next(2, 20);
            float[] z = Values(random, batch * classes).Select(v => v * 30).ToArray();
            int[] labels = Enumerable.Range(0, batch).Select(_ => random.Next(classes)).ToArray();
            yield return Compare("softmax cross-entropy", $"({batch},{classes})", device, reference, be =>
            {
                using var tz = be.Upload<float>([batch, classes], z);
                using var tl = be.Upload<int>([batch], labels);
                using var tg = Poisoned(be, [batch, classes]);
                using var loss = Poisoned(be, [1]);
                be.SoftmaxCrossEntropy(tz, tl, tg, loss);
                return [.. be.DownloadArray(tg), .. be.DownloadArray(loss)];
            });
        }

        {
            float[] y = Values(random, 2 * 7 * 30), bias = Values(random, 7);
            yield return Compare("bias add, bias gradient", "(2,7,30)", device, reference, be =>
            {
                using var ty = be.Upload<float>([2, 7, 30], y);
                using var tb = be.Upload<float>([7], bias);
                using var tg = Poisoned(be, [7]);
                be.BiasGradient(ty, tg);
                be.BiasAdd(ty, tb);
                return [.. be.DownloadArray(ty), .. be.DownloadArray(tg)];
            });
        }

        {
            float[] p = Values(random, 500), g1 = Values(random, 500), g2 = Values(random, 500);
            yield return Compare("sgd (momentum, nesterov, decay), adam", "(500) x 2 steps", device, reference, be =>
            {
                using var tp = be.Upload<float>([500], p);
                using var tq = be.Upload<float>([500], p);
                using var v = be.Upload<float>([500], new float[500]);
                using var m = be.Upload<float>([500], new float[500]);
                using var s = be.Upload<float>([500], new float[500]);
                var sgd = new SgdOptions(0.1f, 0.9f, 0f, 0.01f, Nesterov: true);
                var adam = new AdamOptions(0.01f, WeightDecay: 0.001f);
                foreach (var (grad, step) in (ValueTuple<float[], int>[])[(g1, 1), (g2, 2)])
                {
                    using var tg = be.Upload<float>([500], grad);
                    be.SgdUpdate(sgd, step == 1, tp, tg, v);
                    be.AdamUpdate(adam, step, tq, tg, m, s);
                }

                return [.. be.DownloadArray(tp), .. be.DownloadArray(tq)];
            });
        }
    }

    /// <summary>The reference's backward passes against central finite differences, in double.</summary>
    public static IEnumerable<SelfTestResult> GradientChecks(int seed)
    {
        var random = new Random(seed + 1);
        for (int i = 0; i < ShapesPerCheck; i++)
        {
            var g = RandomConvolution(random, small: true);
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
            var p = RandomPool(random);
            double[] x = Distinct(random, p.InputSize).Select(v => (double)v).ToArray(), probe = Doubles(random, p.OutputSize);
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
            yield return new SelfTestResult("gradient check: max+avg pool (reference)", $"x({p.N},{p.C},{p.H},{p.W}) k{p.KernelH}x{p.KernelW} s{p.StrideH}", diff, diff < 1e-6);
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

    /// <summary>
    /// Runs on both backends and compares: |d − r| ≤ 1e-3·(1 + |r|) everywhere (float sums of a few hundred
    /// products differ by summation order only; a wrong index or missed element is off by O(1)).
    /// </summary>
    private static SelfTestResult Compare(string check, string shape, Backend device, Backend reference, Func<Backend, float[]> run)
    {
        try
        {
            float[] expected = run(reference), actual = run(device);
            double worst = 0;
            bool passed = expected.Length == actual.Length;
            for (int i = 0; passed && i < expected.Length; i++)
            {
                double diff = Math.Abs((double)expected[i] - actual[i]);
                passed = !double.IsNaN(diff) || (float.IsNaN(expected[i]) && float.IsNaN(actual[i]));
                diff = double.IsNaN(diff) ? 0 : diff;
                passed &= diff <= 1e-3 * (1 + Math.Abs(expected[i]));
                worst = Math.Max(worst, diff);
            }

            return new SelfTestResult(check, shape, worst, passed);
        }
        catch (Exception e) when (e is DeviceFaultException or InvalidOperationException)
        {
            return new SelfTestResult(check, shape + " " + e.Message, double.NaN, false);
        }
    }

    private static Conv2dGeometry RandomConvolution(Random random, bool small = false)
    {
        while (true)
        {
            int r = random.Next(1, 6), s = random.Next(1, 6), stride = random.Next(1, 3);
            var g = new Conv2dGeometry(random.Next(1, small ? 3 : 4), random.Next(1, small ? 3 : 6), random.Next(4, small ? 8 : 13),
                random.Next(4, small ? 8 : 13), random.Next(1, small ? 4 : 7), r, s, stride, stride, random.Next(0, r), random.Next(0, s));
            if (g.R <= g.H + 2 * g.PadH && g.S <= g.W + 2 * g.PadW)
            {
                return g;
            }
        }
    }

    private static Pool2dGeometry RandomPool(Random random)
    {
        int k = random.Next(1, 4), stride = random.Next(1, k + 1);
        return new Pool2dGeometry(random.Next(1, 3), random.Next(1, 4), random.Next(k + 2, 11), random.Next(k + 2, 11), k, k, stride, stride,
            random.Next(0, k / 2 + 1), random.Next(0, k / 2 + 1));
    }

    private static float[] Values(Random random, int count) => Enumerable.Range(0, count).Select(_ => random.NextSingle() * 2 - 1).ToArray();

    private static double[] Doubles(Random random, int count) => Values(random, count).Select(v => (double)v).ToArray();

    /// <summary>Distinct values at least 1/count apart, so no pooling window has a tie and ±1e-6 keeps every arg-max.</summary>
    private static float[] Distinct(Random random, int count)
    {
        var values = Enumerable.Range(0, count).Select(i => (float)i / count * 4 - 2).ToArray();
        random.Shuffle(values);
        return values;
    }

    private static DeviceTensor<float> Poisoned(Backend backend, Shape shape)
    {
        var tensor = backend.Allocate<float>(shape);
        backend.Fill(tensor, float.NaN);
        return tensor;
    }

    private static double MaxDiff(double[] a, double[] b) => a.Zip(b, (u, v) => Math.Abs(u - v)).DefaultIfEmpty(0).Max();
}
