using GpuCnn.Kernels;

namespace GpuCnn;

/// <summary>The public operations and their cores (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>
    /// One torch.optim.SGD step on every tensor of <paramref name="parameters"/> (PyTorch's foreach form): the same as
    /// <see cref="SgdUpdate(SgdOptions, bool, DeviceTensor{float}, DeviceTensor{float}, DeviceTensor{float}, float?)"/>
    /// on each in turn, to the bit, in a few launches on a GPU instead of one per tensor. The lists are parallel;
    /// a parameter or velocity may appear once only, and no gradient may be one of them. Without momentum the
    /// velocities may be an empty list (PyTorch keeps no momentum buffer then; nothing reads one).
    /// </summary>
    public void SgdUpdate(SgdOptions options, bool firstStep, IReadOnlyList<DeviceTensor<float>> parameters,
        IReadOnlyList<DeviceTensor<float>> gradients, IReadOnlyList<DeviceTensor<float>> velocities, float? learningRate = null)
    {
        using var operation = EnterOperation();
        const string op = "SgdUpdate";
        var h = SgdStep(options, firstStep, learningRate);
        Checks.TensorList(op, nameof(parameters), parameters, this, null);
        Checks.TensorList(op, nameof(gradients), gradients, this, parameters);
        if (velocities is { Count: 0 } && h.Momentum == 0f && parameters.Count > 0)
        {
            // The kernels neither read nor write a velocity without momentum: the gradients stand in for the list.
            Checks.Unaliased(op, ++_listStamp, (nameof(parameters), parameters));
            Checks.NotWritten(op, _listStamp, nameof(gradients), gradients, (nameof(parameters), parameters));
            SgdUpdateCore(h, parameters, gradients, gradients);
            return;
        }

        Checks.TensorList(op, nameof(velocities), velocities, this, parameters);
        Checks.Unaliased(op, ++_listStamp, (nameof(parameters), parameters), (nameof(velocities), velocities));
        Checks.NotWritten(op, _listStamp, nameof(gradients), gradients, (nameof(parameters), parameters), (nameof(velocities), velocities));
        SgdUpdateCore(h, parameters, gradients, velocities);
    }

    /// <summary>
    /// One torch.optim.Adam or AdamW step (<paramref name="step"/> counts from 1) on every tensor of
    /// <paramref name="parameters"/>: the single-tensor <c>AdamUpdate</c> on each in turn, to the bit, in a few launches
    /// on a GPU. The lists are parallel; a parameter or moment may appear once only, and no
    /// gradient may be one of them.
    /// </summary>
    public void AdamUpdate(AdamOptions options, int step, IReadOnlyList<DeviceTensor<float>> parameters,
        IReadOnlyList<DeviceTensor<float>> gradients, IReadOnlyList<DeviceTensor<float>> firstMoments,
        IReadOnlyList<DeviceTensor<float>> secondMoments, float? learningRate = null)
    {
        using var operation = EnterOperation();
        const string op = "AdamUpdate";
        var h = AdamStep(op, options, step, learningRate);
        Checks.TensorList(op, nameof(parameters), parameters, this, null);
        Checks.TensorList(op, nameof(gradients), gradients, this, parameters);
        Checks.TensorList(op, nameof(firstMoments), firstMoments, this, parameters);
        Checks.TensorList(op, nameof(secondMoments), secondMoments, this, parameters);
        Checks.Unaliased(op, ++_listStamp, (nameof(parameters), parameters), (nameof(firstMoments), firstMoments), (nameof(secondMoments), secondMoments));
        Checks.NotWritten(op, _listStamp, nameof(gradients), gradients, (nameof(parameters), parameters), (nameof(firstMoments), firstMoments),
            (nameof(secondMoments), secondMoments));
        AdamUpdateCore(h, parameters, gradients, firstMoments, secondMoments);
    }

    /// <summary>
    /// sums[i] = Σ xs[i]² for every listed tensor: <see cref="SquaredNorm"/> on each in turn (slot i), to the bit, in a
    /// few launches on a GPU. <paramref name="sums"/> holds one value per tensor and is none of them.
    /// </summary>
    public void SquaredNorms(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> sums)
    {
        using var operation = EnterOperation();
        const string op = "SquaredNorms";
        Checks.TensorList(op, nameof(xs), xs, this, null);
        Checks.Length(op, nameof(sums), sums, this, xs.Count);
        Checks.Apart(op, nameof(sums), sums, nameof(xs), xs);
        SquaredNormsCore(xs, sums);
    }

    /// <summary>
    /// x *= coefficient[0] for every listed tensor (<see cref="ScaleBy(DeviceTensor{float}, DeviceTensor{float})"/> on
    /// each, in a few launches on a GPU); each tensor appears once, and none is the coefficient's.
    /// </summary>
    public void ScaleBy(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> coefficient)
    {
        using var operation = EnterOperation();
        const string op = "ScaleBy";
        Checks.TensorList(op, nameof(xs), xs, this, null);
        Checks.Owned(op, nameof(coefficient), coefficient, this);
        Checks.Unaliased(op, ++_listStamp, (nameof(xs), xs));
        Checks.Apart(op, nameof(coefficient), coefficient, nameof(xs), xs);
        ScaleByCore(xs, coefficient);
    }

    /// <summary>
    /// flat[o_i + j] = scale · xs[i][j], o_i the lengths of the tensors before xs[i] (PyTorch's
    /// _flatten_dense_tensors, scaled): a list of tensors as one buffer, to download or to hand to a collective in one
    /// call. <paramref name="flat"/> holds exactly their elements and is none of them. A scale of 1 copies the bits.
    /// </summary>
    public void CopyToFlat(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> flat, float scale = 1f)
    {
        using var operation = EnterOperation();
        const string op = "CopyToFlat";
        Checks.TensorList(op, nameof(xs), xs, this, null);
        Checks.Length(op, nameof(flat), flat, this, Checks.TotalLength(op, nameof(xs), xs));
        Checks.Apart(op, nameof(flat), flat, nameof(xs), xs);
        CopyToFlatCore(xs, flat, scale);
    }

    /// <summary>xs[i][j] = flat[o_i + j]: the inverse of <see cref="CopyToFlat"/> (scale 1); each tensor listed once.</summary>
    public void CopyFromFlat(DeviceTensor<float> flat, IReadOnlyList<DeviceTensor<float>> xs)
    {
        using var operation = EnterOperation();
        const string op = "CopyFromFlat";
        Checks.TensorList(op, nameof(xs), xs, this, null);
        Checks.Length(op, nameof(flat), flat, this, Checks.TotalLength(op, nameof(xs), xs));
        Checks.Apart(op, nameof(flat), flat, nameof(xs), xs);
        Checks.Unaliased(op, ++_listStamp, (nameof(xs), xs));
        CopyFromFlatCore(flat, xs);
    }

    /// <summary>The list into one buffer, scaled; arguments already checked.</summary>
    protected abstract void CopyToFlatCore(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> flat, float scale);

    /// <summary>One buffer into the list; arguments already checked.</summary>
    protected abstract void CopyFromFlatCore(DeviceTensor<float> flat, IReadOnlyList<DeviceTensor<float>> xs);

    /// <summary>A new stamp for each list check (<see cref="Checks.Unaliased"/>), taken under the operation lock.</summary>
    private long _listStamp;

    /// <summary>SGD over lists; arguments already checked. The reference: each tensor in turn.</summary>
    protected virtual void SgdUpdateCore(SgdParams h, IReadOnlyList<DeviceTensor<float>> parameters,
        IReadOnlyList<DeviceTensor<float>> gradients, IReadOnlyList<DeviceTensor<float>> velocities)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(gradients);
        ArgumentNullException.ThrowIfNull(velocities);
        for (int i = 0; i < parameters.Count; i++)
        {
            SgdUpdateCore(h, parameters[i], gradients[i], velocities[i]);
        }
    }

    /// <summary>Adam over lists; arguments already checked. The reference: each tensor in turn.</summary>
    protected virtual void AdamUpdateCore(AdamParams h, IReadOnlyList<DeviceTensor<float>> parameters,
        IReadOnlyList<DeviceTensor<float>> gradients, IReadOnlyList<DeviceTensor<float>> firstMoments,
        IReadOnlyList<DeviceTensor<float>> secondMoments)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(gradients);
        ArgumentNullException.ThrowIfNull(firstMoments);
        ArgumentNullException.ThrowIfNull(secondMoments);
        for (int i = 0; i < parameters.Count; i++)
        {
            AdamUpdateCore(h, parameters[i], gradients[i], firstMoments[i], secondMoments[i]);
        }
    }

    /// <summary>Squared norms of a list; arguments already checked. The reference: each tensor in turn.</summary>
    protected virtual void SquaredNormsCore(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> sums)
    {
        ArgumentNullException.ThrowIfNull(xs);
        for (int i = 0; i < xs.Count; i++)
        {
            SquaredNormCore(xs[i], sums, i);
        }
    }

    /// <summary>Scaling of a list; arguments already checked. The reference: each tensor in turn.</summary>
    protected virtual void ScaleByCore(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> coefficient)
    {
        ArgumentNullException.ThrowIfNull(xs);
        for (int i = 0; i < xs.Count; i++)
        {
            ScaleByCore(xs[i], coefficient);
        }
    }
}
