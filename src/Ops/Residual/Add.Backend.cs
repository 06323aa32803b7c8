namespace GpuCnn;

/// <summary>The public operation and its core (compiled into GpuCnn.Engine).</summary>
public abstract partial class Backend
{
    /// <summary>y = a + b elementwise (a residual block's join, and its gradient's); y may be a or b.</summary>
    public void Add(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y)
    {
        const string op = "Add";
        Checks.Owned(op, nameof(a), a, this);
        Checks.Tensor(op, nameof(b), b, this, a.Shape);
        Checks.Tensor(op, nameof(y), y, this, a.Shape);
        AddCore(a, b, y);
    }

    /// <summary>y = a + b; arguments already checked.</summary>
    protected abstract void AddCore(DeviceTensor<float> a, DeviceTensor<float> b, DeviceTensor<float> y);
}
