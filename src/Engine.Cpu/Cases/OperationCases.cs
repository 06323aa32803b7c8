using GpuCnn.Kernels;
using GpuCnn.Models;

namespace GpuCnn.Cpu;

/// <summary>One operation run prepared on one backend: inputs uploaded, outputs allocated and poisoned with NaN.</summary>
public interface IPreparedCase : IDisposable
{
    /// <summary>Runs the operation (what a benchmark times).</summary>
    void Run();

    /// <summary>Downloads everything the operation wrote, in a fixed order (what a cross-check compares).</summary>
    float[] Outputs();
}

/// <summary>
/// One operation with its inputs and FLOPs: the single description that `gpucnn selftest` cross-checks against the
/// reference, `gpucnn bench` times, and the tests run on every backend. Inputs come from a seed, so every backend
/// sees the same values.
/// </summary>
public sealed record OperationCase(string Name, string Shape, double? Flops, Func<Backend, IPreparedCase> Prepare)
{
    /// <summary>
    /// Runs on <paramref name="device"/> and <paramref name="reference"/> and compares every output:
    /// |d − r| ≤ 1e-3·(1 + |r|) (float sums of a few hundred terms, in any order); NaN and ±∞ only where the reference has the same.
    /// </summary>
    public (double MaxDiff, bool Passed) Compare(Backend device, Backend reference)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(reference);
        float[] expected = RunOnce(reference), actual = RunOnce(device);
        double worst = 0;
        bool passed = expected.Length == actual.Length;
        for (int i = 0; passed && i < expected.Length; i++)
        {
            passed = Agrees(expected[i], actual[i]);
            worst = float.IsFinite(expected[i]) && float.IsFinite(actual[i]) ? Math.Max(worst, Math.Abs((double)expected[i] - actual[i]))
                : passed ? worst : double.PositiveInfinity; // a non-finite mismatch reads as one
        }

        return (worst, passed);
    }

    /// <summary>
    /// Whether a device value agrees with the reference's: within 1e-3·(1 + |r|) when both are finite; otherwise only
    /// exactly (NaN with NaN, ∞ with the same ∞) — a tolerance of 1e-3·(1 + ∞) would pass anything against ∞.
    /// </summary>
    internal static bool Agrees(float reference, float device) =>
        float.IsFinite(reference) && float.IsFinite(device)
            ? Math.Abs((double)reference - device) <= 1e-3 * (1 + Math.Abs(reference))
            : reference.Equals(device);

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Shape}";

    private float[] RunOnce(Backend backend)
    {
        using var run = Prepare(backend);
        run.Run();
        return run.Outputs();
    }
}

/// <summary>
/// The catalogue of operation cases: one factory per operation family, and the two lists built from them — random
/// small shapes for cross-checks (<see cref="CrossChecks"/>) and the fixed benchmark suite (<see cref="Benchmarks"/>).
/// </summary>
public static partial class OperationCases
{
    /// <summary>Random shapes per family in <see cref="CrossChecks"/>.</summary>
    public const int ShapesPerFamily = 3;

    /// <summary>Every operation at random small shapes (deterministic for a seed): what selftest and the tests compare.</summary>
    public static IEnumerable<OperationCase> CrossChecks(int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < ShapesPerFamily; i++)
        {
            var g = RandomConvolution(random);
            yield return ConvolutionForward("conv2d forward", g, random.Next());
            yield return ConvolutionBackwardData("conv2d backward-data", g, random.Next());
            yield return ConvolutionBackwardFilter("conv2d backward-filter + bias", g, random.Next());
        }

        var grouped = RandomGroupedConvolution(random);
        yield return ConvolutionForward("grouped dilated conv2d forward", grouped, random.Next());
        yield return ConvolutionBackwardData("grouped dilated conv2d backward-data", grouped, random.Next());
        yield return ConvolutionBackwardFilter("grouped dilated conv2d backward-filter + bias", grouped, random.Next());

        // More filters than one 64-filter tile of the implicit GEMM, and its backward data 630 taps deep (fixed seeds:
        // the random shapes after these stay as they were).
        var wide = new Conv2dGeometry(N: 2, C: 3, H: 5, W: 4, K: 70, R: 3, S: 3, PadH: 1, PadW: 1);
        yield return ConvolutionForward("conv2d forward, 70 filters", wide, 70);
        yield return ConvolutionBackwardData("conv2d backward-data, 70 filters", wide, 71);
        yield return ConvolutionBackwardFilter("conv2d backward-filter + bias, 70 filters", wide, 72);

        // Depthwise layers (a kernel per channel): the CPU backend's plane-by-plane route at rows of 9 and 37 outputs
        // (its vectors and a last one ending at the row's end), stride 2 with dilation, stride 3 over 8 outputs, and a
        // plane narrower than its stride.
        foreach (var (name, depthwise) in (ValueTuple<string, Conv2dGeometry>[])[
            ("3x3", new(N: 2, C: 4, H: 7, W: 9, K: 4, R: 3, S: 3, PadH: 1, PadW: 1, Groups: 4)),
            ("3x3 37 wide", new(N: 1, C: 3, H: 4, W: 37, K: 3, R: 3, S: 3, PadH: 1, PadW: 1, Groups: 3)),
            ("3x3 stride 2 dilation 2", new(N: 2, C: 3, H: 11, W: 12, K: 3, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 2, PadW: 2,
                DilationH: 2, DilationW: 2, Groups: 3)),
            ("5x5 stride 3", new(N: 1, C: 2, H: 13, W: 20, K: 2, R: 5, S: 5, StrideH: 3, StrideW: 3, PadH: 4, PadW: 4, Groups: 2)),
            ("3x1 stride 2 over a 1-wide plane", new(N: 2, C: 2, H: 5, W: 1, K: 2, R: 3, S: 1, StrideH: 2, StrideW: 2, PadH: 1, Groups: 2))])
        {
            yield return ConvolutionForward($"depthwise {name} forward", depthwise, 80);
            yield return ConvolutionBackwardData($"depthwise {name} backward-data", depthwise, 81);
            yield return ConvolutionBackwardFilter($"depthwise {name} backward-filter + bias", depthwise, 82);
        }

        for (int i = 0; i < ShapesPerFamily; i++)
        {
            var p = RandomPool(random);
            yield return MaxPool("maxpool forward + switches, backward", p, backward: true, random.Next());
            yield return AvgPool("avgpool forward, backward", p, backward: true, random.Next());
        }

        for (int i = 0; i < ShapesPerFamily; i++)
        {
            yield return Gemm("gemm", random.Next(1, 90), random.Next(1, 90), random.Next(1, 90), random.Next(2) == 0, random.Next(2) == 0,
                1.5f, 0.5f, random.Next());
        }

        foreach (string name in LayerRegistry.ActivationNames)
        {
            yield return Activation(name, 300, random.Next());
        }

        yield return SoftmaxCrossEntropy(random.Next(1, 300), random.Next(2, 20), random.Next());
        yield return SoftmaxCrossEntropy(random.Next(1, 300), random.Next(2, 20), random.Next(), labelSmoothing: 0.1f);
        yield return Bias(2, 7, 30, random.Next());
        yield return Add(3 * 101, random.Next());
        yield return BatchNorm([random.Next(1, 5), random.Next(1, 9), random.Next(1, 7), random.Next(2, 7)], random.Next());
        yield return BatchNorm([random.Next(2, 40), random.Next(1, 20)], random.Next());
        yield return Dropout(random.Next(1, 1000), 0.3f, random.Next());
        yield return CropFlipNormalize([random.Next(1, 9), random.Next(1, 4), random.Next(1, 12), random.Next(1, 12)], random.Next(0, 5), random.Next());
        yield return FlagNonFinite(1000, random.Next());
        yield return Optimizers(500, random.Next());

        // The activation after a batch norm or a residual join, fused into it (after the cases above: their random shapes stay).
        yield return BatchNorm([random.Next(1, 5), random.Next(1, 9), random.Next(1, 7), random.Next(2, 7)], random.Next(), "relu");
        yield return BatchNorm([random.Next(2, 40), random.Next(1, 20)], random.Next(), "sigmoid");
        yield return Add(3 * 101, random.Next(), "relu");

        // Gradient clipping: one long tensor (split into chunks on GPUs), short ones; clipped, then left alone.
        yield return ClipGradNorm([40_000, 37, 1, 500], 1.5f, random.Next());
        yield return ClipGradNorm([300, 7], 1e6f, random.Next());

        // A strided 1×1 layer (ResNet's shortcut; its own backward-data route on GPUs), odd sizes and unequal strides.
        var pointwise = new Conv2dGeometry(N: 2, C: 5, H: 7, W: 8, K: 9, R: 1, S: 1, StrideH: 2, StrideW: 3);
        yield return ConvolutionBackwardData("conv2d backward-data, 1x1 stride (2,3)", pointwise, 73);
        yield return ConvolutionForward("conv2d forward, 1x1 stride (2,3)", pointwise, 74);
        yield return ConvolutionBackwardData("conv2d backward-data, 1x1 stride (1,2)", pointwise with { StrideH = 1, StrideW = 2 }, 75);

        // The optimizers' list forms over more tensors than one GPU launch takes (32).
        yield return ListedOptimizers([.. Enumerable.Range(0, 35).Select(_ => random.Next(1, 100))], random.Next());
        yield return FlatCopies([.. Enumerable.Range(0, 34).Select(_ => random.Next(1, 60))], 0.5f, random.Next());

        // Constant padding and cropping (the pad layer): random amounts of either sign, zeros and another value.
        for (int i = 0; i < ShapesPerFamily; i++)
        {
            yield return Pad(RandomPad(random), i == 0 ? 0f : -1.5f, random.Next());
        }
    }

    /// <summary>
    /// The fixed suite of `gpucnn bench`: GEMM, the LeNet and VGG-like convolution layers forward and backward, max
    /// pooling with switches and average pooling, whole LeNet-5 and ResNet-8 training steps, batch norm + ReLU layers' steps (2-D and 1-D), and
    /// ResNet-8's gradient clipping and SGD update (as a list and a tensor at a time), a 1,000-class loss. Names are stable so runs on different machines and
    /// days compare row by row; <paramref name="quick"/> shrinks every shape and appends "-quick".
    /// </summary>
    public static IEnumerable<OperationCase> Benchmarks(bool quick)
    {
        string suffix = quick ? "-quick" : "";
        foreach (int n in (int[])[256, 1024, 4096])
        {
            int size = quick ? n / 8 : n;
            yield return Gemm($"gemm-{n}{suffix}", size, size, size, false, false, 1f, 0f, 1);
        }

        foreach (var (name, g) in (ValueTuple<string, Conv2dGeometry>[])[
            ("conv-lenet1", new(N: quick ? 4 : 64, C: 1, H: 28, W: 28, K: 6, R: 5, S: 5, PadH: 2, PadW: 2)),
            ("conv-lenet2", new(N: quick ? 4 : 64, C: 6, H: 14, W: 14, K: 16, R: 5, S: 5)),
            ("conv3x3-64", quick ? new(N: 2, C: 16, H: 16, W: 16, K: 16, R: 3, S: 3, PadH: 1, PadW: 1)
                                 : new(N: 64, C: 64, H: 32, W: 32, K: 64, R: 3, S: 3, PadH: 1, PadW: 1)),
            ("conv3x3-128", quick ? new(N: 2, C: 32, H: 8, W: 8, K: 32, R: 3, S: 3, PadH: 1, PadW: 1)
                                  : new(N: 32, C: 128, H: 16, W: 16, K: 128, R: 3, S: 3, PadH: 1, PadW: 1)),
            // ResNet-8's last 3×3 layer (64 → 64 channels at 7×7) at batch 128: planes smaller than a vector's run of pixels.
            ("conv3x3-64-7x7", quick ? new(N: 2, C: 16, H: 7, W: 7, K: 32, R: 3, S: 3, PadH: 1, PadW: 1)
                                     : new(N: 128, C: 64, H: 7, W: 7, K: 64, R: 3, S: 3, PadH: 1, PadW: 1)),
            // ResNet-8's stride-2 3×3 layer into its last stage (32 → 64 channels, 14×14 → 7×7) at batch 128.
            ("conv3x3s2-64-7x7", quick ? new(N: 2, C: 32, H: 8, W: 8, K: 32, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1)
                                       : new(N: 128, C: 32, H: 14, W: 14, K: 64, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1)),
            // ResNet-8's second shortcut (32 → 64 channels, 1×1 at stride 2) at batch 128.
            ("conv1x1s2-64", quick ? new(N: 4, C: 8, H: 8, W: 8, K: 16, R: 1, S: 1, StrideH: 2, StrideW: 2)
                                   : new(N: 128, C: 32, H: 14, W: 14, K: 64, R: 1, S: 1, StrideH: 2, StrideW: 2)),
            // A MobileNet-style depthwise 3×3 layer: a kernel per channel, 64 channels at 28×28, batch 64.
            ("conv-dw3x3-64", quick ? new(N: 2, C: 8, H: 8, W: 8, K: 8, R: 3, S: 3, PadH: 1, PadW: 1, Groups: 8)
                                    : new(N: 64, C: 64, H: 28, W: 28, K: 64, R: 3, S: 3, PadH: 1, PadW: 1, Groups: 64)),
            // MobileNet's downsampling depthwise layer: 128 channels, 28×28 → 14×14 at stride 2, batch 64.
            ("conv-dw3x3s2-128", quick ? new(N: 2, C: 8, H: 8, W: 8, K: 8, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 8)
                                       : new(N: 64, C: 128, H: 28, W: 28, K: 128, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 128))])
        {
            yield return ConvolutionForward($"{name}-fwd{suffix}", g, 1);
            yield return ConvolutionBackward($"{name}-bwd{suffix}", g, 1);
        }

        var pool = quick ? new Pool2dGeometry(4, 8, 16, 16, 2, 2, 2, 2) : new Pool2dGeometry(64, 64, 32, 32, 2, 2, 2, 2);
        yield return MaxPool($"maxpool2x2-fwd{suffix}", pool, backward: false, 1);
        yield return MaxPool($"maxpool2x2-bwd{suffix}", pool, backward: true, 1, timeBackwardOnly: true);
        yield return AvgPool($"avgpool2x2-fwd{suffix}", pool, backward: false, 1);
        yield return AvgPool($"avgpool2x2-bwd{suffix}", pool, backward: true, 1, timeBackwardOnly: true);
        foreach (int batch in (int[])[64, 256])
        {
            yield return LeNetStep($"lenet-step-{batch}{suffix}", quick ? batch / 16 : batch);
        }

        yield return ResNet8Step($"resnet8-step-128{suffix}", quick ? 8 : 128);

        // ResNet-8's first-stage batch norm + ReLU at batch 128 (perf/GpuCnn.Perf's FusionBenchmarks has every stage, fused
        // and not), and a BatchNorm1d + ReLU after a dense layer of 512 features at batch 256.
        yield return BatchNormReluStep($"batchnorm-relu-16x28{suffix}", new Shape(quick ? 8 : 128, 16, 28, 28));
        yield return BatchNormReluStep($"batchnorm1d-relu-512{suffix}", new Shape(quick ? 16 : 256, quick ? 64 : 512));

        // clip_grad_norm_ over ResNet-8's parameter tensors (29, 77,754 weights; quick: the same): a launch-bound row on GPUs.
        yield return ClipGradNorm(ParameterLengths(ArchitectureSpec.ResNet8), 1f, 1) with { Name = $"clip-grad-norm-resnet8{suffix}" };

        // An SGD step over the same tensors as one list (one launch on a GPU) and a tensor at a time (29): launch-bound rows.
        yield return SgdStep($"sgd-resnet8{suffix}", ParameterLengths(ArchitectureSpec.ResNet8), listed: true);
        yield return SgdStep($"sgd-resnet8-per-tensor{suffix}", ParameterLengths(ArchitectureSpec.ResNet8), listed: false);

        // The loss of a 1,000-class head at batch 256 (loss and dlogits in one call).
        yield return SoftmaxCrossEntropy(quick ? 16 : 256, quick ? 100 : 1000, 1) with { Name = $"softmax-ce-256x1000{suffix}" };
    }

    /// <summary>The lengths of a 1×28×28 model's parameter tensors in state-dict order (built once on the reference backend).</summary>
    private static int[] ParameterLengths(string spec)
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create(spec, [1, 28, 28], backend);
        return [.. model.NamedParameters().Select(p => p.Parameter.Value.Length)];
    }

    /// <summary>y = conv(x, w) + b.</summary>
    public static OperationCase ConvolutionForward(string name, Conv2dGeometry g, int seed) =>
        new(name, Describe(g), ConvolutionFlops(g), backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input(g.InputShape, random);
            var w = run.Input(g.WeightShape, random, 0.1f);
            var b = run.Input([g.K], random);
            var y = run.Output(g.OutputShape);
            return run.Does(() => backend.Conv2dForward(g, x, w, b, y));
        });

    /// <summary>dx from dy and w (the full convolution with the rotated kernel).</summary>
    public static OperationCase ConvolutionBackwardData(string name, Conv2dGeometry g, int seed) =>
        new(name, Describe(g), ConvolutionFlops(g), backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var dy = run.Input(g.OutputShape, random);
            var w = run.Input(g.WeightShape, random);
            var dx = run.Output(g.InputShape);
            return run.Does(() => backend.Conv2dBackwardData(g, dy, w, dx));
        });

    /// <summary>dw and db from x and dy.</summary>
    public static OperationCase ConvolutionBackwardFilter(string name, Conv2dGeometry g, int seed) =>
        new(name, Describe(g), ConvolutionFlops(g), backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input(g.InputShape, random);
            var dy = run.Input(g.OutputShape, random);
            var dw = run.Output(g.WeightShape);
            var db = run.Output([g.K]);
            return run.Does(() => backend.Conv2dBackwardFilter(g, x, dy, dw, db));
        });

    /// <summary>A layer's whole backward: backward-data, then backward-filter with the bias gradient.</summary>
    public static OperationCase ConvolutionBackward(string name, Conv2dGeometry g, int seed) =>
        new(name, Describe(g), 2 * ConvolutionFlops(g), backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input(g.InputShape, random);
            var w = run.Input(g.WeightShape, random, 0.1f);
            var dy = run.Input(g.OutputShape, random);
            var dx = run.Output(g.InputShape);
            var dw = run.Output(g.WeightShape);
            var db = run.Output([g.K]);
            return run.Does(() =>
            {
                backend.Conv2dBackwardData(g, dy, w, dx);
                backend.Conv2dBackwardFilter(g, x, dy, dw, db);
            });
        });

    /// <summary>
    /// Max pooling with switches, and with <paramref name="backward"/> its gradient through them; inputs are distinct
    /// (no ties), so any order of comparison picks the same switch. <paramref name="timeBackwardOnly"/>: the forward
    /// runs once while preparing and <see cref="IPreparedCase.Run"/> is the backward alone.
    /// </summary>
    public static OperationCase MaxPool(string name, Pool2dGeometry g, bool backward, int seed, bool timeBackwardOnly = false) =>
        new(name, Describe(g), null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input(g.InputShape, Distinct(random, g.InputSize));
            var y = run.Output(g.OutputShape);
            var switches = run.Switches(g.OutputShape);
            var dy = run.Input(g.OutputShape, random);
            var dx = backward ? run.Output(g.InputShape) : null;
            if (timeBackwardOnly)
            {
                backend.MaxPool2dForward(g, x, y, switches);
                return run.Does(() => backend.MaxPool2dBackward(g, dy, switches, dx!));
            }

            return run.Does(() =>
            {
                backend.MaxPool2dForward(g, x, y, switches);
                if (dx is not null)
                {
                    backend.MaxPool2dBackward(g, dy, switches, dx);
                }
            });
        });

    /// <summary>
    /// Average pooling (zero padding counted), and with <paramref name="backward"/> its gradient (alone with
    /// <paramref name="timeBackwardOnly"/>: it does not read the forward's output).
    /// </summary>
    public static OperationCase AvgPool(string name, Pool2dGeometry g, bool backward, int seed, bool timeBackwardOnly = false) =>
        new(name, Describe(g), null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input(g.InputShape, random);
            var y = run.Output(g.OutputShape);
            var dy = run.Input(g.OutputShape, random);
            var dx = backward ? run.Output(g.InputShape) : null;
            if (timeBackwardOnly)
            {
                return run.Does(() => backend.AvgPool2dBackward(g, dy, dx!));
            }

            return run.Does(() =>
            {
                backend.AvgPool2dForward(g, x, y);
                if (dx is not null)
                {
                    backend.AvgPool2dBackward(g, dy, dx);
                }
            });
        });

    /// <summary>C = α·op(A)·op(B) + β·C.</summary>
    public static OperationCase Gemm(string name, int m, int n, int k, bool transposeA, bool transposeB, float alpha, float beta, int seed) =>
        new(name, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{m}x{n}x{k} tA={transposeA} tB={transposeB} a={alpha} b={beta}"), 2.0 * m * n * k, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var a = run.Input([m * k], random);
            var b = run.Input([k * n], random);
            var c = beta == 0f ? run.Output([m * n]) : run.Input([m * n], random, written: true);
            return run.Does(() => backend.Gemm(transposeA, transposeB, m, n, k, alpha, a, b, beta, c));
        });

    /// <summary>A registered activation (by spec) forward, then backward from the output it produced.</summary>
    public static OperationCase Activation(string spec, int count, int seed) =>
        new($"{spec} forward, backward", $"({count})", null, backend =>
        {
            var f = LayerRegistry.CreateActivation(spec);
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var x = run.Input([count], random);
            var dy = run.Input([count], random);
            var y = run.Output([count]);
            var dx = run.Output([count]);
            return run.Does(() =>
            {
                f.Apply(backend, x, y);
                f.ApplyBackward(backend, x, y, dy, dx);
            });
        });

    /// <summary>Fused softmax + cross-entropy: the loss and dlogits, on logits spread over ±30.</summary>
    public static OperationCase SoftmaxCrossEntropy(int batch, int classes, int seed, float labelSmoothing = 0f) =>
        new(labelSmoothing == 0f ? "softmax cross-entropy" : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"softmax cross-entropy, label smoothing {labelSmoothing}"), $"({batch},{classes})", null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var z = run.Input([batch, classes], [.. Values(random, batch * classes).Select(v => v * 30)]);
            var labels = run.Labels([.. Enumerable.Range(0, batch).Select(_ => random.Next(classes))]);
            var dz = run.Output([batch, classes]);
            var loss = run.Output([1]);
            return run.Does(() => backend.SoftmaxCrossEntropy(z, labels, dz, loss, labelSmoothing));
        });

    /// <summary>The bias gradient of y, then y += b.</summary>
    public static OperationCase Bias(int batch, int channels, int inner, int seed) =>
        new("bias add, bias gradient", $"({batch},{channels},{inner})", null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            var y = run.Input([batch, channels, inner], random, written: true);
            var b = run.Input([channels], random);
            var db = run.Output([channels]);
            return run.Does(() =>
            {
                backend.BiasGradient(y, db);
                backend.BiasAdd(y, b);
            });
        });

    /// <summary>Two steps of SGD (momentum, Nesterov, weight decay) and of Adam on the same parameters.</summary>
    public static OperationCase Optimizers(int count, int seed) =>
        new("sgd (momentum, nesterov, decay), adam", $"({count}) x 2 steps", null, backend =>
        {
            var random = new Random(seed);
            var run = new PreparedRun(backend);
            float[] start = Values(random, count);
            var p = run.Input([count], start, written: true);
            var q = run.Input([count], start, written: true);
            var v = run.Input([count], new float[count]);
            var m = run.Input([count], new float[count]);
            var s = run.Input([count], new float[count]);
            var g1 = run.Input([count], random);
            var g2 = run.Input([count], random);
            var sgd = new SgdOptions(0.1f, 0.9f, 0f, 0.01f, Nesterov: true);
            var adam = new AdamOptions(0.01f, WeightDecay: 0.001f);
            return run.Does(() =>
            {
                foreach (var (grad, step) in (ValueTuple<DeviceTensor<float>, int>[])[(g1, 1), (g2, 2)])
                {
                    backend.SgdUpdate(sgd, step == 1, p, grad, v);
                    backend.AdamUpdate(adam, step, q, grad, m, s);
                }
            });
        });

    /// <summary>One LeNet-5 SGD-with-momentum step (rate 0, so every repetition sees the same weights) on a resident batch.</summary>
    public static OperationCase LeNetStep(string name, int batch) =>
        new(name, $"batch {batch}", LeNetStepFlops(batch), backend => new ModelStepRun(backend, ArchitectureSpec.LeNet5, batch));

    /// <summary>
    /// One ResNet-8 SGD-with-momentum step (rate 0) on a resident batch of 1×28×28 inputs: batch norm in training mode,
    /// residual blocks, 1×1 stride-2 shortcuts — the workload of the modern-layers issue, as one bench row.
    /// </summary>
    public static OperationCase ResNet8Step(string name, int batch) =>
        new(name, $"batch {batch}", ResNet8StepFlops(batch), backend => new ModelStepRun(backend, ArchitectureSpec.ResNet8, batch));

    /// <summary>
    /// Forward and backward FLOPs of one ResNet-8 step (its update's few are not counted) on 1×28×28 inputs: its convolutions and dense layer (the
    /// first convolution needs no input gradient); batch norm, activations, adds and pooling are not counted.
    /// </summary>
    public static double ResNet8StepFlops(int batch)
    {
        // (filters, output pixels, weights per filter) of each convolution, stem first.
        (int K, int Pixels, int Weights)[] convolutions =
        [
            (16, 784, 9), (16, 784, 144), (16, 784, 144),
            (32, 196, 144), (32, 196, 288), (32, 196, 16),
            (64, 49, 288), (64, 49, 576), (64, 49, 32),
        ];
        double forward = convolutions.Sum(c => 2.0 * batch * c.K * c.Pixels * c.Weights) + (2.0 * batch * 64 * 10);
        double stem = 2.0 * batch * 16 * 784 * 9;
        return (3 * forward) - stem;
    }

    /// <summary>Forward and backward FLOPs of one LeNet-5 step (the first layer needs no input gradient; the update's are not counted).</summary>
    public static double LeNetStepFlops(int batch)
    {
        double conv1 = 2.0 * batch * 6 * 28 * 28 * 1 * 25, conv2 = 2.0 * batch * 16 * 10 * 10 * 6 * 25;
        double dense = 2.0 * batch * (400 * 120 + 120 * 84 + 84 * 10);
        return (conv1 * 2) + (conv2 * 3) + (dense * 3);
    }

    private static double ConvolutionFlops(Conv2dGeometry g) => 2.0 * g.N * g.K * g.P * g.Q * g.GroupChannels * g.R * g.S;

    private static string Describe(Conv2dGeometry g) =>
        $"x({g.N},{g.C},{g.H},{g.W}) w({g.K},{g.GroupChannels},{g.R},{g.S}) s{g.StrideH}x{g.StrideW} p{g.PadH}x{g.PadW}" +
        (g.IsPlain ? "" : $" d{g.DilationH}x{g.DilationW} g{g.Groups}");

    private static string Describe(Pool2dGeometry p) =>
        $"x({p.N},{p.C},{p.H},{p.W}) k{p.KernelH}x{p.KernelW} s{p.StrideH}x{p.StrideW} p{p.PadH}x{p.PadW}" + (p.CeilMode ? " ceil" : "") +
        (p.CountIncludePad ? "" : " pad-uncounted");

    /// <summary>A random valid convolution; <paramref name="small"/> keeps it small enough for finite differences.</summary>
    public static Conv2dGeometry RandomConvolution(Random random, bool small = false)
    {
        ArgumentNullException.ThrowIfNull(random);
        while (true)
        {
            int r = random.Next(1, 6), s = random.Next(1, 6), stride = random.Next(1, 3);
            var g = new Conv2dGeometry(random.Next(1, small ? 3 : 4), random.Next(1, small ? 3 : 6), random.Next(4, small ? 8 : 13),
                random.Next(4, small ? 8 : 13), random.Next(1, small ? 4 : 7), r, s, stride, stride, random.Next(0, r), random.Next(0, s));
            if (g.R <= g.H + (2 * g.PadH) && g.S <= g.W + (2 * g.PadW))
            {
                return g;
            }
        }
    }

    /// <summary>A random valid convolution with 2 or 3 groups and a dilation of 1 or 2 per axis.</summary>
    public static Conv2dGeometry RandomGroupedConvolution(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        while (true)
        {
            int groups = random.Next(2, 4), r = random.Next(1, 4), s = random.Next(1, 4), stride = random.Next(1, 3);
            var g = new Conv2dGeometry(random.Next(1, 3), groups * random.Next(1, 3), random.Next(5, 11), random.Next(5, 11),
                groups * random.Next(1, 3), r, s, stride, stride, random.Next(0, r), random.Next(0, s), random.Next(1, 3), random.Next(1, 3), groups);
            if (g.ExtentH <= g.H + (2 * g.PadH) && g.ExtentW <= g.W + (2 * g.PadW))
            {
                return g;
            }
        }
    }

    /// <summary>A random valid pooling window, in ceil mode half the time, its padding uncounted by averages half the time.</summary>
    public static Pool2dGeometry RandomPool(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        int k = random.Next(1, 4), stride = random.Next(1, k + 1);
        return new Pool2dGeometry(random.Next(1, 3), random.Next(1, 4), random.Next(k + 2, 11), random.Next(k + 2, 11), k, k, stride, stride,
            random.Next(0, (k / 2) + 1), random.Next(0, (k / 2) + 1)) { CeilMode = random.Next(2) == 0, CountIncludePad = random.Next(2) == 0 };
    }

    /// <summary>Uniform values in [−scale, scale].</summary>
    public static float[] Values(Random random, int count, float scale = 1f)
    {
        ArgumentNullException.ThrowIfNull(random);
        return [.. Enumerable.Range(0, count).Select(_ => ((random.NextSingle() * 2) - 1) * scale)];
    }

    /// <summary>Distinct values at least 4/count apart, shuffled, so no pooling window has a tie.</summary>
    public static float[] Distinct(Random random, int count)
    {
        ArgumentNullException.ThrowIfNull(random);
        float[] values = [.. Enumerable.Range(0, count).Select(i => ((float)i / count * 4) - 2)];
        random.Shuffle(values);
        return values;
    }

    /// <summary>The tensors of one prepared run: inputs, and outputs poisoned with NaN so an unwritten element fails.</summary>
    private sealed class PreparedRun(Backend backend) : IPreparedCase
    {
        private readonly List<IDisposable> _owned = [];
        private readonly List<DeviceTensor<float>> _outputs = [];
        private readonly List<DeviceTensor<int>> _intOutputs = [];
        private Action _body = () => { };

        public DeviceTensor<float> Input(Shape shape, Random random, float scale = 1f, bool written = false) =>
            Input(shape, Values(random, shape.Size, scale), written);

        public DeviceTensor<float> Input(Shape shape, float[] values, bool written = false)
        {
            var tensor = backend.Upload<float>(shape, values);
            _owned.Add(tensor);
            if (written)
            {
                _outputs.Add(tensor);
            }

            return tensor;
        }

        public DeviceTensor<int> Labels(int[] values)
        {
            var tensor = backend.Upload<int>([values.Length], values);
            _owned.Add(tensor);
            return tensor;
        }

        public DeviceTensor<float> Output(Shape shape)
        {
            var tensor = backend.Allocate<float>(shape);
            backend.Fill(tensor, float.NaN);
            _owned.Add(tensor);
            _outputs.Add(tensor);
            return tensor;
        }

        public DeviceTensor<int> Switches(Shape shape)
        {
            var tensor = backend.Allocate<int>(shape);
            _owned.Add(tensor);
            _intOutputs.Add(tensor);
            return tensor;
        }

        public PreparedRun Does(Action body)
        {
            _body = body;
            return this;
        }

        public void Run() => _body();

        public float[] Outputs() =>
            [.. _outputs.SelectMany(backend.DownloadArray), .. _intOutputs.SelectMany(t => backend.DownloadArray(t).Select(v => (float)v))];

        public void Dispose()
        {
            foreach (var tensor in _owned)
            {
                tensor.Dispose();
            }
        }
    }

    /// <summary>A training step of a 1×28×28, 10-class model on a resident batch; its outputs are the logits of the last forward pass.</summary>
    private sealed class ModelStepRun : IPreparedCase
    {
        private readonly Backend _backend;
        private readonly Sequential _model;
        private readonly Sgd _sgd;
        private readonly DeviceTensor<float> _x, _dlogits, _loss;
        private readonly DeviceTensor<int> _labels;
        private DeviceTensor<float>? _logits;

        public ModelStepRun(Backend backend, string architecture, int batch)
        {
            _backend = backend;
            _model = Sequential.Create(architecture, [1, 28, 28], backend, seed: 1);
            _sgd = new Sgd(backend, _model.NamedParameters(), new SgdOptions(0f, 0.9f));
            _x = backend.Upload(Tensor.Random([batch, 1, 28, 28], 2, 0f, 1f));
            _labels = backend.Upload<int>([batch], [.. Enumerable.Range(0, batch).Select(i => i % 10)]);
            _dlogits = backend.Allocate<float>([batch, 10]);
            _loss = backend.Allocate<float>([1]);
        }

        public void Run()
        {
            _logits = _model.Forward(_x);
            _backend.SoftmaxCrossEntropy(_logits, _labels, _dlogits, _loss);
            _model.Backward(_dlogits);
            _sgd.Step();
        }

        public float[] Outputs() => _logits is null ? [] : _backend.DownloadArray(_logits);

        public void Dispose()
        {
            _sgd.Dispose();
            _model.Dispose();
            _x.Dispose();
            _labels.Dispose();
            _dlogits.Dispose();
            _loss.Dispose();
        }
    }
}
