namespace GpuCnn.Cpu;

/// <summary>Batch normalisation's case in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>A training forward (running statistics updated), its backward, then an evaluation forward.</summary>
    public static OperationCase BatchNorm(Shape shape, int seed) =>
        new("batchnorm train forward, backward, eval forward", shape.ToString(), null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var channels = new Shape(shape[1]);
            var x = run.Input(shape, random);
            var dy = run.Input(shape, random);
            var weight = run.Input(channels, random);
            var bias = run.Input(channels, random);
            var runningMean = run.Input(channels, random, written: true);
            var runningVar = run.Input(channels, [.. Enumerable.Range(0, shape[1]).Select(_ => 0.5f + random.NextSingle())], written: true);
            var y = run.Output(shape);
            var mean = run.Output(channels);
            var invStd = run.Output(channels);
            var dx = run.Output(shape);
            var dweight = run.Output(channels);
            var dbias = run.Output(channels);
            var evaluated = run.Output(shape);
            return run.Does(() =>
            {
                backend.BatchNormForward(true, x, weight, bias, runningMean, runningVar, 0.1f, 1e-5f, y, mean, invStd);
                backend.BatchNormBackward(true, x, dy, weight, mean, invStd, dx, dweight, dbias);
                backend.BatchNormForward(false, x, weight, bias, runningMean, runningVar, 0.1f, 1e-5f, evaluated, mean, invStd);
            });
        });
}
