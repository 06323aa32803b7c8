using GpuCnn.Kernels;

namespace GpuCnn;

/// <summary>Batch normalisation's public operations and cores (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// PyTorch's batch_norm over x (N, C, …) per channel c. Training: mean and invStd (C) are the batch's mean and
    /// 1/√(biased variance + ε) over N and every position after axis 1, and the running statistics move towards
    /// them: r ← (1 − momentum)·r + momentum·s, with the unbiased variance for runningVar. Evaluation: mean and
    /// invStd come from the running statistics, which stay. Both: y = (x − mean)·invStd·weight + bias. mean and
    /// invStd are what <see cref="BatchNormBackward"/> needs.
    /// </summary>
    public void BatchNormForward(bool training, DeviceTensor<float> x, DeviceTensor<float> weight, DeviceTensor<float> bias,
        DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, float momentum, float epsilon, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd) =>
        BatchNormForward(training, x, weight, bias, runningMean, runningVar, momentum, epsilon, y, mean, invStd, default(Identity));

    /// <summary>
    /// y = f(batch_norm(x)): <see cref="BatchNormForward(bool, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}, float, float, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float})"/>
    /// with the activation after it applied as each value is stored (a batch-norm layer followed by ReLU, as in every
    /// ResNet block): one pass over the output instead of two.
    /// </summary>
    public void BatchNormForward<TF>(bool training, DeviceTensor<float> x, DeviceTensor<float> weight, DeviceTensor<float> bias,
        DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, float momentum, float epsilon, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd, TF activation)
        where TF : struct, IActivationFunction
    {
        using var operation = EnterOperation();
        const string op = "BatchNormForward";
        if (!(momentum >= 0f && momentum <= 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{op}: momentum must lie in [0, 1], got {momentum}."));
        }

        if (!(epsilon >= 0f) || !float.IsFinite(epsilon))
        {
            throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{op}: epsilon must be finite and ≥ 0, got {epsilon}."));
        }

        var shape = BatchNormShapeOf(op, x, training) with { Momentum = momentum, Epsilon = epsilon };
        foreach (var (name, tensor) in (ReadOnlySpan<(string, DeviceTensor<float>)>)[(nameof(weight), weight), (nameof(bias), bias),
            (nameof(runningMean), runningMean), (nameof(runningVar), runningVar), (nameof(mean), mean), (nameof(invStd), invStd)])
        {
            Checks.Dims(op, name, tensor, this, shape.Channels);
        }

        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        // y may be x (each value is read before it is written); no other written tensor may share storage with what the
        // operation reads or with another written one.
        Checks.WrittenApart(op, nameof(y), y, (nameof(weight), weight), (nameof(bias), bias), (nameof(runningMean), runningMean),
            (nameof(runningVar), runningVar), (nameof(mean), mean), (nameof(invStd), invStd));
        Checks.WrittenApart(op, nameof(mean), mean, (nameof(x), x), (nameof(weight), weight), (nameof(bias), bias), (nameof(runningMean), runningMean),
            (nameof(runningVar), runningVar), (nameof(invStd), invStd));
        Checks.WrittenApart(op, nameof(invStd), invStd, (nameof(x), x), (nameof(weight), weight), (nameof(bias), bias), (nameof(runningMean), runningMean),
            (nameof(runningVar), runningVar));
        Checks.WrittenApart(op, nameof(runningMean), runningMean, (nameof(x), x), (nameof(weight), weight), (nameof(bias), bias), (nameof(runningVar), runningVar));
        Checks.WrittenApart(op, nameof(runningVar), runningVar, (nameof(x), x), (nameof(weight), weight), (nameof(bias), bias));
        BatchNormForwardCore(shape, x, weight, bias, runningMean, runningVar, y, mean, invStd, activation);
    }

    /// <summary>
    /// The gradients of <see cref="BatchNormForward"/> from dy, given the forward's x, mean and invStd: with
    /// x̂ = (x − mean)·invStd and M = N·positions, dbias = Σ dy, dweight = Σ dy·x̂ (per channel), and dx =
    /// weight·invStd·(dy − dbias/M − x̂·dweight/M) in training (the batch statistics depend on x) or
    /// weight·invStd·dy in evaluation. dx may be null (a first layer needs none).
    /// </summary>
    public void BatchNormBackward(bool training, DeviceTensor<float> x, DeviceTensor<float> dy, DeviceTensor<float> weight,
        DeviceTensor<float> mean, DeviceTensor<float> invStd, DeviceTensor<float>? dx, DeviceTensor<float> dweight,
        DeviceTensor<float> dbias)
    {
        using var operation = EnterOperation();
        const string op = "BatchNormBackward";
        var shape = BatchNormShapeOf(op, x, training); // the backward needs neither momentum nor epsilon: invStd holds ε
        CheckBatchNormBackward(op, shape, x, dy, weight, mean, invStd, dx, dweight, dbias);
        BatchNormBackwardCore(shape, x, null, dy, weight, mean, invStd, dx, dweight, dbias, default(Identity));
    }

    /// <summary>
    /// The gradients of y = f(batch_norm(x)) (<see cref="BatchNormForward{TF}"/>) from dy, given the forward's x, its
    /// output y, mean and invStd: the gradient that reaches the normalisation is dz = dy·f′, taken from y alone, and
    /// the rest is <see cref="BatchNormBackward(bool, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}?, DeviceTensor{float}, DeviceTensor{float})"/>
    /// with dz for dy — dz is never stored on its own.
    /// </summary>
    public void BatchNormBackward<TF>(bool training, DeviceTensor<float> x, DeviceTensor<float> y, DeviceTensor<float> dy,
        DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd, DeviceTensor<float>? dx,
        DeviceTensor<float> dweight, DeviceTensor<float> dbias, TF activation)
        where TF : struct, IDerivativeFromOutput
    {
        using var operation = EnterOperation();
        const string op = "BatchNormBackward";
        if (!activation.DerivableFromOutput)
        {
            throw new ArgumentException($"{op}: {activation.Spec} has no derivative from its output alone.", nameof(activation));
        }

        var shape = BatchNormShapeOf(op, x, training);
        Checks.Tensor(op, nameof(y), y, this, x.Shape);
        CheckBatchNormBackward(op, shape, x, dy, weight, mean, invStd, dx, dweight, dbias);
        Checks.WrittenApart(op, nameof(dweight), dweight, (nameof(y), y));
        Checks.WrittenApart(op, nameof(dbias), dbias, (nameof(y), y));
        BatchNormBackwardCore(shape, x, y, dy, weight, mean, invStd, dx, dweight, dbias, activation);
    }

    private void CheckBatchNormBackward(string op, BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> dy,
        DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd, DeviceTensor<float>? dx,
        DeviceTensor<float> dweight, DeviceTensor<float> dbias)
    {
        Checks.Tensor(op, nameof(dy), dy, this, x.Shape);
        foreach (var (name, tensor) in (ReadOnlySpan<(string, DeviceTensor<float>)>)[(nameof(weight), weight), (nameof(mean), mean),
            (nameof(invStd), invStd), (nameof(dweight), dweight), (nameof(dbias), dbias)])
        {
            Checks.Dims(op, name, tensor, this, shape.Channels);
        }

        if (dx is not null)
        {
            Checks.Tensor(op, nameof(dx), dx, this, x.Shape);
            // dx may be x, y or dy (each value is read before it is written), not a per-channel tensor.
            Checks.WrittenApart(op, nameof(dx), dx, (nameof(weight), weight), (nameof(mean), mean), (nameof(invStd), invStd),
                (nameof(dweight), dweight), (nameof(dbias), dbias));
        }

        // The per-channel sums are written, then read again for dx (a dbias over dweight had turned ILGPU's dx wrong).
        Checks.WrittenApart(op, nameof(dweight), dweight, (nameof(x), x), (nameof(dy), dy), (nameof(weight), weight), (nameof(mean), mean),
            (nameof(invStd), invStd), (nameof(dbias), dbias));
        Checks.WrittenApart(op, nameof(dbias), dbias, (nameof(x), x), (nameof(dy), dy), (nameof(weight), weight), (nameof(mean), mean), (nameof(invStd), invStd));
    }

    /// <summary>The forward, then f as each value is stored (<see cref="Identity"/>: none); arguments already checked.</summary>
    protected abstract void BatchNormForwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float> weight,
        DeviceTensor<float> bias, DeviceTensor<float> runningMean, DeviceTensor<float> runningVar, DeviceTensor<float> y,
        DeviceTensor<float> mean, DeviceTensor<float> invStd, TF activation)
        where TF : struct, IActivationFunction;

    /// <summary>
    /// The backward from dz = dy·f′(y) (<see cref="Identity"/>: dz = dy, and y is null); arguments already checked.
    /// </summary>
    protected abstract void BatchNormBackwardCore<TF>(BatchNormShape shape, DeviceTensor<float> x, DeviceTensor<float>? y,
        DeviceTensor<float> dy, DeviceTensor<float> weight, DeviceTensor<float> mean, DeviceTensor<float> invStd,
        DeviceTensor<float>? dx, DeviceTensor<float> dweight, DeviceTensor<float> dbias, TF activation)
        where TF : struct, IDerivativeFromOutput;

    private BatchNormShape BatchNormShapeOf(string op, DeviceTensor<float> x, bool training)
    {
        Checks.Owned(op, nameof(x), x, this);
        if (x.Shape.Rank < 2)
        {
            throw new ArgumentException($"{op}: x must be (N, C, …), got {x.Shape}.", nameof(x));
        }

        var shape = new BatchNormShape(x.Shape[1], x.Shape.SizeFrom(2), x.Shape[0] * x.Shape.SizeFrom(2), 0f, 0f, training ? 1 : 0);
        if (training && shape.Count < 2)
        {
            throw new ArgumentException($"{op}: training needs more than one value per channel (x is {x.Shape}), as PyTorch's batch_norm.", nameof(x));
        }

        return shape;
    }
}
