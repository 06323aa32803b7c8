namespace GpuCnn.Cpu;

/// <summary>clip_grad_norm_'s case in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>
    /// Gradients of the lengths given, their squared norms, the clipping coefficient and total norm for
    /// <paramref name="maxNorm"/>, and the gradients scaled by it (below the total norm: clipped; above: unchanged).
    /// </summary>
    public static OperationCase ClipGradNorm(int[] lengths, float maxNorm, int seed) =>
        new("clip grad norm", $"({string.Join(", ", lengths)}) to {maxNorm}", null, backend =>
        {
            ArgumentNullException.ThrowIfNull(lengths);
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var gradients = lengths.Select(n => run.Input([n], random, written: true)).ToArray();
            var sums = run.Output([lengths.Length]);
            var coefficient = run.Output([2]);
            return run.Does(() =>
            {
                // The list forms, as GradientClipper runs them (ForeachTests hold them to the single forms' bits).
                backend.SquaredNorms(gradients, sums);
                backend.ClipCoefficient(sums, maxNorm, coefficient);
                backend.ScaleBy(gradients, coefficient);
            });
        });
}
