using System.Diagnostics;
using GpuCnn.Cpu.Fast;
using GpuCnn.Models;

namespace GpuCnn.Tests;

/// <summary>
/// Allocation-free steady-state training on the fast CPU backend, measured in a process of its own: the test
/// starts this test executable again for this one test. Inside the full suite a batch was charged 456–1,608 bytes
/// in some runs (about one in three at worst), at no fixed batch and with no method compiled on the training
/// thread — also when the test ran alone after all parallel tests had finished. A process that runs only this
/// training never showed it (70 runs, some under full CPU load). So the bytes belong to work the runtime does for
/// what earlier tests left behind, not to a training step (which runtime work exactly is not pinned down).
/// </summary>
public sealed class AllocationTests
{
    private const string ChildVariable = "GPUCNN_TEST_ALLOCATION_CHILD";

    [Fact]
    public void Steady_state_training_batches_allocate_nothing()
    {
        if (Environment.GetEnvironmentVariable(ChildVariable) != "1")
        {
            RunAloneInAChildProcess(nameof(Steady_state_training_batches_allocate_nothing));
            return;
        }

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

    /// <summary>Runs one test of this class in a fresh test process and fails with its output unless it passed.</summary>
    private static void RunAloneInAChildProcess(string method)
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
        {
            start.ArgumentList.Add(typeof(AllocationTests).Assembly.Location);
        }

        start.ArgumentList.Add("-method");
        start.ArgumentList.Add($"{typeof(AllocationTests).FullName}.{method}");
        start.Environment[ChildVariable] = "1";
        using var child = Process.Start(start)!;
        var error = child.StandardError.ReadToEndAsync();
        string output = child.StandardOutput.ReadToEnd();
        Assert.True(child.WaitForExit(120_000), "the child test process did not finish in 2 minutes");
        string all = output + error.Result;
        Assert.True(child.ExitCode == 0 && all.Contains("Total: 1, Errors: 0, Failed: 0, Skipped: 0", StringComparison.Ordinal),
            $"the test in its own process (exit code {child.ExitCode}):\n{all}");
    }

    /// <summary>IProgress that runs on the reporting thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class BatchProbe(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
