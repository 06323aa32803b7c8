using GpuCnn.Cpu.Fast;
using GpuCnn.Models;

namespace GpuCnn.Tests;

/// <summary>Tests that measure the allocations of one thread, and so must not share the process with other tests.</summary>
[CollectionDefinition(nameof(AllocationMeasurements), DisableParallelization = true)]
public sealed class AllocationMeasurements;

/// <summary>
/// Allocation-free steady-state training on the fast CPU backend. Runs alone (after the parallel tests): with other
/// test classes training, compiling and collecting on other threads, a batch on this thread was charged 456–1,608
/// bytes in about one full-suite run in ten under load, at no fixed batch and with no method compiled on this
/// thread; the same training in a process of its own, under the same CPU load, never (30 runs). Those bytes are the
/// runtime's, not the training step's.
/// </summary>
[Collection(nameof(AllocationMeasurements))]
public sealed class AllocationTests
{
    [Fact]
    public void Steady_state_training_batches_allocate_nothing()
    {
        // LeNet-5 through the trainer: after the first epoch (buffers, kernels and views created), a batch — gather,
        // forward, loss, metrics, backward, SGD step — allocates no memory at all on the training thread. A full GC
        // before every batch clears what the runtime caches only weakly (reflection and enum caches), so a batch that
        // leans on such a cache fails here every time instead of only when a collection happens to come first.
        using var backend = new CpuBackend();
        var images = Tensor.Random([96, 1, 28, 28], 1, 0f, 1f);
        var data = new Dataset(images, Enumerable.Range(0, 96).Select(i => i % 10).ToArray());
        using var model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend, seed: 1);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.01f, 0.9f, WeightDecay: 1e-4f));
        var perBatch = new List<(int Epoch, int Batch, long Bytes, long Compiled)>(capacity: 32); // sized up front: growing it would allocate
        long lastBytes = 0, lastCompiled = 0;
        new Trainer(model, sgd, new TrainingOptions(Epochs: 6, BatchSize: 32)).Fit(data, progress: new BatchProbe(p =>
        {
            long bytes = GC.GetAllocatedBytesForCurrentThread(), compiled = System.Runtime.JitInfo.GetCompiledMethodCount(currentThread: true);
            perBatch.Add((p.Epoch, p.Batch, bytes - lastBytes, compiled - lastCompiled));
            GC.Collect();
            lastBytes = GC.GetAllocatedBytesForCurrentThread();
            lastCompiled = System.Runtime.JitInfo.GetCompiledMethodCount(currentThread: true);
        }));

        // Batch 1 of an epoch follows the per-epoch work (shuffled order upload, metrics download); the rest are pure steps.
        var steady = perBatch.Where(b => b.Epoch > 1 && b.Batch > 1).ToList();
        Assert.Equal(10, steady.Count);
        Assert.All(steady, b => Assert.True(b.Bytes == 0,
            $"epoch {b.Epoch} batch {b.Batch} allocated {b.Bytes} bytes ({b.Compiled} methods compiled on this thread meanwhile)"));
    }

    /// <summary>IProgress that runs on the reporting thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class BatchProbe(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
