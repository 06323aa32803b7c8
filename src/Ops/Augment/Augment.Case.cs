namespace GpuCnn.Cpu;

/// <summary>Augmentation's and normalisation's cases in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>A random crop with padding and flips, then per-channel normalisation of the result.</summary>
    public static OperationCase CropFlipNormalize(Shape shape, int padding, int seed) =>
        new($"random crop (pad {padding}) + flip, normalize", shape.ToString(), null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input(shape, random);
            var mean = run.Input([shape[1]], random);
            var std = run.Input([shape[1]], [.. Enumerable.Range(0, shape[1]).Select(_ => 0.5f + random.NextSingle())]);
            var y = run.Output(shape);
            uint key = (uint)random.Next();
            return run.Does(() =>
            {
                backend.RandomCropFlip(x, y, padding, flip: true, key);
                backend.NormalizeChannels(y, y, mean, std);
            });
        });
}
