using System.Numerics;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// The backward passes of depthwise convolutions (groups = channels = filters: one 2-D kernel per channel) on the fast
/// CPU backend (compiled into GpuCnn.Engine.Cpu). The general grouped route ran them as C one-channel convolutions in
/// turn, each gathered, started on the team and scattered back: 2–5.7× PyTorch's time for 64 and 128 channels at
/// 28×28. Here every plane is a job of its own:
/// <list type="bullet">
/// <item>dx[n,c] = Σ_{r,s} w[c,r,s]·dy[n,c] shifted to the taps' rows and columns — each tap adds a row of dy into a row
/// of dx (a vector loop at stride 1), taps landing in the padding dropped;</item>
/// <item>dw[c,r,s] = Σ_n Σ_{p,q} x[n,c,h(p,r),w(q,s)]·dy[n,c,p,q] — a dot product of rows per tap, each channel summed over
/// its images in order.</item>
/// </list>
/// A plane's sums run in a fixed order whatever the thread count. The loops use <see cref="Vector{T}"/> and a 128-bit
/// step whatever width the backend was made with (a backend forced to scalar or 128-bit still runs them), so the filter
/// gradient's bits follow Vector&lt;float&gt;'s width, not the backend's.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    private readonly DepthwiseWork _depthwise = new();

    /// <summary>One kernel per channel and one channel per kernel.</summary>
    private static bool IsDepthwise(in Conv2dGeometry g) => g.Groups > 1 && g.Groups == g.C && g.K == g.C;

    private void DepthwiseBackwardData(in Conv2dGeometry g, float* dy, float* w, float* dx)
    {
        _depthwise.Set(g, dy, w, dx, filterGradient: false);
        RunSplit(_depthwise, g.N * g.C, (long)g.R * g.S * g.P * g.Q);
    }

    private void DepthwiseBackwardFilter(in Conv2dGeometry g, float* x, float* dy, float* dw)
    {
        _depthwise.Set(g, dy, x, dw, filterGradient: true);
        RunSplit(_depthwise, g.C, (long)g.N * g.R * g.S * g.P * g.Q);
    }

    /// <summary>Planes (backward data: n·C + c) or channels (filter gradient) [start, start + count).</summary>
    private sealed class DepthwiseWork : ISplitWork
    {
        private Conv2dGeometry _g;
        private float* _dy, _other, _result;
        private bool _filterGradient;

        public void Set(in Conv2dGeometry g, float* dy, float* other, float* result, bool filterGradient)
        {
            _g = g;
            _dy = dy;
            _other = other;
            _result = result;
            _filterGradient = filterGradient;
        }

        public void Run(int start, int count)
        {
            for (int i = start; i < start + count; i++)
            {
                if (_filterGradient)
                {
                    FilterGradient(i);
                }
                else
                {
                    BackwardData(i);
                }
            }
        }

        private void BackwardData(int plane)
        {
            var g = _g;
            int c = plane % g.C, hw = g.H * g.W, pq = g.P * g.Q;
            float* dx = _result + ((long)plane * hw), dy = _dy + ((long)plane * pq), w = _other + ((long)c * g.R * g.S);
            new Span<float>(dx, hw).Clear();
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++)
                {
                    float tap = w[(r * g.S) + s];
                    var (q0, q1, column) = Columns(g, s);
                    for (int p = 0; p < g.P && q0 < q1; p++)
                    {
                        int h = (p * g.StrideH) + (r * g.DilationH) - g.PadH;
                        if (h >= 0 && h < g.H)
                        {
                            AddScaled(tap, dy + ((long)p * g.Q), dx + ((long)h * g.W) + column, q0, q1, g.StrideW);
                        }
                    }
                }
            }
        }

        private void FilterGradient(int c)
        {
            var g = _g;
            int hw = g.H * g.W, pq = g.P * g.Q;
            float* dw = _result + ((long)c * g.R * g.S);
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++)
                {
                    var (q0, q1, column) = Columns(g, s);
                    float sum = 0f;
                    for (int n = 0; n < g.N && q0 < q1; n++)
                    {
                        long plane = ((long)n * g.C) + c;
                        float* x = _other + (plane * hw), dy = _dy + (plane * pq);
                        for (int p = 0; p < g.P; p++)
                        {
                            int h = (p * g.StrideH) + (r * g.DilationH) - g.PadH;
                            if (h >= 0 && h < g.H)
                            {
                                sum += Dot(dy + ((long)p * g.Q), x + ((long)h * g.W) + column, q0, q1, g.StrideW);
                            }
                        }
                    }

                    dw[(r * g.S) + s] = sum;
                }
            }
        }

        /// <summary>
        /// The output columns [q0, q1) whose tap s lands inside the input, and the input column of output column 0
        /// for that tap (q·Sw + column is the input column of q).
        /// </summary>
        private static (int First, int End, int Column) Columns(in Conv2dGeometry g, int s)
        {
            int column = (s * g.DilationW) - g.PadW;
            int first = column >= 0 ? 0 : (-column + g.StrideW - 1) / g.StrideW;
            int last = g.W - 1 - column; // the input column of output column 0's last reach
            int end = last < 0 ? 0 : Math.Min(g.Q, (last / g.StrideW) + 1);
            return (first, Math.Max(first, end), column);
        }

        /// <summary>target[q·stride] += tap·source[q] for q in [first, end): a vector loop at stride 1.</summary>
        private static void AddScaled(float tap, float* source, float* target, int first, int end, int stride)
        {
            int q = first;
            if (stride == 1)
            {
                var scale = new Vector<float>(tap);
                for (; q <= end - Vector<float>.Count; q += Vector<float>.Count)
                {
                    Vector.Store(Vector.Load(target + q) + (scale * Vector.Load(source + q)), target + q);
                }

                if (Vector128.IsHardwareAccelerated && q <= end - 4)
                {
                    // Rows of 28 or 14 leave four: one 128-bit step rather than four scalar ones.
                    Vector128.Store(Vector128.Load(target + q) + (Vector128.Create(tap) * Vector128.Load(source + q)), target + q);
                    q += 4;
                }
            }

            for (; q < end; q++)
            {
                target[q * stride] += tap * source[q];
            }
        }

        /// <summary>Σ source[q]·target[q·stride] for q in [first, end): vector lanes summed in lane order, then the tail.</summary>
        private static float Dot(float* source, float* target, int first, int end, int stride)
        {
            int q = first;
            float sum = 0f;
            if (stride == 1 && end - first >= Vector<float>.Count)
            {
                var lanes = Vector<float>.Zero;
                for (; q <= end - Vector<float>.Count; q += Vector<float>.Count)
                {
                    lanes += Vector.Load(source + q) * Vector.Load(target + q);
                }

                sum = Vector.Sum(lanes);
                if (Vector128.IsHardwareAccelerated && q <= end - 4)
                {
                    sum += Vector128.Sum(Vector128.Load(source + q) * Vector128.Load(target + q));
                    q += 4;
                }
            }

            for (; q < end; q++)
            {
                sum += source[q] * target[q * stride];
            }

            return sum;
        }
    }
}
