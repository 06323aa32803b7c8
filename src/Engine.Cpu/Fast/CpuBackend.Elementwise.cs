using System.Runtime.CompilerServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Elementwise operations split across the team: activations forward and backward (and the residual add, in
/// src/Ops/Residual/Add.Cpu.cs) run over
/// contiguous ranges, one per worker, so a memory-bound pass uses both cores' bandwidth. Work objects are reused per
/// activation type, so a call allocates nothing.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    private readonly SplitJob _split = new();
    private readonly Dictionary<Type, object> _activationWork = [];

    /// <summary>
    /// Splits [0, length) into one contiguous range per worker (one range for short work: fewer than 32 Ki elements).
    /// Items of one element (floats) go in whole cache lines of 16; items of several (rows, planes, channels) one by one.
    /// </summary>
    private void RunSplit(ISplitWork work, int length, long itemSize = 1)
    {
        int parts = length * itemSize < 1 << 15 ? 1 : _workers.Count;
        _split.Work = work;
        _split.Length = length;
        _split.Parts = parts;
        _split.Granularity = itemSize == 1 ? 16 : 1;
        _workers.Run(_split, parts);
    }

    /// <inheritdoc/>
    protected override void ActivationForwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y)
    {
        var work = Work<ActivationWork<TF>>(typeof(ActivationWork<TF>));
        (work.Function, work.Backward) = (f, false);
        fixed (float* px = Data(x), py = Data(y)) // pinned, and alive, while the team runs
        {
            (work.X, work.Y) = ((nint)px, (nint)py);
            RunSplit(work, x.Length);
        }
    }

    /// <inheritdoc/>
    protected override void ActivationBackwardCore<TF>(TF f, DeviceTensor<float> x, DeviceTensor<float> y,
        DeviceTensor<float> dy, DeviceTensor<float> dx)
    {
        var work = Work<ActivationWork<TF>>(typeof(ActivationWork<TF>));
        (work.Function, work.Backward) = (f, true);
        fixed (float* px = Data(x), py = Data(y), pdy = Data(dy), pdx = Data(dx))
        {
            (work.X, work.Y, work.Dy, work.Dx) = ((nint)px, (nint)py, (nint)pdy, (nint)pdx);
            RunSplit(work, x.Length);
        }
    }

    /// <inheritdoc/>
    protected override void ActivationBackwardFromOutputCore<TF>(TF f, DeviceTensor<float> y, DeviceTensor<float> dy,
        DeviceTensor<float> dx)
    {
        var work = Work<FromOutputWork<TF>>(typeof(FromOutputWork<TF>));
        work.Function = f;
        fixed (float* py = Data(y), pdy = Data(dy), pdx = Data(dx))
        {
            (work.Y, work.Dy, work.Dx) = ((nint)py, (nint)pdy, (nint)pdx);
            RunSplit(work, y.Length);
        }
    }

    /// <summary>The reusable work object of a type (one per activation function type).</summary>
    private T Work<T>(Type type)
        where T : class, new()
    {
        if (!_activationWork.TryGetValue(type, out var work))
        {
            work = new T();
            _activationWork[type] = work;
        }

        return (T)work;
    }

    /// <summary>A range of an elementwise operation.</summary>
    private interface ISplitWork
    {
        void Run(int start, int count);
    }

    /// <summary>Contiguous ranges of whole cache lines (16 floats), one per part.</summary>
    private sealed class SplitJob : IParallelJob
    {
        public ISplitWork? Work { get; set; }

        public int Length { get; set; }

        public int Parts { get; set; }

        /// <summary>Ranges are whole multiples of this many items (16 floats: a cache line).</summary>
        public int Granularity { get; set; } = 16;

        public bool AnyWorker => true;

        public void Run(int part, int worker)
        {
            int chunk = ((Length + Parts - 1) / Parts + Granularity - 1) / Granularity * Granularity;
            int start = part * chunk, count = Math.Min(chunk, Length - start);
            if (count > 0)
            {
                Work!.Run(start, count);
            }
        }
    }

    /// <summary>An activation's forward or backward over a range.</summary>
    private sealed class ActivationWork<TF> : ISplitWork
        where TF : struct, IActivationFunction
    {
        public TF Function { get; set; }

        public bool Backward { get; set; }

        public nint X { get; set; }

        public nint Y { get; set; }

        public nint Dy { get; set; }

        public nint Dx { get; set; }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int count)
        {
            if (Backward)
            {
                ActivationLoops.Backward(Function, new Span<float>((float*)X + start, count), new Span<float>((float*)Y + start, count), new Span<float>((float*)Dy + start, count), new Span<float>((float*)Dx + start, count));
            }
            else
            {
                ActivationLoops.Forward(Function, new Span<float>((float*)X + start, count), new Span<float>((float*)Y + start, count));
            }
        }
    }

    /// <summary>An activation's backward from its output alone over a range.</summary>
    private sealed class FromOutputWork<TF> : ISplitWork
        where TF : struct, IDerivativeFromOutput
    {
        public TF Function { get; set; }

        public nint Y { get; set; }

        public nint Dy { get; set; }

        public nint Dx { get; set; }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int count) =>
            ActivationLoops.BackwardFromOutput(Function, new Span<float>((float*)Y + start, count), new Span<float>((float*)Dy + start, count), new Span<float>((float*)Dx + start, count));
    }
}
