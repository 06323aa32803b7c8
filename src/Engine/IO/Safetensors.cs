using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace GpuCnn.IO;

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor names to
/// {dtype, shape, data_offsets} plus an optional "__metadata__" string map, then the tensor bytes. Reading
/// treats the file as hostile (header capped at 100 MB, offsets checked to be in range, non-overlapping and
/// covering the data); F32, F64, F16 and BF16 tensors are read as float32, and I64 ones (counters such as
/// PyTorch's num_batches_tracked) too, exactly up to 2^24. Writing produces F32, and I64 for the keys named as counters.
/// </summary>
public static class Safetensors
{
    /// <summary>The header cap of the reference implementation.</summary>
    public const long MaximumHeaderBytes = 100_000_000;

    /// <summary>Named float tensors with string metadata.</summary>
    public sealed record Contents(IReadOnlyDictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata);

    /// <summary>Reads a file; throws <see cref="FileFormatException"/> naming the defect.</summary>
    public static Contents Read(string path) => Parse(FileUtil.ReadAll(path, "safetensors file"), path);

    /// <summary>Parses safetensors bytes.</summary>
    public static Contents Parse(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < 8)
        {
            throw new FileFormatException($"safetensors file '{name}': {bytes.Length} bytes, too short for the 8-byte header length.");
        }

        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if ((headerLength > MaximumHeaderBytes || headerLength > (ulong)(bytes.Length - 8)) && bytes.Length > 8 && bytes[8] != (byte)'{')
        {
            // Neither a plausible length nor a JSON header after it: another kind of file, not a damaged safetensors one.
            throw new FileFormatException($"'{name}' is not a safetensors file: it does not begin with an 8-byte header length and a JSON " +
                "header ('{').");
        }

        if (headerLength > MaximumHeaderBytes)
        {
            throw new FileFormatException($"safetensors file '{name}': header length {headerLength} exceeds the {MaximumHeaderBytes}-byte limit.");
        }

        if (headerLength > (ulong)(bytes.Length - 8))
        {
            throw new FileFormatException($"safetensors file '{name}': header length {headerLength} runs past the end of the {bytes.Length}-byte file.");
        }

        var data = bytes[(8 + (int)headerLength)..];
        if (!System.Text.Unicode.Utf8.IsValid(bytes.Slice(8, (int)headerLength)))
        {
            throw new FileFormatException($"safetensors file '{name}': the header is not valid UTF-8.");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes.Slice(8, (int)headerLength).ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new FileFormatException($"safetensors file '{name}': the header is not valid JSON ({e.Message}).", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new FileFormatException($"safetensors file '{name}': the header is not a JSON object.");
            }

            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<(string Key, string Type, int[] Shape, long Begin, long End)>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!names.Add(property.Name))
                {
                    // JSON parsers differ on which of two equal keys wins; a file that says two things is refused.
                    throw new FileFormatException($"safetensors file '{name}': the header names '{property.Name}' twice.");
                }

                if (property.Name == "__metadata__")
                {
                    ReadMetadata(property.Value, metadata, name);
                    continue;
                }

                entries.Add(ReadEntry(property, name));
            }

            CheckCoverage(entries, data.Length, name);
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (key, type, shape, begin, end) in entries)
            {
                var values = Decode(data[(int)begin..(int)end], type, $"safetensors file '{name}': tensor '{key}'");
                tensors[key] = new Tensor(new Shape(shape), values); // a scalar (shape []) stays rank 0, as PyTorch's num_batches_tracked
            }

            return new Contents(tensors, metadata);
        }
    }

    /// <summary>
    /// Writes float32 tensors (sorted by name) and metadata, atomically; the tensors named in
    /// <paramref name="counters"/> hold whole numbers and are written as int64, as PyTorch writes its counters.
    /// </summary>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        IReadOnlySet<string>? counters = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        counters ??= new HashSet<string>();
        foreach (string key in counters.Where(tensors.ContainsKey))
        {
            if (tensors[key].Data.Any(v => v != MathF.Round(v) || !float.IsFinite(v)))
            {
                throw new ArgumentException($"safetensors: counter '{key}' holds a value that is not a whole number.", nameof(tensors));
            }
        }

        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is { Count: > 0 })
        {
            header["__metadata__"] = metadata;
        }

        long offset = 0;
        var ordered = tensors.OrderBy(t => t.Key, StringComparer.Ordinal).ToList();
        foreach (var (key, tensor) in ordered)
        {
            bool counter = counters.Contains(key);
            long length = tensor.Data.LongLength * (counter ? 8 : 4);
            header[key] = new Dictionary<string, object>
            {
                ["dtype"] = counter ? "I64" : "F32",
                ["shape"] = tensor.Shape.ToArray(),
                ["data_offsets"] = new[] { offset, offset + length },
            };
            offset += length;
        }

        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padding = (8 - json.Length % 8) % 8; // the reference implementation aligns the data to 8 bytes with spaces
        FileUtil.WriteAtomically(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)(json.Length + padding));
            stream.Write(length);
            stream.Write(json);
            stream.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
            var buffer = new byte[8];
            foreach (var (key, tensor) in ordered)
            {
                bool counter = counters.Contains(key);
                foreach (float v in tensor.Data)
                {
                    if (counter)
                    {
                        BinaryPrimitives.WriteInt64LittleEndian(buffer, (long)v);
                    }
                    else
                    {
                        BinaryPrimitives.WriteSingleLittleEndian(buffer, v);
                    }

                    stream.Write(buffer.AsSpan(0, counter ? 8 : 4));
                }
            }
        });
    }

    private static void ReadMetadata(JsonElement element, Dictionary<string, string> metadata, string name)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new FileFormatException($"safetensors file '{name}': __metadata__ is not an object.");
        }

        foreach (var item in element.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw new FileFormatException($"safetensors file '{name}': __metadata__ value '{item.Name}' is not a string.");
            }

            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static (string, string, int[], long, long) ReadEntry(JsonProperty property, string name)
    {
        string where = $"safetensors file '{name}': tensor '{property.Name}'";
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object ||
            !value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String ||
            !value.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array ||
            !value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array ||
            offsets.GetArrayLength() != 2)
        {
            throw new FileFormatException($"{where}: needs dtype (string), shape (array) and data_offsets ([begin, end]).");
        }

        string type = dtype.GetString()!;
        int size = type switch
        {
            "F32" => 4,
            "F64" or "I64" => 8,
            "F16" or "BF16" => 2,
            _ => throw new FileFormatException($"{where}: dtype {type} is not supported; expected F32, F64, F16, BF16 or I64."),
        };
        if (shape.GetArrayLength() > 8)
        {
            throw new FileFormatException($"{where}: {shape.GetArrayLength()} dimensions; at most 8 are supported.");
        }

        var dims = new List<int>();
        long count = 1;
        foreach (var d in shape.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int dim) || dim <= 0)
            {
                throw new FileFormatException($"{where}: shape entry {d} is not a positive integer.");
            }

            dims.Add(dim);
            count *= dim; // at most 2³¹ · 2³¹ before the check below stops it
            if (count > Shape.MaximumElements)
            {
                throw new FileFormatException($"{where}: shape ({string.Join(",", shape.EnumerateArray())}) holds more than {Shape.MaximumElements} elements.");
            }
        }

        if (offsets[0].ValueKind != JsonValueKind.Number || offsets[1].ValueKind != JsonValueKind.Number || // TryGetInt64 throws on others
            !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
        {
            throw new FileFormatException($"{where}: data_offsets [{offsets[0].GetRawText()}, {offsets[1].GetRawText()}] are not a valid range.");
        }

        if (end - begin != count * size)
        {
            throw new FileFormatException($"{where}: shape ({string.Join(",", dims)}) of {type} needs {count * size} bytes but data_offsets span {end - begin}.");
        }

        return (property.Name, type, [.. dims], begin, end);
    }

    private static void CheckCoverage(List<(string Key, string Type, int[] Shape, long Begin, long End)> entries, int dataLength, string name)
    {
        long cursor = 0;
        foreach (var entry in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (entry.Begin != cursor)
            {
                throw new FileFormatException(entry.Begin < cursor
                    ? $"safetensors file '{name}': tensor '{entry.Key}' overlaps the previous tensor's data (offset {entry.Begin} < {cursor})."
                    : $"safetensors file '{name}': a gap of {entry.Begin - cursor} bytes before tensor '{entry.Key}'.");
            }

            cursor = entry.End;
        }

        if (cursor != dataLength)
        {
            throw new FileFormatException(cursor > dataLength
                ? $"safetensors file '{name}': tensor data ends at byte {cursor} but the file holds only {dataLength} (truncated)."
                : $"safetensors file '{name}': {dataLength - cursor} bytes of trailing data after the last tensor.");
        }
    }

    /// <summary>The values as float32; a finite F64 past float32's range is an error naming the element (<paramref name="where"/>), never a silent ±∞.</summary>
    private static float[] Decode(ReadOnlySpan<byte> bytes, string type, string where)
    {
        int size = type switch { "F32" => 4, "F64" or "I64" => 8, _ => 2 };
        var values = new float[bytes.Length / size];
        for (int i = 0; i < values.Length; i++)
        {
            var item = bytes.Slice(i * size, size);
            values[i] = type switch
            {
                "F32" => BinaryPrimitives.ReadSingleLittleEndian(item),
                "F64" => FileUtil.ToFloat32(BinaryPrimitives.ReadDoubleLittleEndian(item), i, where),
                "I64" => BinaryPrimitives.ReadInt64LittleEndian(item),
                "F16" => (float)BinaryPrimitives.ReadHalfLittleEndian(item),
                _ => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(item) << 16), // BF16
            };
        }

        return values;
    }
}
