using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>A tensor stored in one ILGPU accelerator buffer.</summary>
internal sealed class IlgpuTensor<T> : DeviceTensor<T>
    where T : unmanaged
{
    private readonly MemoryBuffer1D<T, Stride1D.Dense> _buffer;

    public IlgpuTensor(IlgpuBackend backend, Shape shape, MemoryBuffer1D<T, Stride1D.Dense> buffer, IlgpuTensor<T>? viewOf = null)
        : base(backend, shape, viewOf)
    {
        _buffer = buffer;
    }

    public ArrayView<T> Memory => _buffer.View;

    public long Bytes => _buffer.LengthInBytes;

    protected override DeviceTensor<T> CreateView(Shape shape) => new IlgpuTensor<T>((IlgpuBackend)Backend, shape, _buffer, this);

    protected override void Release() => ((IlgpuBackend)Backend).Free(_buffer);

    private protected override void Forget() => ((IlgpuBackend)Backend).Forget(Bytes);
}
