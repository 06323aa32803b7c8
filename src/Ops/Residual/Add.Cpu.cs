using System.Numerics;
using System.Runtime.CompilerServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>Add on the fast CPU backend, vectorised and split across the team (compiled into GpuCnn.Engine.Cpu).</summary>
public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void AddCore<TF>(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y, TF activation)
    {
        var work = Work<AddWork<TF>>(typeof(AddWork<TF>));
        work.Function = activation;
        fixed (float* pa = Data(a), pb = Data(b), py = Data(y)) // pinned, and alive, while the team runs
        {
            (work.A, work.B, work.Y) = ((nint)pa, (nint)pb, (nint)py);
            RunSplit(work, y.Length);
        }
    }

    /// <summary>
    /// y = f(a + b) over a range, one work object per function type: ReLU is a select in the adding loop; another f
    /// runs over each block of sums while it is in cache.
    /// </summary>
    private sealed class AddWork<TF> : ISplitWork
        where TF : struct, IActivationFunction
    {
        private const int Block = 4096;

        public nint A { get; set; }

        public nint B { get; set; }

        public nint Y { get; set; }

        public TF Function { get; set; }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int start, int count)
        {
            float* a = (float*)A, b = (float*)B, y = (float*)Y;
            if (typeof(TF) == typeof(Identity) || typeof(TF) == typeof(Relu))
            {
                Add(a + start, b + start, y + start, count);
                return;
            }

            for (int done = 0; done < count; done += Block)
            {
                int length = Math.Min(Block, count - done);
                Add(a + start + done, b + start + done, y + start + done, length);
                ActivationLoops.Forward(Function, new ReadOnlySpan<float>(y + start + done, length), new Span<float>(y + start + done, length));
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Add(float* a, float* b, float* y, int count)
        {
            int i = 0;
            for (; i <= count - Vector<float>.Count; i += Vector<float>.Count)
            {
                var sum = Vector.Load(a + i) + Vector.Load(b + i);
                if (typeof(TF) == typeof(Relu))
                {
                    sum = Vector.ConditionalSelect(Vector.LessThan(sum, Vector<float>.Zero), Vector<float>.Zero, sum); // a NaN stays NaN
                }

                sum.Store(y + i);
            }

            for (; i < count; i++)
            {
                y[i] = typeof(TF) == typeof(Relu) ? Function.Forward(a[i] + b[i]) : a[i] + b[i];
            }
        }
    }
}
