using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>A tensor stored in one ILGPU accelerator buffer.</summary>
internal sealed class IlgpuTensor<T> : DeviceTensor<T>
    where T : unmanaged
{
    private readonly MemoryBuffer1D<T, Stride1D.Dense> _buffer;

    public IlgpuTensor(IlgpuBackend backend, Shape shape, MemoryBuffer1D<T, Stride1D.Dense> buffer)
        : base(backend, shape)
    {
        _buffer = buffer;
    }

    public ArrayView<T> View => _buffer.View;

    public long Bytes => _buffer.LengthInBytes;

    protected override void Release()
    {
        ((IlgpuBackend)Backend).OnReleased(Bytes);
        _buffer.Dispose();
    }
}
