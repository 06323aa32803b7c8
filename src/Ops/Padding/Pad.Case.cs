using GpuCnn.Kernels;

namespace GpuCnn.Cpu;

/// <summary>Constant padding's cases in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>Constant padding forward (with <paramref name="value"/>) and its backward, the input's part of dy.</summary>
    public static OperationCase Pad(Pad2dGeometry g, float value, int seed) =>
        new(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"pad({g.Left},{g.Right},{g.Top},{g.Bottom},value={value}) forward, backward"),
            $"x({g.N},{g.C},{g.H},{g.W})", null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input(g.InputShape, random);
            var y = run.Output(g.OutputShape);
            var dy = run.Input(g.OutputShape, random);
            var dx = run.Output(g.InputShape);
            return run.Does(() =>
            {
                backend.Pad2dForward(g, x, y, value);
                backend.Pad2dBackward(g, dy, dx);
            });
        });

    /// <summary>
    /// A random valid padding of a small input: each side padded or cropped by up to 3, so the CPU backend's row copies
    /// meet every arrangement of border, copy and crop (a whole axis cropped away and padded again included).
    /// </summary>
    public static Pad2dGeometry RandomPad(Random random)
    {
        int h = random.Next(1, 9), w = random.Next(1, 20);
        int left = random.Next(-3, 4), right = random.Next(-3, 4), top = random.Next(-3, 4), bottom = random.Next(-3, 4);
        (left, right) = Valid(left, right, w);
        (top, bottom) = Valid(top, bottom, h);
        return new Pad2dGeometry(random.Next(1, 4), random.Next(1, 4), h, w, left, right, top, bottom);

        // The crops take at most the axis (PyTorch's rule), and one output row or column is left (no tensor has a zero dimension).
        static (int Before, int After) Valid(int before, int after, int size)
        {
            before = Math.Max(before, -size);
            after = Math.Max(after, -(size + Math.Min(before, 0)));
            return (before, Math.Max(after, 1 - before - size));
        }
    }
}
