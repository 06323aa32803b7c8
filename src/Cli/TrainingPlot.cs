using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using GpuCnn.IO;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>
/// A PNG of loss (left) and accuracy (right) per epoch, train in blue and test in orange, drawn without any
/// graphics dependency: a small raster, a 3×5 pixel font, and a PNG encoder over the BCL's zlib.
/// </summary>
internal static class TrainingPlot
{
    private const int Width = 900, Height = 420, Scale = 2;
    private static readonly uint Train = 0x1F77B4, Test = 0xFF7F0E, Ink = 0x333333, Grid = 0xDDDDDD;

    public static void Write(string path, IReadOnlyList<EpochMetrics> history)
    {
        var canvas = new Canvas(Width, Height);
        var epochs = history.Select(h => (double)h.Epoch).ToArray();
        Panel(canvas, 20, "LOSS", epochs, history.Select(h => h.TrainLoss).ToArray(),
            history.Select(h => h.TestLoss ?? double.NaN).ToArray(), percent: false);
        Panel(canvas, Width / 2 + 10, "ACCURACY %", epochs, history.Select(h => h.TrainAccuracy * 100).ToArray(),
            history.Select(h => (h.TestAccuracy ?? double.NaN) * 100).ToArray(), percent: true);
        canvas.Fill(Width / 2 - 120, Height - 22, 10, 10, Train);
        canvas.Text(Width / 2 - 105, Height - 22, "TRAIN", Ink);
        canvas.Fill(Width / 2 - 40, Height - 22, 10, 10, Test);
        canvas.Text(Width / 2 - 25, Height - 22, "TEST", Ink);
        FileUtil.WriteAtomically(path, canvas.WritePng);
    }

    private static void Panel(Canvas canvas, int left, string title, double[] x, double[] train, double[] test, bool percent)
    {
        int top = 40, width = Width / 2 - 90, height = Height - 110, x0 = left + 60;
        canvas.Text(x0 + width / 2 - title.Length * 4 * Scale / 2, 12, title, Ink);
        var values = train.Concat(test).Where(double.IsFinite).DefaultIfEmpty(0).ToArray();
        double low = values.Min(), high = values.Max();
        if (high - low < 1e-9)
        {
            (low, high) = (low - 0.5, high + 0.5);
        }

        double pad = (high - low) * 0.08;
        bool nonNegative = values.Min() >= 0;
        (low, high) = (nonNegative ? Math.Max(0, low - pad) : low - pad, percent ? Math.Min(100, high + pad) : high + pad);
        double xLow = x.Length > 0 ? x.Min() : 0, xHigh = x.Length > 1 ? x.Max() : xLow + 1;
        int Px(double v) => x0 + (int)Math.Round((v - xLow) / (xHigh - xLow) * width);
        int Py(double v) => top + height - (int)Math.Round((v - low) / (high - low) * height);

        for (int i = 0; i <= 4; i++)
        {
            double v = low + (high - low) * i / 4;
            int y = Py(v);
            canvas.Line(x0, y, x0 + width, y, Grid);
            canvas.Text(left, y - 5, v.ToString(percent ? "F1" : "F3", CultureInfo.InvariantCulture), Ink);
        }

        canvas.Line(x0, top, x0, top + height, Ink);
        canvas.Line(x0, top + height, x0 + width, top + height, Ink);
        foreach (double epoch in x)
        {
            canvas.Line(Px(epoch), top + height, Px(epoch), top + height + 4, Ink);
            canvas.Text(Px(epoch) - 3, top + height + 8, epoch.ToString(CultureInfo.InvariantCulture), Ink);
        }

        canvas.Text(x0 + width / 2 - 20, top + height + 24, "EPOCH", Ink);
        foreach (var (series, color) in (ValueTuple<double[], uint>[])[(train, Train), (test, Test)])
        {
            for (int i = 0; i < series.Length; i++)
            {
                if (!double.IsFinite(series[i]))
                {
                    continue;
                }

                canvas.Fill(Px(x[i]) - 3, Py(series[i]) - 3, 7, 7, color);
                if (i > 0 && double.IsFinite(series[i - 1]))
                {
                    canvas.Line(Px(x[i - 1]), Py(series[i - 1]), Px(x[i]), Py(series[i]), color, thickness: 2);
                }
            }
        }
    }

    /// <summary>An RGB raster with lines, boxes and 3×5 text.</summary>
    private sealed class Canvas(int width, int height)
    {
        // 3×5 glyphs, rows top to bottom, 3 bits each (4 = left pixel).
        private static readonly Dictionary<char, int[]> Font = new()
        {
            ['0'] = [7, 5, 5, 5, 7], ['1'] = [2, 6, 2, 2, 7], ['2'] = [7, 1, 7, 4, 7], ['3'] = [7, 1, 7, 1, 7],
            ['4'] = [5, 5, 7, 1, 1], ['5'] = [7, 4, 7, 1, 7], ['6'] = [7, 4, 7, 5, 7], ['7'] = [7, 1, 1, 1, 1],
            ['8'] = [7, 5, 7, 5, 7], ['9'] = [7, 5, 7, 1, 7], ['.'] = [0, 0, 0, 0, 2], ['-'] = [0, 0, 7, 0, 0],
            ['%'] = [5, 1, 2, 4, 5], [' '] = [0, 0, 0, 0, 0], ['A'] = [2, 5, 7, 5, 5], ['C'] = [7, 4, 4, 4, 7],
            ['E'] = [7, 4, 6, 4, 7], ['H'] = [5, 5, 7, 5, 5], ['I'] = [7, 2, 2, 2, 7], ['L'] = [4, 4, 4, 4, 7],
            ['N'] = [6, 5, 5, 5, 5], ['O'] = [7, 5, 5, 5, 7], ['P'] = [7, 5, 7, 4, 4], ['R'] = [6, 5, 6, 5, 5],
            ['S'] = [7, 4, 7, 1, 7], ['T'] = [7, 2, 2, 2, 2], ['U'] = [5, 5, 5, 5, 7], ['Y'] = [5, 5, 2, 2, 2],
        };

        private readonly uint[] _pixels = Enumerable.Repeat(0xFFFFFFu, width * height).ToArray();

        public void Set(int x, int y, uint color)
        {
            if ((uint)x < (uint)width && (uint)y < (uint)height)
            {
                _pixels[y * width + x] = color;
            }
        }

        public void Fill(int x, int y, int w, int h, uint color)
        {
            for (int j = 0; j < h; j++)
            {
                for (int i = 0; i < w; i++)
                {
                    Set(x + i, y + j, color);
                }
            }
        }

        public void Line(int x0, int y0, int x1, int y1, uint color, int thickness = 1)
        {
            int steps = Math.Max(Math.Abs(x1 - x0), Math.Abs(y1 - y0));
            for (int s = 0; s <= steps; s++)
            {
                int x = steps == 0 ? x0 : x0 + (x1 - x0) * s / steps;
                int y = steps == 0 ? y0 : y0 + (y1 - y0) * s / steps;
                Fill(x, y, thickness, thickness, color);
            }
        }

        public void Text(int x, int y, string text, uint color)
        {
            foreach (char c in text.ToUpperInvariant())
            {
                if (Font.TryGetValue(c, out int[]? rows))
                {
                    for (int r = 0; r < 5; r++)
                    {
                        for (int b = 0; b < 3; b++)
                        {
                            if ((rows[r] & (4 >> b)) != 0)
                            {
                                Fill(x + b * Scale, y + r * Scale, Scale, Scale, color);
                            }
                        }
                    }
                }

                x += 4 * Scale;
            }
        }

        public void WritePng(Stream stream)
        {
            stream.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
            var header = new byte[13];
            BinaryPrimitives.WriteInt32BigEndian(header, width);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
            header[8] = 8; // bit depth
            header[9] = 2; // truecolour RGB
            Chunk(stream, "IHDR", header);
            var raw = new byte[height * (1 + width * 3)];
            for (int y = 0; y < height; y++)
            {
                int row = y * (1 + width * 3); // filter byte 0 (none) starts each row
                for (int x = 0; x < width; x++)
                {
                    uint p = _pixels[y * width + x];
                    raw[row + 1 + x * 3] = (byte)(p >> 16);
                    raw[row + 2 + x * 3] = (byte)(p >> 8);
                    raw[row + 3 + x * 3] = (byte)p;
                }
            }

            using var compressed = new MemoryStream();
            using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
            {
                zlib.Write(raw);
            }

            Chunk(stream, "IDAT", compressed.ToArray());
            Chunk(stream, "IEND", []);
        }

        private static void Chunk(Stream stream, string type, byte[] data)
        {
            Span<byte> word = stackalloc byte[4];
            BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
            stream.Write(word);
            byte[] typed = [.. System.Text.Encoding.ASCII.GetBytes(type), .. data];
            stream.Write(typed);
            BinaryPrimitives.WriteUInt32BigEndian(word, Crc32(typed));
            stream.Write(word);
        }

        private static uint Crc32(byte[] bytes)
        {
            uint crc = 0xFFFFFFFF;
            foreach (byte b in bytes)
            {
                crc ^= b;
                for (int k = 0; k < 8; k++)
                {
                    crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
                }
            }

            return ~crc;
        }
    }
}
