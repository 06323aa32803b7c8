using GpuCnn.Kernels;

namespace GpuCnn;

/// <summary>The public operation and its core (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>y = a + b elementwise (a residual block's join, and its gradient's); y may be a or b.</summary>
    public void Add(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y) => Add(a, b, y, default(Identity));

    /// <summary>
    /// y = f(a + b) elementwise, f applied as each sum is stored (a residual block followed by its ReLU); y may be a or b.
    /// </summary>
    public void Add<TF>(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y, TF activation)
        where TF : struct, IActivationFunction
    {
        using var operation = EnterOperation();
        const string op = "Add";
        Checks.Owned(op, nameof(a), a, this);
        Checks.Tensor(op, nameof(b), b, this, a.Shape);
        Checks.Tensor(op, nameof(y), y, this, a.Shape);
        AddCore(a, b, y, activation);
    }

    /// <summary>y = f(a + b) (<see cref="Identity"/>: none); arguments already checked.</summary>
    protected abstract void AddCore<TF>(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y, TF activation)
        where TF : struct, IActivationFunction;
}
