namespace GpuCnn.Cpu;

/// <summary>Dropout's case in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>Inverted dropout with a seeded mask.</summary>
    public static OperationCase Dropout(int count, float p, int seed) =>
        new(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"dropout({p})"), $"({count})", null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input([count], random);
            var y = run.Output([count]);
            uint key = (uint)random.Next();
            return run.Does(() => backend.Dropout(x, y, p, key));
        });
}
