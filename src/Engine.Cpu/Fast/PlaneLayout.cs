using System.Runtime.CompilerServices;

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
}
