using ILGPU;
using ILGPU.Algorithms;

namespace GpuCnn.Kernels;

/// <summary>The ILGPU kernels of clip_grad_norm_ (compiled into GpuCnn.Kernels; see src/Ops/README.md).</summary>
internal static class GradNormKernels
{
    /// <summary>
    /// partial[chunk] = Σ x[i]² over the chunk's <paramref name="chunkSize"/> elements: one group per chunk, each thread
    /// a strided share (consecutive threads read consecutive elements), then a fixed tree over the group
    /// (<see cref="ReductionKernels.GroupSum"/>). A second pass adds the chunks (<see cref="ReductionKernels.SumChunks"/>).
    /// </summary>
    public static void SquaredNormChunks(ArrayView<float> x, ArrayView<float> partial, int length, int chunkSize)
    {
        float sum = ChunkSquares(x.SubView(0, length), Grid.IdxX, chunkSize);
        if (Group.IdxX == 0)
        {
            partial[Grid.IdxX] = sum;
        }
    }

    /// <summary>
    /// Σ x[i]² over chunk <paramref name="chunk"/> of <paramref name="chunkSize"/> elements of x (all of x's length),
    /// valid in thread 0: each thread a strided share, then the group's fixed tree (this kernel's and the tensor-list
    /// kernel's, so both give the same bits).
    /// </summary>
    internal static float ChunkSquares(ArrayView<float> x, int chunk, int chunkSize)
    {
        long begin = (long)chunk * chunkSize, end = Math.Min(begin + chunkSize, x.Length);
        var sum = default(CompensatedSum);
        for (long i = begin + Group.IdxX; i < end; i += Group.DimX)
        {
            float v = x[i];
            sum.Add(v * v);
        }

        return ReductionKernels.GroupSum(sum.Value);
    }

    /// <summary>
    /// One thread: total = √(Σ sums) in slot order, coefficient[0] = min(1, maxNorm / (total + 1e-6)) rounded as PyTorch
    /// rounds it and written as a comparison so that a NaN total stays NaN (a GPU's min would return the 1),
    /// coefficient[1] = total.
    /// </summary>
    public static void ClipCoefficient(Index1D index, ArrayView<float> sums, ArrayView<float> coefficient, int count, float maxNorm)
    {
        var squares = default(CompensatedSum);
        for (int i = 0; i < count; i++)
        {
            squares.Add(sums[i]);
        }

        float total = XMath.Sqrt(squares.Value);
        float clip = (1f / (total + 1e-6f)) * maxNorm; // PyTorch's float / tensor: the reciprocal, then a product
        coefficient[0] = clip > 1f ? 1f : clip;
        coefficient[1] = total;
    }

    /// <summary>x[i] *= coefficient[0].</summary>
    public static void ScaleBy(Index1D index, ArrayView<float> x, ArrayView<float> coefficient) => x[index] *= coefficient[0];
}
