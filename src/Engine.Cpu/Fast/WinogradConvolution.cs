using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuCnn.Cpu.Fast;

/// <summary>Where the CPU backend computes 3×3 stride-1 convolutions by Winograd's minimal filtering (<see cref="CpuBackend.Winograd"/>).</summary>
public enum WinogradMode
{
    /// <summary>Never: every convolution computed directly.</summary>
    Off = 0,

    /// <summary>Where it was measured faster than the direct kernels (enough channels, and tiles to fill the micro-kernel).</summary>
    Auto = 1,

    /// <summary>Wherever it can run (3×3, stride 1, undilated, ungrouped, padding ≤ 2, at least 2×2 outputs, AVX2): for tests and comparisons.</summary>
    Always = 2,
}

/// <summary>
/// 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, 2015): each 2×2 block of
/// outputs ("tile") is computed from its 4×4 input patch d as Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, so the 36 multiplications
/// per tile and channel of a direct 3×3 correlation become 16, and summed over channels the 16 products are 16 GEMMs:
/// M[ξν] (K × tiles) = U[ξν] (K × C) · V[ξν] (C × tiles), U = G g Gᵀ the transformed filters, V = Bᵀ d B the transformed
/// patches. The derivation and the matrices are in docs/02-convolution.md.
/// <para>
/// Per image: the tiles are taken a block of tile rows at a time (a block's V within 512 KB, in L2); each input
/// channel is staged as zero-padded rows split into even and odd columns, so that eight tiles' patch columns are four
/// contiguous loads; the input transform writes V straight into the panels the GEMM micro-kernel reads (<see
/// cref="PackedGemm.MicroKernel"/>); U is transformed and packed once per call (<see cref="TransformWeights"/>). Six
/// filters at a time go through all 16 GEMMs and then the output transform (which adds the bias), so their M (16 × 6
/// rows of the block's tiles: 24 KB for conv3x3-128, 50 KB for conv3x3-64) stays in L1 or L2 (with all of M
/// materialised, 64 → 128 channels at 16×16 ran 1.43× slower on AVX-512). The transforms run on
/// 256-bit vectors of 8 tiles on both AVX paths, the GEMM at the backend's width.
/// </para>
/// <para>
/// Numerics: the transforms only add, subtract and halve, so the result differs from a direct correlation's by
/// float rounding (about the same size). NaN and ±∞ would not: an ∞ input gives ±∞ in several points of V, which
/// the output transform subtracts (∞ − ∞ = NaN where a direct sum gives ±∞), or which meet an exact zero of U (0·∞).
/// An image holding a non-finite value is therefore left to the direct kernels (<see cref="Forward"/> returns false),
/// as are filters holding one (<see cref="TransformWeights"/> returns false): NaN and ±∞ in inputs and filters follow
/// docs/01-architecture.md exactly. Finite values so large (near float's maximum) that a transform or a product
/// overflows can still give ±∞ or NaN where a direct sum stays finite, as in any Winograd convolution.
/// </para>
/// </summary>
internal static unsafe partial class WinogradConvolution
{
    /// <summary>The 4×4 transform points ξν: GEMMs per block.</summary>
    private const int Points = 16;

    /// <summary>Tiles per transform vector: 256 bits on both AVX paths.</summary>
    private const int TileVector = 8;

    /// <summary>Floats between one point's matrix of V or M and the next beyond its size: one cache line.</summary>
    private const int Skew = 16;

    /// <summary>Input channels per micro-kernel call (the GEMM's depth block).</summary>
    private const int DepthBlock = 256;

    /// <summary>What one block's V may take: it stays in L2 (256 KB to 1 MB measured within 4 % of one another on conv3x3-128).</summary>
    private const int BlockBytes = 512 * 1024;

    /// <summary>Most whole images the forward pass takes at once (see <see cref="Layout"/>).</summary>
    private const int MaxImages = 4;

    /// <summary>Whether the layer can run by Winograd: 3×3, stride 1, undilated, ungrouped, padding of at most 2, AVX2.</summary>
    public static bool CanRun(in Conv2dGeometry g, SimdWidth width) =>
        Avx2.IsSupported && Fma.IsSupported && width >= SimdWidth.Vector256 && g.IsPlain && g.R == 3 && g.S == 3 &&
        g.StrideH == 1 && g.StrideW == 1 && g.PadH <= 2 && g.PadW <= 2 && g.P >= 2 && g.Q >= 2;

    /// <summary>
    /// Whether it also pays, as measured against the blocked direct kernel, one image per thread (2-core Zen 5; C → K
    /// at H×W, Winograd's speed-up on AVX2 / AVX-512): at least 32 input channels and 32 filters (16 → 16 at 32×32:
    /// 0.96× / 0.67×, the micro-kernel's calls too short at a depth of 16; 32 → 32 at 14×14: 1.02× / 0.87×, at 28×28:
    /// 1.22× / 0.93×; 64 → 64 at 16×16: 1.75× / 1.49×). The direct kernel is twice as fast on 512-bit vectors and the
    /// transforms are not, so there the layer must also be wider — a harmonic mean of C and K of at least 48 (32 → 64
    /// and 64 → 32 at 14×14: 1.0× and 0.97×; 48 → 48: 1.16×) — and a part's tiles must fill the micro-kernel's 32-tile
    /// panels: a 7×7 image has 16, so it pays only with two images side by side (batch 64, two threads: 64 → 64 at 7×7
    /// 1.09×, 128 → 128 1.40×; one image at a time 0.8×, where AVX2 ran it 1.26× faster).
    /// </summary>
    public static bool Pays(in Conv2dGeometry g, SimdWidth width) =>
        CanRun(g, width) && g.C >= 32 && g.K >= 32 &&
        (width == SimdWidth.Vector256 ||
         (2L * g.C * g.K >= 48L * (g.C + g.K) && Math.Min(g.N, ForwardImages(g, width)) * Tiles(g) >= 32));

    /// <summary>Panels of <see cref="PackedGemm.MR"/> filters in the transformed weights.</summary>
    public static int FilterPanels(in Conv2dGeometry g) => PaddedFilters(g) / PackedGemm.MR;

    /// <summary>Floats of the transformed filters: 16 matrices of K (rounded up to whole micro-kernel panels) × C.</summary>
    public static int TransformedWeightsLength(in Conv2dGeometry g) => // 16/9 of the weights, which only their own limit bounds
        GeometryChecks.Elements("convolution", "Winograd-transformed weights", (long)Points * PaddedFilters(g) * g.C);

    /// <summary>Floats of scratch one image needs (see <see cref="Layout"/>).</summary>
    public static int ScratchLength(in Conv2dGeometry g, SimdWidth width) => new Layout(g, (int)width).ScratchLength;

    private static int PaddedFilters(in Conv2dGeometry g) => RoundUp(g.K, PackedGemm.MR);

    /// <summary>Tiles (2×2 outputs) of one image, the last row or column hanging past P or Q when it is odd.</summary>
    private static int Tiles(in Conv2dGeometry g) => (g.P + 1) / 2 * ((g.Q + 1) / 2);

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>Lanes past a tile row that its last vector of tiles reaches.</summary>
    private static int Overhang(int tileColumns) => RoundUp(tileColumns, TileVector) - tileColumns;

    /// <summary>
    /// Floats of one staged row: its even columns, then its odd ones, each with room for a vector of tiles from the
    /// last start (tx0 &lt; TileColumns reads columns tx0 … tx0 + 8).
    /// </summary>
    private static int StagedRowLength(int tileColumns) => 2 * RoundUp(tileColumns + TileVector, TileVector);

    /// <summary>
    /// U[ξν] = (G g Gᵀ)[ξ, ν] for every filter k and channel c, packed as the micro-kernel's A panels: point ξν's matrix
    /// at u + ξν·K'·C (K' = K rounded up to panels of <see cref="PackedGemm.MR"/> rows, the extra rows zero), row k in
    /// panel k / MR at column c: u[ξν·K'·C + (k − k mod MR)·C + c·MR + k mod MR]. Returns false (and the layer must not
    /// use <see cref="Forward"/>) when a transformed value is not finite. Only filter panels [first, first + count)
    /// (of <see cref="FilterPanels"/>), so that threads can share the work.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TransformWeights(in Conv2dGeometry g, float* w, float* u, int first, int count)
    {
        const int MR = PackedGemm.MR;
        long point = (long)PaddedFilters(g) * g.C;
        float check = 0f;
        for (int k0 = first * MR; k0 < (first + count) * MR; k0 += MR)
        {
            for (int c = 0; c < g.C; c++)
            {
                // The panel's six filters side by side: each point's six values are contiguous.
                float* target = u + ((long)k0 * g.C) + (c * MR);
                for (int i = 0; i < MR; i++, target++)
                {
                    if (k0 + i >= g.K)
                    {
                        for (int p = 0; p < Points; p++)
                        {
                            target[p * point] = 0f;
                        }

                        continue;
                    }

                    // G g (4 × 3), G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1] combining the kernel's rows; then each of its
                    // rows times Gᵀ, the same combination of the row's three columns.
                    float* f = w + ((((long)(k0 + i) * g.C) + c) * 9);
                    float s0 = 0.5f * (f[0] + f[3] + f[6]), s1 = 0.5f * (f[1] + f[4] + f[7]), s2 = 0.5f * (f[2] + f[5] + f[8]);
                    float d0 = 0.5f * (f[0] - f[3] + f[6]), d1 = 0.5f * (f[1] - f[4] + f[7]), d2 = 0.5f * (f[2] - f[5] + f[8]);
                    check += TransformedRow(target, point, f[0], f[1], f[2]);
                    check += TransformedRow(target + (4 * point), point, s0, s1, s2);
                    check += TransformedRow(target + (8 * point), point, d0, d1, d2);
                    check += TransformedRow(target + (12 * point), point, f[6], f[7], f[8]);
                }
            }
        }

        return check == 0f;
    }

    /// <summary>(a0, ½(a0 + a1 + a2), ½(a0 − a1 + a2), a2) at four points; returns 0 if they are finite, else NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TransformedRow(float* target, long point, float a0, float a1, float a2)
    {
        float u1 = 0.5f * (a0 + a1 + a2), u2 = 0.5f * (a0 - a1 + a2);
        target[0] = a0;
        target[point] = u1;
        target[2 * point] = u2;
        target[3 * point] = a2;
        return (a0 * 0f) + (u1 * 0f) + (u2 * 0f) + (a2 * 0f);
    }

    /// <summary>Images <see cref="Forward"/> takes at once (1, or a few small ones side by side).</summary>
    public static int ForwardImages(in Conv2dGeometry g, SimdWidth width) => new Layout(g, (int)width).Images;

    /// <summary>
    /// y_n (K, P, Q) = b + conv(x_n) for <paramref name="count"/> consecutive images (at most <see
    /// cref="ForwardImages"/>; b may be null), with the filters transformed by <see cref="TransformWeights"/>. Returns
    /// false when an image holds a NaN or ±∞ (having written nothing), or when an output came out non-finite from
    /// finite images (an overflow inside the transforms, or a true one): the caller then computes y directly.
    /// </summary>
    public static bool Forward(SimdWidth width, in Conv2dGeometry g, float* x, float* u, float* b, float* y, float* scratch, int count = 1) =>
        width == SimdWidth.Vector512
            ? Forward<Vec512, Vector512<float>>(g, x, u, b, y, scratch, count)
            : Forward<Vec256, Vector256<float>>(g, x, u, b, y, scratch, count);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Forward<TOps, TVec>(in Conv2dGeometry g, float* x, float* u, float* b, float* y, float* scratch, int count)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        long chw = (long)g.C * g.H * g.W, kpq = (long)g.K * g.P * g.Q;
        for (int i = 0; i < count; i++)
        {
            if (!Simd.AllFinite(x + (i * chw), chw))
            {
                return false;
            }
        }

        var layout = new Layout(g, TOps.Width);
        System.Diagnostics.Debug.Assert(count <= layout.Images, "at most ForwardImages images at once");
        float* staged = scratch, v = staged + layout.StagedLength, m = v + (Points * layout.VPoint);
        float* scale = stackalloc float[4];
        scale[0] = 1f; // α = 1, β = 0 for the first depth block, then α = 1, β = 1
        scale[1] = 0f;
        scale[2] = 1f;
        scale[3] = 1f;
        for (int ty0 = 0; ty0 < layout.TileRows; ty0 += layout.BlockRows)
        {
            // A block of one image's tile rows, or whole images side by side (image i's tiles from i·rows·TileColumns).
            int rows = Math.Min(layout.BlockRows, layout.TileRows - ty0), imageTiles = rows * layout.TileColumns;
            for (int i = 0; i < count; i++)
            {
                TransformInput(g, layout.TileColumns, layout.StageStride, layout.Nr, layout.VPoint, x + (i * chw), ty0, rows, i * imageTiles, staged, v);
            }

            // A panel of MR filters at a time through all 16 points, then straight to y while its M is in cache.
            for (int k0 = 0; k0 < g.K; k0 += PackedGemm.MR)
            {
                int filters = Math.Min(PackedGemm.MR, g.K - k0);
                Multiply<TOps, TVec>(g, layout, count * imageTiles, k0, filters, u, v, m, scale);
                for (int i = 0; i < count; i++)
                {
                    TransformOutput(g, layout, m, b, y + (i * kpq), ty0, rows, i * imageTiles, k0, filters);
                }
            }
        }

        // Finite inputs whose transforms overflowed where a direct sum would not (values near float's maximum: U holds
        // up to 2.25 times a weight, V sums up to four inputs): the caller computes the images again directly, over
        // what was written here.
        for (int i = 0; i < count; i++)
        {
            if (!Simd.AllFinite(y + (i * kpq), kpq))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// V for tile rows [ty0, ty0 + rows): per channel, the padded rows 2·ty0 … 2·(ty0 + rows) + 1 staged as even and
    /// odd columns, then Bᵀ d B for eight tiles at a time, each point's eight values stored in the B panel that holds
    /// their tiles (V[ξν] at v + ξν·VPoint, tile t of the block in panel t / nr at lane t mod nr, channel c its row).
    /// A tile row's last vector may run past the row: its extra lanes land on the next row's first tiles, written
    /// again when that row is transformed, or in the columns past the block's tiles, which no output reads. With nr at
    /// least the block's tiles plus that overhang, all tiles are one panel: V[ξν] row-major, channel c's row nr floats
    /// (the filter gradient's layout).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransformInput(in Conv2dGeometry g, int tileColumns, int stride, int nr, long point, float* x, int ty0, int rows, int tileOffset, float* staged, float* v)
    {
        int odd = stride / 2, stagedRows = (2 * rows) + 2;
        float* spill = stackalloc float[TileVector];
        for (int c = 0; c < g.C; c++)
        {
            float* plane = x + ((long)c * g.H * g.W);
            for (int i = 0; i < stagedRows; i++)
            {
                StageRow(plane, (2 * ty0) + i - g.PadH, g.H, g.W, g.PadW, odd, staged + (i * stride));
            }

            for (int ty = 0; ty < rows; ty++)
            {
                float* top = staged + (2 * ty * stride);
                for (int tx0 = 0; tx0 < tileColumns; tx0 += TileVector)
                {
                    int t = tileOffset + (ty * tileColumns) + tx0, lane = t % nr;
                    float* target = v + ((long)(t - lane) * g.C) + ((long)c * nr) + lane;
                    int split = lane + TileVector <= nr ? TileVector : nr - lane;
                    long next = (long)nr * (g.C - 1); // lane i ≥ split: tile t + i, in the next panel at lane + i − nr

                    // Column by column of d B, each then combined down the rows (Bᵀ): point (ξ, j) = 4ξ + j. Columns d0–d3
                    // of a patch row are even tx, odd tx, even tx + 1, odd tx + 1.
                    float* e = top + tx0;
                    Column(e, stride, 0, 1, 0, target, point, split, next, spill);
                    Column(e, stride, odd, 1, 1, target + point, point, split, next, spill);
                    Column(e, stride, odd, 1, 2, target + (2 * point), point, split, next, spill);
                    Column(e, stride, odd, odd + 1, 3, target + (3 * point), point, split, next, spill);
                }
            }
        }

    }

    /// <summary>
    /// Column j of d B for the four patch rows of eight tiles (staged rows <paramref name="stride"/> apart, operands
    /// p and q at offsets <paramref name="first"/> and <paramref name="second"/>): j = 0: d0 − d2 = even[tx] −
    /// even[tx+1]; 1: d1 + d2 = odd[tx] + even[tx+1]; 2: d2 − d1 = even[tx+1] − odd[tx]; 3: d1 − d3 = odd[tx] −
    /// odd[tx+1]. Then Bᵀ of that column, (a0 − a2, a1 + a2, a2 − a1, a1 − a3), stored as points j, 4 + j, 8 + j, 12 + j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Column(float* e, int stride, int first, int second, int j, float* target, long point, int split, long next, float* spill)
    {
        var a0 = Combine(e, first, second, j);
        var a1 = Combine(e + stride, first, second, j);
        var a2 = Combine(e + (2 * stride), first, second, j);
        var a3 = Combine(e + (3 * stride), first, second, j);
        Store(target, Avx.Subtract(a0, a2), split, next, spill);
        Store(target + (4 * point), Avx.Add(a1, a2), split, next, spill);
        Store(target + (8 * point), Avx.Subtract(a2, a1), split, next, spill);
        Store(target + (12 * point), Avx.Subtract(a1, a3), split, next, spill);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Combine(float* row, int first, int second, int j)
    {
        Vector256<float> p = Avx.LoadVector256(row + first), q = Avx.LoadVector256(row + second);
        return j switch
        {
            1 => Avx.Add(p, q),
            2 => Avx.Subtract(q, p),
            _ => Avx.Subtract(p, q),
        };
    }

    /// <summary>Eight lanes at target, or the first <paramref name="split"/> there and the rest <paramref name="next"/> floats on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* target, Vector256<float> value, int split, long next, float* spill)
    {
        if (split == TileVector)
        {
            Avx.Store(target, value);
            return;
        }

        Avx.Store(spill, value);
        for (int i = 0; i < split; i++)
        {
            target[i] = spill[i];
        }

        for (int i = split; i < TileVector; i++)
        {
            target[next + i] = spill[i];
        }
    }

    /// <summary>
    /// Row <paramref name="r"/> of a plane of height × width, padded by <paramref name="padLeft"/> zero columns on the
    /// left and zeros past its end (all zeros for a row outside the plane), as its even columns then, <paramref
    /// name="half"/> floats on, its odd columns. Loads past the row's ends are masked (no fault, zeros).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StageRow(float* plane, int r, int height, int width, int padLeft, int half, float* target)
    {
        if (r < 0 || r >= height)
        {
            for (int j = 0; j < 2 * half; j += TileVector)
            {
                Avx.Store(target + j, Vector256<float>.Zero);
            }

            return;
        }

        float* source = plane + ((long)r * width) - padLeft; // padded column 0
        for (int j = 0; j < half; j += TileVector)
        {
            int column = (2 * j) - padLeft;
            Vector256<float> lo = LoadInside(source + (2 * j), column, width), hi = LoadInside(source + (2 * j) + TileVector, column + TileVector, width);

            // Even lanes of lo and hi, then odd ones; the shuffles leave 64-bit pairs in the order (lo, hi, lo, hi).
            var even = Avx.Shuffle(lo, hi, 0b10_00_10_00);
            var oddLanes = Avx.Shuffle(lo, hi, 0b11_01_11_01);
            Avx.Store(target + j, Avx2.Permute4x64(even.AsDouble(), 0b11_01_10_00).AsSingle());
            Avx.Store(target + half + j, Avx2.Permute4x64(oddLanes.AsDouble(), 0b11_01_10_00).AsSingle());
        }
    }

    /// <summary>Eight floats of a row from source column <paramref name="column"/>: those outside [0, width) read as zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LoadInside(float* source, int column, int width)
    {
        if (column >= 0 && column + TileVector <= width)
        {
            return Avx.LoadVector256(source);
        }

        var index = Vector256.Create(column) + Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var inside = Avx2.CompareGreaterThan(index, Vector256.Create(-1)) & Avx2.CompareGreaterThan(Vector256.Create(width), index);
        return Avx.MaskLoad(source, inside.AsSingle());
    }

    /// <summary>
    /// M[ξν] = U[ξν] · V[ξν] for the 16 points ξν and filters k0 … k0 + filters − 1 (one A panel of each U[ξν]), on
    /// the micro-kernel: point ξν's rows at m + ξν·MPoint, Columns floats apart, over the panels that hold the block's
    /// <paramref name="tiles"/> tiles (not one that only a last vector's overhang reached).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Multiply<TOps, TVec>(in Conv2dGeometry g, in Layout layout, int tiles, int k0, int filters, float* u, float* v, float* m, float* scale)
        where TOps : struct, IVectorOps<TVec>
        where TVec : unmanaged
    {
        const int MR = PackedGemm.MR;
        int nr = layout.Nr, columns = layout.Columns;
        long uPoint = (long)PaddedFilters(g) * g.C;
        float* a = u + ((long)k0 * g.C);
        for (int p = 0; p < Points; p++, a += uPoint)
        {
            float* vp = v + (p * layout.VPoint), mp = m + (p * layout.MPoint);
            for (int jr = 0; jr < tiles; jr += nr)
            {
                float* panel = vp + ((long)jr * g.C);
                for (int pc = 0; pc < g.C; pc += DepthBlock)
                {
                    PackedGemm.MicroKernel<TOps, TVec>(Math.Min(DepthBlock, g.C - pc), a + (pc * MR), panel + (pc * nr), mp + jr, columns,
                        pc == 0 ? scale : scale + 2, filters, nr);
                }
            }
        }
    }

    /// <summary>
    /// y = b + Aᵀ M A for the block's tiles and filters k0 … k0 + filters − 1, Aᵀ = [1 1 1 0; 0 1 −1 −1], eight tiles at a time: each gives two rows of
    /// 16 outputs, interleaved from the tiles' left and right columns; the image's last row and column take only what
    /// lies inside it (whole vectors stored as they are, a partial one through the spill).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransformOutput(in Conv2dGeometry g, in Layout layout, float* m, float* b, float* y, int ty0, int rows, int tileOffset, int k0, int filters)
    {
        int columns = layout.Columns;
        long point = layout.MPoint;
        float* spill = stackalloc float[TileVector];
        for (int k = k0; k < k0 + filters; k++)
        {
            var bias = Vector256.Create(b == null ? 0f : b[k]);
            float* filter = m + ((long)(k - k0) * columns);
            float* plane = y + ((long)k * g.P * g.Q);
            for (int ty = 0; ty < rows; ty++)
            {
                int p = 2 * (ty0 + ty), outputRows = Math.Min(2, g.P - p);
                for (int tx0 = 0; tx0 < layout.TileColumns; tx0 += TileVector)
                {
                    float* source = filter + tileOffset + (ty * layout.TileColumns) + tx0;

                    // M A per row ξ of the tile: (m0 + m1 + m2, m1 − m2 − m3).
                    Columns(source, point, out var z00, out var z01);
                    Columns(source + (4 * point), point, out var z10, out var z11);
                    Columns(source + (8 * point), point, out var z20, out var z21);
                    Columns(source + (12 * point), point, out var z30, out var z31);

                    // Aᵀ (M A): rows combined the same way, plus the bias.
                    var y00 = Avx.Add(Avx.Add(Avx.Add(z00, z10), z20), bias);
                    var y01 = Avx.Add(Avx.Add(Avx.Add(z01, z11), z21), bias);
                    var y10 = Avx.Add(Avx.Subtract(Avx.Subtract(z10, z20), z30), bias);
                    var y11 = Avx.Add(Avx.Subtract(Avx.Subtract(z11, z21), z31), bias);

                    // Left and right columns interleaved: tiles 0–3 then 4–7 of each output row.
                    Vector256<float> l0 = Avx.UnpackLow(y00, y01), h0 = Avx.UnpackHigh(y00, y01);
                    Vector256<float> l1 = Avx.UnpackLow(y10, y11), h1 = Avx.UnpackHigh(y10, y11);
                    var row0a = Avx.Permute2x128(l0, h0, 0x20);
                    var row0b = Avx.Permute2x128(l0, h0, 0x31);
                    var row1a = Avx.Permute2x128(l1, h1, 0x20);
                    var row1b = Avx.Permute2x128(l1, h1, 0x31);

                    int q = 2 * tx0, outputColumns = Math.Min(2 * TileVector, g.Q - q);
                    float* target = plane + ((long)p * g.Q) + q;
                    StoreOutputs(target, row0a, outputColumns, spill);
                    StoreOutputs(target + TileVector, row0b, outputColumns - TileVector, spill);
                    if (outputRows == 2)
                    {
                        StoreOutputs(target + g.Q, row1a, outputColumns, spill);
                        StoreOutputs(target + g.Q + TileVector, row1b, outputColumns - TileVector, spill);
                    }
                }
            }
        }
    }

    /// <summary>The first <paramref name="count"/> lanes of eight (all, some, or none).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreOutputs(float* target, Vector256<float> value, int count, float* spill)
    {
        if (count >= TileVector)
        {
            Avx.Store(target, value);
            return;
        }

        Avx.Store(spill, value);
        for (int i = 0; i < count; i++)
        {
            target[i] = spill[i];
        }
    }

    /// <summary>(m0 + m1 + m2, m1 − m2 − m3) of one row ξ of eight tiles' M, its points <paramref name="point"/> apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns(float* m, long point, out Vector256<float> z0, out Vector256<float> z1)
    {
        Vector256<float> m0 = Avx.LoadVector256(m), m1 = Avx.LoadVector256(m + point);
        Vector256<float> m2 = Avx.LoadVector256(m + (2 * point)), m3 = Avx.LoadVector256(m + (3 * point));
        z0 = Avx.Add(Avx.Add(m0, m1), m2);
        z1 = Avx.Subtract(Avx.Subtract(m1, m2), m3);
    }

    /// <summary>
    /// One image's tiling and scratch: tiles of 2×2 outputs in TileRows × TileColumns (the last row or column may hang
    /// past P or Q), BlockRows tile rows per block; the scratch holds the staged rows of a block (even columns, then
    /// odd, per row), the block's V (16 matrices of C rows) and the M of one panel of filters (16 matrices of
    /// <see cref="PackedGemm.MR"/> rows), each of Columns columns (the block's tiles, plus a vector's overhang,
    /// rounded up to whole panels of Nr).
    /// </summary>
    private readonly struct Layout
    {
        public readonly int TileRows, TileColumns, BlockRows, Images, Columns, Nr, StageStride, StagedLength, VPoint, MPoint, ScratchLength;

        public Layout(in Conv2dGeometry g, int width)
        {
            TileRows = (g.P + 1) / 2;
            TileColumns = (g.Q + 1) / 2;
            Nr = 2 * width;
            long bytesPerTileRow = (long)Points * g.C * TileColumns * sizeof(float);
            BlockRows = (int)Math.Clamp(BlockBytes / bytesPerTileRow, 1, TileRows);

            // Whole small images side by side: of 1 to 4 that fit, the count whose tiles fill the B panels best (a
            // 7×7 image's 16 tiles are half a 512-bit panel; three 14×14 images fill 92 % of theirs, one 77 %).
            int tiles = Tiles(g);
            Images = 1;
            if (BlockRows == TileRows)
            {
                double best = 0;
                for (int count = 1; count <= MaxImages && count * bytesPerTileRow * TileRows <= BlockBytes; count++)
                {
                    double filled = (double)(count * tiles) / RoundUp(count * tiles, Nr);
                    if (filled > best + 1e-9)
                    {
                        best = filled;
                        Images = count;
                    }
                }
            }

            Columns = RoundUp((Images * BlockRows * TileColumns) + Overhang(TileColumns), Nr);
            StageStride = StagedRowLength(TileColumns);
            StagedLength = ((2 * BlockRows) + 2) * StageStride;
            // Each point's matrix a cache line past a multiple of the previous one's size: at power-of-two sizes the
            // transforms' 16 streams would fall in one set of the L1 cache (AVX2's input transform ran 1.75× slower).
            VPoint = (g.C * Columns) + Skew;
            MPoint = (PackedGemm.MR * Columns) + Skew;
            ScratchLength = StagedLength + (Points * (VPoint + MPoint));
        }
    }
}
