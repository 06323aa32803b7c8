using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>
/// A float sum with Neumaier's compensation: each addition's rounding error is kept and added back at the end, so a
/// long serial sum keeps float precision where a plain one drifts by up to n·2⁻²⁴ (a million values of 0.1 summed by
/// ILGPU's CPU accelerator, whose groups are a few threads wide: 1.5e-4 off). A non-finite sum is returned as it is
/// (its compensation would be NaN). Four more float operations a term, in sums that wait on memory.
/// </summary>
internal struct CompensatedSum
{
    private float _sum, _compensation;

    public void Add(float value)
    {
        float next = _sum + value;
        _compensation += XMath.Abs(_sum) >= XMath.Abs(value) ? (_sum - next) + value : (value - next) + _sum;
        _sum = next;
    }

    public readonly float Value => XMath.IsFinite(_sum) ? _sum + _compensation : _sum;
}

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
    /// output[i] = Σ_z partial[z·outputs + i] over <paramref name="slices"/> slices (a split GEMM's partial products),
    /// for when the slices are many and the outputs few: a group of Tx × L threads takes Tx consecutive outputs (reads
    /// coalesced along i), lane l adds slices l, l + L, … in order, and a fixed tree over the L lanes in shared memory
    /// (Tx·L floats) finishes each sum. One thread per output walking 256 slices took 105 µs on an H100 (ResNet-8's
    /// 16-channel filter gradients; docs/benchmarks.md).
    /// </summary>
    public static void SumSlices(ArrayView<float> partial, ArrayView<float> output, int outputs, int slices)
    {
        int x = Group.IdxX, lane = Group.IdxY, width = Group.DimX, lanes = Group.DimY;
        int i = (Grid.IdxX * width) + x;
        var shared = SharedMemory.GetDynamic<float>();
        float sum = 0f;
        if (i < outputs)
        {
            for (int z = lane; z < slices; z += lanes)
            {
                sum += partial[((long)z * outputs) + i];
            }
        }

        int slot = (lane * width) + x;
        shared[slot] = sum;
        Group.Barrier();
        for (int half = lanes >> 1; half > 0; half >>= 1)
        {
            if (lane < half)
            {
                shared[slot] += shared[slot + (half * width)];
            }

            Group.Barrier();
        }

        if (lane == 0 && i < outputs)
        {
            output[i] = shared[x];
        }
    }

    /// <summary>
    /// The sum of <paramref name="value"/> over the group, in every thread: a fixed tree over dynamic shared memory of
    /// at least Group.DimX floats (a power of two). A barrier must come between it and the next write to that memory.
    /// </summary>
    public static float GroupSum(float value) => GroupTree<Add>(value);

    /// <summary>The largest <paramref name="value"/> over the group, in every thread: <see cref="GroupSum"/>'s tree with max.</summary>
    public static float GroupMax(float value) => GroupTree<Maximum>(value);

    /// <summary>The group's values combined pairwise by <typeparamref name="TPair"/> in a fixed tree (see <see cref="GroupSum"/>).</summary>
    private static float GroupTree<TPair>(float value)
        where TPair : struct, IPairOperation
    {
        var shared = SharedMemory.GetDynamic<float>();
        int t = Group.IdxX;
        shared[t] = value;
        Group.Barrier();
        for (int half = Group.DimX >> 1; half > 0; half >>= 1)
        {
            if (t < half)
            {
                shared[t] = default(TPair).Combine(shared[t], shared[t + half]);
            }

            Group.Barrier();
        }

        return shared[0];
    }

    /// <summary>How a group tree combines two values.</summary>
    private interface IPairOperation
    {
        float Combine(float left, float right);
    }

    private readonly struct Add : IPairOperation
    {
        public float Combine(float left, float right) => left + right;
    }

    private readonly struct Maximum : IPairOperation
    {
        public float Combine(float left, float right) => XMath.Max(left, right);
    }
}
