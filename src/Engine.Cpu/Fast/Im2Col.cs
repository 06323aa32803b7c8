using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// colsᵀ (P·Q × C·R·S) of consecutive images, stacked along the depth (image i's rows at i·P·Q), produced straight
/// into the GEMM's packed panels (implicit im2col): the filter gradient dy · colsᵀ reads each image once instead of
/// writing colsᵀ and then copying it into panels, and small planes sum several images in one product.
/// </summary>
internal sealed unsafe class TransposedColumns : IPanelSource
{
    private int[] _offset = [], _r = [], _s = [];
    private Conv2dGeometry _g;
    private float* _x;

    /// <summary>Points the source at the images from <paramref name="x"/> on; the per-column tables are rebuilt only when the geometry changes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Set(in Conv2dGeometry g, float* x)
    {
        _x = x;
        if (g == _g)
        {
            return;
        }

        _g = g;
        int crs = g.C * g.R * g.S;
        if (_offset.Length < crs)
        {
            (_offset, _r, _s) = (new int[crs], new int[crs], new int[crs]);
        }

        for (int i = 0; i < crs; i++)
        {
            int c = i / (g.R * g.S), r = i / g.S % g.R, s = i % g.S;
            (_offset[i], _r[i], _s[i]) = ((c * g.H + (r * g.DilationH)) * g.W + (s * g.DilationW), r * g.DilationH, s * g.DilationW);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(int pc, int kc, int jc, int nc, int nr, float* destination)
    {
        var g = _g;
        int outW = g.Q, height = g.H, width = g.W, plane = g.P * g.Q;
        long imageLength = (long)g.C * g.H * g.W;
        fixed (int* offset = _offset, rs = _r, ss = _s)
        {
            for (int jr = 0; jr < nc; jr += nr)
            {
                int cols = Math.Min(nr, nc - jr);
                float* panel = destination + (long)jr * kc;
                int* off = offset + jc + jr, rr = rs + jc + jr, sc = ss + jc + jr;
                var gather = Gather.For(nr, cols, off, rr, sc);
                for (int k = 0; k < kc; k++)
                {
                    int depth = pc + k, image = depth / plane, pq = depth - (image * plane), p = pq / outW, q = pq - p * outW;
                    int h0 = p * g.StrideH - g.PadH, w0 = q * g.StrideW - g.PadW;
                    float* row = panel + (long)k * nr;
                    float* origin = _x + (image * imageLength) + (long)h0 * width + w0;
                    if (h0 >= 0 && w0 >= 0 && h0 + g.ExtentH <= height && w0 + g.ExtentW <= width)
                    {
                        if (gather.Active)
                        {
                            gather.Run(origin, row);
                            continue;
                        }

                        for (int j = 0; j < cols; j++)
                        {
                            row[j] = origin[off[j]];
                        }
                    }
                    else if (gather.Active)
                    {
                        gather.RunMasked(origin, row, h0, w0, height, width);
                    }
                    else
                    {
                        for (int j = 0; j < cols; j++)
                        {
                            int h = h0 + rr[j], w = w0 + sc[j];
                            row[j] = (uint)h < (uint)height && (uint)w < (uint)width ? origin[off[j]] : 0f;
                        }
                    }

                    for (int j = cols; j < nr; j++)
                    {
                        row[j] = 0f;
                    }
                }
            }
        }
    }
}

/// <summary>
/// cols of consecutive images side by side (C·R·S × images·P·Q, image i's columns at i·P·Q), produced straight into the
/// GEMM's packed panels (implicit im2col): the forward of a layer with small planes runs one product over several
/// images instead of a narrow one per image, whose packing and edge tiles had cost more than its multiplications.
/// </summary>
internal sealed unsafe class ImageColumns : IPanelSource
{
    private int[] _offset = [], _top = [], _left = [], _tapOffset = [], _tapRow = [], _tapColumn = [];
    private Conv2dGeometry _g;
    private int _images;
    private float* _x;

    /// <summary>Points the source at <paramref name="images"/> images from <paramref name="x"/> on; the tables are rebuilt only when the geometry changes.</summary>
    public void Set(in Conv2dGeometry g, int images, float* x)
    {
        _x = x;
        if (g == _g && images == _images)
        {
            return;
        }

        (_g, _images) = (g, images);
        int plane = g.P * g.Q, columns = images * plane, crs = g.C * g.R * g.S;
        if (_offset.Length < columns)
        {
            (_offset, _top, _left) = (new int[columns], new int[columns], new int[columns]);
        }

        if (_tapOffset.Length < crs)
        {
            (_tapOffset, _tapRow, _tapColumn) = (new int[crs], new int[crs], new int[crs]);
        }

        // Column j: output pixel (p, q) of image j / (P·Q), whose window's top-left input pixel is (top, left).
        for (int j = 0; j < columns; j++)
        {
            int image = j / plane, p = j % plane / g.Q, q = j % g.Q;
            (_top[j], _left[j]) = (p * g.StrideH - g.PadH, q * g.StrideW - g.PadW);
            _offset[j] = (image * g.C * g.H * g.W) + (_top[j] * g.W) + _left[j];
        }

        // Row (tap) i = (c, r, s): the input it reads lies tapOffset floats past a column's window.
        for (int i = 0; i < crs; i++)
        {
            int c = i / (g.R * g.S), r = i / g.S % g.R, s = i % g.S;
            (_tapRow[i], _tapColumn[i]) = (r * g.DilationH, s * g.DilationW);
            _tapOffset[i] = (c * g.H * g.W) + (_tapRow[i] * g.W) + _tapColumn[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(int pc, int kc, int jc, int nc, int nr, float* destination)
    {
        var g = _g;
        bool padded = g.PadH != 0 || g.PadW != 0; // unpadded, every tap of every window lies inside the image
        fixed (int* offset = _offset, tops = _top, lefts = _left, tapOffset = _tapOffset, tapRow = _tapRow, tapColumn = _tapColumn)
        {
            for (int jr = 0; jr < nc; jr += nr)
            {
                int cols = Math.Min(nr, nc - jr);
                float* panel = destination + (long)jr * kc;
                int* off = offset + jc + jr, top = tops + jc + jr, left = lefts + jc + jr;
                var gather = Gather.For(nr, cols, off, top, left);
                for (int k = 0; k < kc; k++)
                {
                    int tap = pc + k, h = tapRow[tap], w = tapColumn[tap];
                    float* origin = _x + tapOffset[tap], row = panel + (long)k * nr;
                    if (gather.Active)
                    {
                        if (padded)
                        {
                            gather.RunMasked(origin, row, h, w, g.H, g.W);
                        }
                        else
                        {
                            gather.Run(origin, row);
                        }

                        continue;
                    }

                    for (int j = 0; j < cols; j++)
                    {
                        row[j] = !padded || ((uint)(top[j] + h) < (uint)g.H && (uint)(left[j] + w) < (uint)g.W) ? origin[off[j]] : 0f;
                    }

                    for (int j = cols; j < nr; j++)
                    {
                        row[j] = 0f;
                    }
                }
            }
        }
    }
}

/// <summary>
/// Several images' matrices side by side: rows × images·L, image i's L columns at i·L, read from matrices (rows × L,
/// row-major) <c>imageStride</c> floats apart — dy of consecutive images for one backward-data product over them.
/// </summary>
internal sealed unsafe class ImageRows : IPanelSource
{
    private float* _first;
    private int _length;
    private long _imageStride;

    /// <summary>Points the source at the matrix of the first image: rows of <paramref name="length"/> floats, images <paramref name="imageStride"/> floats apart.</summary>
    public void Set(float* first, int length, long imageStride)
    {
        _first = first;
        (_length, _imageStride) = (length, imageStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Pack(int pc, int kc, int jc, int nc, int nr, float* destination)
    {
        for (int jr = 0; jr < nc; jr += nr)
        {
            int cols = Math.Min(nr, nc - jr);
            float* panel = destination + (long)jr * kc;
            for (int k = 0; k < kc; k++)
            {
                float* row = panel + (long)k * nr;
                // The panel's columns in runs that stay inside one image's row.
                for (int j = 0, run; j < cols; j += run)
                {
                    int column = jc + jr + j, image = column / _length, at = column - (image * _length);
                    run = Math.Min(cols - j, _length - at);
                    new ReadOnlySpan<float>(_first + (image * _imageStride) + ((long)(pc + k) * _length) + at, run).CopyTo(new Span<float>(row + j, run));
                }

                new Span<float>(row + cols, nr - cols).Clear();
            }
        }
    }
}

/// <summary>
/// A whole panel row of the pack as AVX2 gathers (8 lanes each, 2 or 4 of them for panels of 16 or 32 columns; .NET
/// exposes no 16-lane gather), the tables loaded once per panel; at the border the taps outside the image are masked
/// to zero. The scalar copy of scattered floats was most of a small plane's filter gradient (a 7×7 plane is half border).
/// </summary>
internal readonly unsafe struct Gather
{
    private readonly int _vectors;
    private readonly Vector256<int> _o0, _o1, _o2, _o3, _r0, _r1, _r2, _r3, _s0, _s1, _s2, _s3;

    private Gather(int vectors, int* offsets, int* rows, int* columns)
    {
        _vectors = vectors;
        (_o0, _r0, _s0) = (Vector256.Load(offsets), Vector256.Load(rows), Vector256.Load(columns));
        (_o1, _r1, _s1) = (Vector256.Load(offsets + 8), Vector256.Load(rows + 8), Vector256.Load(columns + 8));
        if (vectors == 4)
        {
            (_o2, _r2, _s2) = (Vector256.Load(offsets + 16), Vector256.Load(rows + 16), Vector256.Load(columns + 16));
            (_o3, _r3, _s3) = (Vector256.Load(offsets + 24), Vector256.Load(rows + 24), Vector256.Load(columns + 24));
        }
    }

    /// <summary>Gathers for full panels of 16 or 32 columns where AVX2 has them; none (scalar copies) otherwise.</summary>
    public static Gather For(int nr, int cols, int* offsets, int* rows, int* columns) =>
        cols == nr && nr is 16 or 32 && Avx2.IsSupported ? new Gather(nr / 8, offsets, rows, columns) : default;

    /// <summary>Whether there are gathers for this panel.</summary>
    public bool Active => _vectors != 0;

    /// <summary>row[j] = origin[offset j] for the panel's columns, every tap inside the image.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Run(float* origin, float* row)
    {
        Avx2.GatherVector256(origin, _o0, 4).Store(row);
        Avx2.GatherVector256(origin, _o1, 4).Store(row + 8);
        if (_vectors == 4)
        {
            Avx2.GatherVector256(origin, _o2, 4).Store(row + 16);
            Avx2.GatherVector256(origin, _o3, 4).Store(row + 24);
        }
    }

    /// <summary>The same at the border: row[j] = origin[offset j] where tap j's pixel (h0 + r_j, w0 + s_j) is inside height × width, else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void RunMasked(float* origin, float* row, int h0, int w0, int height, int width)
    {
        var (top, left, bottom, right) = (Vector256.Create(h0), Vector256.Create(w0), Vector256.Create(height - h0), Vector256.Create(width - w0));
        Masked(origin, row, _o0, _r0, _s0, top, left, bottom, right);
        Masked(origin, row + 8, _o1, _r1, _s1, top, left, bottom, right);
        if (_vectors == 4)
        {
            Masked(origin, row + 16, _o2, _r2, _s2, top, left, bottom, right);
            Masked(origin, row + 24, _o3, _r3, _s3, top, left, bottom, right);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Masked(float* origin, float* row, Vector256<int> offsets, Vector256<int> r, Vector256<int> s,
        Vector256<int> top, Vector256<int> left, Vector256<int> bottom, Vector256<int> right)
    {
        // Inside: 0 ≤ h0 + r < height and 0 ≤ w0 + s < width, i.e. −h0 ≤ r < height − h0 (likewise for s).
        var inside = Vector256.GreaterThanOrEqual(r, -top) & Vector256.LessThan(r, bottom) &
            Vector256.GreaterThanOrEqual(s, -left) & Vector256.LessThan(s, right);
        Avx2.GatherMaskVector256(Vector256<float>.Zero, origin, offsets, inside.AsSingle(), 4).Store(row);
    }
}

/// <summary>
/// The column matrix of one image: cols[(c·R + r)·S + s, p·Q + q] = x[c, p·Sh + r·Dh − Ph, q·Sw + s·Dw − Pw] (0 outside),
/// so that convolution is W (K × C·R·S) · cols (C·R·S × P·Q). <see cref="Accumulate"/> is its transpose (col2im).
/// </summary>
internal static unsafe class Im2Col
{
    /// <summary>x (C,H,W) of one image → cols (C·R·S, P·Q).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Expand(in Conv2dGeometry g, float* x, float* cols)
    {
        int p = g.P, q = g.Q;
        for (int c = 0; c < g.C; c++)
        {
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++)
                {
                    float* row = cols + (long)((c * g.R + r) * g.S + s) * p * q;
                    for (int op = 0; op < p; op++)
                    {
                        int h = op * g.StrideH + (r * g.DilationH) - g.PadH;
                        float* target = row + (long)op * q;
                        if (h < 0 || h >= g.H)
                        {
                            new Span<float>(target, q).Clear();
                            continue;
                        }

                        float* source = x + ((long)c * g.H + h) * g.W;
                        int offset = (s * g.DilationW) - g.PadW;
                        ValidRange(g.W, g.StrideW, offset, q, out int first, out int last);
                        for (int oq = 0; oq < first; oq++)
                        {
                            target[oq] = 0f;
                        }

                        if (g.StrideW == 1)
                        {
                            int count = last - first;
                            if (count > 0)
                            {
                                Simd.CopyFloats(source + first + offset, target + first, count);
                            }
                        }
                        else
                        {
                            for (int oq = first; oq < last; oq++)
                            {
                                target[oq] = source[oq * g.StrideW + offset];
                            }
                        }

                        for (int oq = Math.Max(first, last); oq < q; oq++)
                        {
                            target[oq] = 0f;
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// dx (C,H,W) of one image += the columns folded back: the transpose of <see cref="Expand"/>. Row t of the columns
    /// starts at cols + t·<paramref name="rowStride"/> (P·Q for one image's own matrix; more where several images'
    /// columns lie side by side).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(in Conv2dGeometry g, float* cols, float* dx, long rowStride)
    {
        int p = g.P, q = g.Q;
        for (int c = 0; c < g.C; c++)
        {
            for (int r = 0; r < g.R; r++)
            {
                for (int s = 0; s < g.S; s++)
                {
                    float* row = cols + ((c * g.R + r) * g.S + s) * rowStride;
                    for (int op = 0; op < p; op++)
                    {
                        int h = op * g.StrideH + (r * g.DilationH) - g.PadH;
                        if (h < 0 || h >= g.H)
                        {
                            continue;
                        }

                        float* source = row + (long)op * q;
                        int offset = (s * g.DilationW) - g.PadW;
                        float* target = dx + ((long)c * g.H + h) * g.W + offset;
                        ValidRange(g.W, g.StrideW, offset, q, out int first, out int last);
                        for (int oq = first; oq < last; oq++)
                        {
                            target[oq * g.StrideW] += source[oq];
                        }
                    }
                }
            }
        }
    }

    /// <summary>The output columns [first, last) whose input column oq·stride + offset lies inside [0, width).</summary>
    private static void ValidRange(int width, int stride, int offset, int outputs, out int first, out int last)
    {
        first = offset >= 0 ? 0 : ((-offset - 1) / stride) + 1; // ⌈−offset / stride⌉ without −offset + stride − 1, which a huge stride wraps
        last = Math.Min(outputs, (width - 1 - offset) / stride + 1);
        if (width - 1 - offset < 0)
        {
            last = 0;
        }

        first = Math.Min(first, outputs);
    }
}
