using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Threads sharing one backend, each with a model of its own, compute what each would compute alone: the backend runs
/// their operations one at a time (its scratch buffers, worker team and stream are shared). Without that, two threads
/// on ILGPU's CPU accelerator gave wrong batch-norm gradients and a kernel exception inside an emulated GPU thread.
/// </summary>
public abstract class SharedBackendTests(BackendFixture fixture)
{
    // Batch norm (the backend's scratch sums), a strided convolution (a workspace), pooling and dropout's random key.
    private const string Spec = "conv(6,3,stride=2,pad=1),batchnorm,relu,conv(8,3,pad=1),maxpool(2),dropout(0.25),flatten,dense(4)";
    private const int Threads = 4, Rounds = 3;

    [Fact]
    public void Models_on_threads_sharing_the_backend_train_and_predict_as_they_would_alone()
    {
        var backend = fixture.Require();
        var alone = Enumerable.Range(0, Threads).Select(t => Run(backend, seed: t + 1)).ToArray();

        var shared = OnThreads(Threads, t => Run(backend, seed: t + 1));
        for (int t = 0; t < Threads; t++)
        {
            TensorAssert.Identical<float>(alone[t], shared[t], $"{fixture.Name}: thread {t}'s weights and predictions");
        }
    }

    [Fact]
    public void Tensors_freed_by_another_thread_give_their_memory_back()
    {
        fixture.Require(); // skips where the device is absent
        // A backend of its own: with -parallelMode all the class's other test allocates on the fixture's meanwhile.
        using var backend = Backends.Open(fixture.Name);
        long before = backend.BytesAllocated;
        var models = OnThreads(2, t => Sequential.Create(Spec, [2, 8, 8], backend, seed: t));
        Assert.True(backend.BytesAllocated > before);
        foreach (var model in models)
        {
            model.Dispose(); // on this thread, not the one that built it
        }

        Assert.Equal(before, backend.BytesAllocated);
        TensorAssert.NothingDroppedUndisposed(backend);
    }

    /// <summary>Runs <paramref name="work"/> on <paramref name="count"/> threads started together; a thread's exception fails the test here.</summary>
    private static T[] OnThreads<T>(int count, Func<int, T> work)
    {
        var results = new T[count];
        var failures = new Exception?[count];
        using var start = new Barrier(count);
        var threads = Enumerable.Range(0, count).Select(t => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                results[t] = work(t);
            }
            catch (Exception e)
            {
                failures[t] = e;
            }
        })).ToArray();
        foreach (var thread in threads)
        {
            thread.Start();
        }

        foreach (var thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromMinutes(5)), "a thread did not finish in 5 minutes");
        }

        Assert.All(failures, f => Assert.Null(f));
        return results;
    }

    /// <summary>A few SGD steps of a model seeded by <paramref name="seed"/>, then its weights and its predictions.</summary>
    private static float[] Run(Backend backend, int seed)
    {
        using var model = Sequential.Create(Spec, [2, 8, 8], backend, seed);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f, Momentum: 0.9f));
        var images = Tensor.Random([6, 2, 8, 8], seed: 100 + seed);
        using var x = backend.Upload(images);
        using var labels = backend.Upload<int>([6], [0, 1, 2, 3, seed % 4, 1]);
        using var dlogits = backend.Allocate<float>([6, 4]);
        using var loss = backend.Allocate<float>([1]);
        for (int round = 0; round < Rounds; round++)
        {
            backend.SoftmaxCrossEntropy(model.Forward(x), labels, dlogits, loss);
            model.Backward(dlogits);
            sgd.Step();
        }

        var weights = model.StateDict().OrderBy(p => p.Key, StringComparer.Ordinal).SelectMany(p => p.Value.Data);
        return [.. weights, .. model.Predict(images).Data];
    }
}

public sealed class ReferenceSharedBackend(ReferenceFixture fixture) : SharedBackendTests(fixture), IClassFixture<ReferenceFixture>;

public sealed class CpuSharedBackend(CpuFixture fixture) : SharedBackendTests(fixture), IClassFixture<CpuFixture>;

public sealed class IlgpuCpuSharedBackend(IlgpuCpuFixture fixture) : SharedBackendTests(fixture), IClassFixture<IlgpuCpuFixture>;

public sealed class CudaSharedBackend(CudaFixture fixture) : SharedBackendTests(fixture), IClassFixture<CudaFixture>;

/// <summary>One model used by two threads at once is refused with an error that says what to do, not a mixed batch.</summary>
public sealed class SharedModelTests
{
    [Fact]
    public void A_backend_disposed_by_another_thread_refuses_the_next_operation_by_name()
    {
        var backend = new CpuBackend(threads: 2, Simd.Best);
        using var x = backend.Upload(Tensor.Random([4, 4], seed: 1));
        using var y = backend.Allocate<float>([4, 4]);
        var disposer = new Thread(backend.Dispose);
        disposer.Start();
        Assert.True(disposer.Join(TimeSpan.FromMinutes(1)));

        var error = Assert.Throws<ObjectDisposedException>(() => backend.Gemm(false, false, 4, 4, 4, 1f, x, x, 0f, y));
        Assert.Contains("cpu: the backend has been disposed; nothing can run on it.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_model_in_use_by_another_thread_is_refused_by_name_and_free_again_after()
    {
        using var backend = new ReferenceBackend();
        var gate = new Gate();
        using var model = new Sequential([gate, .. ArchitectureSpec.Parse("flatten,dense(3)")], [1, 4, 4], backend);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        using var x = backend.Upload(Tensor.Random([2, 1, 4, 4], seed: 3));
        var images = Tensor.Random([2, 1, 4, 4], seed: 4);

        var inside = new Thread(() => model.Forward(x));
        inside.Start();
        Assert.True(gate.Entered.Wait(TimeSpan.FromSeconds(30)), "the first thread never reached the layer");
        try
        {
            foreach (var (method, call) in new (string, Action)[]
            {
                ("Sequential.Forward", () => model.Forward(x)),
                ("Sequential.Backward", () => model.Backward(x)),
                ("Sequential.Predict", () => model.Predict(images)),
                ("Sequential.StateDict", () => model.StateDict()),
                ("Sequential.LoadStateDict", () => model.LoadStateDict(new Dictionary<string, Tensor>())),
                ("Trainer.Evaluate", () => Trainer.Evaluate(model, new Dataset(images, [0, 1]))),
                ("Trainer.Fit", () => new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 2)).Fit(new Dataset(images, [0, 1]))),
                ("Sequential.Train", model.Train), // a mode switched in the middle of a step had changed batch norm and dropout silently
                ("Sequential.Eval", model.Eval),
                ("Sequential.SetRandomKey", () => model.SetRandomKey(5)),
                ("Sequential.FirstNonFiniteTensor", () => model.FirstNonFiniteTensor()), // it had read the weights in the middle of a step
                ("Sequential.Dispose", model.Dispose),
            })
            {
                var error = Assert.Throws<InvalidOperationException>(call);
                Assert.StartsWith($"{method}: the model is in use by another thread; a model serves one thread at a time", error.Message, StringComparison.Ordinal);
                Assert.EndsWith("give each thread its own model — models may share one backend.", error.Message, StringComparison.Ordinal);
            }
        }
        finally
        {
            gate.Open.Set();
            inside.Join();
        }

        // The refused calls never reached a layer; once the first thread is out, this one may use the model.
        Assert.Equal(1, gate.Calls);
        Assert.Equal([2, 3], model.Predict(images).Shape.ToArray());
        Assert.Equal(2, gate.Calls);
    }

    /// <summary>
    /// Sgd's own step, and the step of an optimizer written outside the engine (which could not reach the guard, and
    /// updated the weights in the middle of the trainer's step, counting a step the trainer then took as its second).
    /// </summary>
    [Theory]
    [InlineData("Sgd")]
    [InlineData("PlainSgd")]
    public void An_optimizer_a_trainer_is_stepping_is_refused_to_another_thread(string kind)
    {
        using var backend = new ReferenceBackend();
        var gate = new Gate();
        using var model = new Sequential([gate, .. ArchitectureSpec.Parse("flatten,dense(3)")], [1, 4, 4], backend);
        using Optimizer sgd = kind == "Sgd" ? new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f)) : new PlainSgd(backend, model.NamedParameters());
        var images = Tensor.Random([2, 1, 4, 4], seed: 4);
        var fit = new Thread(() => new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 2)).Fit(new Dataset(images, [0, 1])));
        fit.Start();
        Assert.True(gate.Entered.Wait(TimeSpan.FromSeconds(30)), "Fit never reached the layer");
        try
        {
            // A step from here had updated the weights in the middle of the trainer's step, without a word.
            Assert.Equal($"{kind}.Step: the optimizer is in use by another thread (a Trainer's Fit steps it); an optimizer serves one thread at a time.",
                Assert.Throws<InvalidOperationException>(sgd.Step).Message);
            Assert.StartsWith("Optimizer.Dispose: the optimizer is in use by another thread", Assert.Throws<InvalidOperationException>(sgd.Dispose).Message,
                StringComparison.Ordinal); // its moments freed in the middle of the trainer's step
        }
        finally
        {
            gate.Open.Set();
            fit.Join();
        }

        Assert.Equal(1, sgd.StepCount); // the trainer's one step; free again after
        sgd.Step();
        Assert.Equal(2, sgd.StepCount);
    }

    /// <summary>An optimizer as a library user writes one: plain SGD through the backend's step.</summary>
    private sealed class PlainSgd(Backend backend, IEnumerable<(string Key, Parameter Parameter)> parameters) : Optimizer(backend, parameters)
    {
        private readonly DeviceTensor<float>[] _unused = [.. parameters.Select(p => backend.AllocateFilled(p.Parameter.Shape, 0f))];

        public override float LearningRate { get; set; } = 0.1f;

        public override IEnumerable<(string Name, DeviceTensor<float> Tensor)> StateTensors() => [];

        protected override void StepCore()
        {
            for (int i = 0; i < Values.Count; i++)
            {
                Backend.SgdUpdate(new SgdOptions(LearningRate), StepCount == 0, Values[i], Gradients[i], _unused[i], LearningRate);
            }
        }

        protected override void Dispose(bool disposing)
        {
            foreach (var tensor in _unused)
            {
                tensor.Dispose();
            }
        }
    }

    /// <summary>Hands x on; its first forward signals <see cref="Entered"/> and waits for <see cref="Open"/>.</summary>
    private sealed class Gate : Layer
    {
        private int _calls;

        public ManualResetEventSlim Entered { get; } = new();

        public ManualResetEventSlim Open { get; } = new();

        public int Calls => Volatile.Read(ref _calls);

        public override string Spec => "gate";

        public override DeviceTensor<float> Forward(DeviceTensor<float> x)
        {
            if (Interlocked.Increment(ref _calls) == 1)
            {
                Entered.Set();
                Open.Wait();
            }

            return x;
        }

        public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) => needInputGradient ? dy : null;

        protected override Shape InferOutputShape(Shape input) => input;
    }
}
