using System.Numerics;
using System.Runtime.CompilerServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Batch normalisation on the fast CPU backend (compiled into GpuCnn.Engine.Cpu): channels split across the team,
/// each channel's N runs of <c>inner</c> contiguous values summed and scaled with vectors.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    private readonly BatchNormJob _batchNorm = new();

    /// <inheritdoc/>
    protected override void BatchNormForwardCore(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd)
    {
        fixed (float* px = Data(x), pw = Data(weight), pb = Data(bias), prm = Data(runningMean), prv = Data(runningVar))
        fixed (float* py = Data(y), pmean = Data(mean), pinv = Data(invStd))
        {
            _batchNorm.Set(shape, forward: true, px, py, pw, pb, prm, prv, pmean, pinv, null, null, null);
            RunBatchNorm(shape);
        }
    }

    /// <inheritdoc/>
    protected override void BatchNormBackwardCore(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd, DeviceTensor<float>? dx,
        DeviceTensor<float> dweight, DeviceTensor<float> dbias)
    {
        fixed (float* px = Data(x), pdy = Data(dy), pw = Data(weight), pmean = Data(mean), pinv = Data(invStd))
        fixed (float* pdx = dx is null ? null : Data(dx), pdw = Data(dweight), pdb = Data(dbias))
        {
            _batchNorm.Set(shape, forward: false, px, pdy, pw, null, null, null, pmean, pinv, pdx, pdw, pdb);
            RunBatchNorm(shape);
        }
    }

    private void RunBatchNorm(BatchNormShape shape)
    {
        // A channel per part; small tensors stay on the caller (waking the team costs more than the work).
        int parts = (long)shape.Count * shape.Channels < 1 << 15 ? 1 : Math.Min(shape.Channels, _workers.Count * 4);
        _batchNorm.Parts = parts;
        _workers.Run(_batchNorm, parts);
    }

    /// <summary>One channel range of a batch-norm forward or backward.</summary>
    private sealed class BatchNormJob : IParallelJob
    {
        private BatchNormShape _s;
        private bool _forward;
        private float* _x, _yOrDy, _weight, _bias, _runningMean, _runningVar, _mean, _invStd, _dx, _dweight, _dbias;

        public int Parts { get; set; }

        public bool AnyWorker => true; // a range of channels; nothing kept per worker

        public void Set(in BatchNormShape s, bool forward, float* x, float* yOrDy, float* weight, float* bias, float* runningMean,
            float* runningVar, float* mean, float* invStd, float* dx, float* dweight, float* dbias)
        {
            _s = s;
            _forward = forward;
            _x = x;
            _yOrDy = yOrDy;
            _weight = weight;
            _bias = bias;
            _runningMean = runningMean;
            _runningVar = runningVar;
            _mean = mean;
            _invStd = invStd;
            _dx = dx;
            _dweight = dweight;
            _dbias = dbias;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int worker)
        {
            int first = (int)((long)_s.Channels * part / Parts), last = (int)((long)_s.Channels * (part + 1) / Parts);
            for (int c = first; c < last; c++)
            {
                if (_forward)
                {
                    Forward(c);
                }
                else
                {
                    Backward(c);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Forward(int c)
        {
            int batch = _s.Count / _s.Inner, inner = _s.Inner, stride = _s.Channels * inner;
            float* x = _x + ((long)c * inner), y = _yOrDy + ((long)c * inner);
            float mean, invStd;
            if (_s.Training != 0)
            {
                float sum = 0f;
                for (int n = 0; n < batch; n++)
                {
                    sum += Sum(x + ((long)n * stride), inner);
                }

                mean = sum / _s.Count;
                float squares = 0f;
                for (int n = 0; n < batch; n++)
                {
                    squares += SquaredDeviations(x + ((long)n * stride), inner, mean);
                }

                invStd = 1f / MathF.Sqrt((squares / _s.Count) + _s.Epsilon);
                _runningMean[c] = ((1f - _s.Momentum) * _runningMean[c]) + (_s.Momentum * mean);
                _runningVar[c] = ((1f - _s.Momentum) * _runningVar[c]) + (_s.Momentum * squares / (_s.Count - 1));
            }
            else
            {
                mean = _runningMean[c];
                invStd = 1f / MathF.Sqrt(_runningVar[c] + _s.Epsilon);
            }

            _mean[c] = mean;
            _invStd[c] = invStd;
            float scale = invStd * _weight[c], shift = _bias[c] - (mean * scale);
            for (int n = 0; n < batch; n++)
            {
                Affine(x + ((long)n * stride), null, y + ((long)n * stride), inner, 0f, scale, shift);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Backward(int c)
        {
            int batch = _s.Count / _s.Inner, inner = _s.Inner, stride = _s.Channels * inner;
            float* x = _x + ((long)c * inner), dy = _yOrDy + ((long)c * inner);
            float mean = _mean[c], invStd = _invStd[c], sumDy = 0f, sumDyCentred = 0f;
            for (int n = 0; n < batch; n++)
            {
                var (a, b) = GradientSums(x + ((long)n * stride), dy + ((long)n * stride), inner, mean);
                sumDy += a;
                sumDyCentred += b;
            }

            float dweight = sumDyCentred * invStd;
            _dbias[c] = sumDy;
            _dweight[c] = dweight;
            if (_dx is null)
            {
                return;
            }

            // dx = a·dy + b·x + d (see BatchNormKernels.InputGradientCoefficients).
            float scale = _weight[c] * invStd;
            float slope = _s.Training != 0 ? -scale * invStd * dweight / _s.Count : 0f;
            float shift = _s.Training != 0 ? (-scale * sumDy / _s.Count) - (slope * mean) : 0f;
            for (int n = 0; n < batch; n++)
            {
                Affine(dy + ((long)n * stride), x + ((long)n * stride), _dx + (c * inner) + ((long)n * stride), inner, slope, scale, shift);
            }
        }

        // SquaredDeviations keeps four independent vector accumulators, as CpuBackend.Sum does, for the same reason.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float SquaredDeviations(float* x, int length, float mean)
        {
            int n = Vector<float>.Count, i = 0;
            Vector<float> s0 = Vector<float>.Zero, s1 = s0, s2 = s0, s3 = s0, mu = new(mean);
            for (; i <= length - (4 * n); i += 4 * n)
            {
                var d0 = Vector.Load(x + i) - mu;
                var d1 = Vector.Load(x + i + n) - mu;
                var d2 = Vector.Load(x + i + (2 * n)) - mu;
                var d3 = Vector.Load(x + i + (3 * n)) - mu;
                s0 += d0 * d0;
                s1 += d1 * d1;
                s2 += d2 * d2;
                s3 += d3 * d3;
            }

            for (; i <= length - n; i += n)
            {
                var d = Vector.Load(x + i) - mu;
                s0 += d * d;
            }

            float sum = Vector.Sum((s0 + s1) + (s2 + s3));
            for (; i < length; i++)
            {
                sum += (x[i] - mean) * (x[i] - mean);
            }

            return sum;
        }

        /// <summary>(Σ dy, Σ dy·(x − mean)) over one run.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static (float SumDy, float SumDyCentred) GradientSums(float* x, float* dy, int length, float mean)
        {
            int n = Vector<float>.Count, i = 0;
            Vector<float> g0 = Vector<float>.Zero, g1 = g0, c0 = g0, c1 = g0, mu = new(mean);
            for (; i <= length - (2 * n); i += 2 * n)
            {
                var e0 = Vector.Load(dy + i);
                var e1 = Vector.Load(dy + i + n);
                g0 += e0;
                g1 += e1;
                c0 += e0 * (Vector.Load(x + i) - mu);
                c1 += e1 * (Vector.Load(x + i + n) - mu);
            }

            for (; i <= length - n; i += n)
            {
                var e = Vector.Load(dy + i);
                g0 += e;
                c0 += e * (Vector.Load(x + i) - mu);
            }

            float a = Vector.Sum(g0 + g1), b = Vector.Sum(c0 + c1);
            for (; i < length; i++)
            {
                a += dy[i];
                b += dy[i] * (x[i] - mean);
            }

            return (a, b);
        }

        /// <summary>target = scale·source + slope·other + shift (other may be null: no term).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Affine(float* source, float* other, float* target, int length, float slope, float scale, float shift)
        {
            Vector<float> a = new(scale), b = new(slope), d = new(shift);
            int i = 0;
            for (; i <= length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var value = (a * Vector.Load(source + i)) + d;
                if (other is not null)
                {
                    value += b * Vector.Load(other + i);
                }

                value.Store(target + i);
            }

            for (; i < length; i++)
            {
                target[i] = (scale * source[i]) + (other is null ? 0f : slope * other[i]) + shift;
            }
        }
    }
}
