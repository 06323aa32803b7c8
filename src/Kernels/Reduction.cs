using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// The second half of a split reduction: many threads each summed one chunk of a long sum into
/// partial[chunk, i]; here one thread per output adds its chunks in chunk order (no atomics, so bitwise the same
/// result on every run) and writes outputs 0 … firstCount − 1 to <c>first</c>, the rest to <c>second</c> (a filter
/// gradient and its bias gradient in one launch).
/// </summary>
public static class ReductionKernels
{
    /// <summary>first[i] (i &lt; firstCount) or second[i − firstCount] = Σ_chunk partial[chunk·outputs + i].</summary>
    public static void SumChunks(Index1D i, ArrayView<float> partial, ArrayView<float> first, ArrayView<float> second,
        int outputs, int firstCount, int chunks)
    {
        float sum = 0f;
        for (int chunk = 0; chunk < chunks; chunk++)
        {
            sum += partial[(chunk * outputs) + i];
        }

        if (i < firstCount)
        {
            first[i] = sum;
        }
        else
        {
            second[i - firstCount] = sum;
        }
    }
}
