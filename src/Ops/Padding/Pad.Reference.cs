using System.Numerics;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>The naive constant padding (compiled into GpuCnn.Engine.Cpu).</summary>
internal static partial class ReferenceMath
{
    /// <summary>
    /// x (N,C,H,W) -> y (N,C,P,Q), P = Top+H+Bottom, Q = Left+W+Right: y[n,c,p,q] = x[n,c,p−Top,q−Left] where that lies
    /// inside x, else <paramref name="value"/> (a negative amount crops instead).
    /// </summary>
    public static void Pad2dForward<T>(Pad2dGeometry g, ReadOnlySpan<T> x, Span<T> y, T value)
        where T : IFloatingPointIeee754<T>
    {
        for (int plane = 0; plane < g.N * g.C; plane++)
        {
            for (int p = 0; p < g.P; p++)
            {
                for (int q = 0; q < g.Q; q++)
                {
                    int h = p - g.Top, w = q - g.Left;
                    y[(((plane * g.P) + p) * g.Q) + q] = h >= 0 && h < g.H && w >= 0 && w < g.W ? x[(((plane * g.H) + h) * g.W) + w] : value;
                }
            }
        }
    }

    /// <summary>
    /// dy (N,C,P,Q) -> dx (N,C,H,W): each input element's one output, dx[n,c,h,w] = dy[n,c,h+Top,w+Left]; 0 for an
    /// element a negative amount cropped (it reached no output). The padding value is a constant: it takes no gradient.
    /// </summary>
    public static void Pad2dBackward<T>(Pad2dGeometry g, ReadOnlySpan<T> dy, Span<T> dx)
        where T : IFloatingPointIeee754<T>
    {
        for (int plane = 0; plane < g.N * g.C; plane++)
        {
            for (int h = 0; h < g.H; h++)
            {
                for (int w = 0; w < g.W; w++)
                {
                    int p = h + g.Top, q = w + g.Left;
                    dx[(((plane * g.H) + h) * g.W) + w] = p >= 0 && p < g.P && q >= 0 && q < g.Q ? dy[(((plane * g.P) + p) * g.Q) + q] : T.Zero;
                }
            }
        }
    }
}

/// <summary>Constant padding on the reference backend.</summary>
public sealed partial class ReferenceBackend
{
    /// <inheritdoc/>
    protected override void Pad2dForwardCore(Pad2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y, float value) =>
        ReferenceMath.Pad2dForward<float>(g, Data(x), Data(y), value);

    /// <inheritdoc/>
    protected override void Pad2dBackwardCore(Pad2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        ReferenceMath.Pad2dBackward<float>(g, Data(dy), Data(dx));
}
