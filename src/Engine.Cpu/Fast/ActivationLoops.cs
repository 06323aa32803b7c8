using System.Numerics;
using System.Runtime.CompilerServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// The activations over float spans, specialised by the JIT for each function struct (no call per element once
/// inlined); ReLU, the common case, and ReLU6 (MobileNet's) take vectorised paths.
/// </summary>
internal static class ActivationLoops
{
    /// <summary>y = f(x); the spans may be the same.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward<TF>(TF f, ReadOnlySpan<float> x, Span<float> y)
        where TF : struct, IActivationFunction
    {
        if (typeof(TF) == typeof(Relu))
        {
            int i = 0;
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                // Not Vector.Max, which returns 0 for NaN: a NaN must stay NaN (PyTorch's relu).
                var v = new Vector<float>(x[i..]);
                Vector.ConditionalSelect(Vector.LessThan(v, Vector<float>.Zero), Vector<float>.Zero, v).CopyTo(y[i..]);
            }

            for (; i < x.Length; i++)
            {
                y[i] = f.Forward(x[i]);
            }

            return;
        }

        if (typeof(TF) == typeof(Relu6))
        {
            var ceiling = new Vector<float>(Relu6.Ceiling);
            int i = 0;
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                // Selects, not Min/Max, so that a NaN stays NaN (PyTorch's clamp).
                var v = new Vector<float>(x[i..]);
                v = Vector.ConditionalSelect(Vector.LessThan(v, Vector<float>.Zero), Vector<float>.Zero, v);
                Vector.ConditionalSelect(Vector.GreaterThan(v, ceiling), ceiling, v).CopyTo(y[i..]);
            }

            for (; i < x.Length; i++)
            {
                y[i] = f.Forward(x[i]);
            }

            return;
        }

        for (int i = 0; i < x.Length; i++)
        {
            y[i] = f.Forward(x[i]);
        }
    }

    /// <summary>dx = dy·f′ from x and y = f(x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward<TF>(TF f, ReadOnlySpan<float> x, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
        where TF : struct, IActivationFunction
    {
        if (typeof(TF) == typeof(Relu))
        {
            ReluMask(y, dy, dx); // on the output, as PyTorch's threshold_backward
            return;
        }

        if (typeof(TF) == typeof(Relu6))
        {
            Relu6Mask(y, dy, dx); // 0 < y < 6 ⇔ 0 < x < 6: the same mask as hardtanh_backward's on x
            return;
        }

        for (int i = 0; i < x.Length; i++)
        {
            dx[i] = f.Backward(x[i], y[i], dy[i]);
        }
    }

    /// <summary>dx = dy·f′ from y = f(x) alone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BackwardFromOutput<TF>(TF f, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
        where TF : struct, IDerivativeFromOutput
    {
        if (typeof(TF) == typeof(Relu))
        {
            ReluMask(y, dy, dx);
            return;
        }

        if (typeof(TF) == typeof(Relu6))
        {
            Relu6Mask(y, dy, dx);
            return;
        }

        for (int i = 0; i < y.Length; i++)
        {
            dx[i] = f.BackwardFromOutput(y[i], dy[i]);
        }
    }

    /// <summary>dx = 0 where y ≤ 0, else dy (so a NaN output passes dy through, as in PyTorch), vectorised.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ReluMask(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        int i = 0;
        for (; i <= y.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            var blocked = Vector.LessThanOrEqual(new Vector<float>(y[i..]), Vector<float>.Zero);
            Vector.ConditionalSelect(blocked, Vector<float>.Zero, new Vector<float>(dy[i..])).CopyTo(dx[i..]);
        }

        for (; i < y.Length; i++)
        {
            dx[i] = default(Relu).BackwardFromOutput(y[i], dy[i]);
        }
    }

    /// <summary>dx = dy where 0 &lt; y &lt; 6, else 0 (a NaN too, as PyTorch's vectorised hardtanh_backward), vectorised.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Relu6Mask(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        var ceiling = new Vector<float>(Relu6.Ceiling);
        int i = 0;
        for (; i <= y.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            var v = new Vector<float>(y[i..]);
            var passed = Vector.GreaterThan(v, Vector<float>.Zero) & Vector.LessThan(v, ceiling); // false for NaN
            Vector.ConditionalSelect(passed, new Vector<float>(dy[i..]), Vector<float>.Zero).CopyTo(dx[i..]);
        }

        for (; i < y.Length; i++)
        {
            dx[i] = default(Relu6).BackwardFromOutput(y[i], dy[i]);
        }
    }
}

/// <summary>
/// A convolution's fused activation, held by the job across worker threads: one reusable object per function type
/// and backend (the function's parameters are set per call), so a training step allocates nothing.
/// </summary>
internal abstract class FusedActivation
{
    /// <summary>values = f(values).</summary>
    public abstract void Apply(Span<float> values);
}

/// <summary>The fused activation for one function type.</summary>
internal sealed class FusedActivation<TF> : FusedActivation
    where TF : struct, IActivationFunction
{
    /// <summary>The function, with its parameters for the current call.</summary>
    public TF Function { get; set; }

    /// <inheritdoc/>
    public override void Apply(Span<float> values) => ActivationLoops.Forward(Function, values, values);
}
