using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// The vector operations the micro-kernels need, as static members of op structs so that one generic kernel is
/// compiled (and fully specialised by the JIT) for each width: AVX-512, AVX2/NEON-256, 128-bit, and scalar.
/// </summary>
internal unsafe interface IVectorOps<TVector>
    where TVector : unmanaged
{
    static abstract int Width { get; }

    static abstract TVector Zero { get; }

    static abstract TVector Load(float* source);

    static abstract void Store(float* destination, TVector value);

    static abstract TVector Broadcast(float value);

    /// <summary>a·b + c.</summary>
    static abstract TVector MultiplyAdd(TVector a, TVector b, TVector c);

    static abstract TVector Multiply(TVector a, TVector b);

    static abstract TVector Add(TVector a, TVector b);

    static abstract TVector Subtract(TVector a, TVector b);

    /// <summary>e^x in each lane (.NET's vector exponential; MathF.Exp for the scalar ops).</summary>
    static abstract TVector Exp(TVector x);

    static abstract TVector Max(TVector a, TVector b);

    /// <summary>The sum of the lanes.</summary>
    static abstract float Sum(TVector value);

    /// <summary>
    /// The first <paramref name="count"/> lanes of <paramref name="value"/>, zeros after: for tails read past the data,
    /// where multiplying by a zero would still turn a NaN or ∞ into NaN.
    /// </summary>
    static abstract TVector KeepFirst(TVector value, int count);
}

internal readonly unsafe struct Vec512 : IVectorOps<Vector512<float>>
{
    public static int Width => Vector512<float>.Count;

    public static Vector512<float> Zero => Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(float* source) => Vector512.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector512<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Broadcast(float value) => Vector512.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x) => Vector512.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> KeepFirst(Vector512<float> value, int count) =>
        Vector512.ConditionalSelect(Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle(), value, Vector512<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> value) => Vector512.Sum(value);
}

internal readonly unsafe struct Vec256 : IVectorOps<Vector256<float>>
{
    public static int Width => Vector256<float>.Count;

    public static Vector256<float> Zero => Vector256<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* source) => Vector256.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector256<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Broadcast(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x) => Vector256.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> KeepFirst(Vector256<float> value, int count) =>
        Vector256.ConditionalSelect(Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(count)).AsSingle(), value, Vector256<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector256<float> value) => Vector256.Sum(value);
}

internal readonly unsafe struct Vec128 : IVectorOps<Vector128<float>>
{
    public static int Width => Vector128<float>.Count;

    public static Vector128<float> Zero => Vector128<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Load(float* source) => Vector128.Load(source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* destination, Vector128<float> value) => value.Store(destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Broadcast(float value) => Vector128.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp(Vector128<float> x) => Vector128.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> KeepFirst(Vector128<float> value, int count) =>
        Vector128.ConditionalSelect(Vector128.LessThan(Vector128<int>.Indices, Vector128.Create(count)).AsSingle(), value, Vector128<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector128<float> value) => Vector128.Sum(value);
}

/// <summary>One float per "vector": the fallback for machines without SIMD (and the reference point in tests).</summary>
internal readonly unsafe struct Scalar : IVectorOps<float>
{
    public static int Width => 1;

    public static float Zero => 0f;

    public static float Load(float* source) => *source;

    public static void Store(float* destination, float value) => *destination = value;

    public static float Broadcast(float value) => value;

    public static float MultiplyAdd(float a, float b, float c) => MathF.FusedMultiplyAdd(a, b, c);

    public static float Multiply(float a, float b) => a * b;

    public static float Add(float a, float b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Subtract(float a, float b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp(float x) => MathF.Exp(x);

    public static float Max(float a, float b) => MathF.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float KeepFirst(float value, int count) => count > 0 ? value : 0f;

    public static float Sum(float value) => value;
}

/// <summary>The widest vector this machine accelerates, chosen once.</summary>
public enum SimdWidth
{
    /// <summary>No SIMD: one float at a time.</summary>
    Scalar = 1,

    /// <summary>128-bit vectors (SSE, NEON).</summary>
    Vector128 = 4,

    /// <summary>256-bit vectors (AVX2 + FMA).</summary>
    Vector256 = 8,

    /// <summary>512-bit vectors (AVX-512).</summary>
    Vector512 = 16,
}

/// <summary>Which width to use.</summary>
public static class Simd
{
    /// <summary>
    /// The vector instruction sets the runtime uses on this machine, e.g. "AVX-512F AVX2 FMA". .NET 10 turns
    /// AVX-512 off with <c>DOTNET_EnableAVX512=0</c> (the AVX2 path on an AVX-512 machine).
    /// </summary>
    public static string InstructionSets
    {
        get
        {
            var names = new List<string>();
            if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) { names.Add("AVX-512F"); }
            if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) { names.Add("AVX2"); }
            if (System.Runtime.Intrinsics.X86.Fma.IsSupported) { names.Add("FMA"); }
            if (System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported) { names.Add("NEON"); }
            return names.Count > 0 ? string.Join(' ', names) : "none";
        }
    }

    /// <summary>The widest hardware-accelerated width (what the CPU backend uses unless told otherwise).</summary>
    public static SimdWidth Best { get; } =
        Vector512.IsHardwareAccelerated ? SimdWidth.Vector512 :
        Vector256.IsHardwareAccelerated ? SimdWidth.Vector256 :
        Vector128.IsHardwareAccelerated ? SimdWidth.Vector128 : SimdWidth.Scalar;

    /// <summary>
    /// The widest width up to <paramref name="limit"/> whose vector holds no more than <paramref name="count"/> floats
    /// (a row of that many outputs in whole vectors, the last one overlapping): Scalar below four.
    /// </summary>
    internal static SimdWidth WidestFitting(SimdWidth limit, int count) =>
        limit >= SimdWidth.Vector512 && count >= 16 ? SimdWidth.Vector512 :
        limit >= SimdWidth.Vector256 && count >= 8 ? SimdWidth.Vector256 :
        limit >= SimdWidth.Vector128 && count >= 4 ? SimdWidth.Vector128 : SimdWidth.Scalar;

    /// <summary>
    /// Whether x[0 … length) holds no NaN or ±∞: 0·x is 0 for every finite x and NaN otherwise, summed in four
    /// independent vector accumulators (a branch per float was the scalar way).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe bool AllFinite(float* x, long length)
    {
        long i = 0;
        var zero = Vector256<float>.Zero;
        var sum = zero;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> s0 = zero, s1 = zero, s2 = zero, s3 = zero;
            for (; i + 32 <= length; i += 32)
            {
                s0 += Vector256.Load(x + i) * zero;
                s1 += Vector256.Load(x + i + 8) * zero;
                s2 += Vector256.Load(x + i + 16) * zero;
                s3 += Vector256.Load(x + i + 24) * zero;
            }

            sum = (s0 + s1) + (s2 + s3);
        }

        float tail = 0f;
        for (; i < length; i++)
        {
            tail += x[i] * 0f;
        }

        return tail == 0f && Vector256.EqualsAll(sum, zero);
    }

    /// <summary>
    /// target[i] = source[i] + <paramref name="value"/> for i below <paramref name="count"/>, widest vectors first as
    /// <see cref="AddFloats"/> (the same bits at any width): the blocked convolution's copy-out of 14-wide output rows
    /// had gone scalar under 512-bit vectors.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void CopyAdding(float* source, float* target, int count, float value)
    {
        int i = CopyAdding<Vec512, Vector512<float>>(Vector512.IsHardwareAccelerated, source, target, 0, count, value);
        i = CopyAdding<Vec256, Vector256<float>>(Vector256.IsHardwareAccelerated, source, target, i, count, value);
        i = CopyAdding<Vec128, Vector128<float>>(Vector128.IsHardwareAccelerated, source, target, i, count, value);
        CopyAdding<Scalar, float>(true, source, target, i, count, value);
    }

    /// <summary>
    /// target[i] += source[i] for i below <paramref name="count"/>: the widest vectors first, then narrower ones, then
    /// floats (an add is element-wise, so the same bits at any width; the widths are the hardware's, not a backend's).
    /// Short rows matter: ten-float rows went scalar under 512-bit vectors (LeNet's second layer's backward data spent
    /// 30 % of its time there).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void AddFloats(float* source, float* target, int count)
    {
        int i = AddFloats<Vec512, Vector512<float>>(Vector512.IsHardwareAccelerated, source, target, 0, count);
        i = AddFloats<Vec256, Vector256<float>>(Vector256.IsHardwareAccelerated, source, target, i, count);
        i = AddFloats<Vec128, Vector128<float>>(Vector128.IsHardwareAccelerated, source, target, i, count);
        AddFloats<Scalar, float>(true, source, target, i, count);
    }

    /// <summary><see cref="CopyAdding(float*, float*, int, float)"/> from <paramref name="i"/> on, whole vectors of one width; where it stopped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe int CopyAdding<TOps, TVec>(bool accelerated, float* source, float* target, int i, int count, float value)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        var add = TOps.Broadcast(value);
        for (; accelerated && i + TOps.Width <= count; i += TOps.Width)
        {
            TOps.Store(target + i, TOps.Add(TOps.Load(source + i), add));
        }

        return i;
    }

    /// <summary><see cref="AddFloats(float*, float*, int)"/> from <paramref name="i"/> on, whole vectors of one width; where it stopped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe int AddFloats<TOps, TVec>(bool accelerated, float* source, float* target, int i, int count)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        for (; accelerated && i + TOps.Width <= count; i += TOps.Width)
        {
            TOps.Store(target + i, TOps.Add(TOps.Load(target + i), TOps.Load(source + i)));
        }

        return i;
    }

    /// <summary>Copies <paramref name="count"/> floats in whole vectors, the last one overlapping, reading and writing nothing outside.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // never run unoptimised: a bench row of a few milliseconds ends before tiering
    internal static unsafe void CopyFloats(float* source, float* target, int count)
    {
        if (Vector512.IsHardwareAccelerated && count >= 16)
        {
            for (int i = 0; i < count - 16; i += 16)
            {
                Vector512.Store(Vector512.Load(source + i), target + i);
            }

            Vector512.Store(Vector512.Load(source + count - 16), target + count - 16);
        }
        else if (Vector256.IsHardwareAccelerated && count >= 8)
        {
            for (int i = 0; i < count - 8; i += 8)
            {
                Vector256.Store(Vector256.Load(source + i), target + i);
            }

            Vector256.Store(Vector256.Load(source + count - 8), target + count - 8);
        }
        else
        {
            for (int i = 0; i < count; i++)
            {
                target[i] = source[i];
            }
        }
    }
}

/// <summary>
/// A compile-time count (a stride, runs or vectors per step, kernel columns per block): the JIT drops the code a kernel
/// rules out with it.
/// </summary>
internal interface IConstant
{
    static abstract int Value { get; }
}

internal readonly struct One : IConstant
{
    public static int Value => 1;
}

internal readonly struct Two : IConstant
{
    public static int Value => 2;
}

internal readonly struct Four : IConstant
{
    public static int Value => 4;
}

internal readonly struct Five : IConstant
{
    public static int Value => 5;
}
