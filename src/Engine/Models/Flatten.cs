namespace GpuCnn.Models;

/// <summary>PyTorch's Flatten: (N, C, H, W) → (N, C·H·W), a view without a copy.</summary>
public sealed class Flatten : Layer
{
    // The tensors flowing through are the neighbours' per-batch-size buffers, so their views are made once. A first
    // layer sees the caller's tensors instead, a new one per call: weak keys let those go with their tensors rather
    // than keep every input ever given alive (a view refers to its tensor, which an ephemeron does not count).
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<DeviceTensor<float>, DeviceTensor<float>> _views = [];

    /// <inheritdoc/>
    public override string Spec => "flatten";

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input) => new(input.Size);

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x) => ViewOf(x, OutputShape);

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) =>
        needInputGradient ? ViewOf(dy, InputShape) : null;

    private DeviceTensor<float> ViewOf(DeviceTensor<float> tensor, Shape sample)
    {
        if (!_views.TryGetValue(tensor, out var view) || view.IsDisposed)
        {
            view = tensor.View(Batched(tensor.Shape[0], sample));
            _views.AddOrUpdate(tensor, view);
        }

        return view;
    }
}
