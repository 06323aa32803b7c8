using GpuCnn.Cpu;
using GpuCnn.Ilgpu;
using GpuCnn.Kernels;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// The test bodies of the operations whose kernels a backend's settings choose — convolutions (direct, im2col + GEMM,
/// implicit GEMM, few-taps, depthwise) and GEMMs (dense layers included) — run once per backend by the classes at the
/// end of <see cref="BackendOpsTests"/>, which adds every other operation. The classes that force one route of these
/// (tiled GEMMs, the implicit GEMM's tile widths and depth splits, the few-taps filter gradients) derive from this class
/// alone: those settings choose nothing else, so every other operation launches the kernels the classes of the same
/// group size test (<see cref="IlgpuCpuBackendOps"/>, <see cref="IlgpuCpuGpuGroupsBackendOps"/>,
/// <see cref="CudaBackendOps"/>; the 128-thread class's groups lie between the 16 and 256 tested, and no GPU has them).
/// On ILGPU backends each test declared in <see cref="BackendOpsTests"/> is checked, as it ends, to have launched no
/// kernel of these families (<see cref="RoutedFamilies"/>), so a test cannot sit on the wrong side of the line.
/// </summary>
/// <remarks>
/// Tolerances: every output here is a float32 sum of at most ~250 products of values in [−2, 2]; float rounding
/// then stays below ~250 · 6e-8 · 4 ≈ 6e-5 absolute, so atol 1e-4 with rtol 1e-4 leaves no room for a wrong index.
/// </remarks>
public abstract partial class ConvolutionAndGemmOpsTests(BackendFixture fixture) : IDisposable
{
    protected const double Atol = 1e-4;
    protected const double Rtol = 1e-4;

    /// <summary>The kernel classes whose launches the convolution and GEMM settings of <see cref="IlgpuBackend"/> choose.</summary>
    private static readonly Type[] RoutedFamilies =
    [
        typeof(ConvolutionKernels), typeof(ConvolutionGemmKernels), typeof(ConvolutionImplicitGemmKernels), typeof(ConvolutionFewTapsKernels),
        typeof(DepthwiseKernels), typeof(GemmKernels), typeof(GemmTiledKernels), typeof(GemmTiled8x8Kernels),
    ];

    private readonly List<System.Reflection.MethodInfo> _launched = [];
    private Backend? _backend;

    protected Backend Backend => _backend ??= Observed(fixture.Require());

    /// <summary>The shared operation catalogue's convolution and GEMM cases (`gpucnn selftest` runs them all), as "index: name shape".</summary>
    public static TheoryData<string> ConvolutionAndGemmCatalogueCases => CatalogueCasesWhere(IsConvolutionOrGemm);

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(ConvolutionAndGemmCatalogueCases))]
    public void Catalogue_convolution_and_gemm_case_matches_the_reference(string name) => CatalogueCaseMatchesTheReference(name);

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(Cases.ConvolutionNames), MemberType = typeof(Cases))]
    public void Conv2dForward_matches_reference(string name)
    {
        var g = Cases.Convolutions[name];
        foreach (bool withBias in (bool[])[true, false])
        {
            float[] x = TestData.Uniform(g.InputSize, 1), w = TestData.Uniform(g.WeightSize, 2), b = TestData.Uniform(g.K, 3);
            var expected = new double[g.OutputSize];
            ReferenceMath.Conv2dForward<double>(g, TestData.Widen(x), TestData.Widen(w), withBias ? TestData.Widen(b) : [], expected);

            using var dx = Put(x, g.InputShape);
            using var dw = Put(w, g.WeightShape);
            using var db = Put(b, [g.K]);
            using var dy = Poisoned(g.OutputShape);
            Backend.Conv2dForward(g, dx, dw, withBias ? db : null, dy);
            TensorAssert.Close(expected, Backend.DownloadArray(dy), g.OutputShape, Atol, Rtol, $"{Backend.Name} conv forward {name} bias={withBias}");
        }
    }

    [Theory]
    [Trait("Category", "GradientCheck")]
    [MemberData(nameof(Cases.ConvolutionNames), MemberType = typeof(Cases))]
    public void Conv2dBackwardData_matches_reference(string name)
    {
        var g = Cases.Convolutions[name];
        float[] gy = TestData.Uniform(g.OutputSize, 4), w = TestData.Uniform(g.WeightSize, 5);
        var expected = new double[g.InputSize];
        ReferenceMath.Conv2dBackwardData<double>(g, TestData.Widen(gy), TestData.Widen(w), expected);

        using var dgy = Put(gy, g.OutputShape);
        using var dw = Put(w, g.WeightShape);
        using var dgx = Poisoned(g.InputShape);
        Backend.Conv2dBackwardData(g, dgy, dw, dgx);
        TensorAssert.Close(expected, Backend.DownloadArray(dgx), g.InputShape, Atol, Rtol, $"{Backend.Name} conv backward-data {name}");
    }

    [Theory]
    [Trait("Category", "GradientCheck")]
    [MemberData(nameof(Cases.ConvolutionNames), MemberType = typeof(Cases))]
    public void Conv2dBackwardFilter_matches_reference(string name)
    {
        var g = Cases.Convolutions[name];
        float[] x = TestData.Uniform(g.InputSize, 6), gy = TestData.Uniform(g.OutputSize, 7);
        var expectedW = new double[g.WeightSize];
        var expectedB = new double[g.K];
        ReferenceMath.Conv2dBackwardFilter<double>(g, TestData.Widen(x), TestData.Widen(gy), expectedW, expectedB);

        using var dx = Put(x, g.InputShape);
        using var dgy = Put(gy, g.OutputShape);
        using var dgw = Poisoned(g.WeightShape);
        using var dgb = Poisoned([g.K]);
        Backend.Conv2dBackwardFilter(g, dx, dgy, dgw, dgb);
        TensorAssert.Close(expectedW, Backend.DownloadArray(dgw), g.WeightShape, Atol, Rtol, $"{Backend.Name} conv backward-filter {name}");
        TensorAssert.Close(expectedB, Backend.DownloadArray(dgb), new Shape(g.K), Atol, Rtol, $"{Backend.Name} conv bias gradient {name}");

        // Without a bias (bias=false layers): the routes that add the bias gradient on the way leave it out.
        using var dgwAlone = Poisoned(g.WeightShape);
        Backend.Conv2dBackwardFilter(g, dx, dgy, dgwAlone, db: null);
        TensorAssert.Close(expectedW, Backend.DownloadArray(dgwAlone), g.WeightShape, Atol, Rtol, $"{Backend.Name} conv backward-filter without a bias {name}");
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [InlineData(1, 1, 1)]
    [InlineData(7, 5, 3)]
    [InlineData(17, 33, 9)]
    [InlineData(3, 1, 20)]
    [InlineData(9, 35, 70)]
    public void Gemm_matches_reference_for_every_transpose(int m, int n, int k)
    {
        foreach (var (ta, tb) in (ValueTuple<bool, bool>[])[(false, false), (true, false), (false, true), (true, true)])
        {
            float[] a = TestData.Uniform(m * k, 13), b = TestData.Uniform(k * n, 14), c = TestData.Uniform(m * n, 15);

            // β = 0: C is poisoned and must be overwritten, not read.
            var expected = new double[m * n];
            ReferenceMath.Gemm<double>(ta, tb, m, n, k, 1.0, TestData.Widen(a), TestData.Widen(b), 0.0, expected);
            using var da = Put(a, [m * k]);
            using var db = Put(b, [k * n]);
            using var dc = Poisoned([m * n]);
            Backend.Gemm(ta, tb, m, n, k, 1f, da, db, 0f, dc);
            TensorAssert.Close(expected, Backend.DownloadArray(dc), new Shape(m, n), Atol, Rtol, $"{Backend.Name} gemm {m}x{n}x{k} tA={ta} tB={tb} beta=0");

            // α = −1.5, β = 0.5: C accumulates.
            var expectedAcc = TestData.Widen(c);
            ReferenceMath.Gemm<double>(ta, tb, m, n, k, -1.5, TestData.Widen(a), TestData.Widen(b), 0.5, expectedAcc);
            Backend.Upload<float>(c, dc);
            Backend.Gemm(ta, tb, m, n, k, -1.5f, da, db, 0.5f, dc);
            TensorAssert.Close(expectedAcc, Backend.DownloadArray(dc), new Shape(m, n), Atol, Rtol, $"{Backend.Name} gemm {m}x{n}x{k} tA={ta} tB={tb} beta=0.5");
        }
    }

    /// <summary>
    /// The functions every geometry applies fused on every backend: ReLU, a leaky ReLU with a negative slope (an argument
    /// the epilogue must carry) and GELU (erf). The others apply on ILGPU's CPU accelerator, whose emulated threads make
    /// it the slow backend, only on <see cref="FusionRouteSample"/>: each epilogue is the same generic code whatever the
    /// function, and every function's own arithmetic is checked by Activation_forward_and_backward_match_reference.
    /// </summary>
    private static readonly string[] FusedOnEveryGeometry = ["relu", "leakyrelu(-0.2)", "gelu"];

    /// <summary>A geometry a route: plain strided and padded, 1×1, grouped, depthwise, dilated, 24 filters (a 32-filter tile's second half), a 7×7 stem.</summary>
    private static readonly string[] FusionRouteSample =
        ["batch2 stride2 pad1 odd", "1x1", "groups 2 stride 2 pad 1", "depthwise 3x3 pad 1, rows of 21", "dilation 2 pad 2",
         "24 filters from 20 channels", "7x7 stride 2 stem, 20 filters"];

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(Cases.ActivationSpecs), MemberType = typeof(Cases))]
    public void Conv2dForward_fuses_bias_and_activation(string spec)
    {
        var f = Cases.Activation(spec);
        bool sampled = Backend is IlgpuBackend { IsGpu: false } && !FusedOnEveryGeometry.Contains(spec);
        Assert.All(FusionRouteSample, name => Assert.True(Cases.Convolutions.ContainsKey(name), $"no convolution case '{name}'"));
        foreach (var g in Cases.Convolutions.Where(c => !sampled || FusionRouteSample.Contains(c.Key)).Select(c => c.Value))
        {
            foreach (bool bias in (ReadOnlySpan<bool>)[true, false]) // without one, the GEMM routes' epilogue applies f alone
            {
                float[] x = TestData.Uniform(g.InputSize, 26), w = TestData.Uniform(g.WeightSize, 27), b = bias ? TestData.Uniform(g.K, 28) : [];
                var expected = new double[g.OutputSize];
                ReferenceMath.Conv2dForward<double>(g, TestData.Widen(x), TestData.Widen(w), TestData.Widen(b), expected);
                expected = [.. expected.Select(f.Evaluate)];

                using var dx = Put(x, g.InputShape);
                using var dw = Put(w, g.WeightShape);
                using var db = bias ? Put(b, [g.K]) : null;
                using var dy = Poisoned(g.OutputShape);
                f.Conv2dForward(Backend, g, dx, dw, db, dy);
                TensorAssert.Close(expected, Backend.DownloadArray(dy), g.OutputShape, Atol, Rtol, $"{Backend.Name} conv + {spec} {g} bias {bias}");
            }
        }
    }

    [Theory]
    [Trait("Category", "CrossCheck")]
    [MemberData(nameof(Cases.ActivationSpecsAndNone), MemberType = typeof(Cases))]
    public void LinearForward_fuses_gemm_bias_and_activation(string spec)
    {
        const int batch = 5, inFeatures = 37, outFeatures = 19;
        float[] x = TestData.Uniform(batch * inFeatures, 23), w = TestData.Uniform(outFeatures * inFeatures, 24), b = TestData.Uniform(outFeatures, 25);
        var expected = new double[batch * outFeatures];
        ReferenceMath.Gemm<double>(false, true, batch, outFeatures, inFeatures, 1.0, TestData.Widen(x), TestData.Widen(w), 0.0, expected);
        ReferenceMath.BiasAdd<double>(expected, TestData.Widen(b), batch, outFeatures, 1);
        var f = spec == "none" ? null : Cases.Activation(spec);
        if (f is not null)
        {
            expected = [.. expected.Select(f.Evaluate)];
        }

        using var dx = Put(x, [batch, inFeatures]);
        using var dw = Put(w, [outFeatures, inFeatures]);
        using var db = Put(b, [outFeatures]);
        using var dy = Poisoned([batch, outFeatures]);
        if (f is null)
        {
            Backend.LinearForward(dx, dw, db, dy, default(Kernels.Identity));
        }
        else
        {
            f.LinearForward(Backend, dx, dw, db, dy);
        }

        TensorAssert.Close(expected, Backend.DownloadArray(dy), new Shape(batch, outFeatures), Atol, Rtol, $"{Backend.Name} linear {spec}");
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Backward_passes_are_bitwise_reproducible()
    {
        var g = Cases.Convolutions["batch2 stride2 pad1 odd"];
        var pool = Cases.Pools["overlap 3x3 s2"];
        float[] Run()
        {
            using var x = Put(TestData.Uniform(g.InputSize, 50), g.InputShape);
            using var gy = Put(TestData.Uniform(g.OutputSize, 51), g.OutputShape);
            using var w = Put(TestData.Uniform(g.WeightSize, 52), g.WeightShape);
            using var gw = Poisoned(g.WeightShape);
            using var gb = Poisoned([g.K]);
            using var gx = Poisoned(g.InputShape);
            Backend.Conv2dBackwardFilter(g, x, gy, gw, gb);
            Backend.Conv2dBackwardData(g, gy, w, gx);
            using var px = Put(TestData.Uniform(pool.InputSize, 53), pool.InputShape);
            using var py = Poisoned(pool.OutputShape);
            using var sw = PoisonedSwitches(pool.OutputShape);
            using var pgy = Put(TestData.Uniform(pool.OutputSize, 54), pool.OutputShape);
            using var pgx = Poisoned(pool.InputShape);
            Backend.MaxPool2dForward(pool, px, py, sw);
            Backend.MaxPool2dBackward(pool, pgy, sw, pgx);
            return [.. Backend.DownloadArray(gw), .. Backend.DownloadArray(gb), .. Backend.DownloadArray(gx), .. Backend.DownloadArray(pgx)];
        }

        TensorAssert.Identical<float>(Run(), Run(), $"{Backend.Name} backward passes");
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Worked_example_6x6_input_3x3_filter_gives_4x4_edge_map()
    {
        // A vertical edge: 10s on the left half, 0s on the right; the filter [1 0 −1] in every row.
        var g = new Conv2dGeometry(N: 1, C: 1, H: 6, W: 6, K: 1, R: 3, S: 3);
        Assert.Equal((4, 4), (g.P, g.Q)); // ⌊(6 + 0 − 3) / 1⌋ + 1
        float[] x = new float[36];
        for (int h = 0; h < 6; h++)
        {
            for (int w = 0; w < 3; w++)
            {
                x[h * 6 + w] = 10f;
            }
        }

        float[] filter = [1, 0, -1, 1, 0, -1, 1, 0, -1];
        using var dx = Put(x, g.InputShape);
        using var dw = Put(filter, g.WeightShape);
        using var dy = Poisoned(g.OutputShape);
        Backend.Conv2dForward(g, dx, dw, null, dy);
        double[] expected = [0, 30, 30, 0, 0, 30, 30, 0, 0, 30, 30, 0, 0, 30, 30, 0];
        TensorAssert.Close(expected, Backend.DownloadArray(dy), g.OutputShape, 0, 0, $"{Backend.Name} 6x6 * 3x3");
    }

    [Theory]
    [Trait("Category", "GradientCheck")]
    [MemberData(nameof(Cases.ConvolutionNames), MemberType = typeof(Cases))]
    public void Backward_data_equals_the_transpose_of_the_forward_scatter(string name)
    {
        // The rotated-kernel full convolution must equal the direct chain rule: every dy[n,k,p,q] sends
        // dy·w[k,c,r,s] back to the input pixel x[n,c,p·Sh+r·Dh−Ph, q·Sw+s·Dw−Pw] it came from (c over k's group).
        var g = Cases.Convolutions[name];
        float[] gy = TestData.Uniform(g.OutputSize, 60), w = TestData.Uniform(g.WeightSize, 61);
        var expected = new double[g.InputSize];
        for (int n = 0; n < g.N; n++)
        {
            for (int k = 0; k < g.K; k++)
            {
                for (int p = 0; p < g.P; p++)
                {
                    for (int q = 0; q < g.Q; q++)
                    {
                        int cg = g.C / g.Groups, first = k / (g.K / g.Groups) * cg;
                        for (int c = 0; c < cg; c++)
                        {
                            for (int r = 0; r < g.R; r++)
                            {
                                for (int s = 0; s < g.S; s++)
                                {
                                    int h = p * g.StrideH + r * g.DilationH - g.PadH, col = q * g.StrideW + s * g.DilationW - g.PadW;
                                    if (h >= 0 && h < g.H && col >= 0 && col < g.W)
                                    {
                                        expected[((n * g.C + first + c) * g.H + h) * g.W + col] +=
                                            (double)gy[((n * g.K + k) * g.P + p) * g.Q + q] * w[((k * cg + c) * g.R + r) * g.S + s];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        using var dgy = Put(gy, g.OutputShape);
        using var dw = Put(w, g.WeightShape);
        using var dgx = Poisoned(g.InputShape);
        Backend.Conv2dBackwardData(g, dgy, dw, dgx);
        TensorAssert.Close(expected, Backend.DownloadArray(dgx), g.InputShape, Atol, Rtol, $"{Backend.Name} backward-data vs scatter {name}");
    }

    protected DeviceTensor<float> Put(float[] values, Shape shape) => Backend.Upload<float>(shape, values);

    /// <summary>An output tensor filled with NaN, so any element the operation fails to write shows up.</summary>
    protected DeviceTensor<float> Poisoned(Shape shape)
    {
        var tensor = Backend.Allocate<float>(shape);
        Backend.Fill(tensor, float.NaN);
        return tensor;
    }

    protected DeviceTensor<int> PoisonedSwitches(Shape shape)
    {
        var values = new int[shape.Size];
        Array.Fill(values, -7);
        return Backend.Upload<int>(shape, values);
    }

    /// <summary>Ends the test: on an ILGPU backend, a test of <see cref="BackendOpsTests"/> must have launched no routed kernel.</summary>
    public void Dispose()
    {
        GC.SuppressFinalize(this);
        if (_backend is not IlgpuBackend ilgpu)
        {
            return;
        }

        ilgpu.LaunchObserver = null;
        string? test = TestContext.Current.TestMethod?.MethodName;
        if (test is null || GetType().GetMethod(test)?.DeclaringType == typeof(ConvolutionAndGemmOpsTests))
        {
            return;
        }

        string[] routed = [.. _launched.Where(k => RoutedFamilies.Contains(k.DeclaringType)).Select(k => $"{k.DeclaringType!.Name}.{k.Name}").Distinct()];
        Assert.True(routed.Length == 0,
            $"{test} launched {string.Join(", ", routed)}: it tests a convolution or a GEMM, so it belongs in {nameof(ConvolutionAndGemmOpsTests)}, which the classes forcing those routes run.");
    }

    private const int CatalogueSeed = 5;

    /// <summary>A catalogue case: convolutions (depthwise included) and GEMMs are what the forced-route classes change.</summary>
    protected static bool IsConvolutionOrGemm(OperationCase operation) =>
        operation.Name.Contains("conv2d", StringComparison.Ordinal) || operation.Name.StartsWith("depthwise", StringComparison.Ordinal) || operation.Name == "gemm";

    protected static TheoryData<string> CatalogueCasesWhere(Func<OperationCase, bool> include) =>
        new(OperationCases.CrossChecks(CatalogueSeed).Select((c, i) => (c, i)).Where(p => include(p.c)).Select(p => $"{p.i}: {p.c}"));

    protected void CatalogueCaseMatchesTheReference(string name)
    {
        var operation = OperationCases.CrossChecks(CatalogueSeed).ElementAt(int.Parse(name[..name.IndexOf(':', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture));
        using var reference = new ReferenceBackend();
        var (diff, passed) = operation.Compare(Backend, reference);
        Assert.True(passed, $"{Backend.Name} {operation}: max |diff| {diff:G3}");
    }

    private Backend Observed(Backend backend)
    {
        if (backend is IlgpuBackend ilgpu)
        {
            ilgpu.LaunchObserver = _launched.Add;
        }

        return backend;
    }
}
