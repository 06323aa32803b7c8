using System.Diagnostics;
using GpuCnn.Cpu.Fast;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

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

    /// <summary>A small ResNet with every modern layer: batch norm, strided and projection convolutions, dropout, global pooling.</summary>
    private const string ModernSpec =
        "conv(8,3,pad=1,bias=false),batchnorm,relu,residual(conv(16,3,stride=2,pad=1,bias=false),batchnorm,relu,conv(16,3,pad=1,bias=false),batchnorm;" +
        " conv(16,1,stride=2,bias=false),batchnorm),relu,dropout(0.2),globalavgpool,flatten,dense(10)";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Steady_state_training_batches_allocate_nothing(bool modern)
    {
        string model = modern ? "modern" : "lenet5";
        string? child = Environment.GetEnvironmentVariable(ChildVariable);
        if (child is null)
        {
            RunAloneInAChildProcess(nameof(Steady_state_training_batches_allocate_nothing), model);
            return;
        }

        if (child != model)
        {
            return; // the child process runs both cases of the theory; only the one it was started for does the work
        }

        // LeNet-5 through the trainer, and a small ResNet with augmentation, input normalisation, label smoothing, a
        // warm-up (into epoch 4: a new rate every batch), gradient clipping and AdamW: after the first epoch (buffers, kernels, views and
        // plans created), a batch — gather, augment, forward, loss, metrics, backward, optimizer step — allocates no
        // memory at all on the training thread. A full GC before every batch clears what the runtime caches only weakly (reflection and
        // enum caches), so a batch that leans on such a cache fails here every time instead of only when a collection
        // happens to come first.
        // The modern net's 3×3 stride-1 layers by Winograd (Always: they have too few channels for Auto), so that its
        // scratch, the filters' transform and its job are held to allocating nothing too.
        using var backend = new CpuBackend { Winograd = modern ? WinogradMode.Always : WinogradMode.Auto };
        var images = Tensor.Random([96, 1, 28, 28], 1, 0f, 1f);
        var data = new Dataset(images, Enumerable.Range(0, 96).Select(i => i % 10).ToArray());
        using var network = Sequential.Create(modern ? ModernSpec : ArchitectureSpec.LeNet5, [1, 28, 28], backend, seed: 1);
        network.Normalization = modern ? new ChannelNormalization([0.5f], [0.25f]) : null;
        using Optimizer optimizer = modern
            ? new Adam(backend, network.NamedParameters(), AdamOptions.AdamW(1e-3f))
            : new Sgd(backend, network.NamedParameters(), new SgdOptions(0.01f, 0.9f, WeightDecay: 1e-4f));
        var options = modern
            ? new TrainingOptions(Epochs: 6, BatchSize: 32, Schedule: LearningRateSchedule.Step, WarmupSteps: 10, LabelSmoothing: 0.1f,
                Augment: new Augmentation(2, HorizontalFlip: true), ClipGradNorm: 1f)
            : new TrainingOptions(Epochs: 6, BatchSize: 32);
        var perBatch = new List<(int Epoch, int Batch, long Bytes, long Compiled)>(capacity: 32); // sized up front: growing it would allocate
        long lastBytes = 0, lastCompiled = 0;
        new Trainer(network, optimizer, options).Fit(data, progress: new BatchProbe(p =>
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

    /// <summary>Runs a test of this class in a fresh test process for one of its cases and fails with its output unless it passed.</summary>
    private static void RunAloneInAChildProcess(string method, string testCase)
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
        {
            start.ArgumentList.Add(typeof(AllocationTests).Assembly.Location);
        }

        start.ArgumentList.Add("-method");
        start.ArgumentList.Add($"{typeof(AllocationTests).FullName}.{method}");
        start.Environment[ChildVariable] = testCase;
        using var child = CliProcess.Watched(Process.Start(start)!);
        var error = child.StandardError.ReadToEndAsync();
        string output = child.StandardOutput.ReadToEnd();
        Assert.True(child.WaitForExit(120_000), "the child test process did not finish in 2 minutes");
        string all = output + error.Result;
        Assert.True(child.ExitCode == 0 && all.Contains("Total: 2, Errors: 0, Failed: 0, Skipped: 0", StringComparison.Ordinal),
            $"the test in its own process (exit code {child.ExitCode}):\n{all}");
    }

    /// <summary>IProgress that runs on the reporting thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class BatchProbe(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
