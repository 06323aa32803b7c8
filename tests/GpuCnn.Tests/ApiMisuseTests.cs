using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;
using GpuCnn.IO;
using GpuCnn.Kernels;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// The C# API used wrongly, as a helper's audit did it: every case is either right or one clear exception naming the
/// mistake — never a silently wrong model, a leak, or an unrelated message later.
/// </summary>
public sealed class ApiMisuseTests
{
    private const string Spec = "conv(2,3,pad=1),relu,maxpool(2),flatten,dense(3)";

    [Fact]
    public void An_optimizer_of_another_model_is_refused_by_the_trainer_and_by_checkpoints()
    {
        using var backend = new CpuBackend();
        using var first = Sequential.Create(Spec, [1, 4, 4], backend, seed: 1);
        using var second = Sequential.Create(Spec, [1, 4, 4], backend, seed: 2);
        using var sgd = new Sgd(backend, first.NamedParameters(), new SgdOptions(0.5f));
        var error = Assert.Throws<ArgumentException>(() => new Trainer(second, sgd, new TrainingOptions(Epochs: 1, BatchSize: 2)));
        Assert.Equal("Trainer: the optimizer's parameter '0.weight' is not a parameter of this model; give the optimizer the model's NamedParameters().", error.Message);

        using var temp = Fixtures.TempFolder();
        Assert.StartsWith("CheckpointFile.Save: the optimizer's parameter '0.weight'", Assert.Throws<ArgumentException>(() =>
            CheckpointFile.Save(temp.File("c.safetensors"), second, sgd, TrainingState.Start, new Dictionary<string, string>())).Message, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("c.safetensors")));

        // Some of the model's parameters (the others frozen) is what fine-tuning does, and allowed.
        using var partial = new Sgd(backend, second.NamedParameters().Skip(2), new SgdOptions(0.5f));
        _ = new Trainer(second, partial, new TrainingOptions(Epochs: 1, BatchSize: 2));
    }

    [Fact]
    public void An_optimizer_or_clipper_over_another_backends_parameters_is_refused_when_made()
    {
        using var cpu = new CpuBackend();
        using var reference = new ReferenceBackend();
        using var model = Sequential.Create(Spec, [1, 4, 4], cpu, seed: 1);
        var error = Assert.Throws<ArgumentException>(() => new Adam(reference, model.NamedParameters(), new AdamOptions(0.01f)));
        Assert.StartsWith("Optimizer: parameter '0.weight' lives on backend", error.Message, StringComparison.Ordinal);
        Assert.StartsWith("gradient clipping: parameter '0.weight' lives on backend",
            Assert.Throws<ArgumentException>(() => new GradientClipper(reference, model.NamedParameters(), 1f)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Predict_refuses_images_whose_axes_differ_though_their_count_agrees()
    {
        using var backend = new CpuBackend();
        using var model = Sequential.Create("conv(2,3),flatten,dense(3)", [3, 4, 5], backend, seed: 1);
        var error = Assert.Throws<ArgumentException>(() => model.Predict(new Tensor([2, 4, 5, 3]))); // channels last
        Assert.StartsWith("Predict: images have shape (2,4,5,3), the model expects (N,3,4,5).", error.Message, StringComparison.Ordinal);
        Assert.Equal(new Shape(2, 3), model.Predict(new Tensor([2, 3, 4, 5])).Shape);
    }

    [Fact]
    public void A_first_flatten_does_not_keep_every_input_it_was_given_alive()
    {
        using var backend = new CpuBackend();
        using var model = Sequential.Create("flatten,dense(3)", [1, 2, 2], backend, seed: 1);
        var first = Forget(backend, model);
        for (int i = 0; i < 20; i++)
        {
            using var x = backend.Upload<float>([2, 1, 2, 2], new float[8]);
            model.Forward(x);
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(first.IsAlive, "the first input, dropped by the caller, is still held by the model");
    }

    /// <summary>Runs the model on an input the caller then drops, undisposed; returns a weak reference to it.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static WeakReference Forget(Backend backend, Sequential model)
    {
        var x = backend.Upload<float>([2, 1, 2, 2], new float[8]);
        model.Forward(x);
        return new WeakReference(x);
    }

    [Fact]
    public void A_backward_goes_back_only_through_the_last_forward_and_says_when_there_is_none()
    {
        using var backend = new CpuBackend();
        using var model = Sequential.Create(Spec, [1, 4, 4], backend, seed: 1);
        using var x = backend.Upload<float>([4, 1, 4, 4], TestData.Uniform(64, 3));
        using var labels = backend.Upload<int>([4], [0, 1, 2, 1]);
        using var dlogits = backend.Allocate<float>([4, 3]);
        using var loss = backend.Allocate<float>([1]);
        var noForward = Assert.Throws<InvalidOperationException>(() => model.Backward(dlogits));
        Assert.StartsWith("Sequential.Backward: there is no Forward to go back through; call Forward on the batch first", noForward.Message, StringComparison.Ordinal);

        backend.SoftmaxCrossEntropy(model.Forward(x), labels, dlogits, loss);
        model.Backward(dlogits);
        float[] gradient = backend.DownloadArray(model.NamedParameters().First().Parameter.Gradient);

        // A Predict between them had overwritten what the layers kept, and the gradients came out wrong without a word.
        backend.SoftmaxCrossEntropy(model.Forward(x), labels, dlogits, loss);
        _ = model.Predict(new Tensor(new Shape(4, 1, 4, 4), TestData.Uniform(64, 9)));
        Assert.Contains("Predict, Trainer.Evaluate, Trainer.Fit and a profile run passes of their own",
            Assert.Throws<InvalidOperationException>(() => model.Backward(dlogits)).Message, StringComparison.Ordinal);

        // A dlogits of another batch had failed inside a GEMM, naming neither the model nor the batch.
        _ = model.Forward(x);
        using var wrong = backend.Allocate<float>([2, 3]);
        Assert.Equal("Sequential.Backward: dlogits has shape (2,3); the last Forward was of 4 samples, so expected (4,3). (Parameter 'dlogits')",
            Assert.Throws<ArgumentException>(() => model.Backward(wrong)).Message);

        // After a fresh Forward the same gradients come back; in evaluation mode a Backward is allowed (PyTorch's eval() too).
        model.Backward(dlogits);
        TensorAssert.Identical<float>(gradient, backend.DownloadArray(model.NamedParameters().First().Parameter.Gradient), "after Forward again");
        model.Eval();
        _ = model.Forward(x);
        model.Backward(dlogits);

        // A Forward that fails part-way leaves nothing to go back through (the first layers hold the failed pass's input).
        var failing = new Failing();
        using var broken = new Sequential([.. ArchitectureSpec.Parse("conv(2,3,pad=1)"), failing, .. ArchitectureSpec.Parse("flatten,dense(3)")], [1, 4, 4], backend);
        backend.SoftmaxCrossEntropy(broken.Forward(x), labels, dlogits, loss);
        failing.Fails = true;
        Assert.Throws<InvalidOperationException>(() => broken.Forward(x));
        Assert.StartsWith("Sequential.Backward: there is no Forward to go back through", Assert.Throws<InvalidOperationException>(() => broken.Backward(dlogits)).Message,
            StringComparison.Ordinal);
    }

    /// <summary>Hands x on, or throws when <see cref="Fails"/>.</summary>
    private sealed class Failing : Layer
    {
        public bool Fails { get; set; }

        public override string Spec => "failing";

        public override DeviceTensor<float> Forward(DeviceTensor<float> x) => Fails ? throw new InvalidOperationException("failing: asked to") : x;

        public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) => needInputGradient ? dy : null;

        protected override Shape InferOutputShape(Shape input) => input;
    }

    [Fact]
    public void Predicting_many_different_counts_keeps_buffers_for_the_last_few_sizes_only()
    {
        // Every batch size a model met had kept a set of buffers until the model was disposed: predicting counts
        // 1…300 with LeNet-5 had held 1.3 GB. Now the four most recently used sizes are kept.
        const string lenet = "conv(6,5,pad=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,dense(120),relu,dense(84),relu,dense(10)";
        var images = Tensor.Random([40, 1, 28, 28], seed: 5);
        long Held(IEnumerable<int> counts)
        {
            using var backend = new CpuBackend(); // its own: scratch grows with the largest batch and stays
            using var model = Sequential.Create(lenet, [1, 28, 28], backend, seed: 1);
            model.Normalization = new ChannelNormalization([0.1f], [0.3f]); // its per-size buffers too
            long before = backend.BytesAllocated;
            foreach (int count in counts)
            {
                _ = model.Predict(new Tensor(new Shape(count, 1, 28, 28), images.Data.AsSpan(0, count * 784).ToArray()));
            }

            return backend.BytesAllocated - before;
        }

        long lastFour = Held([37, 38, 39, 40]);
        Assert.True(lastFour > 0);
        Assert.Equal(lastFour, Held(Enumerable.Range(1, 40)));
    }

    [Fact]
    public void Disposed_optimizers_and_models_and_bad_options_are_named_where_they_are_given()
    {
        using var backend = new CpuBackend();
        var model = Sequential.Create(Spec, [1, 4, 4], backend, seed: 1);
        var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.5f));
        // A batch size of 0 had been accepted here and refused only when Fit ran.
        Assert.StartsWith("Training: batch size must be positive, got 0.",
            Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 0))).Message, StringComparison.Ordinal);
        // The schedule asked directly, without Fit's check: the same errors, not a DivideByZeroException or NaN.
        Assert.StartsWith("Training: step size must be positive, got 0.", Assert.Throws<ArgumentOutOfRangeException>(
            () => new TrainingOptions(Schedule: LearningRateSchedule.Step, StepSize: 0).LearningRateAt(0.1f, 1)).Message, StringComparison.Ordinal);
        Assert.StartsWith("Training: epochs must be positive, got 0.", Assert.Throws<ArgumentOutOfRangeException>(
            () => new TrainingOptions(Epochs: 0, Schedule: LearningRateSchedule.Cosine).LearningRateAt(0.1f, 1)).Message, StringComparison.Ordinal);
        Assert.StartsWith("LearningRateAt: epoch must be positive, got 0.", Assert.Throws<ArgumentOutOfRangeException>(
            () => new TrainingOptions(Epochs: 3).LearningRateAt(0.1f, 0)).Message, StringComparison.Ordinal);

        // Step after the model was disposed had said only "SgdUpdate: parameters[0] (2,1,3,3) has been disposed".
        model.Dispose();
        Assert.StartsWith("Sgd.Step: parameter '0.weight' has been freed: the model this optimizer updates has been disposed.",
            Assert.Throws<ObjectDisposedException>(sgd.Step).Message, StringComparison.Ordinal);
        sgd.Dispose();
        Assert.Contains("Sgd.Step: the optimizer has been disposed.", Assert.Throws<ObjectDisposedException>(sgd.Step).Message, StringComparison.Ordinal);
        using var other = Sequential.Create(Spec, [1, 4, 4], backend, seed: 1);
        Assert.Contains("Trainer: the optimizer has been disposed.",
            Assert.Throws<ObjectDisposedException>(() => new Trainer(other, sgd, new TrainingOptions(Epochs: 1, BatchSize: 2))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_file_of_another_kind_is_named_as_not_safetensors()
    {
        using var temp = Fixtures.TempFolder();
        File.WriteAllText(temp.File("notes.txt"), "these are not weights, just a text file somebody named wrongly\n");
        using var backend = new CpuBackend();
        var error = Assert.Throws<FileFormatException>(() => ModelFile.Load(temp.File("notes.txt"), backend));
        Assert.Equal($"'{temp.File("notes.txt")}' is not a safetensors file: it does not begin with an 8-byte header length and a JSON header ('{{').",
            error.Message);
    }

    [Fact]
    public void A_default_shape_is_the_scalar_shape_it_equals()
    {
        var shape = new Shape();
        Assert.Equal(new Shape(Array.Empty<int>()), shape);
        Assert.Equal((0, 1), (shape.Rank, shape.Size));
        Assert.Equal([5f], new Tensor(shape, [5f]).Data);
    }

    [Fact]
    public void A_model_without_parameters_trains_and_its_parameters_are_checked_as_none()
    {
        using var backend = new CpuBackend();
        using var model = Sequential.Create("flatten", [1, 2, 2], backend, seed: 1); // four logits straight from the pixels
        Assert.Null(model.FirstNonFiniteTensor());
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        var data = new Dataset(Tensor.Random([8, 1, 2, 2], 3), [0, 1, 2, 3, 0, 1, 2, 3]);
        var history = new Trainer(model, sgd, new TrainingOptions(Epochs: 2, BatchSize: 4)).Fit(data);
        Assert.Equal(2, history.Count);
    }

    [Fact]
    public void Misused_layers_and_state_fail_at_once_with_what_is_wrong()
    {
        using var backend = new CpuBackend();
        var layers = ArchitectureSpec.Parse("conv(2,3),relu,flatten,dense(3)");
        long before = backend.BytesAllocated;
        var twice = Assert.Throws<ArgumentException>(() => new Sequential([layers[0], layers[1], layers[1], layers[2], layers[3]], [1, 4, 4], backend));
        Assert.StartsWith("relu: one layer is listed twice", twice.Message, StringComparison.Ordinal);
        Assert.Equal(before, backend.BytesAllocated); // nothing built before the check

        using var model = Sequential.Create("conv(2,3,pad=1),batchnorm,maxpool(2),flatten,dense(3)", [1, 4, 4], backend, seed: 1);
        using var dy = backend.Upload<float>([2, 3], new float[6]);
        model.Forward(backend.Upload<float>([2, 1, 4, 4], new float[32]));
        using var fresh = Sequential.Create("maxpool(2),flatten,dense(3)", [1, 4, 4], backend, seed: 1);
        Assert.Equal("maxpool(2): backward before forward.", Assert.Throws<InvalidOperationException>(() => fresh.Layers[0].Backward(backend.Upload<float>([2, 1, 2, 2], new float[8]), true)).Message);

        var state = model.StateDict();
        state["1.num_batches_tracked"] = new Tensor(new Shape(), [float.PositiveInfinity]);
        Assert.Contains("counter '1.num_batches_tracked' is Infinity, not a whole number of batches", Assert.Throws<ArgumentException>(() => model.LoadStateDict(state)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void An_output_that_is_an_input_is_refused_where_the_operation_reads_while_it_writes(string device)
    {
        using var backend = Backends.Open(device);
        using var x = backend.Upload<float>([1, 1, 3, 3], [.. Enumerable.Range(1, 9).Select(i => (float)i)]);
        using var w = backend.Upload<float>([1, 1, 3, 3], new float[9]);
        var g = new Conv2dGeometry(1, 1, 3, 3, 1, 3, 3, PadH: 1, PadW: 1);
        Assert.Equal("Conv2dForward: y shares storage with x, which it reads while y is written; give y a tensor of its own. (Parameter 'y')",
            Assert.Throws<ArgumentException>(() => backend.Conv2dForward(g, x, w, null, x)).Message);
        using var a = backend.Upload<float>([2, 2], [1, 2, 3, 4]);
        Assert.StartsWith("Gemm: c shares storage with a", Assert.Throws<ArgumentException>(() => backend.Gemm(false, false, 2, 2, 2, 1f, a, a.View([2, 2]), 0f, a)).Message,
            StringComparison.Ordinal);
        using var labels = backend.Upload<int>([2], [0, 1]);
        using var loss = backend.Allocate<float>([1]);
        Assert.StartsWith("SoftmaxCrossEntropy: dlogits shares storage with logits", Assert.Throws<ArgumentException>(() => backend.SoftmaxCrossEntropy(a, labels, a, loss)).Message,
            StringComparison.Ordinal);
        Assert.Equal([1f, 2f, 3f, 4f], backend.DownloadArray(a)); // nothing was written

        // The single-tensor optimizer steps as their list forms: nothing written shares storage with anything else.
        using var b = backend.Upload<float>([2, 2], [5, 6, 7, 8]);
        using var c = backend.Upload<float>([2, 2], [9, 10, 11, 12]);
        Assert.StartsWith("SgdUpdate: parameter shares storage with gradient", Assert.Throws<ArgumentException>(
            () => backend.SgdUpdate(new SgdOptions(0.1f, 0.9f), true, a, a.View([2, 2]), b)).Message, StringComparison.Ordinal);
        Assert.StartsWith("SgdUpdate: velocity shares storage with gradient", Assert.Throws<ArgumentException>(
            () => backend.SgdUpdate(new SgdOptions(0.1f, 0.9f), true, a, b, b.View([4]).View([2, 2]))).Message, StringComparison.Ordinal);
        Assert.StartsWith("AdamUpdate: firstMoment shares storage with secondMoment", Assert.Throws<ArgumentException>(
            () => backend.AdamUpdate(new AdamOptions(), 1, a, b, c, c)).Message, StringComparison.Ordinal);
        Assert.StartsWith("AdamUpdate: parameter shares storage with firstMoment", Assert.Throws<ArgumentException>(
            () => backend.AdamUpdate(new AdamOptions(), 1, a, b, a.View([2, 2]), c)).Message, StringComparison.Ordinal);
        Assert.StartsWith("AdamUpdate: secondMoment shares storage with gradient", Assert.Throws<ArgumentException>(
            () => backend.AdamUpdate(new AdamOptions(), 1, a, b, c, b)).Message, StringComparison.Ordinal);
        Assert.Equal([1f, 2f, 3f, 4f], backend.DownloadArray(a));
        Assert.Equal([5f, 6f, 7f, 8f], backend.DownloadArray(b));
        Assert.Equal([9f, 10f, 11f, 12f], backend.DownloadArray(c));

        // Batch norm's per-channel sums are written, then read again for dx (a dbias over dweight turned ILGPU's dx wrong);
        // its statistics are written beside the running ones it reads. y over x and dx over dy stay allowed.
        using var bx = backend.Upload<float>([2, 2], [1, 2, 3, 4]);
        using var ones = backend.Upload<float>([2], [1, 1]);
        using var zeros = backend.Upload<float>([2], [0, 0]);
        using var mean = backend.Allocate<float>([2]);
        using var invStd = backend.Allocate<float>([2]);
        using var sums = backend.Allocate<float>([2]);
        Assert.StartsWith("BatchNormBackward: dweight shares storage with dbias", Assert.Throws<ArgumentException>(
            () => backend.BatchNormBackward(true, bx, b, ones, zeros, ones, null, sums, sums)).Message, StringComparison.Ordinal);
        Assert.StartsWith("BatchNormForward: mean shares storage with runningMean", Assert.Throws<ArgumentException>(
            () => backend.BatchNormForward(true, bx, ones, zeros, mean, invStd, 0.1f, 1e-5f, c, mean, sums)).Message, StringComparison.Ordinal);
        using (var running = backend.Upload<float>([2], [0, 1]))
        using (var runningVar = backend.Upload<float>([2], [1, 1]))
        using (var dbias = backend.Allocate<float>([2]))
        {
            backend.BatchNormForward(true, bx, ones, zeros, running, runningVar, 0.1f, 1e-5f, bx, mean, invStd); // y over x
            backend.BatchNormBackward(true, c, b, ones, mean, invStd, b, sums, dbias); // dx over dy
        }

        // A gather in place (a shuffle) would read rows it had overwritten.
        using var order = backend.Upload<int>([2], [1, 0]);
        Assert.StartsWith("GatherRows: destination shares storage with source", Assert.Throws<ArgumentException>(
            () => backend.GatherRows(a, order, 0, a.View([2, 2]))).Message, StringComparison.Ordinal);
        Assert.StartsWith("GatherRows: destination shares storage with indices", Assert.Throws<ArgumentException>(
            () => backend.GatherRows(labels, order, 0, order)).Message, StringComparison.Ordinal);
        Assert.Equal([1f, 2f, 3f, 4f], backend.DownloadArray(a));

        // A crop reads the neighbours of what it writes: a view of x is x.
        Assert.StartsWith("RandomCropFlip: y shares storage with x", Assert.Throws<ArgumentException>(
            () => backend.RandomCropFlip(x, x.View([1, 1, 3, 3]), 1, true, 7u)).Message, StringComparison.Ordinal);
        Assert.Equal([.. Enumerable.Range(1, 9).Select(i => (float)i)], backend.DownloadArray(x));

        // Elementwise operations may work in place, as documented.
        backend.ActivationForward(default(Relu), a, a);
        Assert.Equal([1f, 2f, 3f, 4f], backend.DownloadArray(a));
    }

    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Sizes_past_int_and_views_without_dimensions_are_argument_errors_not_crashes(string device)
    {
        using var backend = Backends.Open(device);
        using var a = backend.Upload<float>([2, 2], [1, 2, 3, 4]);
        // 65,536² overflowed int inside the check (an OverflowException naming nothing).
        Assert.StartsWith("Gemm: a has shape (2,2) (4 elements), expected 4294967296 elements", Assert.Throws<ArgumentException>(
            () => backend.Gemm(false, false, 65536, 1, 65536, 1f, a, a, 0f, a)).Message, StringComparison.Ordinal);
        // A rank-0 view had passed the checks and then failed on y.Shape[0] (IndexOutOfRange) where Allocate refuses rank 0.
        using var one = backend.Allocate<float>([1]);
        Assert.StartsWith("View: a tensor has at least one dimension", Assert.Throws<ArgumentException>(() => one.View([])).Message, StringComparison.Ordinal);
        if (device != "ilgpu-cpu")
        {
            // 2³¹ − 1 elements, past .NET's array limit, had reached the host backends' allocation (an out-of-memory there);
            // the shape refuses it now, as every tensor past the kernels' int loops: 4,096 below 2³¹ − 1 is the most.
            Assert.Equal(int.MaxValue - 4096, new Shape(Shape.MaximumElements).Size);
            Assert.Throws<ArgumentOutOfRangeException>(() => new Shape(Shape.MaximumElements / 7 + 1, 7));
            Assert.StartsWith("Shape (2147483647) holds more than 2147479551 elements.",
                Assert.Throws<ArgumentOutOfRangeException>(() => backend.Allocate<float>([int.MaxValue])).Message, StringComparison.Ordinal);
            return;
        }

        // 4,200,000 filters make 65,625 rows of 64-filter tiles, past a GPU grid's y: said before the launch (ILGPU's own
        // "gridDim" error had named neither the kernel nor the operation).
        ((GpuCnn.Ilgpu.IlgpuBackend)backend).ConvolutionAlgorithm = GpuCnn.Ilgpu.ConvolutionAlgorithm.ImplicitGemm;
        using var x = backend.Upload<float>([1, 1, 1, 1], [1f]);
        using var w = backend.Allocate<float>([4_200_000, 1, 1, 1]);
        using var y = backend.Allocate<float>([1, 4_200_000, 1, 1]);
        Assert.StartsWith("Conv2d (implicit GEMM): 4200000 filters make 65625 rows of tiles, more than a GPU grid's 65535", Assert.Throws<ArgumentException>(
            () => backend.Conv2dForward(new Conv2dGeometry(1, 1, 1, 1, 4_200_000, 1, 1), x, w, null, y)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Max_pooling_switches_outside_their_plane_never_reach_another_planes_gradient(string device)
    {
        // 32 planes of 32 × 32 (32,768 inputs: the CPU backend splits the planes into parts across its workers), 2 × 2
        // windows: switches from a forward, then two bad ones put in — negative in plane 5, past the end in plane 30.
        using var backend = Backends.Open(device);
        var g = new Pool2dGeometry(4, 8, 32, 32, 2, 2, 2, 2);
        using var x = backend.Upload<float>([4, 8, 32, 32], [.. Enumerable.Range(0, 32768).Select(i => (float)((i * 37) % 101))]);
        using var y = backend.Allocate<float>([4, 8, 16, 16]);
        using var switches = backend.Allocate<int>([4, 8, 16, 16]);
        backend.MaxPool2dForward(g, x, y, switches);
        int[] bad = backend.DownloadArray(switches);
        bad[(30 * 256) + 17] = 1024; // plane 30 (n 3, c 6), window (1, 1): one past its plane's last element
        bad[(5 * 256) + 2] = -1; // plane 5 (n 0, c 5), window (0, 2)
        backend.Upload<int>(bad, switches);
        using var dy = backend.Upload<float>([4, 8, 16, 16], [.. Enumerable.Range(1, 8192).Select(i => (float)i)]);
        using var dx = backend.Allocate<float>([4, 8, 32, 32]);

        if (device == "ilgpu-cpu")
        {
            // A GPU would need a synchronising read-back to check; its kernels gather, so a bad switch sends nothing.
            backend.MaxPool2dBackward(g, dy, switches, dx);
            float[] expected = new float[32768];
            for (int o = 0; o < 8192; o++)
            {
                if (bad[o] is >= 0 and < 1024)
                {
                    expected[(o / 256 * 1024) + bad[o]] += o + 1;
                }
            }

            Assert.Equal(expected, backend.DownloadArray(dx));
            return;
        }

        // The host backends name the first bad switch: the same one on every run, whichever worker met it first.
        for (int run = 0; run < 3; run++)
        {
            Assert.Equal("MaxPool2dBackward: switches[0,5,0,2] = -1 is not an element of its 32x32 plane (0 … 1023); pass the switches MaxPool2dForward wrote for this geometry.",
                Assert.Throws<ArgumentException>(() => backend.MaxPool2dBackward(g, dy, switches, dx)).Message);
        }

        bad[(5 * 256) + 2] = 40; // inside the plane, though outside its window: not checked (it costs a division per window)
        backend.Upload<int>(bad, switches);
        Assert.StartsWith("MaxPool2dBackward: switches[3,6,1,1] = 1024 is not an element of its 32x32 plane",
            Assert.Throws<ArgumentException>(() => backend.MaxPool2dBackward(g, dy, switches, dx)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_convolution_whose_column_matrix_passes_int_is_refused_on_the_cpu_backend_not_written_past()
    {
        // Every tensor is small (9·500·500 inputs, 31·31·9 weights), but no direct, blocked, Winograd or filter-vector
        // kernel takes a 31 × 31 layer of 9 channels and one filter, so it goes by im2col: C·R·S·P·Q = 2,162,250,000
        // column floats, an int product that had wrapped negative, reserved no scratch, and written past an empty array.
        using var backend = new CpuBackend();
        DeviceTensor<float> Ones(Shape shape)
        {
            var tensor = backend.Allocate<float>(shape);
            backend.Fill(tensor, 1f);
            return tensor;
        }

        var g = new Conv2dGeometry(1, 9, 500, 500, 1, 31, 31, PadH: 15, PadW: 15);
        using var x = Ones([1, 9, 500, 500]);
        using var w = Ones([1, 9, 31, 31]);
        using var y = backend.Allocate<float>([1, 1, 500, 500]);
        Assert.Equal("convolution: the column matrix of one image would hold 2162250000 elements, more than 2147479551. (Parameter 'column matrix of one image')",
            Assert.Throws<ArgumentException>(() => backend.Conv2dForward(g, x, w, null, y)).Message);

        // Its backward data runs as a forward convolution of one channel (direct); at stride 2 and 36 channels it goes
        // by GEMM and col2im, whose columns (36·31·31 × 250·250) pass int the same way.
        var strided = new Conv2dGeometry(1, 36, 500, 500, 1, 31, 31, StrideH: 2, StrideW: 2, PadH: 15, PadW: 15);
        using var dy = Ones([1, 1, 250, 250]);
        using var wide = Ones([1, 36, 31, 31]);
        using var dx = backend.Allocate<float>([1, 36, 500, 500]);
        Assert.StartsWith("convolution: the column matrix of one image would hold 2162250000 elements",
            Assert.Throws<ArgumentException>(() => backend.Conv2dBackwardData(strided, dy, wide, dx)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Geometry_that_would_wrap_int_arithmetic_is_refused()
    {
        // 2·PadH wraps to −2 in int: the checks passed and the kernels indexed before their planes.
        Assert.Contains("padding 2147483647x2147483647 must be at most half the window 2x2",
            Assert.Throws<ArgumentException>(() => new Pool2dGeometry(1, 1, 10, 10, 2, 2, 2, 2, int.MaxValue, int.MaxValue).Validate("pool")).Message, StringComparison.Ordinal);
        Assert.Equal("conv: padding 2147483647x2147483647 makes one padded image (1,4294967310,4294967310) larger than 2147479551 elements.",
            Assert.Throws<ArgumentException>(() => new Conv2dGeometry(1, 1, 16, 16, 8, 3, 3, PadH: int.MaxValue, PadW: int.MaxValue).Validate("conv")).Message);
        Assert.StartsWith("conv: padding 30000x30000 makes one padded image (1,60016,60016) larger than",
            Assert.Throws<ArgumentException>(() => new Conv2dGeometry(1, 1, 16, 16, 8, 3, 3, StrideH: 30000, StrideW: 30000, PadH: 30000, PadW: 30000).Validate("conv")).Message,
            StringComparison.Ordinal);
        // N·C·H·W past 2⁶³ had wrapped in long.
        Assert.StartsWith("conv: the input would hold at least 9223372036854775807 elements",
            Assert.Throws<ArgumentException>(() => new Conv2dGeometry(65536, 65536, 65536, 65536, 1, 1, 1).Validate("conv")).Message, StringComparison.Ordinal);
        new Conv2dGeometry(1, 1, 16, 16, 8, 3, 3, StrideH: 100, StrideW: 100, PadH: 100, PadW: 100).Validate("conv"); // large, still fine
        new Conv2dGeometry(1024, 64, 180, 180, 64, 3, 3, PadH: 1, PadW: 1).Validate("conv"); // a batch whose padded whole passes 2³¹: each image is laid out alone
        // A pooling's output can outgrow its input (a 2×2 window at stride 1 and padding 1 adds a row and a column),
        // Within one padded image, but two images of it pass one tensor.
        Assert.Equal("pool: the output would hold 2147483648 elements, more than 2147479551. (Parameter 'output')",
            Assert.Throws<ArgumentException>(() => new Pool2dGeometry(2, 1, 32767, 32767, 2, 2, 1, 1, 1, 1).Validate("pool")).Message);
    }

    [Fact]
    public void A_batch_too_large_for_a_layers_tensors_is_refused_naming_the_layer()
    {
        // Every build-time check takes one sample: a batch whose conv output passed one tensor's limit failed at the
        // allocation with "Shape (1000,600,60,60) holds more than …", naming neither the layer nor the batch size.
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("conv(4,3,pad=1),residual(conv(600,1),relu,conv(4,1)),globalavgpool,flatten,dense(2)", [1, 60, 60], backend, seed: 1);
        Assert.Equal((994, 1), model.LargestBatch()); // 600·60·60 inside the block, whose own output is 4·60·60: 2,147,479,551 / 2,160,000
        var data = new Dataset(new Tensor([995, 1, 60, 60]), new int[995]);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        long allocated = backend.BytesAllocated;
        var trainer = new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 1000));
        Assert.Equal("Fit: a batch of 995 samples passes the 2147479551 elements one tensor holds at layer 2 'residual(conv(600,1),relu,conv(4,1))'; " +
            "use a batch size of at most 994.", Assert.Throws<ArgumentException>(() => trainer.Fit(data)).Message);
        Assert.Equal(allocated, backend.BytesAllocated); // refused before a batch's buffers were made

        // A forward pass of its own gets the layer named, where its buffer would not fit.
        using var input = backend.Upload<float>([995, 1, 60, 60], new float[995 * 3600]);
        Assert.StartsWith("conv(600,1): a batch of 995 makes a tensor of 995 × (600,60,60) = 2149200000 elements, more than 2147479551; use batches of at most 994.",
            Assert.Throws<ArgumentException>(() => model.Forward(input)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_residual_block_around_another_models_layer_is_refused_and_that_model_keeps_its_weights()
    {
        // The refusal comes from inside the block's own chain, after the outer checks passed: freeing what the failed
        // build had made must not reach the other model's layer.
        using var backend = new CpuBackend();
        using var first = Sequential.Create("residual(conv(2,3,pad=1),relu),flatten,dense(3)", [2, 4, 4], backend, seed: 1);
        using var x = backend.Upload<float>([1, 2, 4, 4], [.. Enumerable.Range(0, 32).Select(i => i / 32f)]);
        float[] before = backend.DownloadArray(first.Forward(x));
        long allocated = backend.BytesAllocated;
        var taken = ((Residual)first.Layers[0]).Body[0];

        Assert.Contains("this layer already belongs to a model", Assert.Throws<InvalidOperationException>(
            () => new Sequential([new Residual([taken]), new Flatten(), new Dense(3)], [2, 4, 4], backend)).Message, StringComparison.Ordinal);
        // A block after a layer that does not fit is never built; the failed build frees its own layers only.
        Assert.Contains("is larger than the padded input", Assert.Throws<SpecException>(
            () => new Sequential([new Conv2d(4, (9, 9), (1, 1), (0, 0)), new Residual([taken]), new Flatten(), new Dense(3)], [2, 4, 4], backend)).Message,
            StringComparison.Ordinal);
        Assert.Equal(allocated, backend.BytesAllocated);
        Assert.Equal(before, backend.DownloadArray(first.Forward(x)));
    }

    [Fact]
    public void A_disposed_model_says_so_and_allocates_nothing_first()
    {
        using var backend = new CpuBackend();
        var model = Sequential.Create(Spec, [1, 4, 4], backend, seed: 1);
        var layers = model.Layers;
        using var x = backend.Upload(Tensor.Random([2, 1, 4, 4], seed: 2));
        using var pooled = backend.Upload(Tensor.Random([2, 2, 4, 4], seed: 3));
        model.Dispose();
        model.Dispose(); // twice is fine
        long before = backend.BytesAllocated;
        Assert.StartsWith("Sequential.Predict: the model has been disposed.", Assert.Throws<ObjectDisposedException>(() => model.Predict(new Tensor([3, 1, 4, 4]))).Message,
            StringComparison.Ordinal);
        Assert.Throws<ObjectDisposedException>(() => model.StateDict());
        Assert.Throws<ObjectDisposedException>(() => model.Normalization = new ChannelNormalization([0f], [1f]));
        Assert.StartsWith("Sequential.FirstNonFiniteTensor: the model has been disposed.", Assert.Throws<ObjectDisposedException>(model.FirstNonFiniteTensor).Message,
            StringComparison.Ordinal);
        // Its layers, still reachable, refuse too: a max pooling had computed and kept new output and switch buffers no one frees.
        Assert.StartsWith("maxpool(2): the model this layer was built into has been disposed", Assert.Throws<ObjectDisposedException>(() => layers[2].Forward(pooled)).Message,
            StringComparison.Ordinal);
        Assert.StartsWith("conv(2,3,pad=1): the model this layer was built into has been disposed", Assert.Throws<ObjectDisposedException>(() => layers[0].Forward(x)).Message,
            StringComparison.Ordinal);
        Assert.Equal(before, backend.BytesAllocated);
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.MemoryLimitBytes = -5);
    }

    /// <summary>
    /// An optimizer disposed after its trainer was made, or before a checkpoint is restored into it, is refused before
    /// anything changes: Fit had run a batch first (batch norm's running statistics and batch count moved), and Restore
    /// had replaced the weights before failing on the optimizer's state.
    /// </summary>
    [Fact]
    public void A_disposed_optimizer_is_refused_before_the_model_changes()
    {
        using var backend = new CpuBackend();
        using var model = Sequential.Create("conv(2,3,pad=1),batchnorm,relu,flatten,dense(3)", [1, 4, 4], backend, seed: 1);
        using var temp = Fixtures.TempFolder();
        var settings = new Dictionary<string, string>();
        using (var kept = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.5f)))
        {
            CheckpointFile.Save(temp.File("c.safetensors"), model, kept, TrainingState.Start, settings);
        }

        var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.5f));
        var trainer = new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 2));
        sgd.Dispose();
        sgd.Dispose(); // twice is fine
        var before = model.StateDict();
        var images = new Dataset(Tensor.Random([4, 1, 4, 4], seed: 5), [0, 1, 2, 0]);
        Assert.Equal("Trainer.Fit: the optimizer has been disposed.", Assert.Throws<ObjectDisposedException>(() => trainer.Fit(images)).Message.Split('\n')[0]);
        foreach (var (key, tensor) in model.StateDict())
        {
            Assert.Equal(before[key].Data, tensor.Data); // num_batches_tracked and the running statistics included: Fit ran no batch
        }

        foreach (var key in model.StateDict().Keys)
        {
            model.LoadStateDict(new Dictionary<string, Tensor>(before) { [key] = new Tensor(before[key].Shape) }); // zeroes one tensor at a time…
            Assert.StartsWith("CheckpointFile.Restore: the optimizer has been disposed.", Assert.Throws<ObjectDisposedException>(() =>
                CheckpointFile.Restore(temp.File("c.safetensors"), model, sgd, settings)).Message, StringComparison.Ordinal);
            Assert.All(model.StateDict()[key].Data, v => Assert.Equal(0f, v)); // …which the failed restore left as it was
        }

        model.LoadStateDict(before);
        Assert.Equal("weights: tensor '1.running_mean' is null; the model needs it with shape (2). (Parameter 'state')",
            Assert.Throws<ArgumentException>(() => model.LoadStateDict(new Dictionary<string, Tensor>(before) { ["1.running_mean"] = null! })).Message);
    }

    [Fact]
    public void A_model_that_passes_its_input_on_returns_a_lent_view_not_the_callers_tensor()
    {
        using var backend = new CpuBackend();
        using var model = Sequential.Create("dropout(0.5)", [4], backend, seed: 1);
        model.Eval(); // dropout passes x on
        using var x = backend.Upload<float>([2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
        using (var y = model.Forward(x))
        {
            Assert.True(y.IsLent);
            Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f], backend.DownloadArray(y));
        }

        Assert.False(x.IsDisposed); // the documented `using var y = model.Forward(x)` leaves the caller's x alone
        model.Normalization = new ChannelNormalization([0f, 0f, 0f, 0f], [1f, 1f, 1f, 1f]);
        using (var y = model.Forward(x))
        {
            Assert.True(y.IsLent); // the model's own normalised copy: lent too
        }

        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f], backend.DownloadArray(model.Forward(x)));
    }

    [Fact]
    public void An_adam_step_that_fails_is_not_counted()
    {
        using var backend = new CpuBackend();
        var model = Sequential.Create(Spec, [1, 4, 4], backend, seed: 1);
        using var adam = new Adam(backend, model.NamedParameters(), new AdamOptions(0.01f));
        model.Dispose(); // the parameters with it
        Assert.Throws<ObjectDisposedException>(adam.Step);
        Assert.Equal(0, adam.StepCount);
    }
}
