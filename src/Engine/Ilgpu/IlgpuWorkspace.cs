using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>
/// Scratch buffers reused across calls: each slot grows to the largest size asked of it and is then kept, so a
/// training loop allocates nothing after its first step.
/// </summary>
internal sealed class IlgpuWorkspace(Accelerator accelerator, DeviceGuard guard) : IDisposable
{
    public enum Slot
    {
        DilatedGradient,
        RotatedKernel,
        PerSampleLoss,
        Columns,
        Product,
        Partials,
        GemmSplits,
        BatchNormCoefficients,
        BatchNormPartials,
    }

    private readonly MemoryBuffer1D<float, Stride1D.Dense>?[] _buffers = new MemoryBuffer1D<float, Stride1D.Dense>?[Enum.GetValues<Slot>().Length];

    public long Bytes => _buffers.Sum(b => b?.LengthInBytes ?? 0);

    public ArrayView<float> Get(Slot slot, int length)
    {
        // A size that wrapped past int is the caller's bug: said here, where ILGPU's own assertion would end the process.
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ref var buffer = ref _buffers[(int)slot];
        if (buffer is null || buffer.Length < length)
        {
            try
            {
                // Earlier launches on the stream may still read the old buffer; the wait is where their faults surface.
                accelerator.Synchronize();
                buffer?.Dispose();
                buffer = null;
                buffer = accelerator.Allocate1D<float>(length);
            }
            catch (Exception e) when (DeviceGuard.IsOutOfMemory(e))
            {
                throw new DeviceOutOfMemoryException($"out of device memory allocating a {slot} workspace of {4L * length} bytes; use smaller batches.", e);
            }
            catch (Exception e) when (DeviceGuard.IsDriverError(e))
            {
                throw guard.Fail($"growing the {slot} workspace to {length} floats", e);
            }
        }

        return buffer.View.SubView(0, length);
    }

    public void Dispose()
    {
        foreach (var buffer in _buffers)
        {
            buffer?.Dispose();
        }
    }
}
