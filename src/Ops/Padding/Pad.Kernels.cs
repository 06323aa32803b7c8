using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// The shape of one 2-D constant padding (PyTorch's ConstantPad2d and ZeroPad2d): input x (N, C, H, W), output y (N, C,
/// P, Q) with P = Top + H + Bottom and Q = Left + W + Right. Each amount may be negative, which crops that many rows or
/// columns instead (as PyTorch's, which crops the input first: the crops of an axis may not take more than it has).
/// Output element (p, q) is input element (p − Top, q − Left) where that lies inside x, else the padding value.
/// </summary>
public readonly record struct Pad2dGeometry(int N, int C, int H, int W, int Left, int Right, int Top, int Bottom)
{
    /// <summary>Output height P = Top + H + Bottom.</summary>
    public int P => Top + H + Bottom;

    /// <summary>Output width Q = Left + W + Right.</summary>
    public int Q => Left + W + Right;

    /// <summary>Input element count N·C·H·W.</summary>
    public int InputSize => N * C * H * W;

    /// <summary>Output element count N·C·P·Q.</summary>
    public int OutputSize => N * C * P * Q;

    /// <summary>Input shape (N, C, H, W).</summary>
    public int[] InputShape => [N, C, H, W];

    /// <summary>Output shape (N, C, P, Q).</summary>
    public int[] OutputShape => [N, C, P, Q];

    /// <summary>Throws <see cref="ArgumentException"/> naming <paramref name="operation"/> and what is wrong.</summary>
    public void Validate(string operation)
    {
        GeometryChecks.Positive(operation, "N", N);
        GeometryChecks.Positive(operation, "C", C);
        GeometryChecks.Positive(operation, "H", H);
        GeometryChecks.Positive(operation, "W", W);
        // In long: amounts near int's range would wrap P and Q.
        long p = (long)Top + H + Bottom, q = (long)Left + W + Right;
        if ((long)H + Math.Min(Top, 0) + Math.Min(Bottom, 0) < 0 || (long)W + Math.Min(Left, 0) + Math.Min(Right, 0) < 0)
        {
            throw new ArgumentException(
                $"{operation}: padding (left {Left}, right {Right}, top {Top}, bottom {Bottom}) crops more than the {H}x{W} input has (PyTorch refuses it too).");
        }

        if (p < 1 || q < 1)
        {
            throw new ArgumentException(
                $"{operation}: padding (left {Left}, right {Right}, top {Top}, bottom {Bottom}) crops the {H}x{W} input to {p}x{q}; at least 1x1 must be left.");
        }

        GeometryChecks.FitsInt(operation, "input", GeometryChecks.Product(N, C, H, W));
        if (p > GeometryChecks.MaximumElements || q > GeometryChecks.MaximumElements)
        {
            throw new ArgumentException($"{operation}: the padded plane {p}x{q} is larger than {GeometryChecks.MaximumElements} elements a side.");
        }

        GeometryChecks.FitsInt(operation, "output", GeometryChecks.Product(N, C, (int)p, (int)q));
    }

    /// <inheritdoc/>
    public override string ToString() => $"x ({N},{C},{H},{W}), pad left {Left}, right {Right}, top {Top}, bottom {Bottom}";
}

/// <summary>The ILGPU kernels of <c>Backend.Pad2dForward</c> and <c>Pad2dBackward</c> (compiled into GpuCnn.Kernels; see src/Ops/README.md).</summary>
internal static class PadKernels
{
    /// <summary>A thread per output element: y[n, c, p, q] = x[n, c, p − Top, q − Left] inside x, else <paramref name="value"/>.</summary>
    public static void Forward(Index1D index, ArrayView<float> x, ArrayView<float> y, Pad2dGeometry g, float value)
    {
        int q = index % g.Q, rest = index / g.Q, p = rest % g.P, plane = rest / g.P;
        int h = p - g.Top, w = q - g.Left;
        y[index] = h >= 0 && h < g.H && w >= 0 && w < g.W ? x[(((plane * g.H) + h) * g.W) + w] : value;
    }

    /// <summary>
    /// A thread per input element: dx[n, c, h, w] = dy[n, c, h + Top, w + Left] where that lies inside y, else 0 (a
    /// cropped element reaches no output). The padding's own gradient is dropped: the value is not a parameter.
    /// </summary>
    public static void Backward(Index1D index, ArrayView<float> dy, ArrayView<float> dx, Pad2dGeometry g)
    {
        int w = index % g.W, rest = index / g.W, h = rest % g.H, plane = rest / g.H;
        int p = h + g.Top, q = w + g.Left;
        dx[index] = p >= 0 && p < g.P && q >= 0 && q < g.Q ? dy[(((plane * g.P) + p) * g.Q) + q] : 0f;
    }
}
