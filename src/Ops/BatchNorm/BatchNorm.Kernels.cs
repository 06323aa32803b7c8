using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// Batch normalisation over x (N, C, inner): <see cref="Channels"/> = C, <see cref="Inner"/> = the positions per
/// channel and sample, <see cref="Count"/> = N·inner values per channel.
/// </summary>
public readonly record struct BatchNormShape(int Channels, int Inner, int Count, float Momentum, float Epsilon, int Training)
{
    /// <summary>The flat index of value e (0 ≤ e &lt; Count) of channel c: sample e / inner, position e mod inner.</summary>
    public int Index(int c, int e)
    {
        int n = e / Inner;
        return (((n * Channels) + c) * Inner) + (e - (n * Inner));
    }

    /// <summary>The channel of flat index i.</summary>
    public int ChannelOf(int i) => i / Inner % Channels;
}

/// <summary>
/// The ILGPU kernels of batch normalisation (compiled into GpuCnn.Kernels; see src/Ops/README.md). Per-channel sums
/// use one group per channel and <see cref="ReductionKernels.GroupSum"/> (no atomics: the same bits every run); the
/// per-element work is a separate, fully parallel launch.
/// </summary>
internal static class BatchNormKernels
{
    /// <summary>
    /// Training statistics of channel Grid.IdxX: mean, invStd = 1/√(biased variance + ε) (two passes: the variance
    /// is summed around the mean, not as E[x²] − mean²), and the running statistics' momentum update.
    /// </summary>
    public static void BatchStatistics(ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invStd,
        ArrayView<float> runningMean, ArrayView<float> runningVar, BatchNormShape s)
    {
        int c = Grid.IdxX;
        float sum = 0f;
        for (int e = Group.IdxX; e < s.Count; e += Group.DimX)
        {
            sum += x[s.Index(c, e)];
        }

        float mu = ReductionKernels.GroupSum(sum) / s.Count;
        Group.Barrier(); // every thread has read the sum before the next one overwrites the shared memory
        float squares = 0f;
        for (int e = Group.IdxX; e < s.Count; e += Group.DimX)
        {
            float d = x[s.Index(c, e)] - mu;
            squares += d * d;
        }

        float variance = ReductionKernels.GroupSum(squares) / s.Count;
        if (Group.IdxX == 0)
        {
            mean[c] = mu;
            invStd[c] = 1f / XMath.Sqrt(variance + s.Epsilon);
            runningMean[c] = ((1f - s.Momentum) * runningMean[c]) + (s.Momentum * mu);
            runningVar[c] = ((1f - s.Momentum) * runningVar[c]) + (s.Momentum * variance * s.Count / (s.Count - 1));
        }
    }

    /// <summary>Evaluation statistics of channel c from the running ones.</summary>
    public static void RunningStatistics(Index1D c, ArrayView<float> runningMean, ArrayView<float> runningVar,
        ArrayView<float> mean, ArrayView<float> invStd, BatchNormShape s)
    {
        mean[c] = runningMean[c];
        invStd[c] = 1f / XMath.Sqrt(runningVar[c] + s.Epsilon);
    }

    /// <summary>y = (x − mean)·invStd·weight + bias, one element per thread.</summary>
    public static void Normalize(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> weight, ArrayView<float> bias,
        ArrayView<float> mean, ArrayView<float> invStd, BatchNormShape s)
    {
        int c = s.ChannelOf(i);
        y[i] = ((x[i] - mean[c]) * invStd[c] * weight[c]) + bias[c];
    }

    /// <summary>dbias = Σ dy and dweight = Σ dy·x̂ over channel Grid.IdxX, in one pass.</summary>
    public static void GradientSums(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> invStd,
        ArrayView<float> dweight, ArrayView<float> dbias, BatchNormShape s)
    {
        int c = Grid.IdxX;
        float mu = mean[c], inv = invStd[c], sumDy = 0f, sumDyXhat = 0f;
        for (int e = Group.IdxX; e < s.Count; e += Group.DimX)
        {
            int i = s.Index(c, e);
            sumDy += dy[i];
            sumDyXhat += dy[i] * (x[i] - mu) * inv;
        }

        float db = ReductionKernels.GroupSum(sumDy);
        Group.Barrier();
        float dw = ReductionKernels.GroupSum(sumDyXhat);
        if (Group.IdxX == 0)
        {
            dbias[c] = db;
            dweight[c] = dw;
        }
    }

    /// <summary>
    /// Per channel, dx = a·dy + b·x + d: a = weight·invStd; in training b = −a·invStd·dweight/M and
    /// d = −a·dbias/M − b·mean (the batch statistics' share), in evaluation b = d = 0. Writes (a, b, d) for c.
    /// </summary>
    public static void InputGradientCoefficients(Index1D c, ArrayView<float> weight, ArrayView<float> mean, ArrayView<float> invStd,
        ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> coefficients, BatchNormShape s)
    {
        float a = weight[c] * invStd[c];
        float b = s.Training != 0 ? -a * invStd[c] * dweight[c] / s.Count : 0f;
        float d = s.Training != 0 ? (-a * dbias[c] / s.Count) - (b * mean[c]) : 0f;
        coefficients[3 * c] = a;
        coefficients[(3 * c) + 1] = b;
        coefficients[(3 * c) + 2] = d;
    }

    /// <summary>dx = a·dy + b·x + d with channel coefficients from <see cref="InputGradientCoefficients"/>.</summary>
    public static void InputGradient(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> coefficients,
        ArrayView<float> dx, BatchNormShape s)
    {
        int c = 3 * s.ChannelOf(i);
        dx[i] = (coefficients[c] * dy[i]) + (coefficients[c + 1] * x[i]) + coefficients[c + 2];
    }
}
