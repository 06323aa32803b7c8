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
}
