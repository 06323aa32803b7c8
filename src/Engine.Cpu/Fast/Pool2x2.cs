using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// Pooling over the common 2×2 window, stride 2, no padding, vectorised. Max pooling splits the even and odd columns
/// of both input rows apart with shuffles, then compares them lane by lane with the same rule as the reference and
/// PyTorch (first maximum in row-major order, but every NaN is taken, so the last NaN wins), selecting values and
/// switch indices without branches. Average pooling adds the same four vectors in the generic loop's order, and its
/// gradient writes each output's share to its window's four inputs.
/// </summary>
internal static class Pool2x2
{
    public static bool Suits(in Pool2dGeometry g) =>
        g.KernelH == 2 && g.KernelW == 2 && g.StrideH == 2 && g.StrideW == 2 && g.PadH == 0 && g.PadW == 0 && !g.WindowsOverhang;

    /// <summary>
    /// One plane: x (H,W) → y, switches (P,Q), 16 outputs at a time with 512-bit vectors, 8 with 256-bit ones (the AVX2
    /// path ran scalar until the fourth session, 14× the 512-bit path's time), then 4 with 128-bit ones, the rest one at
    /// a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void MaxPlane(SimdWidth simd, float* x, float* y, int* switches, int width, int outH, int outW)
    {
        int vectorEnd = simd == SimdWidth.Vector512 ? outW / 16 * 16 : 0;
        int halfEnd = simd >= SimdWidth.Vector256 ? outW / 8 * 8 : 0;
        int quarterEnd = simd >= SimdWidth.Vector128 ? outW / 4 * 4 : 0;
        var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var split = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        var lane8 = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var split8 = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        var lane4 = Vector128.Create(0, 1, 2, 3);
        var split4 = Vector128.Create(0, 2, 1, 3);
        for (int p = 0; p < outH; p++)
        {
            float* row0 = x + (long)2 * p * width, row1 = row0 + width;
            int baseIndex = 2 * p * width;
            int q = 0;
            for (; q < vectorEnd; q += 16)
            {
                // Columns 2q … 2q+31 of each row: evens are the window's left column, odds its right.
                var (left0, right0) = Deinterleave(Vector512.Load(row0 + 2 * q), Vector512.Load(row0 + 2 * q + 16), split);
                var (left1, right1) = Deinterleave(Vector512.Load(row1 + 2 * q), Vector512.Load(row1 + 2 * q + 16), split);
                var index = Vector512.Create(baseIndex + 2 * q) + (lane * 2);
                var best = left0;
                var at = index;
                Take(ref best, ref at, right0, index + Vector512<int>.One);
                Take(ref best, ref at, left1, index + Vector512.Create(width));
                Take(ref best, ref at, right1, index + Vector512.Create(width + 1));
                best.Store(y + (long)p * outW + q);
                at.Store(switches + (long)p * outW + q);
            }

            // A row's last few outputs: one more 8-wide vector ending at the row's end, where the row is that wide. It
            // computes some outputs again, to the same values and switches (LeNet's 14-wide rows had ended in a 4-wide
            // vector and two scalar outputs). A 4-wide one in the same way measured no faster on 5-wide rows.
            for (; q < halfEnd || (q < outW && halfEnd > 0); q = q + 8 > halfEnd ? outW : q + 8)
            {
                q = Math.Min(q, outW - 8);
                var (left0, right0) = Deinterleave(Vector256.Load(row0 + 2 * q), Vector256.Load(row0 + 2 * q + 8), split8);
                var (left1, right1) = Deinterleave(Vector256.Load(row1 + 2 * q), Vector256.Load(row1 + 2 * q + 8), split8);
                var index = Vector256.Create(baseIndex + 2 * q) + (lane8 * 2);
                var best = left0;
                var at = index;
                Take(ref best, ref at, right0, index + Vector256<int>.One);
                Take(ref best, ref at, left1, index + Vector256.Create(width));
                Take(ref best, ref at, right1, index + Vector256.Create(width + 1));
                best.Store(y + (long)p * outW + q);
                at.Store(switches + (long)p * outW + q);
            }

            // Four at a time before the last few: LeNet's 14- and 5-wide outputs had left most of their windows to the
            // scalar loop (pooling was 12 % of a LeNet training step).
            for (; q < quarterEnd; q += 4)
            {
                var (left0, right0) = Deinterleave(Vector128.Load(row0 + 2 * q), Vector128.Load(row0 + 2 * q + 4), split4);
                var (left1, right1) = Deinterleave(Vector128.Load(row1 + 2 * q), Vector128.Load(row1 + 2 * q + 4), split4);
                var index = Vector128.Create(baseIndex + 2 * q) + (lane4 * 2);
                var best = left0;
                var at = index;
                Take(ref best, ref at, right0, index + Vector128<int>.One);
                Take(ref best, ref at, left1, index + Vector128.Create(width));
                Take(ref best, ref at, right1, index + Vector128.Create(width + 1));
                best.Store(y + (long)p * outW + q);
                at.Store(switches + (long)p * outW + q);
            }

            for (; q < outW; q++)
            {
                int i0 = baseIndex + 2 * q;
                float best = x[i0];
                int at = i0;
                TakeScalar(ref best, ref at, x[i0 + 1], i0 + 1);
                TakeScalar(ref best, ref at, x[i0 + width], i0 + width);
                TakeScalar(ref best, ref at, x[i0 + width + 1], i0 + width + 1);
                y[(long)p * outW + q] = best;
                switches[(long)p * outW + q] = at;
            }
        }
    }

    /// <summary>
    /// Average pooling over one plane: y = ((((0 + x₀₀) + x₀₁) + x₁₀) + x₁₁)·¼, the generic loop's sum in its order
    /// (the same bits; 0 + makes a window of −0 give +0 as there), a vector of outputs at a time. A row's last vector
    /// ends at the row's end, recomputing a few outputs to the same values; rows under four outputs go one at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void AveragePlane(SimdWidth simd, float* x, float* y, int width, int outH, int outW)
    {
        int step = Step(simd, outW);
        for (int p = 0; p < outH; p++)
        {
            float* row0 = x + (long)2 * p * width, row1 = row0 + width, output = y + (long)p * outW;
            for (int q = 0; step > 0; q += step)
            {
                q = Math.Min(q, outW - step);
                AverageVector(step, row0 + 2 * q, row1 + 2 * q, output + q);
                if (q + step == outW)
                {
                    break;
                }
            }

            for (int q = 0; step == 0 && q < outW; q++)
            {
                output[q] = ((((0f + row0[2 * q]) + row0[(2 * q) + 1]) + row1[2 * q]) + row1[(2 * q) + 1]) * 0.25f;
            }
        }
    }

    /// <summary>
    /// The gradient of <see cref="AveragePlane"/>: each input of output (p, q)'s window gets 0 + dy[p, q]·¼ (the generic
    /// loop's cleared plane plus the one share that reaches it); a last row or column in no window (odd H or W) is 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void AverageBackwardPlane(SimdWidth simd, float* dy, float* dx, int height, int width, int outH, int outW)
    {
        if (height != 2 * outH || width != 2 * outW)
        {
            new Span<float>(dx, height * width).Clear();
        }

        int step = Step(simd, outW);
        for (int p = 0; p < outH; p++)
        {
            float* row0 = dx + (long)2 * p * width, row1 = row0 + width, gradient = dy + (long)p * outW;
            for (int q = 0; step > 0; q += step)
            {
                q = Math.Min(q, outW - step);
                SpreadVector(step, gradient + q, row0 + 2 * q, row1 + 2 * q);
                if (q + step == outW)
                {
                    break;
                }
            }

            for (int q = 0; step == 0 && q < outW; q++)
            {
                float share = 0f + (gradient[q] * 0.25f);
                row0[2 * q] = row0[(2 * q) + 1] = row1[2 * q] = row1[(2 * q) + 1] = share;
            }
        }
    }

    /// <summary>Outputs per vector for rows of <paramref name="outW"/> outputs: the widest that fits, or 0 (one at a time).</summary>
    private static int Step(SimdWidth simd, int outW) => Simd.WidestFitting(simd, outW) is var width and not SimdWidth.Scalar ? (int)width : 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AverageVector(int step, float* row0, float* row1, float* output)
    {
        if (step == 16)
        {
            var split = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
            var (left0, right0) = Deinterleave(Vector512.Load(row0), Vector512.Load(row0 + 16), split);
            var (left1, right1) = Deinterleave(Vector512.Load(row1), Vector512.Load(row1 + 16), split);
            (((((Vector512<float>.Zero + left0) + right0) + left1) + right1) * 0.25f).Store(output);
        }
        else if (step == 8)
        {
            var split = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
            var (left0, right0) = Deinterleave(Vector256.Load(row0), Vector256.Load(row0 + 8), split);
            var (left1, right1) = Deinterleave(Vector256.Load(row1), Vector256.Load(row1 + 8), split);
            (((((Vector256<float>.Zero + left0) + right0) + left1) + right1) * 0.25f).Store(output);
        }
        else
        {
            var split = Vector128.Create(0, 2, 1, 3);
            var (left0, right0) = Deinterleave(Vector128.Load(row0), Vector128.Load(row0 + 4), split);
            var (left1, right1) = Deinterleave(Vector128.Load(row1), Vector128.Load(row1 + 4), split);
            (((((Vector128<float>.Zero + left0) + right0) + left1) + right1) * 0.25f).Store(output);
        }
    }

    /// <summary>Shares 0 + dy·¼ of <paramref name="step"/> outputs, each written twice side by side to both rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void SpreadVector(int step, float* dy, float* row0, float* row1)
    {
        if (step == 16)
        {
            var share = Vector512<float>.Zero + (Vector512.Load(dy) * 0.25f);
            var low = Vector512.Shuffle(share, Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
            var high = Vector512.Shuffle(share, Vector512.Create(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
            low.Store(row0);
            high.Store(row0 + 16);
            low.Store(row1);
            high.Store(row1 + 16);
        }
        else if (step == 8)
        {
            var share = Vector256<float>.Zero + (Vector256.Load(dy) * 0.25f);
            var low = Vector256.Shuffle(share, Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3));
            var high = Vector256.Shuffle(share, Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7));
            low.Store(row0);
            high.Store(row0 + 8);
            low.Store(row1);
            high.Store(row1 + 8);
        }
        else
        {
            var share = Vector128<float>.Zero + (Vector128.Load(dy) * 0.25f);
            var low = Vector128.Shuffle(share, Vector128.Create(0, 0, 1, 1));
            var high = Vector128.Shuffle(share, Vector128.Create(2, 2, 3, 3));
            low.Store(row0);
            high.Store(row0 + 4);
            low.Store(row1);
            high.Store(row1 + 4);
        }
    }

    /// <summary>
    /// best, at = v, index where v &gt; best, or nothing was taken yet (at &lt; 0), or v is NaN (PyTorch's rule: the last
    /// NaN of a window wins) —
    /// without a branch: the comparison is a coin flip on real data, and the JIT does not turn branches inside
    /// loops into conditional moves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void TakeScalar(ref float best, ref int at, float v, int index)
    {
        int take = Unsafe.BitCast<bool, byte>(v > best) | Unsafe.BitCast<bool, byte>(at < 0) | Unsafe.BitCast<bool, byte>(float.IsNaN(v));
        int mask = -take;
        at ^= (at ^ index) & mask;
        int bits = BitConverter.SingleToInt32Bits(best);
        best = BitConverter.Int32BitsToSingle(bits ^ ((bits ^ BitConverter.SingleToInt32Bits(v)) & mask));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float> Even, Vector512<float> Odd) Deinterleave(Vector512<float> a, Vector512<float> b, Vector512<int> split)
    {
        var sa = Vector512.Shuffle(a, split);
        var sb = Vector512.Shuffle(b, split);
        return (Vector512.Create(sa.GetLower(), sb.GetLower()), Vector512.Create(sa.GetUpper(), sb.GetUpper()));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Even, Vector256<float> Odd) Deinterleave(Vector256<float> a, Vector256<float> b, Vector256<int> split)
    {
        var sa = Vector256.Shuffle(a, split);
        var sb = Vector256.Shuffle(b, split);
        return (Vector256.Create(sa.GetLower(), sb.GetLower()), Vector256.Create(sa.GetUpper(), sb.GetUpper()));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<float> Even, Vector128<float> Odd) Deinterleave(Vector128<float> a, Vector128<float> b, Vector128<int> split)
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
        {
            // One shufps each: lanes 0 and 2 (1 and 3) of a, then of b. Vector128.Shuffle by a vector of lanes was not
            // one instruction here: LeNet's 5-wide pooling rows ran 2× their time with it.
            return (System.Runtime.Intrinsics.X86.Sse.Shuffle(a, b, 0b10_00_10_00), System.Runtime.Intrinsics.X86.Sse.Shuffle(a, b, 0b11_01_11_01));
        }

        var sa = Vector128.Shuffle(a, split);
        var sb = Vector128.Shuffle(b, split);
        return (Vector128.Create(sa.GetLower(), sb.GetLower()), Vector128.Create(sa.GetUpper(), sb.GetUpper()));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Take(ref Vector128<float> best, ref Vector128<int> at, Vector128<float> v, Vector128<int> index)
    {
        var take = Vector128.GreaterThan(v, best) | ~Vector128.Equals(v, v);
        best = Vector128.ConditionalSelect(take, v, best);
        at = Vector128.ConditionalSelect(take.AsInt32(), index, at);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Take(ref Vector256<float> best, ref Vector256<int> at, Vector256<float> v, Vector256<int> index)
    {
        var take = Vector256.GreaterThan(v, best) | ~Vector256.Equals(v, v);
        best = Vector256.ConditionalSelect(take, v, best);
        at = Vector256.ConditionalSelect(take.AsInt32(), index, at);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Take(ref Vector512<float> best, ref Vector512<int> at, Vector512<float> v, Vector512<int> index)
    {
        var take = Vector512.GreaterThan(v, best) | ~Vector512.Equals(v, v); // every NaN is taken: the last one wins
        best = Vector512.ConditionalSelect(take, v, best);
        at = Vector512.ConditionalSelect(take.AsInt32(), index, at);
    }
}
