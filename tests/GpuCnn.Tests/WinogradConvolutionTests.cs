using System.Runtime.Intrinsics.X86;
using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// The CPU backend's Winograd convolution (<see cref="WinogradConvolution"/>): F(2×2, 3×3) forward and the
/// backward-data that runs through it, F(3×3, 2×2) for the filter gradient, against the reference in double, on each
/// AVX path; images and filters holding NaN or ±∞ left to the direct kernels.
/// </summary>
public sealed class WinogradConvolutionTests
{
    public static TheoryData<SimdWidth> Widths => new(Enum.GetValues<SimdWidth>().Where(w => w <= Simd.Best));

    /// <summary>
    /// Whole vectors of tiles (16×16); odd P and Q with six tiles a row (a vector's overhang, tiles split between two
    /// B panels, K not a multiple of the micro-kernel's 6 rows); no padding; padding 2; several blocks of tile rows
    /// (a 40×40 image of 64 → 64 channels) with 20 tiles a row; 300 channels (two depth blocks); one channel and
    /// three filters (a depth of 1, one panel of filters mostly zero rows); 15 and 30 tiles of five a row, where the
    /// last vector's overhang reaches past the panels the GEMM multiplies (256- and 512-bit panels of 16 and 32); seven
    /// 7×7 images, whose filter gradient takes each thread's images side by side; twenty 16×16 images, ten a thread in
    /// groups of eight, so a later group adds to the first's sums.
    /// </summary>
    public static readonly Conv2dGeometry[] Shapes =
    [
        new(N: 2, C: 16, H: 16, W: 16, K: 16, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 3, C: 19, H: 13, W: 11, K: 21, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 2, C: 16, H: 10, W: 21, K: 17, R: 3, S: 3),
        new(N: 2, C: 17, H: 7, W: 9, K: 16, R: 3, S: 3, PadH: 2, PadW: 2),
        new(N: 1, C: 64, H: 40, W: 40, K: 64, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 2, C: 300, H: 6, W: 5, K: 16, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 2, C: 1, H: 9, W: 8, K: 3, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 1, C: 16, H: 6, W: 10, K: 7, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 1, C: 16, H: 12, W: 10, K: 7, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 7, C: 16, H: 7, W: 7, K: 16, R: 3, S: 3, PadH: 1, PadW: 1),
        new(N: 20, C: 16, H: 16, W: 16, K: 16, R: 3, S: 3, PadH: 1, PadW: 1),
    ];

    [Theory]
    [MemberData(nameof(Widths))]
    public void Winograd_passes_match_the_reference(SimdWidth width)
    {
        Assert.SkipUnless(WinogradConvolution.CanRun(Shapes[0], width),
            $"Winograd runs on the AVX2 and AVX-512 paths only (this is {width}, AVX2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported})");
        using var winograd = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Always };
        using var direct = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Off };
        foreach (var g in Shapes)
        {
            Assert.True(WinogradConvolution.CanRun(g, width), $"{g} should run by Winograd");
            float[] x = TestData.Uniform(g.InputSize, 1), w = TestData.Uniform(g.WeightSize, 2), b = TestData.Uniform(g.K, 3);
            float[] dy = TestData.Uniform(g.OutputSize, 4);
            var (y, dx, dw) = ConvolutionPasses.Reference(g, x, w, b, dy);

            var (fast, fastDx, fastDw) = ConvolutionPasses.Run(winograd, g, x, w, b, dy);
            var (plain, plainDx, plainDw) = ConvolutionPasses.Run(direct, g, x, w, b, dy);
            // Sums of up to 2,700 products of values in [−1, 1], as with the direct kernels; the filter gradient's sums
            // run over the batch's outputs (up to 5,120 products), held as the direct kernels' are.
            TensorAssert.Close(y, fast, g.OutputShape, 1e-4, 1e-4, $"{width} Winograd forward {g}");
            TensorAssert.Close(dx, fastDx, g.InputShape, 1e-4, 1e-4, $"{width} Winograd backward-data {g}");
            TensorAssert.Close(dw, fastDw, g.WeightShape, 1e-4, 1e-4, $"{width} Winograd backward-filter {g}");

            // The Winograd path really ran: its rounding differs from the direct kernels' somewhere.
            Assert.False(fast.AsSpan().SequenceEqual(plain), $"{width} {g}: forward bitwise equal to the direct kernels");
            Assert.False(fastDx.AsSpan().SequenceEqual(plainDx), $"{width} {g}: backward-data bitwise equal to the direct kernels");
            Assert.False(fastDw.AsSpan().SequenceEqual(plainDw), $"{width} {g}: backward-filter bitwise equal to the direct kernels");
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void An_image_or_filter_holding_nan_or_infinity_is_computed_directly(SimdWidth width)
    {
        var g = Shapes[1];
        Assert.SkipUnless(WinogradConvolution.CanRun(g, width),
            $"Winograd runs on the AVX2 and AVX-512 paths only (this is {width})");
        using var winograd = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Always };
        using var direct = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Off };
        float[] x = TestData.Uniform(g.InputSize, 5), w = TestData.Uniform(g.WeightSize, 6), b = TestData.Uniform(g.K, 7);
        float[] dy = TestData.Uniform(g.OutputSize, 8);
        int image = g.C * g.H * g.W, plane = g.K * g.P * g.Q;

        // Image 1 holds an ∞ (in Winograd's transforms ∞ − ∞ = NaN, where PyTorch's direct sums give ±∞) and image 2 a
        // NaN, in x and in dy (backward-data's input): both bitwise as the direct kernels; image 0 by Winograd, so not
        // bitwise.
        x[image + (3 * g.H * g.W) + (4 * g.W) + 5] = float.PositiveInfinity;
        x[(2 * image) + 7] = float.NaN;
        dy[plane + (5 * g.P * g.Q) + (6 * g.Q) + 2] = float.NegativeInfinity;
        dy[(2 * plane) + (4 * g.Q) + 4] = float.NaN; // inside: where dy meets the zero padding, PyTorch's paths disagree (docs/01)
        var (fast, fastDx, fastDw) = ConvolutionPasses.Run(winograd, g, x, w, b, dy);
        var (plain, plainDx, _) = ConvolutionPasses.Run(direct, g, x, w, b, dy);
        Assert.Contains(fast.AsSpan(plane, plane).ToArray(), float.IsPositiveInfinity);
        Assert.Contains(fastDx.AsSpan(image, image).ToArray(), float.IsInfinity);
        TensorAssert.Identical<float>(plain.AsSpan(plane, 2 * plane), fast.AsSpan(plane, 2 * plane), $"{width} images with ∞ and NaN");
        TensorAssert.Identical<float>(plainDx.AsSpan(image, 2 * image), fastDx.AsSpan(image, 2 * image), $"{width} dy with ∞ and NaN");
        Assert.False(fast.AsSpan(0, plane).SequenceEqual(plain.AsSpan(0, plane)), $"{width} the finite image ran by Winograd");
        Assert.False(fastDx.AsSpan(0, image).SequenceEqual(plainDx.AsSpan(0, image)), $"{width} the finite dy ran by Winograd");

        // The filter gradient: images 1 and 2 by the direct kernels, image 0 by Winograd; NaN and ∞ land where the
        // reference puts them.
        var dw = new double[g.WeightSize];
        ReferenceMath.Conv2dBackwardFilter<double>(g, TestData.Widen(x), TestData.Widen(dy), dw, []);
        Assert.Contains(dw, double.IsNaN);
        Assert.Contains(dw, double.IsFinite);
        TensorAssert.Close(dw, fastDw, g.WeightShape, 1e-4, 1e-4, $"{width} filter gradient with ∞ and NaN");

        // Small images side by side in the filter gradient, the first of the second thread's four holding an ∞: it goes
        // to the direct kernels (in the transforms ∞ − ∞ would make NaN where the reference has ±∞) and the other three
        // stay together.
        var small = Shapes[^2];
        float[] xs = TestData.Uniform(small.InputSize, 9), dys = TestData.Uniform(small.OutputSize, 10);
        xs[(3 * small.C * small.H * small.W) + (2 * small.H * small.W) + (3 * small.W) + 3] = float.PositiveInfinity;
        var smallDw = new double[small.WeightSize];
        ReferenceMath.Conv2dBackwardFilter<double>(small, TestData.Widen(xs), TestData.Widen(dys), smallDw, []);
        var (_, _, groupedDw) = ConvolutionPasses.Run(winograd, small, xs, TestData.Uniform(small.WeightSize, 11), TestData.Uniform(small.K, 12), dys);
        Assert.Contains(smallDw, double.IsInfinity);
        TensorAssert.Close(smallDw, groupedDw, small.WeightShape, 1e-4, 1e-4, $"{width} grouped filter gradient with a NaN image");

        // A filter holding −∞: the whole layer directly. 300 → 16 channels: the filters' transform is split between
        // the two threads, and filter 9 lies in the second thread's panels.
        g = Shapes[5];
        x = TestData.Uniform(g.InputSize, 5);
        w = TestData.Uniform(g.WeightSize, 6);
        b = TestData.Uniform(g.K, 7);
        dy = TestData.Uniform(g.OutputSize, 8);
        AssertAFilterWithMinusInfinityGivesTheBitsOf(direct, winograd, g, x, w, b, dy, (9 * g.C * 9) + 4, width);
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void A_finite_image_whose_transforms_overflow_is_computed_directly(SimdWidth width)
    {
        // 3e38 at one pixel and filters in [−1, 1]: every direct sum stays finite (PyTorch's too), where U·V (U up to
        // 2.25·|w|) passed float's maximum and 82 outputs had come out ±∞ or NaN.
        var g = Shapes[1];
        Assert.SkipUnless(WinogradConvolution.CanRun(g, width), $"Winograd runs on the AVX2 and AVX-512 paths only (this is {width})");
        using var winograd = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Always };
        using var direct = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Off };
        float[] x = TestData.Uniform(g.InputSize, 5), w = TestData.Uniform(g.WeightSize, 6), b = TestData.Uniform(g.K, 7);
        int image = g.C * g.H * g.W, plane = g.K * g.P * g.Q;
        x[image + (5 * g.H * g.W) + (7 * g.W) + 7] = 3e38f;
        var (fast, _, _) = ConvolutionPasses.Run(winograd, g, x, w, b, TestData.Uniform(g.OutputSize, 8));
        var (plain, _, _) = ConvolutionPasses.Run(direct, g, x, w, b, TestData.Uniform(g.OutputSize, 8));
        Assert.All(plain, v => Assert.True(float.IsFinite(v)));
        TensorAssert.Identical<float>(plain.AsSpan(plane, plane), fast.AsSpan(plane, plane), $"{width} the image holding 3e38");
        Assert.False(fast.AsSpan(0, plane).SequenceEqual(plain.AsSpan(0, plane)), $"{width} the other images ran by Winograd");
    }

    /// <summary>With w[<paramref name="index"/>] = −∞, <paramref name="tried"/>'s forward and backward-data bitwise <paramref name="expected"/>'s.</summary>
    private static void AssertAFilterWithMinusInfinityGivesTheBitsOf(CpuBackend expected, CpuBackend tried, Conv2dGeometry g, float[] x, float[] w,
        float[] b, float[] dy, int index, SimdWidth width)
    {
        w[index] = float.NegativeInfinity;
        var (fast, fastDx, _) = ConvolutionPasses.Run(tried, g, x, w, b, dy);
        var (plain, plainDx, _) = ConvolutionPasses.Run(expected, g, x, w, b, dy);
        TensorAssert.Identical<float>(plain, fast, $"{width} a filter with −∞");
        TensorAssert.Identical<float>(plainDx, fastDx, $"{width} backward-data through a filter with −∞");
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Auto_runs_wide_3x3_layers_by_winograd_and_narrow_ones_directly(SimdWidth width)
    {
        var wide = new Conv2dGeometry(N: 1, C: 64, H: 16, W: 16, K: 64, R: 3, S: 3, PadH: 1, PadW: 1);
        var narrow = new Conv2dGeometry(N: 1, C: 16, H: 16, W: 16, K: 16, R: 3, S: 3, PadH: 1, PadW: 1);
        var small = new Conv2dGeometry(N: 2, C: 64, H: 7, W: 7, K: 64, R: 3, S: 3, PadH: 1, PadW: 1); // 16 tiles an image
        var single = small with { N = 1 };
        Assert.SkipUnless(WinogradConvolution.CanRun(wide, width), $"Winograd runs on the AVX2 and AVX-512 paths only (this is {width})");
        using var auto = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Auto };
        using var direct = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Off };

        // Forward and backward-data, then the filter gradient: the small layer's forward on both paths (two images side
        // by side fill a 512-bit panel), one image of it only on 256-bit vectors; its filter gradient on neither. Its
        // passes go by Winograd on the AVX2 path only: on AVX-512 the kernel vectorised across filters takes them from
        // both backends (FilterVectorConvolution.Pays), with the same bits.
        foreach (var (g, passes, gradient) in (ValueTuple<Conv2dGeometry, bool, bool>[])
                     [(wide, true, true), (narrow, false, false), (small, true, false), (single, width == SimdWidth.Vector256, false)])
        {
            float[] x = TestData.Uniform(g.InputSize, 1), w = TestData.Uniform(g.WeightSize, 2), b = TestData.Uniform(g.K, 3);
            float[] dy = TestData.Uniform(g.OutputSize, 4);
            var (fast, fastDx, fastDw) = ConvolutionPasses.Run(auto, g, x, w, b, dy);
            var (plain, plainDx, plainDw) = ConvolutionPasses.Run(direct, g, x, w, b, dy);
            Assert.Equal(passes, WinogradConvolution.Pays(g, width));
            Assert.Equal(gradient, WinogradConvolution.PaysForFilterGradient(g, width));
            bool byWinograd = passes && !(FilterVectorConvolution.Suits(g, width) && FilterVectorConvolution.Pays(g, width, winograd: true));
            Assert.Equal(g == small && width == SimdWidth.Vector512 && Avx512F.VL.IsSupported, passes && !byWinograd);
            Assert.Equal(!byWinograd, fast.AsSpan().SequenceEqual(plain));
            Assert.Equal(!byWinograd, fastDx.AsSpan().SequenceEqual(plainDx));
            Assert.Equal(!gradient, fastDw.AsSpan().SequenceEqual(plainDw));
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void What_winograd_leaves_to_the_direct_kernels_takes_the_route_of_winograd_off(SimdWidth width)
    {
        // Layers Winograd runs under Auto that are vectorised across filters with Winograd off: 64 → 64 at 7×7 on AVX2,
        // 96 → 32 at 7×7 on AVX-512 (more than 64 input channels). An image (or dy) holding a NaN, and then every image
        // under a filter holding −∞, must get Off's bits — from the kernel vectorised across filters, not the blocked one.
        var g = width == SimdWidth.Vector512
            ? new Conv2dGeometry(N: 3, C: 96, H: 7, W: 7, K: 32, R: 3, S: 3, PadH: 1, PadW: 1)
            : new Conv2dGeometry(N: 3, C: 64, H: 7, W: 7, K: 64, R: 3, S: 3, PadH: 1, PadW: 1);
        Assert.SkipUnless(WinogradConvolution.Pays(g, width) && FilterVectorConvolution.Suits(g, width),
            $"Winograd and the kernel vectorised across filters both run on the AVX2 and AVX-512 paths only (this is {width})");
        Assert.False(FilterVectorConvolution.Pays(g, width, winograd: true));
        Assert.True(FilterVectorConvolution.Pays(g, width, winograd: false));
        using var auto = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Auto };
        using var off = new CpuBackend(threads: 2, width) { Winograd = WinogradMode.Off };
        float[] x = TestData.Uniform(g.InputSize, 21), w = TestData.Uniform(g.WeightSize, 22), b = TestData.Uniform(g.K, 23);
        float[] dy = TestData.Uniform(g.OutputSize, 24);
        int image = g.C * g.H * g.W, plane = g.K * g.P * g.Q;
        x[image + (2 * g.H * g.W) + 10] = float.NaN;
        dy[plane + (3 * g.P * g.Q) + 11] = float.NaN;
        var (fast, fastDx, _) = ConvolutionPasses.Run(auto, g, x, w, b, dy);
        var (plain, plainDx, _) = ConvolutionPasses.Run(off, g, x, w, b, dy);
        TensorAssert.Identical<float>(plain.AsSpan(plane, plane), fast.AsSpan(plane, plane), $"{width} the image holding a NaN");
        TensorAssert.Identical<float>(plainDx.AsSpan(image, image), fastDx.AsSpan(image, image), $"{width} the dy holding a NaN");
        Assert.False(fast.AsSpan(0, plane).SequenceEqual(plain.AsSpan(0, plane)), $"{width} the finite image ran by Winograd");

        AssertAFilterWithMinusInfinityGivesTheBitsOf(off, auto, g, x, w, b, dy, (5 * g.C * 9) + 4, width);
    }

    [Theory]
    [InlineData("GPUCNN_CPU_WINOGRAD", "sometimes", "GPUCNN_CPU_WINOGRAD is 'sometimes'; expected off, auto or always.")]
    [InlineData("GPUCNN_CPU_FILTER_VECTORS", "on", "GPUCNN_CPU_FILTER_VECTORS is 'on'; expected off or auto.")]
    public void A_misspelt_cpu_route_setting_is_a_clear_error(string variable, string value, string message)
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "starts the CLI through env");
        var run = CliProcess.RunWithEnvironment(["bench", "--device", "cpu", "--only", "gemm-256", "--quick"], variable, value);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Error, StringComparison.Ordinal);
    }
}
