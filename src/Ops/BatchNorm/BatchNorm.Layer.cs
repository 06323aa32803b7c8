using System.Globalization;

namespace GpuCnn.Models;

/// <summary>
/// PyTorch's BatchNorm2d after a (C,H,W) input and BatchNorm1d after a (features) one, channels inferred: weight
/// (ones) and bias (zeros) trained; running_mean, running_var and num_batches_tracked saved. Training mode
/// normalises with the batch's statistics and updates the running ones; evaluation mode uses the running ones.
/// Spec: <c>batchnorm</c> or <c>batchnorm(momentum=M,eps=E)</c> (PyTorch's defaults 0.1 and 1e-5).
/// </summary>
public sealed class BatchNorm : Layer, IActivationHost
{
    private Parameter? _weight, _bias;
    private DeviceTensor<float>? _runningMean, _runningVar, _mean, _invStd, _input, _output;
    private bool _forwardTraining;

    /// <summary>
    /// A layer with a momentum in [0, 1] (0 freezes the running statistics, as in PyTorch) and a finite ε ≥ 0 (PyTorch
    /// takes 0 too: a constant channel then gives NaN, as there).
    /// </summary>
    public BatchNorm(float momentum = 0.1f, float epsilon = 1e-5f)
    {
        if (!(momentum >= 0f && momentum <= 1f))
        {
            throw new SpecException($"batchnorm: momentum {Text(momentum)} lies outside [0, 1].");
        }

        if (!(epsilon >= 0f) || !float.IsFinite(epsilon))
        {
            throw new SpecException($"batchnorm: eps {Text(epsilon)} is not a finite number ≥ 0.");
        }

        Momentum = momentum;
        Epsilon = epsilon;
    }

    /// <summary>The layer for <c>batchnorm[(momentum=M,eps=E)]</c>.</summary>
    public static BatchNorm Parse(LayerArguments args)
    {
        ArgumentNullException.ThrowIfNull(args);
        return new BatchNorm(args.NamedFloat("momentum", 0.1f), args.NamedFloat("eps", 1e-5f));
    }

    /// <summary>The running statistics' update weight.</summary>
    public float Momentum { get; }

    /// <summary>Added to the variance before the square root.</summary>
    public float Epsilon { get; }

    /// <inheritdoc/>
    public ActivationLayer? FusedActivation { get; private set; }

    void IActivationHost.Fuse(ActivationLayer activation) => FusedActivation = activation;

    /// <summary>True: the backward takes dy·f′ of a fused activation itself, as it sums.</summary>
    public bool AppliesActivationGradient => true;

    /// <summary>Batches normalised in training mode (PyTorch's num_batches_tracked).</summary>
    public Counter BatchesTracked { get; } = new();

    /// <inheritdoc/>
    public override string Spec
    {
        get
        {
            var options = new List<string>();
            if (Momentum != 0.1f)
            {
                options.Add("momentum=" + Text(Momentum));
            }

            if (Epsilon != 1e-5f)
            {
                options.Add("eps=" + Text(Epsilon));
            }

            return options.Count == 0 ? "batchnorm" : $"batchnorm({string.Join(",", options)})";
        }
    }

    /// <inheritdoc/>
    public override IReadOnlyList<Parameter> Parameters => _weight is null ? [] : [_weight, _bias!];

    /// <inheritdoc/>
    public override IEnumerable<(string Name, DeviceTensor<float> Buffer)> NamedBuffers() =>
        _runningMean is null ? [] : [("running_mean", _runningMean), ("running_var", _runningVar!)];

    /// <inheritdoc/>
    public override IEnumerable<(string Name, Counter Counter)> NamedCounters() => [("num_batches_tracked", BatchesTracked)];

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input) => input.Rank is 1 or 3
        ? input
        : throw new ArgumentException($"needs a (C,H,W) or (features) input, got {input}");

    /// <inheritdoc/>
    protected override void CreateParameters(Random init)
    {
        var channels = new Shape(InputShape[0]);
        _weight = ConstantParameter("weight", channels, 1f);
        _bias = ConstantParameter("bias", channels, 0f);
        _runningMean = Backend.AllocateFilled(channels, 0f).Lend();
        _runningVar = Backend.AllocateFilled(channels, 1f).Lend();
        _mean = Backend.Allocate<float>(channels).Lend();
        _invStd = Backend.Allocate<float>(channels).Lend();
    }

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        _input = x;
        _forwardTraining = Training;
        var y = _output = OutputBuffer(x.Shape[0]);
        if (FusedActivation is { } f)
        {
            f.BatchNormForward(Backend, Training, x, _weight!.Value, _bias!.Value, _runningMean!, _runningVar!, Momentum, Epsilon, y, _mean!, _invStd!);
        }
        else
        {
            Backend.BatchNormForward(Training, x, _weight!.Value, _bias!.Value, _runningMean!, _runningVar!, Momentum, Epsilon, y, _mean!, _invStd!);
        }

        if (Training)
        {
            BatchesTracked.Value++;
        }

        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        var x = _input ?? throw new InvalidOperationException($"{Spec}: backward before forward.");
        var dx = needInputGradient ? InputGradientBuffer(x.Shape[0]) : null;
        if (FusedActivation is { } f)
        {
            f.BatchNormBackward(Backend, _forwardTraining, x, _output!, dy, _weight!.Value, _mean!, _invStd!, dx, _weight.Gradient, _bias!.Gradient);
        }
        else
        {
            Backend.BatchNormBackward(_forwardTraining, x, dy, _weight!.Value, _mean!, _invStd!, dx, _weight.Gradient, _bias!.Gradient);
        }

        return dx;
    }

    /// <inheritdoc/>
    protected override void ReleaseBuffers()
    {
        _runningMean?.Reclaim();
        _runningVar?.Reclaim();
        _mean?.Reclaim();
        _invStd?.Reclaim();
    }

    private static string Text(float value) => value.ToString("R", CultureInfo.InvariantCulture);
}
