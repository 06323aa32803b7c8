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
    /// A random valid padding of a small input: each side padded or cropped by up to 3 (at least one row and column
    /// left), so the CPU backend's row copies meet every arrangement of border, copy and crop.
    /// </summary>
    public static Pad2dGeometry RandomPad(Random random)
    {
        int h = random.Next(1, 9), w = random.Next(1, 20);
        int left = random.Next(-3, 4), right = random.Next(-3, 4), top = random.Next(-3, 4), bottom = random.Next(-3, 4);
        // Keep at least one output row and column: a crop of the whole plane is refused (no tensor has a zero dimension).
        right = Math.Max(right, 1 - left - w);
        bottom = Math.Max(bottom, 1 - top - h);
        return new Pad2dGeometry(random.Next(1, 4), random.Next(1, 4), h, w, left, right, top, bottom);
    }
}
