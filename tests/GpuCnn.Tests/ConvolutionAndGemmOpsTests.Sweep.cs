using GpuCnn.Cpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Seeded random geometries, beyond the named cases: every backend's convolution passes (with pooling) and GEMMs against
/// the reference in double. A sweep of this kind (a helper's, ~100,000 cases) found batch norm's cancellation (its sweep
/// is in <see cref="BackendOpsTests"/>); this one keeps the routes each backend picks by shape (blocked, Winograd,
/// direct, im2col, implicit GEMM, split depths) honest on shapes no one wrote down. The same seed gives every backend
/// the same geometries.
/// </summary>
public abstract partial class ConvolutionAndGemmOpsTests
{
    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Random_convolution_and_pooling_geometries_match_reference()
    {
        // ILGPU's CPU accelerator emulates GPU threads: fewer and smaller cases there.
        bool emulated = Backend is Ilgpu.IlgpuBackend;
        int cases = emulated ? 30 : 400, largest = emulated ? 7 : 13;
        var random = new Random(20261127);
        for (int i = 0; i < cases; i++)
        {
            var g = RandomConvolution(random, largest);
            float[] x = TestData.Uniform(g.InputSize, 100 + i), w = TestData.Uniform(g.WeightSize, 200 + i);
            float[] b = TestData.Uniform(g.K, 300 + i), dy = TestData.Uniform(g.OutputSize, 400 + i);
            var expected = ConvolutionPasses.Reference(g, x, w, b, dy);
            var actual = ConvolutionPasses.Run(Backend, g, x, w, b, dy);
            string what = $"{Backend.Name} sweep case {i}: {g}";
            TensorAssert.Close(expected.Y, actual.Y, g.OutputShape, Atol, Rtol, $"{what} y");
            TensorAssert.Close(expected.Dx, actual.Dx, g.InputShape, Atol, Rtol, $"{what} dx");
            TensorAssert.Close(expected.Dw, actual.Dw, g.WeightShape, Atol, Rtol, $"{what} dw");

            var p = RandomPooling(random, largest);
            float[] px = TestData.Uniform(p.InputSize, 500 + i), pdy = TestData.Uniform(p.OutputSize, 600 + i);
            double[] maxY = new double[p.OutputSize], avgY = new double[p.OutputSize], maxDx = new double[p.InputSize], avgDx = new double[p.InputSize];
            int[] switches = new int[p.OutputSize];
            ReferenceMath.MaxPool2dForward<double>(p, TestData.Widen(px), maxY, switches);
            ReferenceMath.MaxPool2dBackward<double>(p, TestData.Widen(pdy), switches, maxDx);
            ReferenceMath.AvgPool2dForward<double>(p, TestData.Widen(px), avgY);
            ReferenceMath.AvgPool2dBackward<double>(p, TestData.Widen(pdy), avgDx);
            using var tx = Put(px, p.InputShape);
            using var tdy = Put(pdy, p.OutputShape);
            using var ty = Poisoned(p.OutputShape);
            using var tdx = Poisoned(p.InputShape);
            using var tswitches = Backend.Allocate<int>(p.OutputShape);
            Backend.MaxPool2dForward(p, tx, ty, tswitches);
            Backend.MaxPool2dBackward(p, tdy, tswitches, tdx);
            string pooled = $"{Backend.Name} sweep case {i}: pool {p}";
            TensorAssert.Close(maxY, Backend.DownloadArray(ty), p.OutputShape, Atol, Rtol, $"{pooled} max y");
            Assert.Equal(switches, Backend.DownloadArray(tswitches));
            TensorAssert.Close(maxDx, Backend.DownloadArray(tdx), p.InputShape, Atol, Rtol, $"{pooled} max dx");
            Backend.AvgPool2dForward(p, tx, ty);
            Backend.AvgPool2dBackward(p, tdy, tdx);
            TensorAssert.Close(avgY, Backend.DownloadArray(ty), p.OutputShape, Atol, Rtol, $"{pooled} avg y");
            TensorAssert.Close(avgDx, Backend.DownloadArray(tdx), p.InputShape, Atol, Rtol, $"{pooled} avg dx");
        }
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Random_gemm_shapes_transposes_and_scales_match_reference()
    {
        // Sizes that are no multiple of any tile (the tiled kernels' edges), every transpose, β = 0 and β ≠ 0.
        bool emulated = Backend is Ilgpu.IlgpuBackend;
        var random = new Random(20261129);
        for (int i = 0; i < (emulated ? 8 : 150); i++)
        {
            int largest = emulated ? 40 : 150;
            int m = random.Next(1, largest), n = random.Next(1, largest), k = random.Next(1, largest);
            bool ta = random.Next(2) == 0, tb = random.Next(2) == 0;
            float alpha = (float)((random.NextDouble() * 2) - 1), beta = random.Next(2) == 0 ? 0f : (float)random.NextDouble();
            float[] a = TestData.Uniform(m * k, 1300 + i), b = TestData.Uniform(k * n, 1400 + i), c = TestData.Uniform(m * n, 1500 + i);
            double[] expected = TestData.Widen(c);
            ReferenceMath.Gemm<double>(ta, tb, m, n, k, alpha, TestData.Widen(a), TestData.Widen(b), beta, expected);
            using var deviceA = Put(a, [m * k]);
            using var deviceB = Put(b, [k * n]);
            using var deviceC = Put(c, [m * n]);
            Backend.Gemm(ta, tb, m, n, k, alpha, deviceA, deviceB, beta, deviceC);
            TensorAssert.Close(expected, Backend.DownloadArray(deviceC), new Shape(m, n), Atol, Rtol,
                $"{Backend.Name} sweep case {i}: gemm {m}x{n}x{k}, transposes {ta}/{tb}, alpha {alpha:F3}, beta {beta:F3}");
        }
    }

    /// <summary>A legal convolution: rectangular kernels, strides, padding, dilation and groups, outputs of 1 included.</summary>
    private static Conv2dGeometry RandomConvolution(Random random, int largest)
    {
        while (true)
        {
            int groups = random.Next(4) == 0 ? random.Next(1, 4) : 1;
            var g = new Conv2dGeometry(
                N: random.Next(1, 4), C: groups * random.Next(1, 4), H: random.Next(1, largest + 1), W: random.Next(1, largest + 1),
                K: groups * random.Next(1, 5), R: random.Next(1, 6), S: random.Next(1, 6),
                StrideH: random.Next(1, 4), StrideW: random.Next(1, 4), PadH: random.Next(3), PadW: random.Next(3),
                DilationH: random.Next(4) == 0 ? 2 : 1, DilationW: random.Next(4) == 0 ? 2 : 1, Groups: groups);
            if (g.H + (2 * g.PadH) >= g.ExtentH && g.W + (2 * g.PadW) >= g.ExtentW)
            {
                return g;
            }
        }
    }

    /// <summary>
    /// A legal pooling window: rectangular, overlapping or gapped, padded up to half the window, in ceil mode half the
    /// time, its padding uncounted by averages half the time.
    /// </summary>
    private static Pool2dGeometry RandomPooling(Random random, int largest)
    {
        while (true)
        {
            int kh = random.Next(1, 5), kw = random.Next(1, 5);
            var p = new Pool2dGeometry(random.Next(1, 4), random.Next(1, 5), random.Next(1, largest + 1), random.Next(1, largest + 1),
                kh, kw, random.Next(1, 4), random.Next(1, 4), random.Next((kh / 2) + 1), random.Next((kw / 2) + 1))
            {
                CeilMode = random.Next(2) == 0,
                CountIncludePad = random.Next(2) == 0,
            };
            if (p.H + (2 * p.PadH) >= p.KernelH && p.W + (2 * p.PadW) >= p.KernelW)
            {
                return p;
            }
        }
    }
}
