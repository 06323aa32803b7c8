using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// Counter-based random numbers: a value depends only on a key and an element index, so a mask is the same on every
/// backend and run, is recomputed (not stored) for the backward pass, and a resumed run repeats it.
/// </summary>
public static class CounterRandom
{
    /// <summary>A well-mixed 32-bit hash of (key, index) (a murmur3-style finaliser over index·φ ⊕ key).</summary>
    public static uint Hash(uint key, uint index)
    {
        uint h = (index * 0x9E3779B9u) ^ key;
        h ^= h >> 16;
        h *= 0x7FEB352Du;
        h ^= h >> 15;
        h *= 0x846CA68Bu;
        h ^= h >> 16;
        return h;
    }

    /// <summary>A uniform number in [0, 1) with 24 random bits.</summary>
    public static float Uniform(uint key, uint index) => (Hash(key, index) >> 8) * (1f / 16_777_216f);

    /// <summary>A key for a sub-stream (a layer, a use) of <paramref name="key"/>: distinct salts give unrelated streams.</summary>
    public static uint Derive(uint key, uint salt) => Hash(key ^ 0x5BD1E995u, salt);
}

/// <summary>The ILGPU kernel of <c>Backend.Dropout</c> (compiled into GpuCnn.Kernels; see src/Ops/README.md).</summary>
internal static class DropoutKernels
{
    /// <summary>y = x·m, m = scale where uniform(key, first + i) ≥ p, else 0 (scale = 1/(1 − p)): a dropped NaN or ±∞ gives NaN, as in PyTorch; y may be x.</summary>
    public static void Dropout(Index1D i, ArrayView<float> x, ArrayView<float> y, float p, float scale, uint key, uint first) =>
        y[i] = x[i] * (CounterRandom.Uniform(key, first + (uint)i.X) >= p ? scale : 0f);
}
