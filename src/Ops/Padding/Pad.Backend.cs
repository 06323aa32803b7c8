using GpuCnn.Kernels;

namespace GpuCnn;

/// <summary>Constant padding's public operations and cores (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// y (N, C, Top + H + Bottom, Left + W + Right) = x (N, C, H, W) surrounded by <paramref name="value"/> (PyTorch's
    /// ConstantPad2d; ZeroPad2d with 0); a negative amount crops that side instead (the crops of an axis together at
    /// most its size, as PyTorch requires). Any value is taken here, ±∞ and NaN included; the pad layer takes finite ones.
    /// </summary>
    public void Pad2dForward(Pad2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y, float value)
    {
        using var operation = EnterOperation();
        const string op = "Pad2dForward";
        g.Validate(op);
        Checks.Dims(op, nameof(x), x, this, g.N, g.C, g.H, g.W);
        Checks.Dims(op, nameof(y), y, this, g.N, g.C, g.P, g.Q);
        Checks.WrittenApart(op, nameof(y), y, (nameof(x), x));
        Pad2dForwardCore(g, x, y, value);
    }

    /// <summary>
    /// dx (N, C, H, W) = the part of dy (N, C, P, Q) over the input: dx[h, w] = dy[h + Top, w + Left], 0 where a negative
    /// amount cropped the input (that element reached no output).
    /// </summary>
    public void Pad2dBackward(Pad2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx)
    {
        using var operation = EnterOperation();
        const string op = "Pad2dBackward";
        g.Validate(op);
        Checks.Dims(op, nameof(dy), dy, this, g.N, g.C, g.P, g.Q);
        Checks.Dims(op, nameof(dx), dx, this, g.N, g.C, g.H, g.W);
        Checks.WrittenApart(op, nameof(dx), dx, (nameof(dy), dy));
        Pad2dBackwardCore(g, dy, dx);
    }

    /// <summary>y = x padded with <paramref name="value"/>; arguments already checked.</summary>
    protected abstract void Pad2dForwardCore(Pad2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y, float value);

    /// <summary>dx = dy's part over the input; arguments already checked.</summary>
    protected abstract void Pad2dBackwardCore(Pad2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx);
}
