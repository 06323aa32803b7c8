using GpuCnn.Cpu;
using GpuCnn.Ilgpu;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>End-to-end training of a small net on the ILGPU CPU accelerator (and the reference, for parity).</summary>
public sealed class TrainingTests
{
    private const string Spec = "conv(4,3,pad=1),relu,maxpool(2),flatten,dense(4)";

    [Fact]
    public void Small_net_learns_on_the_ilgpu_cpu_accelerator_and_memory_stays_flat()
    {
        using var backend = IlgpuDevices.OpenCpuAccelerator();
        var (train, test) = (QuadrantData(64, seed: 1), QuadrantData(32, seed: 2));
        using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 3);
        using var optimizer = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f, 0.9f));
        var bytes = new List<long>();
        var history = new Trainer(model, optimizer, new TrainingOptions(Epochs: 6, BatchSize: 16, Seed: 4))
            .Fit(train, test, _ => bytes.Add(backend.BytesAllocated));

        Assert.True(history[^1].TrainLoss < history[0].TrainLoss / 3, $"loss went {history[0].TrainLoss} -> {history[^1].TrainLoss}");
        Assert.True(history[^1].TestAccuracy >= 0.9, $"test accuracy {history[^1].TestAccuracy}");
        Assert.All(bytes, b => Assert.Equal(bytes[0], b)); // nothing allocated after the first epoch
        Assert.Equal(6 * 4, optimizer.StepCount); // 64 samples / 16 per batch, 6 epochs
    }

    [Fact]
    public void A_last_batch_of_one_before_a_feature_batch_norm_is_refused_before_training_naming_the_layer()
    {
        // 9 samples in batches of 4: the last batch holds one. The backend's error had come mid-epoch, naming neither the
        // layer nor the cause ("BatchNormForward: … (x is (1,4))").
        using var backend = new ReferenceBackend();
        var data = QuadrantData(9, seed: 1);
        using var model = Sequential.Create("flatten,dense(4),residual(dense(4),batchnorm,relu),dense(4)", [1, 8, 8], backend, seed: 3);
        using var optimizer = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        string before = string.Join(",", model.StateDict().Values.SelectMany(t => t.Data));
        var error = Assert.Throws<ArgumentException>(() => new Trainer(model, optimizer, new TrainingOptions(Epochs: 1, BatchSize: 4)).Fit(data));
        Assert.Equal("Fit: batch norm '2.body.1' would train on 1 value per channel ((4) a sample), and needs more than one, as PyTorch's " +
            "batch_norm: the epoch's last batch holds 1 of the 9 samples (batch size 4); choose a batch size that leaves more than one.", error.Message);
        Assert.Equal(0, optimizer.StepCount);
        Assert.Equal(before, string.Join(",", model.StateDict().Values.SelectMany(t => t.Data)));

        // A batch norm over maps has values enough in one sample; another batch size leaves two in the last batch.
        using var maps = Sequential.Create("conv(2,3,pad=1),batchnorm,relu,flatten,dense(4)", [1, 8, 8], backend, seed: 3);
        using var mapsOptimizer = new Sgd(backend, maps.NamedParameters(), new SgdOptions(0.1f));
        Assert.Single(new Trainer(maps, mapsOptimizer, new TrainingOptions(Epochs: 1, BatchSize: 4)).Fit(data));
        Assert.Single(new Trainer(model, optimizer, new TrainingOptions(Epochs: 1, BatchSize: 7)).Fit(data));
    }

    [Fact]
    public void Reference_and_ilgpu_cpu_train_to_the_same_weights_and_runs_repeat_bitwise()
    {
        float[] Train(Backend backend)
        {
            using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 5);
            using var optimizer = new Adam(backend, model.NamedParameters(), new AdamOptions(0.01f));
            new Trainer(model, optimizer, new TrainingOptions(Epochs: 2, BatchSize: 10, Seed: 6)).Fit(QuadrantData(30, seed: 7));
            return [.. model.StateDict().OrderBy(p => p.Key, StringComparer.Ordinal).SelectMany(p => p.Value.Data)];
        }

        using var reference = new ReferenceBackend();
        using var ilgpu = IlgpuDevices.OpenCpuAccelerator();
        float[] expected = Train(reference), actual = Train(ilgpu);
        Support.TensorAssert.Close(Array.ConvertAll(expected, v => (double)v), actual, new Shape(actual.Length), 1e-4, 1e-3, "weights after 6 Adam steps");
        Support.TensorAssert.Identical<float>(actual, Train(ilgpu), "two ilgpu-cpu runs");
    }

    [Fact]
    public void A_second_fit_goes_on_from_the_optimizers_state()
    {
        // Two Fits of one epoch against a Fit of one epoch, then one resumed at epoch 1 with the step count given:
        // the same shuffles, so the same weights only if the plain second Fit kept Adam's step count beside its moments.
        float[] Train(bool resumeSecond)
        {
            using var backend = new ReferenceBackend();
            using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 5);
            using var optimizer = new Adam(backend, model.NamedParameters(), new AdamOptions(0.01f));
            var data = QuadrantData(20, seed: 7);
            var trainer = new Trainer(model, optimizer, new TrainingOptions(Epochs: 1, BatchSize: 10, Seed: 6));
            trainer.Fit(data);
            trainer.Fit(data, resume: resumeSecond ? new TrainingState(1, 0, optimizer.StepCount, 0, 0) : null);
            Assert.Equal(4, optimizer.StepCount);
            return [.. model.StateDict().OrderBy(p => p.Key, StringComparer.Ordinal).SelectMany(p => p.Value.Data)];
        }

        Support.TensorAssert.Identical<float>(Train(resumeSecond: true), Train(resumeSecond: false), "a plain second Fit against one resumed at the step count");
    }

    [Fact]
    public void Disposing_a_model_returns_all_of_its_device_memory()
    {
        using var backend = IlgpuDevices.OpenCpuAccelerator();
        long before = backend.BytesAllocated;
        using (var model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend, seed: 1))
        using (var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f, 0.9f)))
        {
            var data = new Dataset(Tensor.Random([10, 1, 28, 28], 2, 0f, 1f), Enumerable.Range(0, 10).ToArray());
            new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 4)).Fit(data, data);
            Assert.True(backend.BytesAllocated > before);
        }

        // Workspaces (grow-only scratch) stay with the backend; every tensor the model and optimizer made is gone.
        Assert.Equal(0, backend.BytesAllocated - before - backend.WorkspaceBytes);
        TensorAssert.NothingDroppedUndisposed(backend);
    }

    [Fact]
    public void Evaluation_gives_a_consistent_confusion_matrix()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create(Spec, [1, 8, 8], backend, seed: 8);
        var data = QuadrantData(40, seed: 9);
        var result = Trainer.Evaluate(model, data, batchSize: 16);
        Assert.Equal(40, result.Count);
        Assert.Equal(40, result.Confusion.Cast<int>().Sum());
        Assert.Equal(result.Accuracy * 40, Enumerable.Range(0, 4).Sum(i => result.Confusion[i, i]), 3);
        Assert.Equal(Enumerable.Range(0, 4).Select(c => data.Labels.Count(l => l == c)),
            Enumerable.Range(0, 4).Select(i => Enumerable.Range(0, 4).Sum(j => result.Confusion[i, j])));
    }

    [Fact]
    public void Labels_outside_the_class_count_are_refused_naming_the_sample()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create(Spec, [1, 8, 8], backend);
        using var optimizer = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f));
        var data = QuadrantData(8, seed: 1);
        data.Labels[5] = 7;
        var error = Assert.Throws<ArgumentException>(() => new Trainer(model, optimizer, new TrainingOptions()).Fit(data));
        Assert.Contains("label 7 of sample 5 is outside the model's 4 classes", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cosine_schedule_runs_from_the_full_rate_towards_zero()
    {
        var options = new TrainingOptions(Epochs: 4, Schedule: LearningRateSchedule.Cosine);
        double[] expected = [0.1, 0.1 * (1 + Math.Sqrt(0.5)) / 2, 0.05, 0.1 * (1 - Math.Sqrt(0.5)) / 2];
        Support.TensorAssert.Close(expected, Enumerable.Range(1, 4).Select(e => options.LearningRateAt(0.1f, e)).ToArray(), new Shape(4), 1e-8, 1e-6, "cosine learning rates");
    }

    /// <summary>8×8 images with a bright 3×3 blob in one quadrant plus noise; the label is the quadrant.</summary>
    internal static Dataset QuadrantData(int count, int seed)
    {
        var random = new Random(seed);
        var images = new Tensor([count, 1, 8, 8]);
        var labels = new int[count];
        for (int n = 0; n < count; n++)
        {
            labels[n] = n % 4;
            int top = labels[n] / 2 * 4 + random.Next(2), left = labels[n] % 2 * 4 + random.Next(2);
            for (int i = 0; i < 64; i++)
            {
                images.Data[n * 64 + i] = 0.2f * random.NextSingle();
            }

            for (int r = 0; r < 3; r++)
            {
                for (int c = 0; c < 3; c++)
                {
                    images[n, 0, top + r, left + c] += 1f;
                }
            }
        }

        return new Dataset(images, labels);
    }
}
