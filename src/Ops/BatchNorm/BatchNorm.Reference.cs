using System.Numerics;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>The naive batch normalisation (compiled into GpuCnn.Engine.Cpu).</summary>
internal static partial class ReferenceMath
{
    /// <summary>
    /// y (N,C,inner) = (x − mean)·invStd·weight + bias per channel. Training: mean and invStd (C) from the batch
    /// (biased variance, summed around the mean; both from offsets from the channel's first value), running
    /// statistics updated with momentum (unbiased variance); evaluation: from the running statistics.
    /// </summary>
    public static void BatchNormForward<T>(BatchNormShape s, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, ReadOnlySpan<T> bias,
        Span<T> runningMean, Span<T> runningVar, Span<T> y, Span<T> mean, Span<T> invStd)
        where T : IFloatingPointIeee754<T>
    {
        T count = T.CreateChecked(s.Count), momentum = T.CreateChecked(s.Momentum), epsilon = T.CreateChecked(s.Epsilon);
        for (int c = 0; c < s.Channels; c++)
        {
            if (s.Training != 0)
            {
                // The mean of the offsets from the channel's first value, so that a channel far from zero keeps its
                // mean: 2e38 in every place would overflow a float sum of values, and 1e19 ± 1e13 round the mean by a fair
                // part of the spread. Each offset is taken from halves (exact, so x/2 − p/2 is (x − p)/2 rounded once,
                // but finite where the values span more than float's range, ±2e38) and scaled as it is added, so no
                // partial sum passes the largest offset (1e38 then −1e38s overflowed a plain sum of offsets).
                // The sums themselves run in double for either T: a million values a channel added in float had lost
                // 6e-6 of their mean.
                T pivot = x[s.Index(c, 0)], half = T.CreateChecked(0.5), share = T.CreateChecked(2) / count;
                double offsetSum = 0;
                for (int e = 0; e < s.Count; e++)
                {
                    offsetSum += double.CreateChecked(((half * x[s.Index(c, e)]) - (half * pivot)) * share);
                }

                T offset = T.CreateChecked(offsetSum), mu = pivot + offset;
                double squareSum = 0;
                for (int e = 0; e < s.Count; e++)
                {
                    T d = x[s.Index(c, e)] - pivot - offset;
                    squareSum += double.CreateChecked(d * d);
                }

                T squares = T.CreateChecked(squareSum);

                T variance = squares / count;
                mean[c] = mu;
                invStd[c] = T.One / T.Sqrt(variance + epsilon);
                runningMean[c] = ((T.One - momentum) * runningMean[c]) + (momentum * mu);
                runningVar[c] = ((T.One - momentum) * runningVar[c]) + (momentum * squares / (count - T.One));
            }
            else
            {
                mean[c] = runningMean[c];
                invStd[c] = T.One / T.Sqrt(runningVar[c] + epsilon);
            }

            for (int e = 0; e < s.Count; e++)
            {
                int i = s.Index(c, e);
                y[i] = ((x[i] - mean[c]) * invStd[c] * weight[c]) + bias[c];
            }
        }
    }

    /// <summary>
    /// dbias = Σ dy, dweight = Σ dy·x̂ per channel (x̂ = (x − mean)·invStd); dx = weight·invStd·(dy − dbias/M −
    /// x̂·dweight/M) in training, weight·invStd·dy in evaluation (M = N·inner). dx may be empty (not wanted).
    /// </summary>
    public static void BatchNormBackward<T>(BatchNormShape s, ReadOnlySpan<T> x, ReadOnlySpan<T> dy, ReadOnlySpan<T> weight,
        ReadOnlySpan<T> mean, ReadOnlySpan<T> invStd, Span<T> dx, Span<T> dweight, Span<T> dbias)
        where T : IFloatingPointIeee754<T>
    {
        T count = T.CreateChecked(s.Count);
        for (int c = 0; c < s.Channels; c++)
        {
            double dySum = 0, dyXhatSum = 0; // in double for either T, as the forward's sums
            for (int e = 0; e < s.Count; e++)
            {
                int i = s.Index(c, e);
                dySum += double.CreateChecked(dy[i]);
                dyXhatSum += double.CreateChecked(dy[i] * (x[i] - mean[c]) * invStd[c]);
            }

            T sumDy = T.CreateChecked(dySum), sumDyXhat = T.CreateChecked(dyXhatSum);
            dbias[c] = sumDy;
            dweight[c] = sumDyXhat;
            if (dx.IsEmpty)
            {
                continue;
            }

            for (int e = 0; e < s.Count; e++)
            {
                int i = s.Index(c, e);
                T xhat = (x[i] - mean[c]) * invStd[c];
                T batchShare = s.Training != 0 ? (sumDy / count) + (xhat * sumDyXhat / count) : T.Zero;
                dx[i] = weight[c] * invStd[c] * (dy[i] - batchShare);
            }
        }
    }
}

/// <summary>Batch normalisation on the reference backend: a fused activation is the activation's own pass after it.</summary>
public sealed partial class ReferenceBackend
{
    /// <inheritdoc/>
    protected override void BatchNormForwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd, TF activation)
    {
        ReferenceMath.BatchNormForward<float>(shape, Data(x), Data(weight), Data(bias), Data(runningMean), Data(runningVar), Data(y),
            Data(mean), Data(invStd));
        if (typeof(TF) != typeof(Identity))
        {
            ReferenceMath.ActivationForward<float, TF>(activation, Data(y), Data(y));
        }
    }

    /// <inheritdoc/>
    protected override void BatchNormBackwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float>? y,
        DeviceTensor<float> dy, DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd,
        DeviceTensor<float>? dx, DeviceTensor<float> dweight, DeviceTensor<float> dbias, TF activation)
    {
        // dz = dy·f′(y), the gradient that reaches the normalisation (dy itself without an activation).
        Span<float> dz = Data(dy);
        if (y is not null)
        {
            dz = new float[dy.Length];
            ReferenceMath.ActivationBackwardFromOutput<float, TF>(activation, Data(y), Data(dy), dz);
        }

        ReferenceMath.BatchNormBackward<float>(shape, Data(x), dz, Data(weight), Data(mean), Data(invStd),
            dx is null ? [] : Data(dx), Data(dweight), Data(dbias));
    }
}
