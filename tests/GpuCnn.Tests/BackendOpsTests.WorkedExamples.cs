using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The seed's worked examples and the pinned pooling rules, with answers worked out by hand.</summary>
public abstract partial class BackendOpsTests
{
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
}
