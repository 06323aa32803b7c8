using System.Runtime.CompilerServices;
using GpuCnn.Kernels;

namespace GpuCnn.Cpu.Fast;

/// <summary>Dropout on the fast CPU backend (compiled into GpuCnn.Engine.Cpu): the hash is a few integer operations per element.</summary>
public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void DropoutCore(DeviceTensor<float> x, DeviceTensor<float> y, float p, float scale, uint key)
    {
        var input = Data(x).AsSpan(0, x.Length);
        var output = Data(y).AsSpan(0, y.Length);
        uint threshold = (uint)Math.Ceiling(p * 16_777_216.0); // uniform ≥ p ⇔ its 24 bits ≥ ⌈p·2²⁴⌉
        for (int i = 0; i < input.Length; i++)
        {
            output[i] = CounterRandom.Hash(key, (uint)i) >> 8 >= threshold ? input[i] * scale : 0f;
        }
    }
}
