using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace GpuCnn.IO;

/// <summary>
/// NumPy's .npy format, versions 1.0–3.0: what <c>np.load</c> reads of bool, signed and unsigned integers of 1–8 bytes
/// and float16/32/64, little- or big-endian, in C or Fortran order. Reading checks the header against the file's length
/// before allocating, and hands back little-endian values in C order; writing produces version 1.0, C order.
/// </summary>
public static partial class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>The longest header read: NumPy writes a few hundred bytes at most.</summary>
    private const int MaximumHeaderBytes = 1 << 20;

    /// <summary>
    /// An array read from .npy: its shape, element type (NumPy's kind and size without the byte order: "f2", "f4", "f8",
    /// "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1") and raw values, little-endian in C order.
    /// </summary>
    public sealed record Array(int[] Shape, string Type, byte[] Data)
    {
        /// <summary>The element count.</summary>
        public int Count => Data.Length / ElementSize(Type);

        /// <summary>
        /// The values as float32 (converted from any supported type); a finite float64 past float32's range (±3.4e38) is
        /// a <see cref="FileFormatException"/> naming the element, never a silent ±∞.
        /// </summary>
        public float[] ToSingle() => ToSingle("npy array");

        internal float[] ToSingle(string what)
        {
            var values = new float[Count];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = FileUtil.ToFloat32(Element(i), i, what);
            }

            return values;
        }

        /// <summary>The values as int32; non-integers or values outside int32 are an error naming the first one.</summary>
        public int[] ToInt32(string what)
        {
            var values = new int[Count];
            for (int i = 0; i < values.Length; i++)
            {
                double v = Element(i);
                if (v != Math.Floor(v))
                {
                    throw new FileFormatException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{what}: element {i} is {v}, not an integer label."));
                }

                if (v < int.MinValue || v > int.MaxValue)
                {
                    throw new FileFormatException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{what}: element {i} is {v}, outside int32: not a class label."));
                }

                values[i] = (int)v;
            }

            return values;
        }

        private double Element(int i) => Type switch
        {
            "f2" => (double)BinaryPrimitives.ReadHalfLittleEndian(Data.AsSpan(i * 2)),
            "f4" => BinaryPrimitives.ReadSingleLittleEndian(Data.AsSpan(i * 4)),
            "f8" => BinaryPrimitives.ReadDoubleLittleEndian(Data.AsSpan(i * 8)),
            "i1" => (sbyte)Data[i],
            "i2" => BinaryPrimitives.ReadInt16LittleEndian(Data.AsSpan(i * 2)),
            "i4" => BinaryPrimitives.ReadInt32LittleEndian(Data.AsSpan(i * 4)),
            "i8" => BinaryPrimitives.ReadInt64LittleEndian(Data.AsSpan(i * 8)),
            "u1" => Data[i],
            "b1" => Data[i] != 0 ? 1 : 0, // NumPy's bool is any byte but 0
            "u2" => BinaryPrimitives.ReadUInt16LittleEndian(Data.AsSpan(i * 2)),
            "u4" => BinaryPrimitives.ReadUInt32LittleEndian(Data.AsSpan(i * 4)),
            "u8" => BinaryPrimitives.ReadUInt64LittleEndian(Data.AsSpan(i * 8)),
            _ => throw new InvalidOperationException($"npy: element type '{Type}' is not one this reader makes."),
        };
    }

    /// <summary>Reads a .npy file; throws <see cref="FileFormatException"/> naming the defect.</summary>
    public static Array Read(string path) => Parse(FileUtil.ReadAll(path, "npy file"), path);

    /// <summary>Reads a float tensor (any supported dtype, converted), e.g. images (N, C, H, W).</summary>
    public static Tensor ReadTensor(string path)
    {
        byte[] bytes = FileUtil.ReadAll(path, "npy file");
        var layout = ParseLayout(bytes, path);
        if (layout.Shape.Length == 0)
        {
            throw new FileFormatException($"npy file '{path}': a scalar, not an array.");
        }

        if (bytes.Length == layout.DataStart)
        {
            throw new FileFormatException($"npy file '{path}': shape ({string.Join(",", layout.Shape)}) is empty; it holds no values.");
        }

        var shape = new Shape(layout.Shape);
        if (layout is { Type: "f4", BigEndian: false, FortranOrder: false } && BitConverter.IsLittleEndian)
        {
            // float32 as stored, straight from the file's bytes: a copy of them all had made a 2 GB file take 6 GB to read.
            return new Tensor(shape, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.AsSpan(layout.DataStart)).ToArray());
        }

        return new Tensor(shape, Parse(bytes, path).ToSingle($"npy file '{path}'"));
    }

    /// <summary>Reads integer labels (N) from any supported dtype.</summary>
    public static int[] ReadLabels(string path)
    {
        var array = Read(path);
        if (array.Shape.Length != 1)
        {
            throw new FileFormatException($"npy file '{path}': labels must be one-dimensional (N), got shape ({string.Join(",", array.Shape)}).");
        }

        return array.ToInt32($"npy file '{path}'");
    }

    /// <summary>Parses .npy bytes.</summary>
    public static Array Parse(ReadOnlySpan<byte> bytes, string name)
    {
        var layout = ParseLayout(bytes, name);
        int size = ElementSize(layout.Type);
        byte[] data = bytes[layout.DataStart..].ToArray();
        if (layout.BigEndian)
        {
            ReverseEachElement(data, size);
        }

        return new Array(layout.Shape, layout.Type, layout.FortranOrder ? ToCOrder(data, layout.Shape, size) : data);
    }

    /// <summary>What a file's header says, checked against its length: the element type, byte and memory order, shape, and where the data starts.</summary>
    private readonly record struct Layout(string Type, bool BigEndian, bool FortranOrder, int[] Shape, int DataStart);

    private static Layout ParseLayout(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < 10 || !bytes[..6].SequenceEqual(Magic))
        {
            throw new FileFormatException($"npy file '{name}': missing the \\x93NUMPY magic; not a .npy file.");
        }

        byte major = bytes[6];
        int lengthSize = major switch
        {
            1 => 2,
            2 or 3 => 4,
            _ => throw new FileFormatException($"npy file '{name}': format version {major}.{bytes[7]} is not supported (1.0 to 3.0)."),
        };
        if (bytes.Length < 8 + lengthSize)
        {
            throw new FileFormatException($"npy file '{name}': truncated header.");
        }

        long headerLength = lengthSize == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(bytes[8..]) : BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        long dataStart = 8 + lengthSize + headerLength;
        if (dataStart > bytes.Length)
        {
            throw new FileFormatException($"npy file '{name}': header length {headerLength} runs past the end of the {bytes.Length}-byte file.");
        }

        if (headerLength > MaximumHeaderBytes)
        {
            throw new FileFormatException($"npy file '{name}': a header of {headerLength} bytes; this reader takes at most {MaximumHeaderBytes} (NumPy's own limit is smaller).");
        }

        string header;
        try
        {
            header = new UTF8Encoding(false, true).GetString(bytes[(8 + lengthSize)..(int)dataStart]);
        }
        catch (DecoderFallbackException e)
        {
            throw new FileFormatException($"npy file '{name}': the header is not valid text.", e);
        }

        var (type, bigEndian, fortranOrder, shape) = ParseHeader(header, name);
        // Exact however large the shape, so that the message below says what the shape really needs.
        var expected = System.Numerics.BigInteger.One * ElementSize(type);
        foreach (int d in shape)
        {
            expected *= d;
        }

        long available = bytes.Length - dataStart;
        if (expected != available)
        {
            throw new FileFormatException(expected > available
                ? $"npy file '{name}': shape ({string.Join(",", shape)}) needs {expected} data bytes but only {available} follow (truncated)."
                : $"npy file '{name}': {available - expected} bytes of trailing data after shape ({string.Join(",", shape)}).");
        }

        return new Layout(type, bigEndian, fortranOrder, shape, (int)dataStart);
    }

    /// <summary>Big-endian elements to little-endian, in place.</summary>
    private static void ReverseEachElement(byte[] data, int size)
    {
        for (int i = 0; i < data.Length; i += size)
        {
            data.AsSpan(i, size).Reverse();
        }
    }

    /// <summary>
    /// A Fortran-ordered array (the first index fastest) rearranged into C order (the last index fastest), as np.load
    /// hands it over: element (i₀, …, iₖ) lies at Σ iⱼ·Πₗ₍ₗ₎dₗ over l &lt; j in Fortran order, over l &gt; j in C order.
    /// </summary>
    private static byte[] ToCOrder(byte[] fortran, int[] shape, int size)
    {
        var c = new byte[fortran.Length];
        int count = fortran.Length / size, rank = shape.Length;
        var index = new int[rank]; // the C-order position's multi-index, counted up as the C offset walks on
        var fortranStrides = new long[rank];
        for (int j = 0, stride = 1; j < rank; stride *= shape[j], j++)
        {
            fortranStrides[j] = stride;
        }

        for (int offset = 0; offset < count; offset++)
        {
            long source = 0;
            for (int j = 0; j < rank; j++)
            {
                source += index[j] * fortranStrides[j];
            }

            fortran.AsSpan((int)(source * size), size).CopyTo(c.AsSpan(offset * size, size));
            for (int j = rank - 1; j >= 0 && ++index[j] == shape[j]; j--)
            {
                index[j] = 0;
            }
        }

        return c;
    }

    /// <summary>Writes float32 values with the given shape (version 1.0, C order).</summary>
    public static void Write(string path, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var data = new byte[tensor.Data.Length * 4];
        for (int i = 0; i < tensor.Data.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(i * 4), tensor.Data[i]);
        }

        Write(path, new Array(tensor.Shape.ToArray(), "f4", data));
    }

    /// <summary>Writes an array of any supported type (version 1.0, C order), atomically.</summary>
    public static void Write(string path, Array array)
    {
        ArgumentNullException.ThrowIfNull(array);
        ArgumentNullException.ThrowIfNull(array.Shape);
        ArgumentNullException.ThrowIfNull(array.Data);
        ArgumentNullException.ThrowIfNull(array.Type);
        // Refused here rather than written as a file that every reader then refuses.
        if (array.Shape.Length > 8)
        {
            throw new ArgumentException($"Npy.Write: {array.Shape.Length} dimensions; Npy.Read takes at most 8.", nameof(array));
        }

        var bytes = System.Numerics.BigInteger.One * ElementSize(array.Type);
        foreach (int dim in array.Shape)
        {
            bytes = dim >= 0 ? bytes * dim : throw new ArgumentException(
                $"Npy.Write: shape ({string.Join(", ", array.Shape)}) has a negative dimension.", nameof(array));
        }

        if (bytes != array.Data.Length)
        {
            throw new ArgumentException(
                $"Npy.Write: shape ({string.Join(", ", array.Shape)}) of {array.Type} needs {bytes} bytes of data, the array holds {array.Data.Length}.", nameof(array));
        }

        string descr = (ElementSize(array.Type) == 1 ? "|" : "<") + array.Type;
        string shape = array.Shape.Length == 1 ? $"({array.Shape[0]},)" : $"({string.Join(", ", array.Shape)})";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        int unpadded = 6 + 2 + 2 + dict.Length + 1;
        string header = dict + new string(' ', (64 - unpadded % 64) % 64) + "\n";
        FileUtil.WriteAtomically(path, stream =>
        {
            stream.Write(Magic);
            stream.Write([1, 0]);
            Span<byte> length = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(length, checked((ushort)header.Length));
            stream.Write(length);
            stream.Write(Encoding.ASCII.GetBytes(header));
            stream.Write(array.Data);
        });
    }

    private static (string Type, bool BigEndian, bool FortranOrder, int[] Shape) ParseHeader(string header, string name)
    {
        // Exactly NumPy's three keys, once each: a repeated 'shape' would be read as its first here and its last by NumPy.
        string[] keys = [.. KeyPattern().Matches(header).Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal)];
        if (!keys.SequenceEqual(["descr", "fortran_order", "shape"]))
        {
            throw new FileFormatException($"npy file '{name}': the header's keys are {string.Join(", ", keys.Select(k => $"'{k}'"))}; 'descr', 'fortran_order' and 'shape' once each are expected: {header.Trim()}");
        }

        var descr = DescrPattern().Match(header);
        var order = OrderPattern().Match(header);
        var shape = ShapePattern().Match(header);
        if (!descr.Success || !order.Success || !shape.Success)
        {
            throw new FileFormatException($"npy file '{name}': the header lacks 'descr', 'fortran_order' or 'shape': {header.Trim()}");
        }

        // NumPy's descr: a byte order ('<' little, '>' big, '=', '|' or none: this machine's), a kind and a size.
        string d = descr.Groups[1].Value;
        bool ordered = d.Length > 0 && d[0] is '<' or '>' or '=' or '|';
        char byteOrder = ordered ? d[0] : '|';
        string type = ordered ? d[1..] : d;
        if (!ElementTypes.Contains(type))
        {
            throw new FileFormatException($"npy file '{name}': dtype '{d}' is not supported; expected a float (f2, f4, f8), an integer " +
                "(i1–i8, u1–u8) or bool (b1), little- or big-endian.");
        }

        bool bigEndian = ElementSize(type) > 1 && (byteOrder == '>' || (byteOrder != '<' && !BitConverter.IsLittleEndian));

        var dims = new List<int>();
        foreach (string part in shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int dim))
            {
                throw new FileFormatException($"npy file '{name}': shape entry '{part}' is not a non-negative integer.");
            }

            dims.Add(dim);
        }

        if (dims.Count > 8)
        {
            throw new FileFormatException($"npy file '{name}': {dims.Count} dimensions; at most 8 are supported.");
        }

        return (type, bigEndian, order.Groups[1].Value == "True", [.. dims]);
    }

    /// <summary>The element types read (NumPy's kind and size), in <see cref="Array.Type"/>'s spelling.</summary>
    private static readonly string[] ElementTypes = ["f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"];

    private static int ElementSize(string type) => System.Array.IndexOf(ElementTypes, type) >= 0 ? type[1] - '0'
        : throw new ArgumentException($"npy: element type '{type}' is not one of {string.Join(", ", ElementTypes)}.", nameof(type));

    // Keys and values in either quote, as Python's repr and other writers give them.
    [GeneratedRegex(@"['""]descr['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"['""]fortran_order['""]\s*:\s*(True|False)")]
    private static partial Regex OrderPattern();

    [GeneratedRegex(@"['""]shape['""]\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();

    [GeneratedRegex(@"['""]([^'""]*)['""]\s*:")]
    private static partial Regex KeyPattern();
}
