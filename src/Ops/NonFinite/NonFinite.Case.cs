namespace GpuCnn.Cpu;

/// <summary>FlagNonFinite's case in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>Flags for a finite tensor (slot 0 stays 0) and for tensors with a NaN, a +∞ and a −∞ (slots 1–3).</summary>
    public static OperationCase FlagNonFinite(int count, int seed) =>
        new("flag non-finite", $"({count}) x 4", null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            float[] clean = Values(random, count);
            var tensors = new List<DeviceTensor<float>> { run.Input([count], clean) };
            foreach (float bad in (float[])[float.NaN, float.PositiveInfinity, float.NegativeInfinity])
            {
                float[] spoiled = (float[])clean.Clone();
                spoiled[random.Next(count)] = bad;
                tensors.Add(run.Input([count], spoiled));
            }

            var flags = run.Input([4], new float[4], written: true);
            return run.Does(() =>
            {
                for (int i = 0; i < tensors.Count; i++)
                {
                    backend.FlagNonFinite(tensors[i], flags, i);
                }
            });
        });
}
