using System.Buffers.Binary;
using GpuCnn.IO;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Mutates valid IDX, npy, safetensors and ONNX files thousands of times (truncation, bit flips, byte overwrites, huge
/// lengths, splices) and requires every attempt to either parse or end in the parsers' own
/// <see cref="FileFormatException"/> — never another exception, a hang, or a huge allocation.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class ParserFuzzTests
{
    private const int Attempts = 3000;

    [Fact]
    public void Idx_parser_survives_mutations() =>
        Fuzz(ValidIdx(), bytes => Idx.Parse(bytes, "fuzz"), seed: 1, lengthFields: [4, 8]);

    [Fact]
    public void Npy_parser_survives_mutations() =>
        Fuzz(File.ReadAllBytes(Fixtures.Torch("pads.input.npy")), bytes => Npy.Parse(bytes, "fuzz"), seed: 2, lengthFields: [8]);

    [Fact]
    public void Safetensors_parser_survives_mutations() =>
        Fuzz(File.ReadAllBytes(Fixtures.Torch("pads.weights.safetensors")), bytes => Safetensors.Parse(bytes, "fuzz"), seed: 3, lengthFields: [0]);

    [Fact]
    public void Onnx_parser_survives_mutations() =>
        Fuzz(File.ReadAllBytes(Fixtures.Torch("torch_cnn.onnx")), bytes => GpuCnn.Onnx.OnnxModel.Parse(bytes, "fuzz"), seed: 4, lengthFields: [1, 4, 12]);

    /// <summary>PyTorch's padding, whose pads come from a chain of shape arithmetic that the importer folds (its mutated constants included).</summary>
    [Fact]
    public void Onnx_constant_folding_survives_mutations() =>
        Fuzz(File.ReadAllBytes(Fixtures.Torch("torch_pad.onnx")), bytes => GpuCnn.Onnx.OnnxModel.Parse(bytes, "fuzz"), seed: 5, lengthFields: [1, 4, 12]);

    private static byte[] ValidIdx()
    {
        var bytes = new byte[4 + 12 + 2 * 5 * 7];
        bytes[2] = 8;
        bytes[3] = 3;
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), 2);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), 5);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), 7);
        return bytes;
    }

    private static void Fuzz(byte[] valid, Action<byte[]> parse, int seed, int[] lengthFields)
    {
        parse(valid); // the seed file itself is valid
        var random = new Random(seed);
        int rejected = 0;
        for (int attempt = 0; attempt < Attempts; attempt++)
        {
            byte[] mutated = Mutate(valid, random, lengthFields);
            try
            {
                parse(mutated);
            }
            catch (FileFormatException)
            {
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"attempt {attempt}: {e.GetType().Name} instead of FileFormatException: {e.Message}\nbytes: {Convert.ToHexString(mutated[..Math.Min(mutated.Length, 96)])}");
            }
        }

        Assert.InRange(rejected, Attempts / 4, Attempts); // the mutations do reach the checks
    }

    private static byte[] Mutate(byte[] valid, Random random, int[] lengthFields)
    {
        byte[] bytes = (byte[])valid.Clone();
        switch (random.Next(6))
        {
            case 0: // truncate
                return bytes[..random.Next(bytes.Length)];
            case 1: // flip bits in the header region, where the structure lives
                for (int i = 0, n = 1 + random.Next(4); i < n; i++)
                {
                    int at = random.Next(Math.Min(bytes.Length, 160));
                    bytes[at] ^= (byte)(1 << random.Next(8));
                }

                return bytes;
            case 2: // overwrite a byte anywhere with an extreme value
                bytes[random.Next(bytes.Length)] = (byte)(random.Next(2) == 0 ? 0xFF : 0x00);
                return bytes;
            case 3: // a huge length or dimension field
                int field = lengthFields[random.Next(lengthFields.Length)];
                for (int i = field; i < Math.Min(bytes.Length, field + 4 + random.Next(5)); i++)
                {
                    bytes[i] = (byte)random.Next(256);
                }

                return bytes;
            case 4: // trailing garbage
                return [.. bytes, .. Enumerable.Range(0, 1 + random.Next(9)).Select(_ => (byte)random.Next(256))];
            default: // splice: drop or duplicate a span inside the header
                int start = random.Next(Math.Min(bytes.Length, 120)), length = 1 + random.Next(8);
                return random.Next(2) == 0
                    ? [.. bytes[..start], .. bytes[Math.Min(bytes.Length, start + length)..]]
                    : [.. bytes[..start], .. bytes[start..Math.Min(bytes.Length, start + length)], .. bytes[start..]];
        }
    }
}
