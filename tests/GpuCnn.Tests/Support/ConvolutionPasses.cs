using GpuCnn.Cpu;

namespace GpuCnn.Tests.Support;

/// <summary>A convolution's three passes on a backend from host arrays: y = conv(x, w) + b, dx and dw for dy.</summary>
public static class ConvolutionPasses
{
    /// <summary>The same three passes by the reference, in double.</summary>
    public static (double[] Y, double[] Dx, double[] Dw) Reference(in Conv2dGeometry g, float[] x, float[] w, float[] b, float[] dy)
    {
        var y = new double[g.OutputSize];
        var dx = new double[g.InputSize];
        var dw = new double[g.WeightSize];
        ReferenceMath.Conv2dForward<double>(g, TestData.Widen(x), TestData.Widen(w), TestData.Widen(b), y);
        ReferenceMath.Conv2dBackwardData<double>(g, TestData.Widen(dy), TestData.Widen(w), dx);
        ReferenceMath.Conv2dBackwardFilter<double>(g, TestData.Widen(x), TestData.Widen(dy), dw, []);
        return (y, dx, dw);
    }

    public static (float[] Y, float[] Dx, float[] Dw) Run(Backend backend, in Conv2dGeometry g, float[] x, float[] w, float[] b, float[] dy)
    {
        using var tx = backend.Upload<float>(g.InputShape, x);
        using var tw = backend.Upload<float>(g.WeightShape, w);
        using var tb = backend.Upload<float>(new Shape(g.K), b);
        using var tdy = backend.Upload<float>(g.OutputShape, dy);
        using var ty = backend.Allocate<float>(g.OutputShape);
        using var tdx = backend.Allocate<float>(g.InputShape);
        using var tdw = backend.Allocate<float>(g.WeightShape);
        backend.Conv2dForward(g, tx, tw, tb, ty);
        backend.Conv2dBackwardData(g, tdy, tw, tdx);
        backend.Conv2dBackwardFilter(g, tx, tdy, tdw, null);
        return (backend.DownloadArray(ty), backend.DownloadArray(tdx), backend.DownloadArray(tdw));
    }
}
