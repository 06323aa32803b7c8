using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Kernels;

/// <summary>
/// One depthwise pass laid out in tiles: output plane o (of <see cref="OutChannels"/> an image) sums
/// <see cref="Terms"/> input planes, term j being plane (o·Terms + j) / <see cref="FiltersPerInput"/>, each correlated
/// with its own R×S filter (w, shaped (OutChannels, Terms, R, S)). The input is read as if spread by
/// (<see cref="SpreadH"/>, <see cref="SpreadW"/>) — Spread − 1 zeros between its rows and columns — and padded by
/// (<see cref="PadH"/>, <see cref="PadW"/>) zeros, which makes one kernel both passes of a depthwise layer (K = m·C,
/// G = C, m the channel multiplier):
/// <list type="bullet">
/// <item>forward: x → y, Terms 1, FiltersPerInput m, spread 1, the layer's stride, padding and dilation;</item>
/// <item>backward data: dy → dx with the rotated kernel (C, m, R, S), Terms m, FiltersPerInput 1, spread = the
/// layer's stride, stride 1, padding E − 1 − Pad (E = Dilation·(R − 1) + 1, the span of the dilated kernel), the
/// layer's dilation: dx[h] = Σ_r dy_spread[h − (E − 1 − Pad) + r·D] · w[R − 1 − r] (docs/02-convolution.md).</item>
/// </list>
/// A group computes a tile of <see cref="TileRows"/> × <see cref="TileW"/> outputs of each of <see cref="Planes"/>
/// planes from an <see cref="InRows"/> × <see cref="InCols"/> region of each input plane staged in shared memory.
/// </summary>
internal readonly record struct DepthwiseGeometry(
    int N, int InChannels, int InH, int InW, int SpreadH, int SpreadW,
    int OutChannels, int OutH, int OutW, int R, int S,
    int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW,
    int Terms, int FiltersPerInput,
    int TileW, int ThreadRows, int Planes, int InRows, int InCols)
{
    /// <summary>Output rows of a tile: each thread computes <see cref="DepthwiseKernels.RowsPerThread"/> of a column.</summary>
    public int TileRows => ThreadRows * DepthwiseKernels.RowsPerThread;

    /// <summary>Tiles down one output plane.</summary>
    public int TilesH => (OutH + TileRows - 1) / TileRows;

    /// <summary>Tiles across one output plane.</summary>
    public int TilesW => (OutW + TileW - 1) / TileW;

    /// <summary>Output planes, N · OutChannels.</summary>
    public int PlaneCount => N * OutChannels;

    /// <summary>Floats of one staged input region.</summary>
    public int RegionSize => InRows * InCols;

    /// <summary>Where term <paramref name="term"/> of output plane <paramref name="outPlane"/> starts in the input.</summary>
    public int InputPlaneStart(int outPlane, int term)
    {
        int n = outPlane / OutChannels, o = outPlane - (n * OutChannels);
        return ((n * InChannels) + (((o * Terms) + term) / FiltersPerInput)) * InH * InW;
    }
}

/// <summary>
/// Depthwise convolution (a filter per input plane: groups = C, K = m·C), a tile of outputs per group from input
/// staged in shared memory: forward and backward data by <see cref="Correlate{TF}"/> (see
/// <see cref="DepthwiseGeometry"/>), the filter and bias gradient by <see cref="FilterGradient"/> in chunks that
/// <see cref="ReductionKernels.SumChunks"/> adds in order. Every sum has a fixed order, so results are bitwise
/// reproducible on a device (the filter gradient's chunks follow its multiprocessors, so two GPU models may differ
/// in the last bits). The generic direct kernels (<see cref="ConvolutionKernels"/>) index every tap through global memory
/// with integer divisions per output; here a group reads each input element once into shared memory and each thread
/// sums four outputs down a column from it. Padding is staged as zeros and multiplied like any input (so a padded
/// layer whose weight is ±∞ gives NaN at the border, as the CPU backend's depthwise route does; docs/02-convolution.md).
/// </summary>
internal static class DepthwiseKernels
{
    /// <summary>Outputs each thread of <see cref="Correlate{TF}"/> computes down its column, <see cref="DepthwiseGeometry.ThreadRows"/> apart.</summary>
    public const int RowsPerThread = 4;

    /// <summary>The most floats a group stages (32 KB of the 48 KB a CUDA group may have, so that several groups share a multiprocessor).</summary>
    public const int MaxSharedFloats = 8192;

    /// <summary>
    /// y[plane, op, oq] = f(b[o] + Σ_{j,r,s} in_j[op·Sh + r·Dh − Ph, oq·Sw + s·Dw − Pw] · w[o, j, r, s]) for a
    /// <see cref="DepthwiseGeometry.TileRows"/> × <see cref="DepthwiseGeometry.TileW"/> tile of
    /// <see cref="DepthwiseGeometry.Planes"/> output planes per group; thread (plane, ty, tx) sums rows ty, ty + ThreadRows, …
    /// of column tx. Groups: plane blocks × TilesH × TilesW, tile columns fastest.
    /// </summary>
    public static void Correlate<TF>(ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> y,
        DepthwiseGeometry d, Epilogue<TF> epilogue)
        where TF : struct, IActivationFunction
    {
        int group = Grid.IdxX, thread = Group.IdxX;
        int tilesW = d.TilesW, tilesH = d.TilesH;
        int tileCol = group % tilesW, tileRow = group / tilesW % tilesH, firstPlane = group / (tilesW * tilesH) * d.Planes;
        int tx = thread % d.TileW, ty = thread / d.TileW % d.ThreadRows, planeInGroup = thread / (d.TileW * d.ThreadRows);
        int outPlane = firstPlane + planeInGroup;
        int o = outPlane % d.OutChannels;
        int top = tileRow * d.TileRows, left = tileCol * d.TileW;

        var shared = SharedMemory.GetDynamic<float>();
        int rowStep = d.ThreadRows * d.StrideH * d.InCols; // between a thread's outputs in the stage
        int firstTap = planeInGroup * d.RegionSize + (ty * d.StrideH * d.InCols) + (tx * d.StrideW); // in the stage
        float sum0 = 0f, sum1 = 0f, sum2 = 0f, sum3 = 0f;
        for (int term = 0; term < d.Terms; term++)
        {
            if (term > 0)
            {
                Group.Barrier(); // the last term's stage is still being read
            }

            Stage(x, shared, d, firstPlane, term, (top * d.StrideH) - d.PadH, (left * d.StrideW) - d.PadW);
            Group.Barrier();
            if (outPlane < d.PlaneCount)
            {
                int filter = ((o * d.Terms) + term) * d.R * d.S;
                for (int r = 0; r < d.R; r++)
                {
                    for (int s = 0; s < d.S; s++)
                    {
                        float weight = w[filter + (r * d.S) + s];
                        int at = firstTap + (r * d.DilationH * d.InCols) + (s * d.DilationW);
                        sum0 += shared[at] * weight;
                        sum1 += shared[at + rowStep] * weight;
                        sum2 += shared[at + (2 * rowStep)] * weight;
                        sum3 += shared[at + (3 * rowStep)] * weight;
                    }
                }
            }
        }

        int q = left + tx;
        if (outPlane >= d.PlaneCount || q >= d.OutW)
        {
            return;
        }

        int p = top + ty, plane = outPlane * d.OutH;
        Store(y, d, plane, p, q, sum0, epilogue, b, o);
        Store(y, d, plane, p + d.ThreadRows, q, sum1, epilogue, b, o);
        Store(y, d, plane, p + (2 * d.ThreadRows), q, sum2, epilogue, b, o);
        Store(y, d, plane, p + (3 * d.ThreadRows), q, sum3, epilogue, b, o);
    }

    private static void Store<TF>(ArrayView<float> y, DepthwiseGeometry d, int plane, int p, int q, float sum,
        Epilogue<TF> epilogue, ArrayView<float> b, int o)
        where TF : struct, IActivationFunction
    {
        if (p < d.OutH)
        {
            y[((plane + p) * d.OutW) + q] = epilogue.Apply(sum, b, o);
        }
    }

    /// <summary>
    /// Copies term <paramref name="term"/>'s input region of each of the group's planes into the stage: InRows × InCols
    /// values from row <paramref name="regionTop"/>, column <paramref name="regionLeft"/> of the spread, padded input (zeros
    /// outside it, between spread rows and columns, and for planes past the last). Thread t copies elements t,
    /// t + threads, … of the stage, so that every lane works and reads run along rows; its (plane, row, column) steps
    /// without a division.
    /// </summary>
    private static void Stage(ArrayView<float> x, ArrayView<float> shared, DepthwiseGeometry d, int firstPlane, int term,
        int regionTop, int regionLeft)
    {
        int threads = Group.DimX, region = d.RegionSize, cols = d.InCols;
        int e = Group.IdxX, planeInGroup = e / region, row = (e - (planeInGroup * region)) / cols;
        int col = e - (planeInGroup * region) - (row * cols);
        int stepPlanes = threads / region, stepRows = (threads - (stepPlanes * region)) / cols;
        int stepCols = threads - (stepPlanes * region) - (stepRows * cols);
        int startOf = -1, start = 0;
        for (; e < d.Planes * region; e += threads)
        {
            int outPlane = firstPlane + planeInGroup;
            float value = 0f;
            if (outPlane < d.PlaneCount)
            {
                int inRow = SpreadIndex(regionTop + row, d.SpreadH, d.InH), inCol = SpreadIndex(regionLeft + col, d.SpreadW, d.InW);
                if (inRow >= 0 && inCol >= 0)
                {
                    if (startOf != outPlane)
                    {
                        (startOf, start) = (outPlane, d.InputPlaneStart(outPlane, term));
                    }

                    value = x[start + (inRow * d.InW) + inCol];
                }
            }

            shared[e] = value;
            col += stepCols;
            row += stepRows;
            planeInGroup += stepPlanes;
            if (col >= cols)
            {
                col -= cols;
                row++;
            }

            if (row >= d.InRows)
            {
                row -= d.InRows;
                planeInGroup++;
            }
        }
    }

    /// <summary>The input index at <paramref name="spread"/> position <paramref name="at"/>, or −1 where the spread input has a zero there (padding, or between spread elements).</summary>
    private static int SpreadIndex(int at, int spread, int size)
    {
        if (at < 0)
        {
            return -1;
        }

        if (spread == 1)
        {
            return at < size ? at : -1;
        }

        int index = at / spread;
        return index * spread == at && index < size ? index : -1;
    }

    /// <summary>
    /// One chunk of a depthwise layer's filter (and bias) gradient: group (chunk, k) sums, for each of k's R·S taps
    /// (and its bias when <paramref name="withBias"/> is 1), Σ x[n, c, p·Sh + r·Dh − Ph, q·Sw + s·Dw − Pw] · dy[n, k, p, q]
    /// over the tiles chunk·tilesPerChunk … of the N · TilesH · TilesW tiles of channel k (c = k / m). <paramref name="d"/>
    /// is the forward pass's geometry with one plane a group. Per tile, x's region and dy's tile are staged; the
    /// group's threads are split into lanes = threads / taps per tap, lane l adding positions l, l + lanes, … of the
    /// tile into its own shared accumulator; at the end each tap's lanes are added in order. partial[chunk, i] (i as
    /// in <see cref="ReductionKernels.SumChunks"/>: k·R·S + tap for a weight, K·R·S + k for a bias) holds the sum.
    /// <paramref name="withBias"/> is 1 or 0 (an int, as the epilogues' flags).
    /// </summary>
    public static void FilterGradient(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partial, DepthwiseGeometry d,
        int tilesPerChunk, int withBias)
    {
        int k = Grid.IdxX % d.OutChannels, chunk = Grid.IdxX / d.OutChannels;
        int threads = Group.DimX, thread = Group.IdxX;
        int rs = d.R * d.S, taps = rs + withBias;
        int lanes = TapLanes(taps, threads), slots = taps * lanes;
        int tileRows = d.TileRows, tileW = d.TileW, tilesW = d.TilesW, tilesPerImage = d.TilesH * tilesW;
        var shared = SharedMemory.GetDynamic<float>();
        int dyStage = d.RegionSize, accumulators = dyStage + (tileRows * tileW);
        for (int slot = thread; slot < slots; slot += threads)
        {
            shared[accumulators + slot] = 0f;
        }

        int firstTile = chunk * tilesPerChunk, tiles = d.N * tilesPerImage;
        int lastTile = firstTile + tilesPerChunk < tiles ? firstTile + tilesPerChunk : tiles;
        for (int tile = firstTile; tile < lastTile; tile++)
        {
            int n = tile / tilesPerImage, inImage = tile - (n * tilesPerImage);
            int top = inImage / tilesW * tileRows, left = (inImage % tilesW) * tileW;
            int outPlane = (n * d.OutChannels) + k;
            Group.Barrier(); // the last tile's stage is still being read
            Stage(x, shared, d, outPlane, 0, (top * d.StrideH) - d.PadH, (left * d.StrideW) - d.PadW);
            int dyPlane = outPlane * d.OutH * d.OutW;
            for (int e = thread; e < tileRows * tileW; e += threads)
            {
                int row = e / tileW, col = e - (row * tileW);
                bool exists = top + row < d.OutH && left + col < d.OutW;
                shared[dyStage + e] = exists ? dy[dyPlane + ((top + row) * d.OutW) + left + col] : 0f;
            }

            Group.Barrier();
            int rows = d.OutH - top < tileRows ? d.OutH - top : tileRows;
            int cols = d.OutW - left < tileW ? d.OutW - left : tileW;
            for (int slot = thread; slot < slots; slot += threads)
            {
                int tap = slot / lanes, lane = slot - (tap * lanes);
                int r = tap / d.S, s = tap - (r * d.S);
                int tapOffset = (r * d.DilationH * d.InCols) + (s * d.DilationW);

                // Positions lane, lane + lanes, … of the tile's rows × cols valid outputs, stepped without dividing.
                int row = lane / cols, col = lane - (row * cols), stepRows = lanes / cols, stepCols = lanes - (stepRows * cols);
                float sum = 0f;
                while (row < rows)
                {
                    float g = shared[dyStage + (row * tileW) + col];
                    sum += tap < rs ? shared[tapOffset + (row * d.StrideH * d.InCols) + (col * d.StrideW)] * g : g;
                    col += stepCols;
                    row += stepRows;
                    if (col >= cols)
                    {
                        col -= cols;
                        row++;
                    }
                }

                shared[accumulators + slot] += sum;
            }
        }

        Group.Barrier();
        int outputs = (d.OutChannels * rs) + (withBias * d.OutChannels);
        for (int tap = thread; tap < taps; tap += threads)
        {
            float total = 0f;
            for (int lane = 0; lane < lanes; lane++)
            {
                total += shared[accumulators + (tap * lanes) + lane];
            }

            int i = tap < rs ? (k * rs) + tap : (d.OutChannels * rs) + k;
            partial[((long)chunk * outputs) + i] = total;
        }
    }

    /// <summary>
    /// The tiling of a depthwise layer's <paramref name="g"/> forward pass (or its backward data when
    /// <paramref name="backwardData"/>) for groups of at most <paramref name="groupThreads"/> threads, or null when its
    /// stage would not fit <see cref="MaxSharedFloats"/> (very large kernels or strides: the direct kernels take those).
    /// Tiles are as wide as the output (a power of two, at most 32 and the group) and a few threads tall; small planes
    /// share a group.
    /// </summary>
    public static DepthwiseGeometry? Plan(Conv2dGeometry g, bool backwardData, int groupThreads)
    {
        int multiplier = g.GroupFilters;
        var d = backwardData
            ? new DepthwiseGeometry(N: g.N, InChannels: g.K, InH: g.P, InW: g.Q, SpreadH: g.StrideH, SpreadW: g.StrideW,
                OutChannels: g.C, OutH: g.H, OutW: g.W, R: g.R, S: g.S, StrideH: 1, StrideW: 1,
                PadH: g.ExtentH - 1 - g.PadH, PadW: g.ExtentW - 1 - g.PadW, DilationH: g.DilationH, DilationW: g.DilationW,
                Terms: multiplier, FiltersPerInput: 1, TileW: 0, ThreadRows: 0, Planes: 0, InRows: 0, InCols: 0)
            : new DepthwiseGeometry(N: g.N, InChannels: g.C, InH: g.H, InW: g.W, SpreadH: 1, SpreadW: 1,
                OutChannels: g.K, OutH: g.P, OutW: g.Q, R: g.R, S: g.S, StrideH: g.StrideH, StrideW: g.StrideW,
                PadH: g.PadH, PadW: g.PadW, DilationH: g.DilationH, DilationW: g.DilationW,
                Terms: 1, FiltersPerInput: multiplier, TileW: 0, ThreadRows: 0, Planes: 0, InRows: 0, InCols: 0);
        int tileW = Math.Min(Math.Min(32, groupThreads), PowerOfTwoAtLeast(d.OutW));
        int threadRows = Math.Min(groupThreads / tileW, PowerOfTwoAtLeast((d.OutH + RowsPerThread - 1) / RowsPerThread));
        int planes = Math.Min(Math.Max(1, groupThreads / (tileW * threadRows)), Math.Max(1, d.PlaneCount));
        while (true)
        {
            var tiled = Tiled(d, tileW, threadRows, planes);
            if ((long)planes * tiled.RegionSize <= MaxSharedFloats)
            {
                return tiled;
            }

            if (planes > 1)
            {
                planes /= 2;
            }
            else if (threadRows > 1)
            {
                threadRows /= 2;
            }
            else if (tileW > 1)
            {
                tileW /= 2;
            }
            else
            {
                return null;
            }
        }
    }

    /// <summary>
    /// The filter gradient's tiling: <see cref="Plan"/>'s forward tiles, one plane a group of
    /// <paramref name="groupThreads"/> threads, or null when x's region, dy's tile and the tap accumulators would not
    /// fit <see cref="MaxSharedFloats"/>.
    /// </summary>
    public static DepthwiseGeometry? PlanFilterGradient(Conv2dGeometry g, int groupThreads, bool withBias)
    {
        if (Plan(g, backwardData: false, groupThreads) is not { } d)
        {
            return null;
        }

        var one = d with { Planes = 1 };
        while (FilterGradientSharedFloats(one, groupThreads, withBias) > MaxSharedFloats)
        {
            if (one.ThreadRows > 1)
            {
                one = Tiled(one, one.TileW, one.ThreadRows / 2, 1);
            }
            else if (one.TileW > 1)
            {
                one = Tiled(one, one.TileW / 2, 1, 1);
            }
            else
            {
                return null;
            }
        }

        return one;
    }

    /// <summary>The launch of <see cref="Correlate{TF}"/>: a group per tile of <see cref="DepthwiseGeometry.Planes"/> planes.</summary>
    public static KernelConfig Config(DepthwiseGeometry d)
    {
        long groups = ((long)d.PlaneCount + d.Planes - 1) / d.Planes * d.TilesH * d.TilesW;
        return new KernelConfig((int)groups, d.TileW * d.ThreadRows * d.Planes, SharedMemoryConfig.RequestDynamic<float>(d.Planes * d.RegionSize));
    }

    /// <summary>The launch of <see cref="FilterGradient"/>: a group of <paramref name="groupThreads"/> per (chunk, channel).</summary>
    public static KernelConfig FilterGradientConfig(DepthwiseGeometry d, int chunks, int groupThreads, bool withBias)
    {
        return new KernelConfig(chunks * d.OutChannels, groupThreads,
            SharedMemoryConfig.RequestDynamic<float>((int)FilterGradientSharedFloats(d, groupThreads, withBias)));
    }

    /// <summary>Threads of a <see cref="FilterGradient"/> group that share each of its taps (one when taps outnumber threads).</summary>
    public static int TapLanes(int taps, int threads) => threads / taps > 0 ? threads / taps : 1;

    /// <summary><see cref="FilterGradient"/>'s stage: x's region, dy's tile and an accumulator per (tap, lane).</summary>
    private static long FilterGradientSharedFloats(DepthwiseGeometry d, int threads, bool withBias)
    {
        int taps = (d.R * d.S) + (withBias ? 1 : 0);
        return (long)d.RegionSize + (d.TileRows * d.TileW) + ((long)taps * TapLanes(taps, threads));
    }

    /// <summary>
    /// <paramref name="d"/> with the tile shape given and the input region it reads (a side past
    /// <see cref="MaxSharedFloats"/> counted as just past it, so that absurd strides or dilations fail the size test
    /// rather than overflow it).
    /// </summary>
    private static DepthwiseGeometry Tiled(DepthwiseGeometry d, int tileW, int threadRows, int planes) => d with
    {
        TileW = tileW,
        ThreadRows = threadRows,
        Planes = planes,
        InRows = RegionSide(((threadRows * RowsPerThread) - 1L) * d.StrideH + ((long)d.DilationH * (d.R - 1)) + 1),
        InCols = RegionSide(((tileW - 1L) * d.StrideW) + ((long)d.DilationW * (d.S - 1)) + 1),
    };

    private static int RegionSide(long floats) => (int)Math.Min(floats, MaxSharedFloats + 1);

    private static int PowerOfTwoAtLeast(int value)
    {
        int power = 1;
        while (power < value && power < 1 << 30)
        {
            power *= 2;
        }

        return power;
    }
}
