using GpuCnn.Models;

namespace GpuCnn.Cpu;

/// <summary>Add's case in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>y = a + b (a residual block's join); with <paramref name="activation"/>, y = f(a + b) fused.</summary>
    public static OperationCase Add(int count, int seed, string? activation = null) =>
        new(activation is null ? "add" : $"add + {activation}", $"({count})", null, backend =>
        {
            var f = activation is null ? null : LayerRegistry.CreateActivation(activation);
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var a = run.Input([count], random);
            var b = run.Input([count], random);
            var y = run.Output([count]);
            return run.Does(() =>
            {
                if (f is null)
                {
                    backend.Add(a, b, y);
                }
                else
                {
                    f.AddForward(backend, a, b, y);
                }
            });
        });
}
