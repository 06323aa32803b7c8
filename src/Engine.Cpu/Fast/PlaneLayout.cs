using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace GpuCnn.Cpu.Fast;

/// <summary>
/// A plane laid out in scratch for window operations (depthwise convolution, pooling) so that every tap of a vector of
/// consecutive outputs is one contiguous load: <see cref="Phases"/> column phases (phase k holds full columns k,
/// k + Phases, …: a tap s columns in, at column stride Phases, reads phase s mod Phases from column q + ⌊s / Phases⌋
/// on), each <see cref="Rows"/> rows of <see cref="Width"/> floats, zeros where nothing was written.
/// </summary>
internal readonly record struct PlaneLayout(int Phases, int Rows, int Width, int FullWidth)
{
    /// <summary>Floats the layout takes.</summary>
    public int Length => Phases * Rows * Width;

    /// <summary>An H×W plane with its zero padding, split into <paramref name="strideW"/> column phases.</summary>
    public static PlaneLayout Padded(int h, int w, int padH, int padW, int strideW)
    {
        long rows = h + (2L * padH), fullWidth = w + (2L * padW), length = strideW * rows * ((fullWidth + strideW - 1) / strideW);
        if (length > int.MaxValue / 2)
        {
            throw new NotSupportedException(
                $"A padded {rows}×{fullWidth} plane ({h}×{w} with padding {padH}×{padW}) is too large for the CPU backend's scratch.");
        }

        return new PlaneLayout(strideW, (int)rows, (int)((fullWidth + strideW - 1) / strideW), (int)fullWidth);
    }

    /// <summary>Floats from the start of the layout to full column <paramref name="column"/>'s phase, row 0, at its column.</summary>
    public int ColumnOffset(int column) => ((column % Phases) * Rows * Width) + (column / Phases);

    /// <summary>
    /// The plane cleared, then source (rows × columns) written to full row top + i·rowStep, column left + j·columnStep
    /// (column c in phase c mod Phases at c / Phases); values landing outside it are dropped (a convolution's dy past a
    /// padding wider than the kernel reaches belongs to no input).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public unsafe void Spread(float* source, int rows, int columns, int top, int left, int rowStep, int columnStep, float* plane)
    {
        new Span<float>(plane, Length).Clear();
        long phaseLength = (long)Rows * Width;
        for (int i = 0; i < rows; i++)
        {
            int row = top + (i * rowStep);
            if ((uint)row >= (uint)Rows)
            {
                continue;
            }

            float* from = source + ((long)i * columns);
            if (Phases == 1 && columnStep == 1 && left >= 0 && left + columns <= FullWidth)
            {
                Simd.CopyFloats(from, plane + ((long)row * Width) + left, columns);
                continue;
            }

            if (columnStep == 1 && Phases == 2 && left >= 0 && left + columns <= FullWidth)
            {
                SplitPairs(from, columns, left, plane + ((long)row * Width), plane + phaseLength + ((long)row * Width));
                continue;
            }

            if (columnStep == 1)
            {
                // Phase k's column t is full column k + t·Phases, source column j = k + t·Phases − left: the columns
                // t with 0 ≤ j < columns, copied without a test each (the rest stay zero).
                for (int k = 0; k < Phases; k++)
                {
                    float* target = plane + (k * phaseLength) + ((long)row * Width);
                    int first = Math.Max(0, (left - k + Phases - 1) / Phases), last = columns - 1 + left - k;
                    int end = last < 0 ? 0 : Math.Min(Width, (last / Phases) + 1);
                    for (int t = first, j = k + (first * Phases) - left; t < end; t++, j += Phases)
                    {
                        target[t] = from[j];
                    }
                }

                continue;
            }

            if (Phases == 1)
            {
                // A spread row (backward data at a stride): source column j to column left + j·columnStep, the j in
                // range found once rather than a test and a division each.
                float* target = plane + ((long)row * Width);
                int first = left >= 0 ? 0 : (-left + columnStep - 1) / columnStep;
                int end = FullWidth - 1 - left < 0 ? 0 : Math.Min(columns, ((FullWidth - 1 - left) / columnStep) + 1);
                for (int j = first, column = left + (first * columnStep); j < end; j++, column += columnStep)
                {
                    target[column] = from[j];
                }

                continue;
            }

            for (int j = 0; j < columns; j++)
            {
                int column = left + (j * columnStep);
                if ((uint)column < (uint)FullWidth)
                {
                    plane[((column % Phases) * phaseLength) + ((long)row * Width) + (column / Phases)] = from[j];
                }
            }
        }
    }

    /// <summary>
    /// One source row into two column phases (stride 2): source column j is full column left + j, which goes to phase
    /// (left + j) mod 2 at (left + j) / 2 — eight columns at a time split into their even and odd ones by two shuffles.
    /// </summary>
    private static unsafe void SplitPairs(float* from, int columns, int left, float* phase0, float* phase1)
    {
        int j = 0;
        if ((left & 1) != 0 && columns > 0)
        {
            phase1[left >> 1] = from[0]; // from here on left + j is even
            j = 1;
        }

        // shufps directly: the same split through Pool2x2.Deinterleave's tuple ran the stride-2 depthwise forward 1.5×
        // its time (three rounds of three).
        if (Sse.IsSupported)
        {
            for (; j + 8 <= columns; j += 8)
            {
                var low = Sse.LoadVector128(from + j);
                var high = Sse.LoadVector128(from + j + 4);
                int at = (left + j) >> 1;
                Sse.Store(phase0 + at, Sse.Shuffle(low, high, 0b10_00_10_00)); // columns 0, 2, 4, 6
                Sse.Store(phase1 + at, Sse.Shuffle(low, high, 0b11_01_11_01)); // columns 1, 3, 5, 7
            }
        }

        for (; j < columns; j++)
        {
            int column = left + j;
            ((column & 1) == 0 ? phase0 : phase1)[column >> 1] = from[j];
        }
    }
}
