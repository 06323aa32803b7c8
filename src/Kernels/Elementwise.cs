using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>Bias, activation and fill kernels, one thread per element. Layout (N, C, L): L = H·W, or 1 for dense.</summary>
public static class ElementwiseKernels
{
    /// <summary>y[n,c,l] += b[c].</summary>
    public static void BiasAdd(Index1D index, ArrayView<float> y, ArrayView<float> b, int channels, int inner)
    {
        y[index] += b[index / inner % channels];
    }

    /// <summary>
    /// db[c] = Σ_{n,l} dy[n,c,l]: group c (of a power-of-two size, with that many floats of dynamic shared memory)
    /// strides over the batch and positions, consecutive threads reading consecutive positions, then sums its
    /// threads in a fixed tree (<see cref="ReductionKernels.GroupSum"/>).
    /// </summary>
    public static void BiasGradient(ArrayView<float> dy, ArrayView<float> db, int batch, int channels, int inner)
    {
        int c = Grid.IdxX, step = Group.DimX, total = batch * inner, m = Group.IdxX;

        // Four independent sums keep four loads in flight (ILGPU does not unroll; one sum waits on every load).
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        for (; m + (3 * step) < total; m += 4 * step)
        {
            s0 += ChannelValue(dy, m, channels, inner, c);
            s1 += ChannelValue(dy, m + step, channels, inner, c);
            s2 += ChannelValue(dy, m + (2 * step), channels, inner, c);
            s3 += ChannelValue(dy, m + (3 * step), channels, inner, c);
        }

        for (; m < total; m += step)
        {
            s0 += ChannelValue(dy, m, channels, inner, c);
        }

        float sum = ReductionKernels.GroupSum((s0 + s1) + (s2 + s3));
        if (Group.IdxX == 0)
        {
            db[c] = sum;
        }
    }

    /// <summary>dy[n, c, l] for the flattened position m = n·L + l.</summary>
    private static float ChannelValue(ArrayView<float> dy, int m, int channels, int inner, int c)
    {
        int n = m / inner;
        return dy[(((n * channels) + c) * inner) + m - (n * inner)];
    }

    /// <summary>y = f(x) for the activation f; x and y may be the same buffer.</summary>
    public static void ActivationForward(Index1D index, ArrayView<float> x, ArrayView<float> y, int activation, float alpha) =>
        y[index] = Apply(activation, alpha, x[index]);

    /// <summary>f(v) for an <see cref="Activation"/> code; a negative code is the identity (no activation).</summary>
    public static float Apply(int activation, float alpha, float v) => activation switch
    {
        < 0 => v,
        (int)Activation.Relu => v > 0f ? v : 0f,
        (int)Activation.LeakyRelu => v > 0f ? v : alpha * v,
        (int)Activation.Sigmoid => 1f / (1f + XMath.Exp(-v)),
        _ => Tanh(v),
    };

    /// <summary>
    /// tanh to within a few float ulp on every backend. XMath.Tanh compiles to PTX <c>tanh.approx.f32</c> on CUDA
    /// (relative error up to 2⁻¹¹), which PyTorch's tanh and our 1e-6 tests would not accept. Near 0 the Taylor series
    /// (through x¹⁷; the next term is below 5e-8 relative at 0.55) avoids the cancellation of the exponential form.
    /// </summary>
    public static float Tanh(float v)
    {
        float a = XMath.Abs(v);
        if (a < 0.55f)
        {
            float z = v * v;
            float series = 6404582f / 10854718875f;
            series = (series * z) - (929569f / 638512875f);
            series = (series * z) + (21844f / 6081075f);
            series = (series * z) - (1382f / 155925f);
            series = (series * z) + (62f / 2835f);
            series = (series * z) - (17f / 315f);
            series = (series * z) + (2f / 15f);
            series = (series * z) - (1f / 3f);
            return v * (1f + (z * series)); // not v + v·z·series, which turns −0 into +0
        }

        // tanh a = 1 − 2 / (e^{2a} + 1): exact limits at ±∞ (e^{2a} overflows to ∞), NaN stays NaN.
        float t = 1f - (2f / (XMath.Exp(2f * a) + 1f));
        return v < 0f ? -t : t;
    }

    /// <summary>dx = dy · f′, where f′ is computed from x (ReLU, LeakyReLU) or from y = f(x) (Sigmoid, Tanh).</summary>
    public static void ActivationBackward(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy,
        ArrayView<float> dx, int activation, float alpha)
    {
        float g = dy[index];
        dx[index] = activation switch
        {
            (int)Activation.Relu => x[index] > 0f ? g : 0f,
            (int)Activation.LeakyRelu => x[index] > 0f ? g : alpha * g,
            (int)Activation.Sigmoid => g * y[index] * (1f - y[index]),
            _ => g * (1f - y[index] * y[index]),
        };
    }

    /// <summary>buffer[i] = value.</summary>
    public static void Fill(Index1D index, ArrayView<float> buffer, float value) => buffer[index] = value;
}

/// <summary>
/// What a GEMM or convolution kernel does to each result before storing it: add the bias of its output feature or
/// channel and apply an activation — the fused epilogue of a dense or convolution layer. Activation −1 means none.
/// </summary>
public readonly record struct Epilogue(int HasBias, int Activation, float Alpha)
{
    /// <summary>Store the plain product.</summary>
    public static Epilogue None => new(0, -1, 0f);

    /// <summary>f(value + bias[feature]).</summary>
    public float Apply(float value, ArrayView<float> bias, int feature) =>
        ElementwiseKernels.Apply(Activation, Alpha, HasBias != 0 ? value + bias[feature] : value);
}
