namespace GpuCnn.Cpu;

/// <summary>Add's case in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>y = a + b (a residual block's join).</summary>
    public static OperationCase Add(int count, int seed) =>
        new("add", $"({count})", null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var a = run.Input([count], random);
            var b = run.Input([count], random);
            var y = run.Output([count]);
            return run.Does(() => backend.Add(a, b, y));
        });
}
