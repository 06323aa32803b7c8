using GpuCnn.Cpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The seed's worked examples and the pinned pooling rules, with answers worked out by hand.</summary>
public abstract partial class BackendOpsTests
{
    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Worked_example_4x4_map_2x2_pool_stride_2_gives_2x2_with_switches()
    {
        var g = new Pool2dGeometry(N: 1, C: 1, H: 4, W: 4, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2);
        float[] x = [1, 1, 2, 4, 5, 6, 7, 8, 3, 2, 1, 0, 1, 2, 3, 4];
        using var dx = Put(x, g.InputShape);
        using var dy = Poisoned(g.OutputShape);
        using var switches = Backend.Allocate<int>(g.OutputShape);
        Backend.MaxPool2dForward(g, dx, dy, switches);
        TensorAssert.Close([6, 8, 3, 4], Backend.DownloadArray(dy), g.OutputShape, 0, 0, $"{Backend.Name} 4x4 max pool");
        Assert.Equal([5, 7, 8, 15], Backend.DownloadArray(switches)); // h·W + w of 6, 8, 3, 4

        // Backward: each gradient goes to its switch only.
        using var dgy = Put([1, 2, 3, 4], g.OutputShape);
        using var dgx = Poisoned(g.InputShape);
        Backend.MaxPool2dBackward(g, dgy, switches, dgx);
        TensorAssert.Close([0, 0, 0, 0, 0, 1, 0, 2, 3, 0, 0, 0, 0, 0, 0, 4], Backend.DownloadArray(dgx), g.InputShape, 0, 0, $"{Backend.Name} 4x4 max pool backward");
    }

    /// <summary>
    /// Ceil mode on a 1×5 row, window 1×2, stride 2: a third window holds the last element alone. Max pooling takes it;
    /// average pooling divides it by 1, the window's part inside the input (PyTorch: avg_pool2d(ceil_mode=True) gives
    /// [1.5, 3.5, 5]). With padding 1 the outputs stay 3 where ⌈⌉ gives 4, since a fourth window would start past the
    /// input and its near padding; its first window holds padding and x0 (divided by 2, padding counted).
    /// </summary>
    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Ceil_mode_adds_a_last_window_cut_at_the_edge()
    {
        var g = new Pool2dGeometry(N: 1, C: 1, H: 1, W: 5, KernelH: 1, KernelW: 2, StrideH: 1, StrideW: 2) { CeilMode = true };
        Assert.Equal((1, 3), (g.P, g.Q));
        Assert.Equal(2, (g with { CeilMode = false }).Q);
        using var x = Put([1, 2, 3, 4, 5], g.InputShape);
        using var y = Poisoned(g.OutputShape);
        using var switches = Backend.Allocate<int>(g.OutputShape);
        Backend.MaxPool2dForward(g, x, y, switches);
        TensorAssert.Close([2, 4, 5], Backend.DownloadArray(y), g.OutputShape, 0, 0, $"{Backend.Name} ceil-mode max pool");
        Assert.Equal([1, 3, 4], Backend.DownloadArray(switches));
        Backend.AvgPool2dForward(g, x, y);
        TensorAssert.Close([1.5, 3.5, 5], Backend.DownloadArray(y), g.OutputShape, 0, 0, $"{Backend.Name} ceil-mode average pool");
        using var dy = Put([2, 4, 6], g.OutputShape);
        using var dx = Poisoned(g.InputShape);
        Backend.AvgPool2dBackward(g, dy, dx);
        TensorAssert.Close([1, 1, 2, 2, 6], Backend.DownloadArray(dx), g.InputShape, 0, 0, $"{Backend.Name} ceil-mode average pool backward");

        var padded = g with { PadW = 1 }; // windows at −1..0, 1..2, 3..4: ⌈(5 + 2 − 2) / 2⌉ + 1 = 4 less the one starting at 5
        Assert.Equal(3, padded.Q);
        using var py = Poisoned(padded.OutputShape);
        Backend.AvgPool2dForward(padded, x, py);
        TensorAssert.Close([0.5, 2.5, 4.5], Backend.DownloadArray(py), padded.OutputShape, 0, 0, $"{Backend.Name} padded ceil-mode average pool");
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Max_pool_tie_goes_to_the_first_maximum_in_row_major_order()
    {
        // Window 1 holds 5 at (0,1) and (1,0); window 2 is all 7s. PyTorch keeps the first maximum it meets.
        var g = new Pool2dGeometry(N: 1, C: 1, H: 2, W: 4, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2);
        float[] x = [1, 5, 7, 7, 5, 2, 7, 7];
        using var dx = Put(x, g.InputShape);
        using var dy = Poisoned(g.OutputShape);
        using var switches = Backend.Allocate<int>(g.OutputShape);
        Backend.MaxPool2dForward(g, dx, dy, switches);
        Assert.Equal([1, 2], Backend.DownloadArray(switches));
    }

    [Fact]
    [Trait("Category", "GradientCheck")]
    public void Overlapping_max_pool_windows_add_their_gradients()
    {
        // Input [1 3 2], window 1×2, stride 1: both windows pick the 3, so its gradient is 1 + 10.
        var g = new Pool2dGeometry(N: 1, C: 1, H: 1, W: 3, KernelH: 1, KernelW: 2, StrideH: 1, StrideW: 1);
        using var dx = Put([1, 3, 2], g.InputShape);
        using var dy = Poisoned(g.OutputShape);
        using var switches = Backend.Allocate<int>(g.OutputShape);
        Backend.MaxPool2dForward(g, dx, dy, switches);
        Assert.Equal([1, 1], Backend.DownloadArray(switches));
        using var dgy = Put([1, 10], g.OutputShape);
        using var dgx = Poisoned(g.InputShape);
        Backend.MaxPool2dBackward(g, dgy, switches, dgx);
        TensorAssert.Close([0, 11, 0], Backend.DownloadArray(dgx), g.InputShape, 0, 0, $"{Backend.Name} overlapping max pool backward");
    }

    /// <summary>
    /// Average pooling divides each window's sum by its area, as PyTorch and the reference do: 17/9 is 1.8888888 in
    /// float, where the CPU backend's 17·(1/9) had been 1.888889 — on the generic route, the eight-wide window route,
    /// global pooling and the backward passes.
    /// </summary>
    [Fact]
    public void Average_pooling_divides_by_the_window_as_pytorch_does()
    {
        float expected = 17f / 9f;
        // Every 3×3 window of this 3×10 plane sums to 17 (its first row repeats 5, 6, 6; the others are 0): eight outputs.
        float[] plane = new float[30];
        for (int w = 0; w < 10; w++)
        {
            plane[w] = w % 3 == 0 ? 5 : 6;
        }

        var windows = new Pool2dGeometry(N: 1, C: 1, H: 3, W: 10, KernelH: 3, KernelW: 3, StrideH: 1, StrideW: 1);
        var global = new Pool2dGeometry(N: 4, C: 1, H: 3, W: 3, KernelH: 3, KernelW: 3, StrideH: 3, StrideW: 3);
        foreach (var g in new[] { windows, global })
        {
            using var x = Put(g == windows ? plane : [.. Enumerable.Repeat<float[]>([5, 6, 6, 0, 0, 0, 0, 0, 0], 4).SelectMany(p => p)], g.InputShape);
            using var y = Poisoned(g.OutputShape);
            Backend.AvgPool2dForward(g, x, y);
            Assert.All(Backend.DownloadArray(y), v => Assert.Equal(expected, v));

            // Backward: each share is dy / 9, added from 0 in window order, as the reference and PyTorch add them
            // (ILGPU's kernel had summed the dy first and divided once: other bits where windows overlap).
            float[] dyValues = TestData.Uniform(g.N * g.C * g.P * g.Q, 23);
            var reference = new float[g.N * g.C * g.H * g.W];
            ReferenceMath.AvgPool2dBackward<float>(g, dyValues, reference);
            using var dy = Put(dyValues, g.OutputShape);
            using var dx = Poisoned(g.InputShape);
            Backend.AvgPool2dBackward(g, dy, dx);
            TensorAssert.Identical<float>(reference, Backend.DownloadArray(dx), $"{Backend.Name} average pooling backward {g}");
        }
    }

    /// <summary>
    /// Global average pooling takes each plane's mean as PyTorch's AdaptiveAvgPool2d(1) does, nearly exactly: the sum in
    /// double, rounded, then divided (every backend the same bits). One float add at a time had been 2.5e-6 off on a
    /// 56×56 plane where PyTorch's mean is 1e-7 off; a 2×2 plane, which the halving kernels also suit, is summed so too.
    /// An average pool whose window merely covers the plane still adds in float, as PyTorch's AvgPool2d(H) does.
    /// </summary>
    [Fact]
    public void Global_average_pooling_takes_each_planes_mean_from_a_double_sum()
    {
        foreach (int side in new[] { 2, 56 })
        {
            var window = new Pool2dGeometry(N: 2, C: 3, H: side, W: side, KernelH: side, KernelW: side, StrideH: side, StrideW: side);
            var g = window with { PlaneMean = true };
            float[] values = [.. TestData.Uniform(g.N * g.C * side * side, 31).Select(v => v + 2f)]; // in [1, 3]: every add rounds
            using var x = Put(values, g.InputShape);
            using var y = Poisoned(g.OutputShape);
            Backend.AvgPool2dForward(g, x, y);
            float[] mean = Backend.DownloadArray(y);
            Backend.AvgPool2dForward(window, x, y);
            float[] average = Backend.DownloadArray(y);
            for (int plane = 0; plane < g.N * g.C; plane++)
            {
                double sum = 0;
                float floatSum = 0f;
                foreach (float v in values.AsSpan(plane * side * side, side * side))
                {
                    sum += v;
                    floatSum += v;
                }

                Assert.Equal((float)sum / (side * side), mean[plane]);
                Assert.Equal(floatSum / (side * side), average[plane]);
            }
        }
    }
}
