using System.Buffers.Binary;
using System.Text;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

public sealed class FileFormatTests
{
    [Fact]
    public void Bundled_mnist_sample_reads_with_the_documented_counts()
    {
        var (train, test) = Idx.ReadMnist(Fixtures.MnistSample);
        Assert.Equal(new Shape(8000, 1, 28, 28), train.Images.Shape);
        Assert.Equal(new Shape(2000, 1, 28, 28), test.Images.Shape);

        // Per-class counts from data/mnist-sample/README.md.
        Assert.Equal([801, 902, 793, 826, 784, 690, 811, 856, 755, 782], Enumerable.Range(0, 10).Select(c => train.Labels.Count(l => l == c)));
        Assert.Equal([200, 225, 198, 206, 196, 173, 203, 214, 189, 196], Enumerable.Range(0, 10).Select(c => test.Labels.Count(l => l == c)));
        Assert.InRange(train.Images.Data.Max(), 0.99f, 1f);
        Assert.Equal(0f, train.Images.Data.Min());
    }

    [Theory]
    [InlineData("1x28x28")]
    [InlineData("1,28,28")]
    [InlineData("1X28X28")]
    [InlineData("1, 28, 28")]
    public void A_shape_reads_as_files_write_it_and_as_the_help_does(string text) =>
        Assert.Equal(new Shape(1, 28, 28), ModelFile.ParseShape(text, "--input-shape"));

    [Theory]
    [InlineData("")]
    [InlineData("1,,28")]
    [InlineData("1,0,28")]
    [InlineData("1,-2,28")]
    [InlineData("1,2 8,28")]
    [InlineData("a,b")]
    public void A_shape_with_an_empty_zero_negative_or_non_numeric_part_is_refused(string text) =>
        Assert.Equal($"--input-shape '{text}' is not a shape such as 1,28,28 or 1x28x28.",
            Assert.Throws<ArgumentException>(() => ModelFile.ParseShape(text, "--input-shape")).Message);

    [Fact]
    public void Idx_parses_raw_bytes_and_rejects_bad_headers()
    {
        byte[] good = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
        var array = Idx.Parse(good, "t");
        Assert.Equal([2, 3], array.Dimensions);
        Assert.Equal([1, 2, 3, 4, 5, 6], array.Data);

        Assert.Contains("magic", Assert.Throws<FileFormatException>(() => Idx.Parse([1, 0, 8, 1, 0, 0, 0, 1, 9], "t")).Message, StringComparison.Ordinal);
        Assert.Contains("element type 0x0D", Assert.Throws<FileFormatException>(() => Idx.Parse([0, 0, 13, 1, 0, 0, 0, 1, 9], "t")).Message, StringComparison.Ordinal);
        Assert.Contains("truncated", Assert.Throws<FileFormatException>(() => Idx.Parse(good.AsSpan(0, good.Length - 1), "t")).Message, StringComparison.Ordinal);
        Assert.Contains("trailing", Assert.Throws<FileFormatException>(() => Idx.Parse([.. good, 7], "t")).Message, StringComparison.Ordinal);
        Assert.Contains("dimension 0 is 4294967295", Assert.Throws<FileFormatException>(() => Idx.Parse([0, 0, 8, 1, 255, 255, 255, 255, 1], "t")).Message, StringComparison.Ordinal);

        // Huge dimensions whose product overflows: rejected against the file size, before any allocation.
        Assert.Contains("the header promises 2147483647x5x7 values but only 1 bytes follow (truncated)", Assert.Throws<FileFormatException>(() => Idx.Parse([0, 0, 8, 3, 127, 255, 255, 255, 0, 0, 0, 5, 0, 0, 0, 7, 1], "t")).Message, StringComparison.Ordinal);
        Assert.Contains("truncated", Assert.Throws<FileFormatException>(() => Idx.Parse([0, 0, 8, 3, 127, 255, 255, 255, 127, 255, 255, 255, 127, 255, 255, 255, 1], "t")).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("f2")]
    [InlineData("f4")]
    [InlineData("f8")]
    [InlineData("i1")]
    [InlineData("i2")]
    [InlineData("i4")]
    [InlineData("i8")]
    [InlineData("u1")]
    [InlineData("u2")]
    [InlineData("u4")]
    [InlineData("u8")]
    [InlineData("b1")]
    public void Npy_round_trips_every_supported_dtype(string type)
    {
        using var temp = Fixtures.TempFolder();
        var data = new byte[6 * (type[1] - '0')];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = type == "b1" ? (byte)(i % 2) : (byte)((i * 37) + 1); // raw bytes: the file must keep them as they are
        }

        Npy.Write(temp.File("a.npy"), new Npy.Array([2, 3], type, data));
        var read = Npy.Read(temp.File("a.npy"));
        Assert.Equal([2, 3], read.Shape);
        Assert.Equal(type, read.Type);
        Assert.Equal(data, read.Data);
        Assert.Equal(0, (new FileInfo(temp.File("a.npy")).Length - data.Length) % 64); // header padded to 64 bytes, as numpy does
    }

    [Fact]
    public void Npy_reads_numpy_written_files_and_converts_labels()
    {
        // Written by numpy 1.24 (make_fixtures.py): int64 labels and float32 images.
        int[] labels = Npy.ReadLabels(Fixtures.Torch("sgd.labels.npy"));
        Assert.Equal(6, labels.Length);
        Assert.All(labels, l => Assert.InRange(l, 0, 4));
        Assert.Equal(new Shape(6, 1, 10, 10), Npy.ReadTensor(Fixtures.Torch("sgd.images.npy")).Shape);
    }

    [Theory]
    [InlineData("fortran.f4.npy", "f4")]
    [InlineData("fortran_big.f8.npy", "f8")]
    [InlineData("big.f4.npy", "f4")]
    [InlineData("half.f2.npy", "f2")]
    public void Npy_reads_floats_in_any_byte_order_and_memory_order_as_np_load_does(string file, string type)
    {
        // Before, Fortran order, big-endian and float16 were refused, though np.load reads them all.
        var expected = Npy.Read(Fixtures.Npy("c_order.f4.npy"));
        var read = Npy.Read(Fixtures.Npy(file));
        Assert.Equal(type, read.Type);
        Assert.Equal([2, 3, 4], read.Shape);
        Assert.Equal(expected.ToSingle(), read.ToSingle());
    }

    [Theory]
    [InlineData("labels.i1.npy", "i1")]
    [InlineData("labels.i2.npy", "i2")]
    [InlineData("labels.i2_big.npy", "i2")]
    [InlineData("labels.u2.npy", "u2")]
    [InlineData("labels.u4_big.npy", "u4")]
    [InlineData("labels.u8.npy", "u8")]
    [InlineData("labels.i8_big.npy", "i8")]
    [InlineData("flags.b1.npy", "b1")]
    public void Npy_reads_integers_of_every_size_and_byte_order_as_np_load_does(string file, string type)
    {
        int[] expected = Npy.Read(Fixtures.Npy("labels_c_order.i8.npy")).ToInt32("labels");
        var read = Npy.Read(Fixtures.Npy(file));
        Assert.Equal(type, read.Type);
        Assert.Equal(type == "b1" ? [.. expected.Select(v => v != 0 ? 1 : 0)] : expected, read.ToInt32("labels"));
    }

    [Fact]
    public void An_empty_npy_array_reads_and_a_tensor_of_it_is_refused_as_empty()
    {
        var read = Npy.Read(Fixtures.Npy("empty.f4.npy"));
        Assert.Equal([0, 1, 2, 2], read.Shape);
        Assert.Equal(0, read.Count);
        Assert.Equal($"npy file '{Fixtures.Npy("empty.f4.npy")}': shape (0,1,2,2) is empty; it holds no values.",
            Assert.Throws<FileFormatException>(() => Npy.ReadTensor(Fixtures.Npy("empty.f4.npy"))).Message);
        using var temp = Fixtures.TempFolder();
        Npy.Write(temp.File("e.npy"), read); // written back as NumPy would
        Assert.Equal(File.ReadAllBytes(Fixtures.Npy("empty.f4.npy")), File.ReadAllBytes(temp.File("e.npy")));
    }

    [Fact]
    public void Npy_rejects_unknown_dtypes_and_truncation()
    {
        byte[] Header(string dict)
        {
            string h = dict + new string(' ', 3) + "\n";
            return [0x93, .. "NUMPY"u8, 1, 0, (byte)h.Length, 0, .. Encoding.ASCII.GetBytes(h)];
        }

        // Keys and values in double quotes, as some writers other than NumPy give them, read as in single ones.
        Assert.Equal([2f], Npy.Parse([.. Header("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (1,), }"), 0, 0, 0, 64], "t").ToSingle());
        // NumPy's bool is any byte but 0; a label too large for int32 says so.
        Assert.Equal([1, 0, 1], Npy.Parse([.. Header("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }"), 2, 0, 255], "t").ToInt32("flags"));
        Assert.Equal("labels: element 1 is 1099511627776, outside int32: not a class label.", Assert.Throws<FileFormatException>(() =>
            Npy.Parse([.. Header("{'descr': '<u8', 'fortran_order': False, 'shape': (2,), }"), .. new byte[8], 0, 0, 0, 0, 0, 1, 0, 0], "t").ToInt32("labels")).Message);
        // A header past the reader's limit says so, not that it runs past the end of the file.
        byte[] huge = [0x93, .. "NUMPY"u8, 2, 0, 0, 0, 0x20, 0, .. new byte[(1 << 21) + 4]];
        Assert.Equal("npy file 't': a header of 2097152 bytes; this reader takes at most 1048576 (NumPy's own limit is smaller).",
            Assert.Throws<FileFormatException>(() => Npy.Parse(huge, "t")).Message);
        Assert.Contains("dtype '<c8'", Assert.Throws<FileFormatException>(() =>
            Npy.Parse([.. Header("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }"), 0, 0, 0, 0, 0, 0, 0, 0], "t")).Message, StringComparison.Ordinal);
        Assert.Contains("truncated", Assert.Throws<FileFormatException>(() =>
            Npy.Parse([.. Header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"), 0, 0, 0, 0], "t")).Message, StringComparison.Ordinal);
        Assert.Contains("shape (100000,100000,100000) needs 4000000000000000 data bytes but only 4 follow (truncated)", Assert.Throws<FileFormatException>(() =>
            Npy.Parse([.. Header("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }"), 0, 0, 0, 0], "t")).Message, StringComparison.Ordinal);
        // A key twice (NumPy takes the last, a first-match reader the first: the same bytes in two layouts) or one more.
        Assert.Contains("the header's keys are 'descr', 'fortran_order', 'shape', 'shape'", Assert.Throws<FileFormatException>(() =>
            Npy.Parse([.. Header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), 'shape': (2, 3), }"), .. new byte[24]], "t")).Message, StringComparison.Ordinal);
        Assert.Contains("the header's keys are 'descr', 'extra', 'fortran_order', 'shape'", Assert.Throws<FileFormatException>(() =>
            Npy.Parse([.. Header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1, }"), 0, 0, 0, 0], "t")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Npy_write_refuses_an_array_whose_data_does_not_match_its_shape_or_type()
    {
        // Written, such a file is one that every reader refuses later, far from the code that made it.
        using var temp = Fixtures.TempFolder();
        string path = temp.File("a.npy");
        Assert.Equal("Npy.Write: shape (2, 3) of f4 needs 24 bytes of data, the array holds 4. (Parameter 'array')",
            Assert.Throws<ArgumentException>(() => Npy.Write(path, new Npy.Array([2, 3], "f4", new byte[4]))).Message);
        Assert.StartsWith("npy: element type 'c8' is not one of f2, f4, f8, i1, i2, i4, i8, u1, u2, u4, u8, b1.",
            Assert.Throws<ArgumentException>(() => Npy.Write(path, new Npy.Array([2], "c8", new byte[16]))).Message, StringComparison.Ordinal);
        Assert.StartsWith("Npy.Write: shape (2, -1) has a negative dimension",
            Assert.Throws<ArgumentException>(() => Npy.Write(path, new Npy.Array([2, -1], "u1", []))).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new Npy.Array([1], "c8", new byte[8]).ToSingle());
        Assert.False(File.Exists(path));
        Npy.Write(path, new Npy.Array([2, 3], "i8", new byte[48]));
        Assert.Equal(6, Npy.Read(path).Count);
    }

    [Fact]
    public void Gzipped_idx_stops_decompressing_where_its_header_says_the_data_ends()
    {
        using var temp = Fixtures.TempFolder();
        byte[] Gzip(byte[] raw)
        {
            using var memory = new MemoryStream();
            using (var gzip = new System.IO.Compression.GZipStream(memory, System.IO.Compression.CompressionLevel.SmallestSize))
            {
                gzip.Write(raw);
            }

            return memory.ToArray();
        }

        // 2 × 3 values, then 64 MB of zeros: a few kilobytes compressed.
        byte[] header = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        File.WriteAllBytes(temp.File("bomb.gz"), Gzip([.. header, .. new byte[64 << 20]]));
        Assert.True(new FileInfo(temp.File("bomb.gz")).Length < 1 << 20);
        Assert.Contains("decompresses past the 18 bytes its header promises (trailing data)",
            Assert.Throws<FileFormatException>(() => Idx.Read(temp.File("bomb.gz"))).Message, StringComparison.Ordinal);

        // A header Parse refuses stops decompression too, and the error is the header's.
        File.WriteAllBytes(temp.File("bad.gz"), Gzip([1, 0, 8, 1, .. new byte[64 << 20]]));
        Assert.Contains("missing the 0x0000 magic number", Assert.Throws<FileFormatException>(() => Idx.Read(temp.File("bad.gz"))).Message, StringComparison.Ordinal);

        File.WriteAllBytes(temp.File("zero.gz"), Gzip([0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 3, .. new byte[64 << 20]]));
        Assert.Contains("dimension 0 is 0", Assert.Throws<FileFormatException>(() => Idx.Read(temp.File("zero.gz"))).Message, StringComparison.Ordinal);

        // A header promising 2³¹ values (past what an array holds) is refused at once, not after gigabytes.
        File.WriteAllBytes(temp.File("huge.gz"), Gzip([0, 0, 8, 3, 0, 0x20, 0, 0, 0, 0, 0, 32, 0, 0, 0, 32, .. new byte[1 << 20]]));
        Assert.Contains("its header promises more than 1073741824 bytes", Assert.Throws<FileFormatException>(() => Idx.Read(temp.File("huge.gz"))).Message, StringComparison.Ordinal);

        File.WriteAllBytes(temp.File("good.gz"), Gzip([.. header, 1, 2, 3, 4, 5, 6]));
        Assert.Equal([1, 2, 3, 4, 5, 6], Idx.Read(temp.File("good.gz")).Data);
    }

    [Theory]
    [InlineData("normalize", "0.1,0.2,0.3", "its metadata \"normalize\": normalize:")]
    [InlineData("input", "65536x65536x65536", "its metadata \"input\" '65536x65536x65536': ")]
    public void A_model_files_bad_metadata_is_an_error_naming_the_file(string key, string value, string said)
    {
        using var backend = Backends.Open("reference");
        using var temp = Fixtures.TempFolder();
        using (var model = Sequential.Create("flatten,dense(2)", [1, 2, 2], backend, seed: 1))
        {
            model.Normalization = new ChannelNormalization([0.5f], [0.25f]);
            ModelFile.Save(model, temp.File("m.safetensors"));
        }

        var contents = Safetensors.Read(temp.File("m.safetensors"));
        var metadata = new Dictionary<string, string>(contents.Metadata) { [key] = value };
        Safetensors.Write(temp.File("m.safetensors"), contents.Tensors, metadata);
        var error = Assert.Throws<FileFormatException>(() => ModelFile.Load(temp.File("m.safetensors"), backend));
        Assert.Contains($"model file '{temp.File("m.safetensors")}'", error.Message, StringComparison.Ordinal);
        Assert.Contains(said, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Safetensors_round_trips_tensors_and_metadata()
    {
        using var temp = Fixtures.TempFolder();
        var tensors = new Dictionary<string, Tensor>
        {
            ["0.weight"] = Tensor.Random([2, 1, 3, 3], 1),
            ["0.bias"] = Tensor.Random([2], 2),
        };
        Safetensors.Write(temp.File("m.safetensors"), tensors, new Dictionary<string, string> { ["arch"] = "conv(2,3)" });
        var read = Safetensors.Read(temp.File("m.safetensors"));
        Assert.Equal("conv(2,3)", read.Metadata["arch"]);
        foreach (var (key, tensor) in tensors)
        {
            Assert.Equal(tensor.Shape, read.Tensors[key].Shape);
            Assert.Equal(tensor.Data, read.Tensors[key].Data);
        }

        byte[] bytes = File.ReadAllBytes(temp.File("m.safetensors"));
        Assert.Equal(0, (8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes)) % 8); // data aligned as the reference writer does
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 12, "overlaps")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap of 4 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "trailing")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype I8 is not supported")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "not a positive integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "the header names 'a' twice")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,0]}}", 0, "tensor 'a': shape (65536,65536,65536,65536) holds more than 2147479551 elements")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 4, "data_offsets [\"0\", \"4\"] are not a valid range")] // strings: TryGetInt64 had thrown InvalidOperationException
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[null,[4]]}}", 4, "are not a valid range")]
    [InlineData("[1,2]", 0, "not a JSON object")]
    [InlineData("{\"a\":", 0, "not valid JSON")]
    public void Safetensors_rejects_inconsistent_headers(string header, int dataBytes, string message)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        var error = Assert.Throws<FileFormatException>(() => Safetensors.Parse(bytes, "t"));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Float64_values_past_float32s_range_are_named_not_turned_into_infinities()
    {
        // 1e39 read as +∞ had then been reported as a non-finite value the file did not hold (or passed through predict).
        using var temp = Fixtures.TempFolder();
        Npy.Write(temp.File("x.npy"), new Npy.Array([3], "f8", [.. new[] { 1.0, -1e39, 2.0 }.SelectMany(BitConverter.GetBytes)]));
        Assert.Equal($"npy file '{temp.File("x.npy")}': element 1 is -1E+39, beyond float32's range (±3.4e38).",
            Assert.Throws<FileFormatException>(() => Npy.ReadTensor(temp.File("x.npy"))).Message);
        Npy.Write(temp.File("inf.npy"), new Npy.Array([2], "f8", [.. new[] { double.PositiveInfinity, 3.0e38 }.SelectMany(BitConverter.GetBytes)]));
        Assert.Equal([float.PositiveInfinity, 3.0e38f], Npy.ReadTensor(temp.File("inf.npy")).Data); // a true ∞, and a value that fits, pass as they are

        byte[] json = Encoding.UTF8.GetBytes("{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}");
        var bytes = new byte[8 + json.Length + 16];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        BitConverter.GetBytes(0.5).CopyTo(bytes, 8 + json.Length);
        BitConverter.GetBytes(5e40).CopyTo(bytes, 8 + json.Length + 8);
        Assert.Equal("safetensors file 't': tensor 'w': element 1 is 5E+40, beyond float32's range (±3.4e38).",
            Assert.Throws<FileFormatException>(() => Safetensors.Parse(bytes, "t")).Message);
    }

    [Fact]
    public void Safetensors_caps_the_header_before_reading_it()
    {
        var bytes = new byte[16];
        bytes[8] = (byte)'{'; // a header that begins as one does (without it the file is named as not safetensors at all)
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 200_000_000);
        Assert.Contains("exceeds the 100000000-byte limit", Assert.Throws<FileFormatException>(() => Safetensors.Parse(bytes, "t")).Message, StringComparison.Ordinal);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 9);
        Assert.Contains("runs past the end", Assert.Throws<FileFormatException>(() => Safetensors.Parse(bytes, "t")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Writes_replace_the_target_atomically_and_leave_no_temporary_files()
    {
        using var temp = Fixtures.TempFolder();
        string path = temp.File("out.npy");
        File.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => FileUtil.WriteAtomically(path, s =>
        {
            s.WriteByte(1);
            throw new InvalidOperationException("crash mid-write");
        }));
        Assert.Equal("old", File.ReadAllText(path));
        Npy.Write(path, new Tensor([2], [1f, 2f]));
        Assert.Equal([1f, 2f], Npy.ReadTensor(path).Data);
        Assert.Single(Directory.GetFiles(temp.Path));
    }

    [Fact]
    public void Writes_refuse_a_path_that_names_a_folder_or_a_special_file_before_anything_is_made()
    {
        using var temp = Fixtures.TempFolder();
        // "new/" had made the folder, passed the check, and failed only at the final rename, after a whole run.
        string folder = temp.File("new") + Path.DirectorySeparatorChar;
        Assert.Contains("ends in a separator: it names a folder, not a file", Assert.Throws<IOException>(() => FileUtil.RequireWritable(folder)).Message, StringComparison.Ordinal);
        Assert.Throws<IOException>(() => FileUtil.WriteAtomically(folder, s => s.WriteByte(1)));
        Assert.False(Directory.Exists(folder));

        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        // A pipe stays a pipe (as root, a rename over /dev/null had replaced the device with a regular file).
        string pipe = temp.File("pipe");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", pipe))
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        foreach (string special in new[] { pipe, "/dev/null" })
        {
            Assert.Contains("is a device, pipe or socket, not a file", Assert.Throws<IOException>(() => FileUtil.RequireWritable(special)).Message, StringComparison.Ordinal);
        }

        Assert.Throws<IOException>(() => FileUtil.WriteAtomically(pipe, s => s.WriteByte(1)));
        Assert.Equal([pipe], Directory.GetFileSystemEntries(temp.Path));
        Assert.False(File.GetAttributes(pipe).HasFlag(FileAttributes.Directory));
    }

    [Fact]
    public void Writes_go_through_a_symbolic_link_to_the_file_it_names_and_keep_the_link()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "symbolic links need a privilege on Windows");
        using var temp = Fixtures.TempFolder();
        Directory.CreateDirectory(temp.File("runs"));
        string real = temp.File("runs/real.npy"), link = temp.File("link.npy"), chain = temp.File("chain.npy");
        Npy.Write(real, new Tensor([1], [0f]));
        File.CreateSymbolicLink(link, Path.Combine("runs", "real.npy")); // relative: read from the link's folder
        File.CreateSymbolicLink(chain, link);

        // The rename had replaced the link with a file and left its target old.
        Npy.Write(chain, new Tensor([2], [1f, 2f]));
        Assert.Equal([1f, 2f], Npy.ReadTensor(real).Data);
        Assert.NotNull(new FileInfo(chain).LinkTarget);
        Assert.NotNull(new FileInfo(link).LinkTarget);
        Assert.Equal(["real.npy"], Directory.GetFiles(temp.File("runs")).Select(Path.GetFileName));

        // A relative target's ".." goes up from where the link really lies: through a linked folder, runs/inner's
        // "../models" is runs/models (.NET's path arithmetic had cancelled it against the link's own name: a models
        // folder made beside the link, and the real file left old).
        Directory.CreateDirectory(temp.File("runs/inner"));
        Directory.CreateDirectory(temp.File("runs/models"));
        Npy.Write(temp.File("runs/models/best.npy"), new Tensor([1], [0f]));
        File.CreateSymbolicLink(temp.File("runs/inner/best.npy"), Path.Combine("..", "models", "best.npy"));
        Directory.CreateSymbolicLink(temp.File("inner"), temp.File("runs/inner"));
        Npy.Write(temp.File("inner/best.npy"), new Tensor([1], [5f]));
        Assert.Equal([5f], Npy.ReadTensor(temp.File("runs/models/best.npy")).Data);
        Assert.False(Directory.Exists(temp.File("models")));

        // A link to a file not made yet makes that file (its folders too).
        string ahead = temp.File("ahead.npy");
        File.CreateSymbolicLink(ahead, temp.File("runs/made.npy"));
        FileUtil.RequireWritable(ahead);
        Npy.Write(ahead, new Tensor([1], [3f]));
        Assert.Equal([3f], Npy.ReadTensor(temp.File("runs/made.npy")).Data);
        Assert.NotNull(new FileInfo(ahead).LinkTarget);

        // A link to a folder names a folder; a loop is refused naming the path, and both links stay as they were.
        File.CreateSymbolicLink(temp.File("to-folder"), temp.File("runs"));
        Assert.Contains("is a folder, not a file", Assert.Throws<IOException>(() => FileUtil.RequireWritable(temp.File("to-folder"))).Message, StringComparison.Ordinal);
        File.CreateSymbolicLink(temp.File("a"), temp.File("b"));
        File.CreateSymbolicLink(temp.File("b"), temp.File("a"));
        foreach (Action write in new Action[] { () => FileUtil.RequireWritable(temp.File("a")), () => FileUtil.WriteAtomically(temp.File("a"), s => s.WriteByte(1)) })
        {
            Assert.Contains($"'{temp.File("a")}' is a symbolic link that cannot be followed", Assert.Throws<IOException>(write).Message, StringComparison.Ordinal);
        }

        Assert.Equal(temp.File("b"), new FileInfo(temp.File("a")).LinkTarget);

        if (OperatingSystem.IsLinux())
        {
            // /dev/stdout on a pipe: /proc/self/fd/N names "pipe:[…]", no path; the link itself is refused as a pipe.
            using var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
            string descriptor = $"/proc/self/fd/{pipe.SafePipeHandle.DangerousGetHandle()}";
            Assert.Contains("is a device, pipe or socket, not a file", Assert.Throws<IOException>(() => FileUtil.RequireWritable(descriptor)).Message, StringComparison.Ordinal);
            Assert.Contains("is a device, pipe or socket, not a file", Assert.Throws<IOException>(() => FileUtil.WriteAtomically(descriptor, s => s.WriteByte(1))).Message, StringComparison.Ordinal);
        }
    }
}
