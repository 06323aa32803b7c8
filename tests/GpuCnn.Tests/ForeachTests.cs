using GpuCnn.Ilgpu;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// The tensor-list (foreach) forms of the optimizer steps, the squared norms and the scaling, on every backend: each
/// gives exactly the bits of its single-tensor form applied to every tensor in turn — over more tensors than one GPU
/// launch takes, with lengths from 1 to several thousand — and refuses lists it cannot run as that loop would.
/// </summary>
public abstract class ForeachTests(BackendFixture fixture)
{
    /// <summary>36 tensors (two launches of at most 32 on ILGPU), one of them long enough for several norm chunks.</summary>
    private static readonly int[] Lengths =
        [7, 1, 300, 16, 2, 4_000, 9, 33, 1, 5, 64, 3, 120, 8, 1, 17, 250, 6, 2, 40, 11, 90, 4, 1, 27, 3, 500, 12, 6, 2, 75, 19, 1, 8, 130, 5];

    [Fact]
    public void Sgd_over_a_list_gives_the_bits_of_a_step_per_tensor()
    {
        var backend = fixture.Require();
        var options = new SgdOptions(0.05f, Momentum: 0.9f, Dampening: 0.1f, WeightDecay: 0.01f); // Nesterov's line is the same code in both
        using var listed = new Tensors(backend, 3, seed: 1);
        using var each = new Tensors(backend, 3, seed: 1);
        for (int step = 0; step < 2; step++)
        {
            listed.Gradients(seed: 10 + step);
            each.Gradients(seed: 10 + step);
            backend.SgdUpdate(options, step == 0, listed[0], listed.Gradient, listed[1], learningRate: 0.07f);
            for (int i = 0; i < Lengths.Length; i++)
            {
                backend.SgdUpdate(options, step == 0, each[0][i], each.Gradient[i], each[1][i], learningRate: 0.07f);
            }
        }

        listed.AssertIdentical(each, "SGD");
    }

    /// <summary>
    /// Without momentum the velocities may be an empty list (Sgd keeps no buffers then, as PyTorch keeps none): the
    /// same bits as a step per tensor with a buffer, which stays untouched; with momentum an empty list is refused.
    /// </summary>
    [Fact]
    public void Plain_sgd_over_a_list_takes_no_velocities()
    {
        var backend = fixture.Require();
        var options = new SgdOptions(0.05f, WeightDecay: 0.01f);
        using var listed = new Tensors(backend, 2, seed: 3);
        using var each = new Tensors(backend, 2, seed: 3);
        float[][] buffers = [.. each[1].Select(backend.DownloadArray)];
        for (int step = 0; step < 2; step++)
        {
            listed.Gradients(seed: 30 + step);
            each.Gradients(seed: 30 + step);
            backend.SgdUpdate(options, step == 0, listed[0], listed.Gradient, []);
            for (int i = 0; i < Lengths.Length; i++)
            {
                backend.SgdUpdate(options, step == 0, each[0][i], each.Gradient[i], each[1][i]);
            }
        }

        for (int i = 0; i < Lengths.Length; i++)
        {
            TensorAssert.Identical<float>(backend.DownloadArray(each[0][i]), backend.DownloadArray(listed[0][i]), $"{backend.Name} plain SGD: tensor {i}");
            TensorAssert.Identical<float>(buffers[i], backend.DownloadArray(each[1][i]), $"{backend.Name} plain SGD: velocity {i} untouched");
            // The list form passes the gradients where the velocities would go: nothing may write them.
            TensorAssert.Identical<float>(backend.DownloadArray(each.Gradient[i]), backend.DownloadArray(listed.Gradient[i]), $"{backend.Name} plain SGD: gradient {i} untouched");
        }

        var refused = Assert.Throws<ArgumentException>(() => backend.SgdUpdate(options with { Momentum = 0.9f }, false, listed[0], listed.Gradient, []));
        Assert.Contains("SgdUpdate: velocities lists 0 tensors, expected one for each of 36", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Adam_over_a_list_gives_the_bits_of_a_step_per_tensor(bool decoupled)
    {
        var backend = fixture.Require();
        var options = decoupled ? AdamOptions.AdamW(0.01f, 0.1f) : new AdamOptions(0.01f, WeightDecay: 0.001f);
        using var listed = new Tensors(backend, 3, seed: 2);
        using var each = new Tensors(backend, 3, seed: 2);
        for (int step = 1; step <= 2; step++)
        {
            listed.Gradients(seed: 20 + step);
            each.Gradients(seed: 20 + step);
            backend.AdamUpdate(options, step, listed[0], listed.Gradient, listed[1], listed[2]);
            for (int i = 0; i < Lengths.Length; i++)
            {
                backend.AdamUpdate(options, step, each[0][i], each.Gradient[i], each[1][i], each[2][i]);
            }
        }

        listed.AssertIdentical(each, decoupled ? "AdamW" : "Adam");
    }

    [Fact]
    public void Norms_and_scaling_over_a_list_give_the_bits_of_each_tensor_in_turn()
    {
        var backend = fixture.Require();
        using var listed = new Tensors(backend, 1, seed: 3);
        using var each = new Tensors(backend, 1, seed: 3);
        using var listedSums = backend.Allocate<float>([Lengths.Length]);
        using var eachSums = backend.Allocate<float>([Lengths.Length]);
        using var coefficient = backend.Upload<float>([2], [0.37f, float.NaN]);
        float[][] before = [.. listed[0].Select(backend.DownloadArray)];

        backend.SquaredNorms(listed[0], listedSums);
        backend.ScaleBy(listed[0], coefficient);
        for (int i = 0; i < Lengths.Length; i++)
        {
            backend.SquaredNorm(each[0][i], eachSums, i);
            backend.ScaleBy(each[0][i], coefficient);
        }

        float[] sums = backend.DownloadArray(listedSums);
        TensorAssert.Identical<float>(backend.DownloadArray(eachSums), sums, $"{backend.Name} squared norms");
        Assert.InRange(sums.Sum(), 0.9 * Lengths.Sum() / 3, 1.1 * Lengths.Sum() / 3); // values in U(−1, 1): E x² = 1/3
        listed.AssertIdentical(each, "ScaleBy");
        // Against the host too (where the list form is the loop itself, the comparison above is the same code twice).
        TensorAssert.Close(before.Select(t => t.Sum(v => (double)v * v)).ToArray(), sums, new Shape(Lengths.Length), 1e-6, 1e-5, $"{backend.Name} squared norms against the host");
        for (int i = 0; i < Lengths.Length; i++)
        {
            TensorAssert.Identical<float>([.. before[i].Select(v => v * 0.37f)], backend.DownloadArray(listed[0][i]), $"{backend.Name} tensor {i} scaled by 0.37");
        }
    }

    [Fact]
    public void A_list_copies_into_one_flat_buffer_and_back()
    {
        var backend = fixture.Require();
        using var source = new Tensors(backend, 1, seed: 4);
        using var target = new Tensors(backend, 1, seed: 5);
        using var flat = backend.Allocate<float>([Lengths.Sum()]);
        // A NaN with a payload, a subnormal and −0 among them: at scale 1 every bit is copied.
        backend.Upload<float>([BitConverter.Int32BitsToSingle(0x7FC12345), 1e-40f, -0f, 1f, 2f, 3f, 4f], source[0][0]);
        float[] concatenation = [.. source[0].SelectMany(backend.DownloadArray)];

        backend.CopyToFlat(source[0], flat, scale: 0.25f);
        float[] scaled = backend.DownloadArray(flat);
        TensorAssert.Identical<float>([.. concatenation.Skip(1).Select(v => v * 0.25f)], scaled.AsSpan(1), $"{backend.Name} scaled flat copy");
        Assert.True(float.IsNaN(scaled[0]));
        backend.CopyToFlat(source[0], flat);
        TensorAssert.Identical<float>(concatenation, backend.DownloadArray(flat), $"{backend.Name} flat copy");
        backend.CopyFromFlat(flat, target[0]);
        source.AssertIdentical(target, "copied back");

        using var other = backend.Allocate<float>([4]); // half as long as the first two tensors together (7 + 1)
        Assert.StartsWith($"CopyToFlat: flat has shape ({Lengths.Sum()}) ({Lengths.Sum()} elements), expected 11 elements.",
            Assert.Throws<ArgumentException>(() => backend.CopyToFlat([other, source[0][0]], flat)).Message, StringComparison.Ordinal);
        Assert.StartsWith("CopyFromFlat: flat shares storage with xs[0]",
            Assert.Throws<ArgumentException>(() => backend.CopyFromFlat(other, [other.View([2, 2])])).Message, StringComparison.Ordinal);
        Assert.StartsWith("CopyFromFlat: xs[0] and xs[1] share storage",
            Assert.Throws<ArgumentException>(() => backend.CopyFromFlat(flat, [other, other, .. source[0].Skip(2)])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_lists_do_nothing()
    {
        var backend = fixture.Require();
        using var sums = backend.Allocate<float>([1]);
        using var coefficient = backend.Allocate<float>([1]);
        backend.SgdUpdate(new SgdOptions(0.1f, 0.9f), true, [], [], []);
        backend.AdamUpdate(new AdamOptions(), 1, [], [], [], []);
        backend.ScaleBy([], coefficient);
        Assert.Throws<ArgumentException>(() => backend.SquaredNorms([], sums)); // sums must hold one value per tensor
    }

    [Fact]
    public void Bad_lists_name_what_is_wrong()
    {
        var backend = fixture.Require();
        using var a = backend.Allocate<float>([4]);
        using var b = backend.Allocate<float>([3]);
        using var c = backend.Allocate<float>([4]);
        using var d = backend.Allocate<float>([3]);
        using var e = backend.Allocate<float>([2, 2]);
        using var f = backend.Allocate<float>([2, 2]);
        using var sums = backend.Allocate<float>([2]);
        var sgd = new SgdOptions(0.1f, 0.9f);

        Assert.StartsWith("SgdUpdate: gradients lists 1 tensors, expected one for each of 2.",
            Assert.Throws<ArgumentException>(() => backend.SgdUpdate(sgd, true, [a, b], [c], [c, d])).Message, StringComparison.Ordinal);
        Assert.StartsWith("SgdUpdate: velocities[1] has shape (4), expected (3).",
            Assert.Throws<ArgumentException>(() => backend.SgdUpdate(sgd, true, [a, b], [c, d], [c, c])).Message, StringComparison.Ordinal);
        Assert.StartsWith("SgdUpdate: parameters[0] and parameters[1] share storage; every tensor it writes must be listed once.",
            Assert.Throws<ArgumentException>(() => backend.SgdUpdate(sgd, true, [a, a.View([2, 2])], [c, e], [c, f])).Message, StringComparison.Ordinal);
        Assert.StartsWith("AdamUpdate: parameters[0] and secondMoments[0] share storage",
            Assert.Throws<ArgumentException>(() => backend.AdamUpdate(new AdamOptions(), 1, [a, b], [c, d], [c, d], [a, b])).Message, StringComparison.Ordinal);
        Assert.StartsWith("SgdUpdate: gradients[1] and parameters[1] share storage; what it reads must not be what it writes.",
            Assert.Throws<ArgumentException>(() => backend.SgdUpdate(sgd, true, [a, b], [c, b], [e.View([4]), d])).Message, StringComparison.Ordinal);
        Assert.StartsWith("AdamUpdate: gradients[0] and secondMoments[0] share storage",
            Assert.Throws<ArgumentException>(() => backend.AdamUpdate(new AdamOptions(), 1, [a], [f.View([4])], [c], [f.View([4])])).Message, StringComparison.Ordinal);
        Assert.StartsWith("SquaredNorms: sums shares storage with xs[1]; a GPU would read it while writing it.",
            Assert.Throws<ArgumentException>(() => backend.SquaredNorms([a, sums], sums)).Message, StringComparison.Ordinal);
        Assert.StartsWith("SquaredNorms: sums has shape (2) (2 elements), expected 3 elements.",
            Assert.Throws<ArgumentException>(() => backend.SquaredNorms([a, b, c], sums)).Message, StringComparison.Ordinal);
        Assert.StartsWith("ScaleBy: coefficient shares storage with xs[0]",
            Assert.Throws<ArgumentException>(() => backend.ScaleBy([a], a)).Message, StringComparison.Ordinal);
        Assert.StartsWith("ScaleBy: xs[0] and xs[2] share storage",
            Assert.Throws<ArgumentException>(() => backend.ScaleBy([a, b, a], sums)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentNullException>(() => backend.ScaleBy((IReadOnlyList<DeviceTensor<float>>)null!, sums));
        Assert.Throws<ArgumentNullException>(() => backend.ScaleBy([a, null!], sums));

        var gone = backend.Allocate<float>([3]);
        gone.Dispose();
        Assert.StartsWith("ScaleBy: xs[1] (3) has been disposed.",
            Assert.Throws<ObjectDisposedException>(() => backend.ScaleBy([a, gone], sums)).Message, StringComparison.Ordinal);
        using var other = new Cpu.ReferenceBackend();
        using var elsewhere = other.Allocate<float>([3]);
        Assert.StartsWith("ScaleBy: xs[1] lives on backend 'reference'",
            Assert.Throws<ArgumentException>(() => backend.ScaleBy([a, elsewhere], sums)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_optimizer_or_clipper_refuses_a_parameter_listed_twice()
    {
        var backend = fixture.Require();
        using var model = Sequential.Create("flatten,dense(2)", [3], backend);
        var weight = model.NamedParameters().First();
        (string, Parameter)[] twice = [weight, ("again." + weight.Key, weight.Parameter)];
        Assert.Equal("Optimizer: 1.weight and again.1.weight are the same tensor; list each parameter once. (Parameter 'parameters')",
            Assert.Throws<ArgumentException>(() => new Sgd(backend, twice, new SgdOptions(0.1f))).Message);
        Assert.StartsWith("gradient clipping: 1.weight and again.1.weight are the same tensor",
            Assert.Throws<ArgumentException>(() => new GradientClipper(backend, twice, 1f)).Message, StringComparison.Ordinal);
    }

    /// <summary>Parallel lists of tensors of <see cref="Lengths"/> (values, then state) and one list of gradients.</summary>
    private sealed class Tensors : IDisposable
    {
        private readonly Backend _backend;
        private readonly DeviceTensor<float>[][] _lists;

        public Tensors(Backend backend, int lists, int seed)
        {
            _backend = backend;
            var random = new Random(seed);
            _lists = [.. Enumerable.Range(0, lists).Select(l => Lengths.Select(n => Random(n, positive: l == 2)).ToArray())];
            Gradient = [.. Lengths.Select(n => backend.Allocate<float>([n]))];

            // Values in U(−1, 1); the second moments (list 2) in U(0, 1), as Adam keeps them.
            DeviceTensor<float> Random(int n, bool positive) =>
                backend.Upload<float>([n], [.. Enumerable.Range(0, n).Select(_ => (float)(positive ? random.NextDouble() : (random.NextDouble() * 2) - 1))]);
        }

        public DeviceTensor<float>[] Gradient { get; }

        public DeviceTensor<float>[] this[int list] => _lists[list];

        public void Gradients(int seed)
        {
            var random = new Random(seed);
            foreach (var g in Gradient)
            {
                _backend.Upload<float>([.. Enumerable.Range(0, g.Length).Select(_ => (float)((random.NextDouble() * 2) - 1))], g);
            }
        }

        public void AssertIdentical(Tensors other, string what)
        {
            for (int l = 0; l < _lists.Length; l++)
            {
                for (int i = 0; i < Lengths.Length; i++)
                {
                    TensorAssert.Identical<float>(_backend.DownloadArray(other._lists[l][i]), _backend.DownloadArray(_lists[l][i]),
                        $"{_backend.Name} {what}: list {l}, tensor {i} of length {Lengths[i]}");
                }
            }
        }

        public void Dispose()
        {
            foreach (var tensor in _lists.SelectMany(l => l).Concat(Gradient))
            {
                tensor.Dispose();
            }
        }
    }
}

public sealed class ReferenceForeach(ReferenceFixture fixture) : ForeachTests(fixture), IClassFixture<ReferenceFixture>;

public sealed class CpuForeach(CpuFixture fixture) : ForeachTests(fixture), IClassFixture<CpuFixture>;

public sealed class IlgpuCpuForeach(IlgpuCpuFixture fixture) : ForeachTests(fixture), IClassFixture<IlgpuCpuFixture>;

/// <summary>Every norm cut into three chunks and added by the second pass (GPUs cut long tensors so).</summary>
public sealed class IlgpuCpuSplitForeach(IlgpuCpuSplitFixture fixture) : ForeachTests(fixture), IClassFixture<IlgpuCpuSplitFixture>;

/// <summary>The list forms a launch per tensor, as on OpenCL: the same bits again.</summary>
public sealed class IlgpuCpuGpuGroupsForeach(IlgpuCpuGpuGroupsFixture fixture) : ForeachTests(fixture), IClassFixture<IlgpuCpuGpuGroupsFixture>;

public sealed class IlgpuCpuPerTensorForeach(IlgpuCpuPerTensorFixture fixture) : ForeachTests(fixture), IClassFixture<IlgpuCpuPerTensorFixture>;

public sealed class CudaForeach(CudaFixture fixture) : ForeachTests(fixture), IClassFixture<CudaFixture>;

public sealed class OpenCLForeach(OpenCLFixture fixture) : ForeachTests(fixture), IClassFixture<OpenCLFixture>;

/// <summary>What the list forms save a GPU: launches per step, planned for an H100 (no kernel runs).</summary>
public sealed class ForeachLaunchTests(IlgpuCpuFixture fixture) : IClassFixture<IlgpuCpuFixture>
{
    [Fact]
    public void A_resnet8_step_updates_and_clips_its_29_tensors_in_one_launch_each()
    {
        var backend = (IlgpuBackend)fixture.Require();
        using var model = Sequential.Create(ArchitectureSpec.ResNet8, [1, 28, 28], backend);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f, 0.9f));
        using var adam = new Adam(backend, model.NamedParameters(), new AdamOptions());
        using var clipper = new GradientClipper(backend, model.NamedParameters(), 1f);
        Assert.Equal(29, sgd.Parameters.Count);

        Assert.Equal(["SgdList"], Kernels(sgd.Step)); // a launch per tensor made 29
        Assert.Equal(["AdamList"], Kernels(adam.Step));
        // The norms' chunk pass and chunk sum (the 36,864-weight layers run 18 chunks on an H100), the coefficient, the
        // scaling: 4 launches where a launch or two per tensor made 63.
        Assert.Equal(["SquaredNormChunksList", "SumChunksList", "ClipCoefficient", "ScaleByList"], Kernels(clipper.Clip));

        string[] Kernels(Action body) => [.. backend.PlanLaunches(IlgpuBackend.DeviceProfile.Hopper, body).Select(r => r.Kernel)];
    }
}
