using System.Buffers.Binary;
using System.IO.Compression;
using GpuCnn.Models;

namespace GpuCnn.IO;

/// <summary>
/// The IDX format of MNIST (big-endian: 0, 0, type, rank, then rank uint32 dimensions, then the data), raw or
/// gzip-compressed. Only unsigned bytes (type 0x08), the type MNIST uses, are accepted.
/// </summary>
public static class Idx
{
    private const long MaximumDecompressedBytes = 1L << 30; // a 1 GiB array; MNIST's largest file is 47 MB

    /// <summary>An IDX array of unsigned bytes with its dimensions.</summary>
    public sealed record Array(int[] Dimensions, byte[] Data);

    /// <summary>Reads an IDX file (".gz" names are decompressed). Throws <see cref="FileFormatException"/> on any defect.</summary>
    public static Array Read(string path)
    {
        byte[] bytes = FileUtil.ReadAll(path, "IDX file");
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
        {
            bytes = Gunzip(bytes, path);
        }

        return Parse(bytes, path);
    }

    /// <summary>Parses IDX bytes, checking the header against the data length before allocating.</summary>
    public static Array Parse(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != 0)
        {
            throw new FileFormatException($"IDX file '{name}': missing the 0x0000 magic number; not an IDX file.");
        }

        if (bytes[2] != 0x08)
        {
            throw new FileFormatException($"IDX file '{name}': element type 0x{bytes[2]:X2} is not supported; expected 0x08 (unsigned byte).");
        }

        int rank = bytes[3];
        if (rank is < 1 or > 4)
        {
            throw new FileFormatException($"IDX file '{name}': {rank} dimensions; expected 1 to 4.");
        }

        int headerLength = 4 + 4 * rank;
        if (bytes.Length < headerLength)
        {
            throw new FileFormatException($"IDX file '{name}': truncated header ({bytes.Length} bytes, {headerLength} needed).");
        }

        var dimensions = new int[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            uint dimension = BinaryPrimitives.ReadUInt32BigEndian(bytes[(4 + 4 * i)..]);
            if (dimension is 0 or > int.MaxValue)
            {
                throw new FileFormatException(dimension == 0
                    ? $"IDX file '{name}': dimension {i} is 0; the file holds no values."
                    : $"IDX file '{name}': dimension {i} is {dimension}, past the largest array this reader makes.");
            }

            dimensions[i] = (int)dimension;
            count = Math.Min(count, 1L << 31) * dimension; // capped past any length a span has, never overflowing
        }

        long available = bytes.Length - headerLength;
        if (count != available)
        {
            throw new FileFormatException(count > available
                ? $"IDX file '{name}': the header promises {string.Join("x", dimensions)} values but only {available} bytes follow (truncated)."
                : $"IDX file '{name}': {available - count} bytes of trailing data after {string.Join("x", dimensions)} values.");
        }

        return new Array(dimensions, bytes[headerLength..].ToArray());
    }

    /// <summary>
    /// Loads the four standard MNIST files from a folder (train-images-idx3-ubyte, train-labels-idx1-ubyte,
    /// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz). Pixels are scaled to [0, 1].
    /// </summary>
    public static (Dataset Train, Dataset Test) ReadMnist(string folder) => (ReadPair(Existing(folder), "train"), ReadPair(folder, "t10k"));

    /// <summary>The test split alone (t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, raw or .gz), as <see cref="ReadMnist"/> reads it.</summary>
    public static Dataset ReadMnistTest(string folder) => ReadPair(Existing(folder), "t10k");

    private static string Existing(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        return Directory.Exists(folder) ? folder
            : File.Exists(folder) ? throw new DirectoryNotFoundException($"MNIST folder '{folder}' is a file; give the folder that holds the four IDX files.")
            : throw new DirectoryNotFoundException($"MNIST folder '{folder}' does not exist.");
    }

    /// <summary>Images (N, H, W) as a float tensor (N, 1, H, W) scaled to [0, 1] and labels (N) as ints.</summary>
    public static Dataset ToDataset(Array images, Array labels, string name)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.Dimensions.Length != 3)
        {
            throw new FileFormatException($"{name}: images must be (N, H, W), got {images.Dimensions.Length} dimensions.");
        }

        if (labels.Dimensions.Length != 1)
        {
            throw new FileFormatException($"{name}: labels must be (N), got {labels.Dimensions.Length} dimensions.");
        }

        if (images.Dimensions[0] != labels.Dimensions[0])
        {
            throw new FileFormatException($"{name}: {images.Dimensions[0]} images but {labels.Dimensions[0]} labels.");
        }

        var pixels = new float[images.Data.Length];
        for (int i = 0; i < pixels.Length; i++)
        {
            pixels[i] = images.Data[i] / 255f;
        }

        var shape = new Shape(images.Dimensions[0], 1, images.Dimensions[1], images.Dimensions[2]);
        return new Dataset(new Tensor(shape, pixels), System.Array.ConvertAll(labels.Data, b => (int)b)) { Source = name };
    }

    private static Dataset ReadPair(string folder, string prefix) =>
        ToDataset(Read(Locate(folder, $"{prefix}-images-idx3-ubyte")), Read(Locate(folder, $"{prefix}-labels-idx1-ubyte")),
            Path.Combine(folder, prefix));

    /// <summary>
    /// Every name <see cref="ReadMnist"/> looks for in <paramref name="folder"/>, present or not: what a command writing
    /// files must not write to (a file at an absent name would be read next time in place of the one that is there).
    /// </summary>
    internal static IEnumerable<string> MnistFiles(string folder) =>
        ((string[])["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]).SelectMany(stem => Candidates(folder, stem));

    private static string Locate(string folder, string stem) =>
        Candidates(folder, stem).FirstOrDefault(File.Exists)
            ?? throw new FileNotFoundException($"MNIST folder '{folder}' has no {stem} (or {stem}.gz).", Path.Combine(folder, stem));

    /// <summary>The names a file of MNIST goes by, in the order they are looked for.</summary>
    private static IEnumerable<string> Candidates(string folder, string stem) =>
        ((string[])[stem, stem + ".gz", stem.Replace("-idx", ".idx", StringComparison.Ordinal)]).Select(name => Path.Combine(folder, name));

    private static byte[] Gunzip(byte[] compressed, string name)
    {
        try
        {
            using var input = new GZipStream(new MemoryStream(compressed), CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[81920];
            long? promised = null; // the length the header promises, once it has been decompressed
            int read;
            while ((read = input.Read(buffer)) > 0)
            {
                long limit = Math.Min(promised ?? MaximumDecompressedBytes, MaximumDecompressedBytes);
                if (output.Length + read > limit)
                {
                    // Stop at once: a small file can decompress to gigabytes.
                    throw new FileFormatException(promised is null || promised > MaximumDecompressedBytes
                        ? $"IDX file '{name}': decompresses to more than {MaximumDecompressedBytes} bytes."
                        : $"IDX file '{name}': decompresses past the {promised} bytes its header promises (trailing data).");
                }

                output.Write(buffer, 0, read);
                if (promised is null && Promised(output.GetBuffer().AsSpan(0, (int)output.Length)) is var (valid, length))
                {
                    if (!valid)
                    {
                        break; // not a header Parse accepts: it says what is wrong without the rest
                    }

                    if (length > MaximumDecompressedBytes)
                    {
                        throw new FileFormatException($"IDX file '{name}': its header promises more than {MaximumDecompressedBytes} bytes, the most a gzipped IDX file may hold here.");
                    }

                    promised = length;
                    // One allocation of the promised size instead of doubling towards it — at most what the compressed bytes
                    // can hold (deflate expands at most 1,032-fold), so that a tiny file cannot make it allocate 1 GiB at once.
                    output.Capacity = (int)Math.Max(Math.Min(length, compressed.Length * 1032L), output.Length);
                }
            }

            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new FileFormatException($"IDX file '{name}': corrupt gzip data ({e.Message}).", e);
        }
    }

    /// <summary>
    /// Whether the header at the start of <paramref name="bytes"/> is one <see cref="Parse"/> accepts and the file length it
    /// promises (past <see cref="MaximumDecompressedBytes"/>: any larger value); null while the header is incomplete.
    /// </summary>
    private static (bool Valid, long Length)? Promised(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 4)
        {
            return null;
        }

        int rank = bytes[3];
        if (bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || rank is < 1 or > 4)
        {
            return (false, 0);
        }

        int headerLength = 4 + (4 * rank);
        if (bytes.Length < headerLength)
        {
            return null;
        }

        long length = 1;
        for (int i = 0; i < rank; i++)
        {
            uint dimension = BinaryPrimitives.ReadUInt32BigEndian(bytes[(4 + (4 * i))..]);
            if (dimension is 0 or > int.MaxValue)
            {
                return (false, 0); // Parse names the dimension
            }

            length = Math.Min(length * dimension, MaximumDecompressedBytes + 1L);
        }

        return (true, headerLength + length);
    }
}
