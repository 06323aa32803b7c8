using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// Sums that many threads share, without atomics: one group per output, each thread adding a fixed, strided share of
/// the terms (consecutive threads read consecutive terms), then a tree over the group in shared memory. The order of
/// additions depends only on the sizes and the group size, so the result is bitwise the same on every run.
/// </summary>
internal static class ReductionKernels
{
    /// <summary>
    /// The second half of a split reduction: earlier threads each summed one chunk of a long sum into
    /// partial[chunk, i]; group i adds its chunks and writes output i to first[i] (i &lt; firstCount) or
    /// second[i − firstCount] (a filter gradient and its bias gradient in one launch). Grid: outputs groups of a
    /// power-of-two size, with that many floats of dynamic shared memory.
    /// </summary>
    public static void SumChunks(ArrayView<float> partial, ArrayView<float> first, ArrayView<float> second, int outputs,
        int firstCount, int chunks)
    {
        int i = Grid.IdxX;
        float sum = 0f;
        for (int chunk = Group.IdxX; chunk < chunks; chunk += Group.DimX)
        {
            sum += partial[(chunk * outputs) + i];
        }

        sum = GroupSum(sum);
        if (Group.IdxX == 0)
        {
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

    /// <summary>
    /// The sum of <paramref name="value"/> over the group, valid in thread 0: a fixed tree over dynamic shared memory
    /// of at least Group.DimX floats (a power of two).
    /// </summary>
    public static float GroupSum(float value)
    {
        var shared = SharedMemory.GetDynamic<float>();
        int t = Group.IdxX;
        shared[t] = value;
        Group.Barrier();
        for (int half = Group.DimX >> 1; half > 0; half >>= 1)
        {
            if (t < half)
            {
                shared[t] += shared[t + half];
            }

            Group.Barrier();
        }

        return shared[0];
    }
}
