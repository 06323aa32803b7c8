using GpuCnn.Models;

namespace GpuCnn.Cpu;

/// <summary>Batch normalisation's case in the operation catalogue (compiled into GpuCnn.Engine.Cpu).</summary>
public static partial class OperationCases
{
    /// <summary>
    /// A training forward (running statistics updated), its backward, then an evaluation forward; with
    /// <paramref name="activation"/> (a fusable spec such as "relu"), the activation after it fused into each.
    /// </summary>
    public static OperationCase BatchNorm(Shape shape, int seed, string? activation = null) =>
        BatchNormCase($"batchnorm{(activation is null ? "" : " + " + activation)} train forward, backward, eval forward", shape, seed, activation,
            evaluate: true);

    /// <summary>
    /// A batch norm + ReLU layer's training step as a ResNet block runs it (bench row batchnorm-relu-16x28): the fused
    /// forward with batch statistics, then the fused backward with dx, dweight and dbias.
    /// </summary>
    public static OperationCase BatchNormReluStep(string name, Shape shape) => BatchNormCase(name, shape, 1, "relu", evaluate: false);

    private static OperationCase BatchNormCase(string name, Shape shape, int seed, string? activation, bool evaluate) =>
        new(name, shape.ToString(), null, backend =>
        {
            var f = activation is null ? null : LayerRegistry.CreateActivation(activation);
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
            var evaluated = evaluate ? run.Output(shape) : null;
            return run.Does(() =>
            {
                if (f is null)
                {
                    backend.BatchNormForward(true, x, weight, bias, runningMean, runningVar, 0.1f, 1e-5f, y, mean, invStd);
                    backend.BatchNormBackward(true, x, dy, weight, mean, invStd, dx, dweight, dbias);
                }
                else
                {
                    f.BatchNormForward(backend, true, x, weight, bias, runningMean, runningVar, 0.1f, 1e-5f, y, mean, invStd);
                    f.BatchNormBackward(backend, true, x, y, dy, weight, mean, invStd, dx, dweight, dbias);
                }

                if (evaluated is null)
                {
                    return;
                }

                if (f is null)
                {
                    backend.BatchNormForward(false, x, weight, bias, runningMean, runningVar, 0.1f, 1e-5f, evaluated, mean, invStd);
                }
                else
                {
                    f.BatchNormForward(backend, false, x, weight, bias, runningMean, runningVar, 0.1f, 1e-5f, evaluated, mean, invStd);
                }
            });
        });
}
