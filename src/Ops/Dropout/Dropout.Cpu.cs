namespace GpuCnn.Cpu.Fast;

/// <summary>Dropout on the fast CPU backend (compiled into GpuCnn.Engine.Cpu): the reference loop, a hash per element.</summary>
public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    protected override void DropoutCore(DeviceTensor<float> x, DeviceTensor<float> y, float p, float scale, uint key, uint first) =>
        ReferenceMath.Dropout<float>(Data(x), Data(y), p, scale, key, first);
}
