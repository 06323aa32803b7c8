using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Batch normalisation on the fast CPU backend (compiled into GpuCnn.Engine.Cpu): channels split across the team,
/// each channel's N runs of <c>inner</c> contiguous values summed and scaled with vectors. The jobs are specialised
/// per fused activation (one reusable job per function type), so ReLU, the common case, costs one vector select in
/// the loops that store y and read dy — no pass of its own, and no call per run, which small planes (7×7: 49 values
/// a run) would feel. The backward makes dz = dy·f′(y) afresh where it reads dy, never stores it.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void BatchNormForwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd, TF activation)
    {
        var job = Work<BatchNormForwardJob<TF>>(typeof(BatchNormForwardJob<TF>));
        fixed (float* px = Data(x), pw = Data(weight), pb = Data(bias), prm = Data(runningMean), prv = Data(runningVar))
        fixed (float* py = Data(y), pmean = Data(mean), pinv = Data(invStd))
        {
            job.Set(shape, px, py, pw, pb, prm, prv, pmean, pinv, activation);
            RunBatchNorm(job, shape);
        }
    }

    /// <inheritdoc/>
    protected override void BatchNormBackwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float>? y,
        DeviceTensor<float> dy, DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd,
        DeviceTensor<float>? dx, DeviceTensor<float> dweight, DeviceTensor<float> dbias, TF activation)
    {
        var job = Work<BatchNormBackwardJob<TF>>(typeof(BatchNormBackwardJob<TF>));
        fixed (float* px = Data(x), pdy = Data(dy), pw = Data(weight), pmean = Data(mean), pinv = Data(invStd))
        fixed (float* pdx = dx is null ? null : Data(dx), pdw = Data(dweight), pdb = Data(dbias), py = y is null ? null : Data(y))
        {
            job.Set(shape, px, py, pdy, pw, pmean, pinv, pdx, pdw, pdb, activation);
            RunBatchNorm(job, shape);
        }
    }

    private void RunBatchNorm(ChannelJob job, BatchNormShape shape)
    {
        // A part is a range of channels — of whole vectors of them after a dense layer (one value per channel and
        // sample), at least two, so each row is read in runs of 64 bytes or more. Small tensors stay on the caller:
        // waking the team costs more than the work — for features, whose passes are a few loads a value, up to 2^18
        // values (a (256, 512) batch norm + ReLU step took 0.08 ms on one thread, 0.06–0.17 ms on two, 2026-11-26).
        bool features = shape.Inner == 1;
        int units = features ? (shape.Channels + Vector<float>.Count - 1) / Vector<float>.Count : shape.Channels;
        int most = features ? Math.Max(1, units / 2) : units;
        long alone = features ? 1 << 18 : 1 << 15;
        job.Parts = (long)shape.Count * shape.Channels < alone ? 1 : Math.Min(most, _workers.Count * 4);
        _workers.Run(job, job.Parts);
    }

    /// <summary>
    /// A job over a range of channels per part: channel by channel over its runs of <c>inner</c> values, or — for one
    /// value per channel and sample (BatchNorm1d after a dense layer, x (N, C)), where a run is a single value and a
    /// call per run cost 7–11× PyTorch's time — a vector of consecutive channels at a time down the batch, then the
    /// channels left over one by one. Both are the same bits run after run; a lane (float blocks of RowBlock rows, then
    /// double) and a left-over channel (each row's value into double) may differ in the last bit.
    /// </summary>
    private abstract class ChannelJob : IParallelJob
    {
        public int Parts { get; set; }

        public bool AnyWorker => true; // a range of channels; nothing kept per worker

        protected BatchNormShape Shape { get; set; }

        public void Run(int part, int worker)
        {
            int width = Shape.Inner == 1 ? Vector<float>.Count : 1, units = (Shape.Channels + width - 1) / width;
            int first = (int)((long)units * part / Parts) * width, last = Math.Min(Shape.Channels, (int)((long)units * (part + 1) / Parts) * width);
            int c = first;
            if (Shape.Inner == 1)
            {
                // At most 32 vectors at a time: their sums live on the stack.
                for (int vectors; (vectors = Math.Min(32, (last - c) / width)) > 0; c += vectors * width)
                {
                    RunFeatures(c, vectors);
                }
            }

            for (; c < last; c++)
            {
                RunChannel(c);
            }
        }

        protected abstract void RunChannel(int c);

        /// <summary>
        /// Channels [c, c + vectors·Vector&lt;float&gt;.Count) of an (N, C) input, row by row down the batch (their
        /// values are contiguous in a row), each lane's sums kept on the stack.
        /// </summary>
        protected abstract void RunFeatures(int c, int vectors);
    }

    /// <summary>y = f(batch_norm(x)) channel by channel: the statistics, then each run centred, scaled, shifted and activated in one loop.</summary>
    private sealed class BatchNormForwardJob<TF> : ChannelJob
        where TF : struct, IActivationFunction
    {
        private float* _x, _y, _weight, _bias, _runningMean, _runningVar, _mean, _invStd;
        private TF _f;

        public void Set(in BatchNormShape s, float* x, float* y, float* weight, float* bias, float* runningMean, float* runningVar,
            float* mean, float* invStd, TF f)
        {
            Shape = s;
            _x = x;
            _y = y;
            _weight = weight;
            _bias = bias;
            _runningMean = runningMean;
            _runningVar = runningVar;
            _mean = mean;
            _invStd = invStd;
            _f = f;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void RunChannel(int c)
        {
            var s = Shape;
            int batch = s.Count / s.Inner, inner = s.Inner, stride = s.Channels * inner;
            float* x = _x + ((long)c * inner), y = _y + ((long)c * inner);
            float mean, invStd;
            if (s.Training != 0)
            {
                // As the reference: the mean of the offsets from the channel's first value (see BatchNormRuns.MeanOffset).
                // Each image's run in pieces of float lanes, the pieces added in double (SumPiece, as the bias gradient).
                float pivot = x[0], share = 2f / s.Count;
                double offsetSum = 0, squareSum = 0;
                for (int n = 0; n < batch; n++)
                {
                    for (int start = 0, length; start < inner; start += length)
                    {
                        length = Math.Min(SumPiece, inner - start);
                        offsetSum += BatchNormRuns.MeanOffset(x + ((long)n * stride) + start, length, 0.5f * pivot, share);
                    }
                }

                float offset = (float)offsetSum;
                mean = pivot + offset;
                for (int n = 0; n < batch; n++)
                {
                    for (int start = 0, length; start < inner; start += length)
                    {
                        length = Math.Min(SumPiece, inner - start);
                        squareSum += BatchNormRuns.SquaredDeviations(x + ((long)n * stride) + start, length, pivot, offset);
                    }
                }

                float squares = (float)squareSum;

                invStd = 1f / MathF.Sqrt((squares / s.Count) + s.Epsilon);
                _runningMean[c] = ((1f - s.Momentum) * _runningMean[c]) + (s.Momentum * mean);
                _runningVar[c] = ((1f - s.Momentum) * _runningVar[c]) + (s.Momentum * squares / (s.Count - 1));
            }
            else
            {
                mean = _runningMean[c];
                invStd = 1f / MathF.Sqrt(_runningVar[c] + s.Epsilon);
            }

            _mean[c] = mean;
            _invStd[c] = invStd;
            float scale = invStd * _weight[c];
            for (int n = 0; n < batch; n++)
            {
                BatchNormRuns.NormalizeActivate(x + ((long)n * stride), y + ((long)n * stride), inner, mean, scale, _bias[c], _f);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void RunFeatures(int c, int vectors)
        {
            var s = Shape;
            int batch = s.Count, stride = s.Channels, width = Vector<float>.Count, count = vectors * width;
            float* x = _x + c, y = _y + c;
            float* mean = stackalloc float[count], scale = stackalloc float[count];
            new Span<float>(mean, count).Clear(); // the sums start at 0
            if (s.Training != 0)
            {
                float* squares = stackalloc float[count];
                new Span<float>(squares, count).Clear();
                // mean holds the mean offset from each channel's first value (row 0 of x), as BatchNormRuns.MeanOffset
                // takes it, until the first value is added back.
                // Rows in blocks of RowBlock, each block's lanes in float, the blocks added in double.
                var (half, share) = (new Vector<float>(0.5f), new Vector<float>(2f / s.Count));
                double* totals = stackalloc double[count];
                new Span<double>(totals, count).Clear();
                for (int first = 0, rows; first < batch; first += rows)
                {
                    rows = Math.Min(RowBlock, batch - first);
                    for (int n = first; n < first + rows; n++)
                    {
                        for (int v = 0; v < count; v += width)
                        {
                            var offset = Vector.FusedMultiplyAdd(Vector.Load(x + ((long)n * stride) + v), half, -(half * Vector.Load(x + v)));
                            Vector.FusedMultiplyAdd(offset, share, Vector.Load(mean + v)).Store(mean + v);
                        }
                    }

                    AddBlock(mean, totals, count);
                }

                RoundTotals(totals, mean, count);
                new Span<double>(totals, count).Clear();

                for (int first = 0, rows; first < batch; first += rows)
                {
                    rows = Math.Min(RowBlock, batch - first);
                    for (int n = first; n < first + rows; n++)
                    {
                        for (int v = 0; v < count; v += width)
                        {
                            var d = Vector.Load(x + ((long)n * stride) + v) - Vector.Load(x + v) - Vector.Load(mean + v);
                            (Vector.Load(squares + v) + (d * d)).Store(squares + v);
                        }
                    }

                    AddBlock(squares, totals, count);
                }

                RoundTotals(totals, squares, count);

                var keep = new Vector<float>(1f - s.Momentum);
                var momentum = new Vector<float>(s.Momentum);
                for (int v = 0; v < count; v += width)
                {
                    var mu = Vector.Load(x + v) + Vector.Load(mean + v);
                    mu.Store(mean + v);
                    var sq = Vector.Load(squares + v);
                    (Vector<float>.One / Vector.SquareRoot((sq / s.Count) + new Vector<float>(s.Epsilon))).Store(scale + v); // invStd for now
                    ((keep * Vector.Load(_runningMean + c + v)) + (momentum * mu)).Store(_runningMean + c + v);
                    ((keep * Vector.Load(_runningVar + c + v)) + (momentum * sq / (s.Count - 1))).Store(_runningVar + c + v);
                }
            }
            else
            {
                for (int v = 0; v < count; v += width)
                {
                    Vector.Load(_runningMean + c + v).Store(mean + v);
                    (Vector<float>.One / Vector.SquareRoot(Vector.Load(_runningVar + c + v) + new Vector<float>(s.Epsilon))).Store(scale + v);
                }
            }

            for (int v = 0; v < count; v += width)
            {
                var mu = Vector.Load(mean + v);
                var invStd = Vector.Load(scale + v);
                mu.Store(_mean + c + v);
                invStd.Store(_invStd + c + v);
                (invStd * Vector.Load(_weight + c + v)).Store(scale + v);
            }

            for (int n = 0; n < batch; n++)
            {
                float* row = y + ((long)n * stride);
                for (int v = 0; v < count; v += width)
                {
                    // Centred before scaling, as the reference: scale·x − scale·mean would cancel where the mean is large.
                    var value = ((Vector.Load(x + ((long)n * stride) + v) - Vector.Load(mean + v)) * Vector.Load(scale + v)) + Vector.Load(_bias + c + v);
                    if (typeof(TF) == typeof(Relu))
                    {
                        value = Vector.ConditionalSelect(Vector.LessThan(value, Vector<float>.Zero), Vector<float>.Zero, value);
                    }

                    value.Store(row + v);
                }

                if (typeof(TF) != typeof(Relu) && typeof(TF) != typeof(Identity))
                {
                    ActivationLoops.Forward(_f, new ReadOnlySpan<float>(row, count), new Span<float>(row, count));
                }
            }
        }
    }

    /// <summary>
    /// The gradients of y = f(batch_norm(x)) channel by channel: the sums of dz = dy·f′(y) and dz·(x − mean), then dx
    /// from dz, dz made afresh from y and dy in each pass rather than stored — so dx may be any of x, y and dy.
    /// </summary>
    private sealed class BatchNormBackwardJob<TF> : ChannelJob
        where TF : struct, IDerivativeFromOutput
    {
        private float* _x, _y, _dy, _weight, _mean, _invStd, _dx, _dweight, _dbias;
        private TF _f;

        public void Set(in BatchNormShape s, float* x, float* y, float* dy, float* weight, float* mean, float* invStd, float* dx,
            float* dweight, float* dbias, TF f)
        {
            Shape = s;
            _x = x;
            _y = y;
            _dy = dy;
            _weight = weight;
            _mean = mean;
            _invStd = invStd;
            _dx = dx;
            _dweight = dweight;
            _dbias = dbias;
            _f = f;
        }

        private static bool Activated => typeof(TF) != typeof(Identity);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void RunChannel(int c)
        {
            var s = Shape;
            int batch = s.Count / s.Inner, inner = s.Inner, stride = s.Channels * inner;
            long first = (long)c * inner;
            float* x = _x + first, dy = _dy + first, y = _y + first, dx = _dx + first;
            float mean = _mean[c], invStd = _invStd[c];
            double dySum = 0, centredSum = 0; // pieces of float lanes added in double, as the forward's sums
            for (int n = 0; n < batch; n++)
            {
                for (int start = 0, length; start < inner; start += length)
                {
                    long at = ((long)n * stride) + start;
                    length = Math.Min(SumPiece, inner - start);
                    var (a, b) = Activated
                        ? BatchNormRuns.GradientSumsThrough(x + at, y + at, dy + at, length, mean, _f)
                        : BatchNormRuns.GradientSums(x + at, dy + at, length, mean);
                    dySum += a;
                    centredSum += b;
                }
            }

            float sumDy = (float)dySum, sumDyCentred = (float)centredSum;
            float dweight = sumDyCentred * invStd;
            _dbias[c] = sumDy;
            _dweight[c] = dweight;
            if (_dx is null)
            {
                return;
            }

            // dx = a·(dz − (meanDz + (x − mean)·k)), or a·dz in evaluation (see BatchNormKernels.InputGradientCoefficients).
            var terms = new InputGradientTerms(_weight[c] * invStd, sumDy / s.Count, mean, invStd * dweight / s.Count, s.Training != 0);
            for (int n = 0; n < batch; n++)
            {
                long at = (long)n * stride;
                if (Activated)
                {
                    BatchNormRuns.InputGradientThrough(y + at, dy + at, x + at, dx + at, inner, terms, _f);
                }
                else
                {
                    BatchNormRuns.InputGradient(dy + at, x + at, dx + at, inner, terms);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void RunFeatures(int c, int vectors)
        {
            var s = Shape;
            int batch = s.Count, stride = s.Channels, width = Vector<float>.Count, count = vectors * width;
            float* x = _x + c, dy = _dy + c, y = _y + c, dx = _dx + c;
            float* sumDy = stackalloc float[count], sumDyCentred = stackalloc float[count], lanes = stackalloc float[width];
            new Span<float>(sumDy, count).Clear(); // the sums start at 0
            new Span<float>(sumDyCentred, count).Clear();
            double* dyTotals = stackalloc double[count], centredTotals = stackalloc double[count]; // blocks of rows, as the forward's
            new Span<double>(dyTotals, count).Clear();
            new Span<double>(centredTotals, count).Clear();
            for (int first = 0, rows; first < batch; first += rows)
            {
                rows = Math.Min(RowBlock, batch - first);
                for (int n = first; n < first + rows; n++)
                {
                    long at = (long)n * stride;
                    for (int v = 0; v < count; v += width)
                    {
                        var dz = Gradient(y + at + v, dy + at + v, lanes);
                        (Vector.Load(sumDy + v) + dz).Store(sumDy + v);
                        (Vector.Load(sumDyCentred + v) + (dz * (Vector.Load(x + at + v) - Vector.Load(_mean + c + v)))).Store(sumDyCentred + v);
                    }
                }

                AddBlock(sumDy, dyTotals, count);
                AddBlock(sumDyCentred, centredTotals, count);
            }

            RoundTotals(dyTotals, sumDy, count);
            RoundTotals(centredTotals, sumDyCentred, count);

            // Per channel dx = a·(dz − (meanDz + (x − mean)·k)), or a·dz in evaluation (see
            // BatchNormKernels.InputGradientCoefficients); meanDz and k kept over sumDy's and sumDyCentred's places once read.
            float* scale = stackalloc float[count];
            for (int v = 0; v < count; v += width)
            {
                var invStd = Vector.Load(_invStd + c + v);
                var dbias = Vector.Load(sumDy + v);
                var dweight = Vector.Load(sumDyCentred + v) * invStd;
                dbias.Store(_dbias + c + v);
                dweight.Store(_dweight + c + v);
                (Vector.Load(_weight + c + v) * invStd).Store(scale + v);
                (dbias / s.Count).Store(sumDy + v);
                (invStd * dweight / s.Count).Store(sumDyCentred + v);
            }

            if (_dx is null)
            {
                return;
            }

            for (int n = 0; n < batch; n++)
            {
                long at = (long)n * stride;
                for (int v = 0; v < count; v += width)
                {
                    var dz = Gradient(y + at + v, dy + at + v, lanes);
                    var gradient = s.Training != 0
                        ? InputGradientTerms.Centred(Vector.Load(scale + v), dz, Vector.Load(sumDy + v), Vector.Load(x + at + v), Vector.Load(_mean + c + v), Vector.Load(sumDyCentred + v))
                        : Vector.Load(scale + v) * dz;
                    gradient.Store(dx + at + v);
                }
            }
        }

        /// <summary>dz = dy·f′(y) for a vector of channels: ReLU by a select, another f lane by lane (through <paramref name="lanes"/>, a vector's floats of the caller's stack).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector<float> Gradient(float* y, float* dy, float* lanes)
        {
            if (!Activated)
            {
                return Vector.Load(dy);
            }

            if (typeof(TF) == typeof(Relu))
            {
                return Vector.ConditionalSelect(Vector.LessThanOrEqual(Vector.Load(y), Vector<float>.Zero), Vector<float>.Zero, Vector.Load(dy));
            }

            for (int i = 0; i < Vector<float>.Count; i++)
            {
                lanes[i] = _f.BackwardFromOutput(y[i], dy[i]);
            }

            return Vector.Load(lanes);
        }
    }

    /// <summary>Batch norm's loops over one run of contiguous values of a channel.</summary>
    private static class BatchNormRuns
    {
        /// <summary>Values of dz made at a time on the stack for an activation other than ReLU: a piece (SumPiece) at most.</summary>
        private const int Piece = SumPiece;

        /// <summary>
        /// Σ (x/2 − halfPivot)·share, with four independent vector accumulators, as <see cref="Sum(float*, int)"/>: with
        /// halfPivot = pivot/2 and share = 2/count, a run's part of the mean offset from the pivot (as the reference).
        /// The halves are exact, so x/2 − pivot/2 is (x − pivot)/2 rounded once — but cannot overflow where the values
        /// span more than float's range (±2e38) — and each term is scaled as it is added, so no partial sum passes the
        /// largest offset (1e38 then −1e38s overflowed a plain sum of offsets).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static float MeanOffset(float* x, int length, float halfPivot, float share)
        {
            int n = Vector<float>.Count, i = 0;
            Vector<float> s0 = Vector<float>.Zero, s1 = s0, s2 = s0, s3 = s0, half = new(0.5f), p = new(-halfPivot), a = new(share);
            for (; i <= length - (4 * n); i += 4 * n)
            {
                s0 = Vector.FusedMultiplyAdd(Vector.FusedMultiplyAdd(Vector.Load(x + i), half, p), a, s0);
                s1 = Vector.FusedMultiplyAdd(Vector.FusedMultiplyAdd(Vector.Load(x + i + n), half, p), a, s1);
                s2 = Vector.FusedMultiplyAdd(Vector.FusedMultiplyAdd(Vector.Load(x + i + (2 * n)), half, p), a, s2);
                s3 = Vector.FusedMultiplyAdd(Vector.FusedMultiplyAdd(Vector.Load(x + i + (3 * n)), half, p), a, s3);
            }

            for (; i <= length - n; i += n)
            {
                s0 = Vector.FusedMultiplyAdd(Vector.FusedMultiplyAdd(Vector.Load(x + i), half, p), a, s0);
            }

            float sum = Vector.Sum((s0 + s1) + (s2 + s3));
            for (; i < length; i++)
            {
                sum = MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(x[i], 0.5f, -halfPivot), share, sum);
            }

            return sum;
        }

        /// <summary>
        /// Σ (x − pivot − offset)², the squared deviations from the mean pivot + offset (as the reference: the offset,
        /// unrounded by the pivot's magnitude), with four independent vector accumulators, as <see cref="Sum(float*, int)"/>.
        /// Where x − pivot overflows (values spanning more than float's range) the square is +∞, as it would be anyway.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static float SquaredDeviations(float* x, int length, float pivot, float offset)
        {
            int n = Vector<float>.Count, i = 0;
            Vector<float> s0 = Vector<float>.Zero, s1 = s0, s2 = s0, s3 = s0, p = new(pivot), o = new(offset);
            for (; i <= length - (4 * n); i += 4 * n)
            {
                var d0 = Vector.Load(x + i) - p - o;
                var d1 = Vector.Load(x + i + n) - p - o;
                var d2 = Vector.Load(x + i + (2 * n)) - p - o;
                var d3 = Vector.Load(x + i + (3 * n)) - p - o;
                s0 += d0 * d0;
                s1 += d1 * d1;
                s2 += d2 * d2;
                s3 += d3 * d3;
            }

            for (; i <= length - n; i += n)
            {
                var d = Vector.Load(x + i) - p - o;
                s0 += d * d;
            }

            float sum = Vector.Sum((s0 + s1) + (s2 + s3));
            for (; i < length; i++)
            {
                float d = x[i] - pivot - offset;
                sum += d * d;
            }

            return sum;
        }

        /// <summary>
        /// y = f((x − mean)·scale + bias): ReLU as a select in the same vector loop (a NaN stays NaN), another f after it
        /// on the run. Centred first, as the reference: the affine scale·x + (bias − mean·scale) cancels where the mean
        /// is large against the spread.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void NormalizeActivate<TF>(float* x, float* y, int length, float mean, float scale, float bias, TF f)
            where TF : struct, IActivationFunction
        {
            Vector<float> m = new(mean), a = new(scale), b = new(bias);
            int i = 0;
            for (; i <= length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var value = ((Vector.Load(x + i) - m) * a) + b;
                if (typeof(TF) == typeof(Relu))
                {
                    value = Vector.ConditionalSelect(Vector.LessThan(value, Vector<float>.Zero), Vector<float>.Zero, value);
                }

                value.Store(y + i);
            }

            for (; i < length; i++)
            {
                float value = ((x[i] - mean) * scale) + bias;
                y[i] = typeof(TF) == typeof(Relu) ? f.Forward(value) : value;
            }

            if (typeof(TF) != typeof(Relu) && typeof(TF) != typeof(Identity))
            {
                ActivationLoops.Forward(f, new ReadOnlySpan<float>(y, length), new Span<float>(y, length)); // the run is in cache
            }
        }

        /// <summary>(Σ dy, Σ dy·(x − mean)) over one run.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static (float SumDy, float SumDyCentred) GradientSums(float* x, float* dy, int length, float mean)
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

        /// <summary>
        /// <see cref="GradientSums"/> of dz = dy·f′(y), dz not stored: for ReLU (dz = 0 where y ≤ 0, so a NaN y passes
        /// dy on, as PyTorch's threshold_backward) a select in the summing loop; for another f, made on the stack first
        /// (a piece: at most <see cref="Piece"/> values).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        [SkipLocalsInit] // the pieces are written before they are read
        public static (float SumDy, float SumDyCentred) GradientSumsThrough<TF>(float* x, float* y, float* dy, int length, float mean, TF f)
            where TF : struct, IDerivativeFromOutput
        {
            if (typeof(TF) != typeof(Relu))
            {
                Debug.Assert(length <= Piece, "callers sum a channel a piece at a time");
                float* dz = stackalloc float[length];
                ActivationLoops.BackwardFromOutput(f, new ReadOnlySpan<float>(y, length), new ReadOnlySpan<float>(dy, length), new Span<float>(dz, length));
                return GradientSums(x, dz, length, mean);
            }

            int n = Vector<float>.Count, i = 0;
            Vector<float> g0 = Vector<float>.Zero, g1 = g0, c0 = g0, c1 = g0, mu = new(mean);
            for (; i <= length - (2 * n); i += 2 * n)
            {
                var e0 = ReluGradient(y + i, dy + i);
                var e1 = ReluGradient(y + i + n, dy + i + n);
                g0 += e0;
                g1 += e1;
                c0 += e0 * (Vector.Load(x + i) - mu);
                c1 += e1 * (Vector.Load(x + i + n) - mu);
            }

            for (; i <= length - n; i += n)
            {
                var e = ReluGradient(y + i, dy + i);
                g0 += e;
                c0 += e * (Vector.Load(x + i) - mu);
            }

            float sumDy = Vector.Sum(g0 + g1), sumDyCentred = Vector.Sum(c0 + c1);
            for (; i < length; i++)
            {
                float e = f.BackwardFromOutput(y[i], dy[i]);
                sumDy += e;
                sumDyCentred += e * (x[i] - mean);
            }

            return (sumDy, sumDyCentred);
        }

        /// <summary>
        /// <see cref="InputGradient"/> from dz = dy·f′(y), made as in <see cref="GradientSumsThrough"/>; every value is
        /// read before dx's at the same place is written, so dx may be x, y or dy.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        [SkipLocalsInit]
        public static void InputGradientThrough<TF>(float* y, float* dy, float* x, float* dx, int length, in InputGradientTerms terms, TF f)
            where TF : struct, IDerivativeFromOutput
        {
            if (typeof(TF) != typeof(Relu))
            {
                float* dz = stackalloc float[Math.Min(length, Piece)];
                for (int start = 0; start < length; start += Piece)
                {
                    int count = Math.Min(Piece, length - start);
                    ActivationLoops.BackwardFromOutput(f, new ReadOnlySpan<float>(y + start, count), new ReadOnlySpan<float>(dy + start, count),
                        new Span<float>(dz, count));
                    InputGradient(dz, x + start, dx + start, count, terms);
                }

                return;
            }

            Vector<float> a = new(terms.A), meanDz = new(terms.MeanDz), mean = new(terms.Mean), k = new(terms.K);
            int i = 0;
            for (; i <= length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var dz = ReluGradient(y + i, dy + i);
                (terms.Training ? InputGradientTerms.Centred(a, dz, meanDz, Vector.Load(x + i), mean, k) : a * dz).Store(dx + i);
            }

            for (; i < length; i++)
            {
                dx[i] = terms.Of(f.BackwardFromOutput(y[i], dy[i]), x[i]);
            }
        }

        /// <summary>ReLU's dz = dy where y is not ≤ 0 (a NaN y passes dy on), one vector.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector<float> ReluGradient(float* y, float* dy) =>
            Vector.ConditionalSelect(Vector.LessThanOrEqual(Vector.Load(y), Vector<float>.Zero), Vector<float>.Zero, Vector.Load(dy));

        /// <summary>dx from dz over one run, with a channel's <paramref name="terms"/>; dx may be dz.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void InputGradient(float* dz, float* x, float* dx, int length, in InputGradientTerms terms)
        {
            Vector<float> a = new(terms.A), meanDz = new(terms.MeanDz), mean = new(terms.Mean), k = new(terms.K);
            int i = 0;
            for (; i <= length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var g = Vector.Load(dz + i);
                (terms.Training ? InputGradientTerms.Centred(a, g, meanDz, Vector.Load(x + i), mean, k) : a * g).Store(dx + i);
            }

            for (; i < length; i++)
            {
                dx[i] = terms.Of(dz[i], x[i]);
            }
        }
    }
}

/// <summary>
/// A channel's terms of batch normalisation's dx (see BatchNormKernels.InputGradientCoefficients): a = weight·invStd,
/// meanDz = Σdz/M, the mean, k = invStd·dweight/M; dx = a·(dz − (meanDz + (x − mean)·k)) in training, a·dz in evaluation.
/// </summary>
internal readonly record struct InputGradientTerms(float A, float MeanDz, float Mean, float K, bool Training)
{
    /// <summary>One value's dx.</summary>
    public float Of(float dz, float x) => Training ? A * (dz - (MeanDz + ((x - Mean) * K))) : A * dz;

    /// <summary>Training's dx for a vector, in the same order as <see cref="Of"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Centred(Vector<float> a, Vector<float> dz, Vector<float> meanDz, Vector<float> x, Vector<float> mean, Vector<float> k) =>
        a * (dz - (meanDz + ((x - mean) * k)));
}
