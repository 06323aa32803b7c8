using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>Bias, activation and fill kernels, one thread per element. Layout (N, C, L): L = H·W, or 1 for dense.</summary>
internal static class ElementwiseKernels
{
    /// <summary>y[n,c,l] += b[c].</summary>
    public static void BiasAdd(Index1D index, ArrayView<float> y, ArrayView<float> b, int channels, int inner)
    {
        y[index] += b[index / inner % channels];
    }

    /// <summary>
    /// db[c] = Σ_{n,l} dy[n,c,l], or one chunk of it: group (c, chunk) = (Grid.IdxX, Grid.IdxY) (of a power-of-two size,
    /// with that many floats of dynamic shared memory) strides over the flattened positions m = n·L + l in
    /// [chunk·chunkSize, (chunk + 1)·chunkSize), consecutive threads reading consecutive positions, sums its threads in a
    /// fixed tree (<see cref="ReductionKernels.GroupSum"/>) and writes sums[chunk·C + c]: db itself for one chunk, else
    /// the partial sums that <see cref="ReductionKernels.SumChunks"/> adds in order.
    /// </summary>
    public static void BiasGradient(ArrayView<float> dy, ArrayView<float> sums, int batch, int channels, int inner, int chunkSize)
    {
        int c = Grid.IdxX, chunk = Grid.IdxY, step = Group.DimX;
        int m = (chunk * chunkSize) + Group.IdxX, end = XMath.Min(batch * inner, (chunk * chunkSize) + chunkSize);

        // Four independent sums keep four loads in flight (ILGPU does not unroll; one sum waits on every load).
        CompensatedSum s0 = default, s1 = default, s2 = default, s3 = default;
        for (; m + (3 * step) < end; m += 4 * step)
        {
            s0.Add(ChannelValue(dy, m, channels, inner, c));
            s1.Add(ChannelValue(dy, m + step, channels, inner, c));
            s2.Add(ChannelValue(dy, m + (2 * step), channels, inner, c));
            s3.Add(ChannelValue(dy, m + (3 * step), channels, inner, c));
        }

        for (; m < end; m += step)
        {
            s0.Add(ChannelValue(dy, m, channels, inner, c));
        }

        float sum = ReductionKernels.GroupSum((s0.Value + s1.Value) + (s2.Value + s3.Value));
        if (Group.IdxX == 0)
        {
            sums[(chunk * channels) + c] = sum;
        }
    }

    /// <summary>dy[n, c, l] for the flattened position m = n·L + l.</summary>
    private static float ChannelValue(ArrayView<float> dy, int m, int channels, int inner, int c)
    {
        int n = m / inner;
        return dy[(((n * channels) + c) * inner) + m - (n * inner)];
    }

    /// <summary>y = f(x); x and y may be the same buffer. One compiled kernel per activation type.</summary>
    public static void ActivationForward<TF>(Index1D index, ArrayView<float> x, ArrayView<float> y, TF f)
        where TF : struct, IActivationFunction =>
        y[index] = f.Forward(x[index]);

    /// <summary>dx = dy · f′, from the input x and the output y = f(x).</summary>
    public static void ActivationBackward<TF>(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy,
        ArrayView<float> dx, TF f)
        where TF : struct, IActivationFunction =>
        dx[index] = f.Backward(x[index], y[index], dy[index]);

    /// <summary>dx = dy · f′ from the output y alone (after a layer applied f as it stored).</summary>
    public static void ActivationBackwardFromOutput<TF>(Index1D index, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, TF f)
        where TF : struct, IDerivativeFromOutput =>
        dx[index] = f.BackwardFromOutput(y[index], dy[index]);

    /// <summary>buffer[i] = value.</summary>
    public static void Fill(Index1D index, ArrayView<float> buffer, float value) => buffer[index] = value;
}

/// <summary>
/// What a GEMM or convolution kernel does to each result before storing it: add the bias of its output feature or
/// channel and apply the activation f — the fused epilogue of a dense or convolution layer. Kernels are generic over
/// f, so each activation compiles into its own kernel and <see cref="Identity"/> costs nothing.
/// </summary>
public readonly struct Epilogue<TF>(int hasBias, TF function)
    where TF : struct, IActivationFunction
{
    /// <summary>1 to add bias[feature], 0 for none.</summary>
    public int HasBias { get; } = hasBias;

    /// <summary>The activation.</summary>
    public TF Function { get; } = function;

    /// <summary>f(value + bias[feature]).</summary>
    public float Apply(float value, ArrayView<float> bias, int feature) =>
        Function.Forward(HasBias != 0 ? value + bias[feature] : value);
}

/// <summary>The plain store: no bias, no activation.</summary>
public static class Epilogue
{
    /// <summary>Store the value as it is.</summary>
    public static Epilogue<Identity> None => new(0, default);
}
