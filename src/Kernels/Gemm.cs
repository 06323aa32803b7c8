using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>The sizes and flags of C (M×N) = α·op(A)·op(B) + β·C over row-major buffers, op(A) M×K, op(B) K×N.</summary>
public readonly record struct GemmShape(int M, int N, int K, int TransposeA, int TransposeB, float Alpha, float Beta)
{
    /// <summary>
    /// Split-K for the tiled kernel: when positive, group z of the grid sums only depths z·DepthPerSplit …
    /// (z + 1)·DepthPerSplit − 1 and stores its raw partial product at z·M·N of the output, for
    /// <see cref="GemmTiledKernels.SumSplits"/> to combine. Zero: the whole depth, α, β and the epilogue in one pass.
    /// </summary>
    public int DepthPerSplit { get; init; }
}

/// <summary>GEMM kernels, one thread per element of C (the first rung of the kernel ladder).</summary>
internal static class GemmKernels
{
    /// <summary>
    /// C[i,j] = f(α·Σ_l op(A)[i,l]·op(B)[l,j] + β·C[i,j] + bias[j]) with the epilogue's bias and f; A is M×K (K×M
    /// when transposed), B is K×N (N×K when transposed). With β = 0, C is only written, never read (BLAS semantics:
    /// NaN in C does not leak).
    /// </summary>
    public static void Naive<TF>(Index1D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmShape s,
        ArrayView<float> bias, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        int i = index / s.N, j = index % s.N;
        float sum = 0f;
        for (int l = 0; l < s.K; l++)
        {
            float av = s.TransposeA != 0 ? a[l * s.M + i] : a[i * s.K + l];
            float bv = s.TransposeB != 0 ? b[j * s.K + l] : b[l * s.N + j];
            sum += av * bv;
        }

        float value = s.Beta == 0f ? s.Alpha * sum : s.Alpha * sum + s.Beta * c[index];
        c[index] = epilogue.Apply(value, bias, j);
    }
}
