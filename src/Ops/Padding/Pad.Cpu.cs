using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Constant padding on the fast CPU backend (compiled into GpuCnn.Engine.Cpu): planes split across the team, each row
/// one block copy of the part that survives and fills of the border on either side.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void Pad2dForwardCore(Pad2dGeometry g, DeviceTensor<float> x, DeviceTensor<float> y, float value) =>
        RunPad(g, Data(x), Data(y), value, backward: false);

    /// <inheritdoc/>
    protected override void Pad2dBackwardCore(Pad2dGeometry g, DeviceTensor<float> dy, DeviceTensor<float> dx) =>
        RunPad(g, Data(dy), Data(dx), 0f, backward: true);

    private void RunPad(Pad2dGeometry g, Span<float> source, Span<float> target, float value, bool backward)
    {
        var work = Work<PadWork>(typeof(PadWork));
        // The backward is the same copy seen from the other side: dx is dy padded by the negated amounts, with zeros.
        work.Geometry = backward ? new Pad2dGeometry(g.N, g.C, g.P, g.Q, -g.Left, -g.Right, -g.Top, -g.Bottom) : g;
        work.Value = value;
        fixed (float* ps = source, pt = target) // pinned, and alive, while the team runs
        {
            (work.Source, work.Target) = ((nint)ps, (nint)pt);
            RunSplit(work, g.N * g.C, (long)work.Geometry.P * work.Geometry.Q);
        }
    }

    /// <summary>Whole planes of a padding: per output row, the border fills and the copied middle.</summary>
    private sealed class PadWork : ISplitWork
    {
        public Pad2dGeometry Geometry { get; set; }

        public float Value { get; set; }

        public nint Source { get; set; }

        public nint Target { get; set; }

        public void Run(int start, int count)
        {
            var g = Geometry;
            // The columns q of an output row that read the input: [first, end), empty when the crop leaves none.
            int first = Math.Clamp(g.Left, 0, g.Q), end = (int)Math.Clamp((long)g.Left + g.W, first, g.Q); // (in long: Left + W may pass int)
            for (int plane = start; plane < start + count; plane++)
            {
                float* x = (float*)Source + ((long)plane * g.H * g.W), y = (float*)Target + ((long)plane * g.P * g.Q);
                for (int p = 0; p < g.P; p++)
                {
                    var row = new Span<float>(y + ((long)p * g.Q), g.Q);
                    int h = p - g.Top;
                    if (h < 0 || h >= g.H || first == end)
                    {
                        row.Fill(Value);
                        continue;
                    }

                    row[..first].Fill(Value);
                    new ReadOnlySpan<float>(x + ((long)h * g.W) + (first - g.Left), end - first).CopyTo(row[first..end]);
                    row[end..].Fill(Value);
                }
            }
        }
    }
}
