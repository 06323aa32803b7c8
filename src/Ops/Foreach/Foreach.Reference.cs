namespace GpuCnn.Cpu;

/// <summary>The tensor-list copies on the host backends (compiled into GpuCnn.Engine.Cpu): a span copy per tensor.</summary>
public abstract partial class HostBackend
{
    /// <inheritdoc/>
    protected override void CopyToFlatCore(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> flat, float scale)
    {
        var destination = Data(flat);
        for (int i = 0, at = 0; i < xs.Count; at += xs[i].Length, i++)
        {
            var target = destination.Slice(at, xs[i].Length);
            Data(xs[i]).CopyTo(target);
            for (int j = 0; scale != 1f && j < target.Length; j++)
            {
                target[j] *= scale; // at scale 1 the copy's bits, as on the devices
            }
        }
    }

    /// <inheritdoc/>
    protected override void CopyFromFlatCore(DeviceTensor<float> flat, IReadOnlyList<DeviceTensor<float>> xs)
    {
        var source = Data(flat);
        for (int i = 0, at = 0; i < xs.Count; at += xs[i].Length, i++)
        {
            source.Slice(at, xs[i].Length).CopyTo(Data(xs[i]));
        }
    }
}
