using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// The filter gradient of a 3×3 stride-1 layer by Winograd's F(3×3, 2×2), the dual of the forward's F(2×2, 3×3)
/// (docs/02-convolution.md): a 2×2 tile of dy and its 4×4 input patch d add Gᵀ[(A dy Aᵀ) ⊙ (Bᵀ d B)]G to the 3×3
/// gradient, so summed over tiles and images, for each of the 16 points ξν, Mw[ξν] (K × C) = Σ_t Y[ξν](k, t) · V[ξν](c, t)
/// — a GEMM whose depth is the tiles — and dw[k, c] = Gᵀ Mw[k, c] G once at the end. V is the forward's input transform
/// (row-major here: tiles along a row); Y = A dy Aᵀ, A = [1 0; 1 1; 1 −1; 0 −1], from dy staged like the input
/// (even and odd columns, zeros past P and Q); each point's product runs on <see cref="PackedGemm"/> (A = Y, op(B) =
/// Vᵀ, its whole panels packed by register transposes). An image or its dy holding a NaN or ±∞ is left to the direct
/// kernels, as in the forward pass; finite values near float's maximum can still overflow in the transforms.
/// </summary>
internal static unsafe partial class WinogradConvolution
{
    /// <summary>What one block's V and Y may take together.</summary>
    private const int GradientBlockBytes = 1024 * 1024;

    /// <summary>
    /// Whether the filter gradient pays by Winograd: where the forward does (<see cref="Pays"/>) and the image has at
    /// least 48 tiles. Measured against the direct kernels, two threads, batch 64 (C → K at H×W, AVX2 / AVX-512):
    /// 64 → 64 at 14×14 1.46× / 1.26× faster, at 32×32 1.57× / 1.22×; 128 → 128 at 16×16 (batch 32) 1.5–1.7× / 1.44×;
    /// 32 → 32 at 14×14 1.04× (AVX2); but 64 → 64 at 7×7 0.86–0.92× / 0.77× even with 8 images' tiles side by side
    /// (0.77× / 0.64× image by image), and 32 → 32 at 8×8 (batch 128) 0.92× / 0.78×.
    /// </summary>
    public static bool PaysForFilterGradient(in Conv2dGeometry g, SimdWidth width) =>
        Pays(g, width) && Tiles(g) >= 48;

    /// <summary>Floats of scratch a part needs: one block's staged rows, V and Y, and Mw for the 16 points.</summary>
    public static int GradientScratchLength(in Conv2dGeometry g) => new GradientLayout(g).ScratchLength;

    /// <summary>
    /// Images <see cref="AccumulateGradient"/> takes at once: small images' tiles side by side, so that each product
    /// is deep enough (one 7×7 image is 16 tiles: 64 → 64 channels image by image ran 0.64× the direct kernel's speed).
    /// </summary>
    public static int GradientImages(in Conv2dGeometry g) => new GradientLayout(g).Images;

    /// <summary>Whether an image and its dy hold no NaN or ±∞ (else it is left to the direct kernels).</summary>
    public static bool GradientInputsFinite(in Conv2dGeometry g, float* x, float* dy) =>
        Simd.AllFinite(x, (long)g.C * g.H * g.W) && Simd.AllFinite(dy, (long)g.K * g.P * g.Q);

    /// <summary>
    /// Mw (in <paramref name="scratch"/>) = (<paramref name="first"/> ? 0 : Mw) + the contribution of images
    /// images[0 … count) (indices from x and dy, images of C·H·W and K·P·Q floats), at most <see cref="GradientImages"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateGradient(PackedGemm gemm, in Conv2dGeometry g, float* x, float* dy, int* images, int count, bool first, float* scratch)
    {
        var layout = new GradientLayout(g);
        System.Diagnostics.Debug.Assert(count >= 1 && count <= layout.Images, "at most GradientImages images at once");
        float* staged = scratch, v = staged + layout.StagedLength, y = v + (Points * layout.VPoint), mw = y + (Points * layout.YPoint);
        long kc = (long)g.K * g.C, chw = (long)g.C * g.H * g.W, kpq = (long)g.K * g.P * g.Q;
        for (int ty0 = 0; ty0 < layout.TileRows; ty0 += layout.BlockRows)
        {
            // A block of one image's tile rows, or whole images side by side along each row of V and Y.
            int rows = Math.Min(layout.BlockRows, layout.TileRows - ty0), tiles = 0;
            for (int i = 0; i < count; i++, tiles += rows * layout.TileColumns)
            {
                TransformInput(g, layout.TileColumns, layout.StageStride, layout.Columns, layout.VPoint, x + (images[i] * chw), ty0, rows, tiles, staged, v);
                TransformGradient(g, layout, dy + (images[i] * kpq), ty0, rows, staged, y + tiles);
            }

            float beta = first && ty0 == 0 ? 0f : 1f;
            for (int p = 0; p < Points; p++)
            {
                // Mw[p] (K × C) += Y[p] (K × tiles) · V[p]ᵀ (tiles × C).
                gemm.Run(new GemmArgs(false, true, g.K, g.C, tiles, 1f, y + (p * layout.YPoint), layout.Columns,
                    v + (p * layout.VPoint), layout.Columns, beta, mw + (p * kc), g.C));
            }
        }
    }

    /// <summary>dw (K, C, 3, 3) += Gᵀ Mw[k, c] G, Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1], from the Mw in <paramref name="scratch"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddGradient(in Conv2dGeometry g, float* scratch, float* dw)
    {
        var layout = new GradientLayout(g);
        float* mw = scratch + layout.StagedLength + (Points * (layout.VPoint + layout.YPoint));
        long kc = (long)g.K * g.C;
        float* r = stackalloc float[12];
        for (long i = 0; i < kc; i++, dw += 9)
        {
            // Each row ξ of Mw times G (4 → 3 columns), then Gᵀ down the columns.
            for (int xi = 0; xi < 4; xi++)
            {
                float m0 = mw[((4 * xi) * kc) + i], m1 = mw[(((4 * xi) + 1) * kc) + i];
                float m2 = mw[(((4 * xi) + 2) * kc) + i], m3 = mw[(((4 * xi) + 3) * kc) + i];
                float half = 0.5f * (m1 + m2);
                r[3 * xi] = m0 + half;
                r[(3 * xi) + 1] = 0.5f * (m1 - m2);
                r[(3 * xi) + 2] = half + m3;
            }

            for (int s = 0; s < 3; s++)
            {
                float half = 0.5f * (r[3 + s] + r[6 + s]);
                dw[s] += r[s] + half;
                dw[3 + s] += 0.5f * (r[3 + s] - r[6 + s]);
                dw[6 + s] += half + r[9 + s];
            }
        }
    }

    /// <summary>
    /// Y = A dy Aᵀ for the block's tiles, eight at a time: per filter, dy rows 2·ty0 … 2·(ty0 + rows) − 1 staged as
    /// even and odd columns (zeros past P and Q), each tile's 2×2 gradient (g00, g01; g10, g11) combined along its
    /// columns, (g0, g0 + g1, g0 − g1, −g1), then the same down its rows: point (ξ, ν) at y + (4ξ + ν)·YPoint, filter
    /// k's row Columns floats long (lanes past a tile row as in <see cref="TransformInput"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransformGradient(in Conv2dGeometry g, in GradientLayout layout, float* dy, int ty0, int rows, float* staged, float* y)
    {
        int stride = layout.StageStride, odd = stride / 2;
        long point = layout.YPoint;
        for (int k = 0; k < g.K; k++)
        {
            float* plane = dy + ((long)k * g.P * g.Q);
            for (int i = 0; i < 2 * rows; i++)
            {
                StageRow(plane, (2 * ty0) + i, g.P, g.Q, 0, odd, staged + (i * stride));
            }

            float* filter = y + ((long)k * layout.Columns);
            for (int ty = 0; ty < rows; ty++)
            {
                float* top = staged + (2 * ty * stride);
                for (int tx0 = 0; tx0 < layout.TileColumns; tx0 += TileVector)
                {
                    float* e = top + tx0;
                    Vector256<float> a0 = Avx.LoadVector256(e), a1 = Avx.LoadVector256(e + odd);
                    Vector256<float> b0 = Avx.LoadVector256(e + stride), b1 = Avx.LoadVector256(e + stride + odd);
                    float* target = filter + (ty * layout.TileColumns) + tx0;
                    GradientColumn(target, point, a0, b0);
                    GradientColumn(target + point, point, Avx.Add(a0, a1), Avx.Add(b0, b1));
                    GradientColumn(target + (2 * point), point, Avx.Subtract(a0, a1), Avx.Subtract(b0, b1));
                    GradientColumn(target + (3 * point), point, Avx.Subtract(Vector256<float>.Zero, a1), Avx.Subtract(Vector256<float>.Zero, b1));
                }
            }
        }
    }

    /// <summary>Column ν of (dy Aᵀ) for the tile's two rows, c (row 0) and d (row 1), down the rows: (c, c + d, c − d, −d) at points ν, 4 + ν, 8 + ν, 12 + ν.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GradientColumn(float* target, long point, Vector256<float> c, Vector256<float> d)
    {
        Avx.Store(target, c);
        Avx.Store(target + (4 * point), Avx.Add(c, d));
        Avx.Store(target + (8 * point), Avx.Subtract(c, d));
        Avx.Store(target + (12 * point), Avx.Subtract(Vector256<float>.Zero, d));
    }

    /// <summary>
    /// One part's tiling for the filter gradient: tiles of 2×2 outputs; a large image in blocks of BlockRows tile rows
    /// (V and Y of a block within 1 MB), small ones whole, Images at a time side by side; rows of Columns floats (the
    /// tiles plus a vector's overhang, whole vectors). The scratch holds the staged rows of a block (input:
    /// 2·BlockRows + 2; dy uses the first 2·BlockRows), V and Y (16 matrices each, a cache line apart beyond their
    /// size), then Mw (16 matrices of K × C).
    /// </summary>
    private readonly struct GradientLayout
    {
        public readonly int TileRows, TileColumns, BlockRows, Images, Columns, StageStride, StagedLength, VPoint, YPoint, ScratchLength;

        public GradientLayout(in Conv2dGeometry g)
        {
            TileRows = (g.P + 1) / 2;
            TileColumns = (g.Q + 1) / 2;
            long bytesPerTileRow = (long)Points * (g.C + g.K) * TileColumns * sizeof(float);
            BlockRows = (int)Math.Clamp(GradientBlockBytes / bytesPerTileRow, 1, TileRows);
            Images = BlockRows < TileRows ? 1 : (int)Math.Clamp(GradientBlockBytes / (bytesPerTileRow * TileRows), 1, 64);
            Columns = RoundUp((Images * BlockRows * TileColumns) + Overhang(TileColumns), TileVector);
            StageStride = StagedRowLength(TileColumns);
            StagedLength = ((2 * BlockRows) + 2) * StageStride;
            VPoint = (g.C * Columns) + Skew;
            YPoint = (g.K * Columns) + Skew;
            ScratchLength = StagedLength + (Points * (VPoint + YPoint)) + (Points * g.K * g.C);
        }
    }
}
