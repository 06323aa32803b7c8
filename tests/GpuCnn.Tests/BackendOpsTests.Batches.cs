using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The operations that keep a training epoch on the device: batch gathering and metrics.</summary>
public abstract partial class BackendOpsTests
{
    [Fact]
    [Trait("Category", "CrossCheck")]
    public void GatherRows_copies_the_indexed_rows_for_floats_and_ints()
    {
        Shape source = new(5, 2, 3);
        float[] images = TestData.Uniform(source.Size, 70);
        int[] labels = [10, 11, 12, 13, 14];
        int[] order = [4, 0, 3, 1, 2];
        using var dimages = Put(images, source);
        using var dlabels = Backend.Upload<int>([5], labels);
        using var dorder = Backend.Upload<int>([5], order);
        using var batch = Poisoned([2, 2, 3]);
        using var batchLabels = Backend.Upload<int>([2], [-1, -1]);
        Backend.GatherRows(dimages, dorder, 2, batch);
        Backend.GatherRows(dlabels, dorder, 2, batchLabels);

        double[] expected = [.. images.Skip(3 * 6).Take(6).Select(v => (double)v), .. images.Skip(1 * 6).Take(6).Select(v => (double)v)];
        TensorAssert.Close(expected, Backend.DownloadArray(batch), new Shape(2, 2, 3), 0, 0, $"{Backend.Name} gathered rows");
        Assert.Equal([13, 11], Backend.DownloadArray(batchLabels));
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.GatherRows(dimages, dorder, 4, batch));
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Argmax_and_metrics_count_correct_rows_on_the_device()
    {
        float[] logits = [0.1f, 0.9f, 0.0f, /**/ 2f, 2f, 1f, /**/ -1f, -3f, -0.5f, /**/ 0f, 5f, 1f];
        int[] labels = [1, 1, 2, 0];
        using var dlogits = Put(logits, [4, 3]);
        using var dlabels = Backend.Upload<int>([4], labels);
        using var predictions = Backend.Upload<int>([6], [-1, -1, -1, -1, -1, -1]);
        Backend.Argmax(dlogits, predictions, 1);
        Assert.Equal([-1, 1, 0, 2, 1, -1], Backend.DownloadArray(predictions)); // ties: the first maximum

        // The caller owns the layout: here the sums sit in slots 3 (loss), 0 (correct) and 4 (first non-finite batch);
        // slots 1 and 2 belong to nobody and must stay untouched.
        var slots = new Kernels.MetricSlots(LossSum: 3, Correct: 0, FirstNonFinite: 4);
        using var loss = Put([0.5f], [1]);
        using var metrics = Put([2f, 42f, 43f, 1f, -1f], [5]);
        Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, slots, 7);
        Assert.Equal([2f + 2, 42f, 43f, 1f + 0.5f * 4, -1f], Backend.DownloadArray(metrics)); // rows 0 and 2 are right; loss finite

        // A non-finite loss records the first batch it happened in, and only the first.
        Backend.Upload<float>([float.NaN], loss);
        Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, slots, 8);
        Backend.Upload<float>([float.PositiveInfinity], loss);
        Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, slots, 9);
        Assert.Equal(8f, Backend.DownloadArray(metrics)[4]);
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, slots with { Correct = 5 }, 10));
        // int.MaxValue + 1 had wrapped the slots' length negative: the kernel then wrote 8 GB past the buffer.
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, slots with { Correct = int.MaxValue }, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, slots with { Correct = 3 }, 10)); // the loss's slot
        Assert.Equal(8f, Backend.DownloadArray(metrics)[4]);
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Argmax_and_metrics_take_a_rows_first_nan_as_torch_argmax_does()
    {
        // torch.tensor(rows).argmax(1) in PyTorch 1.13: tensor([1, 1, 1, 0, 0]) — NaN ranks above every number, +∞ included.
        float[] logits = [1f, float.NaN, 3f, /**/ float.PositiveInfinity, float.NaN, 1f, /**/ 1f, 3f, 3f,
            /**/ float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, /**/ float.NaN, 2f, float.NaN];
        using var dlogits = Put(logits, [5, 3]);
        using var predictions = Backend.Upload<int>([5], [-1, -1, -1, -1, -1]);
        Backend.Argmax(dlogits, predictions, 0);
        Assert.Equal([1, 1, 1, 0, 0], Backend.DownloadArray(predictions));

        using var dlabels = Backend.Upload<int>([5], [1, 1, 1, 0, 0]); // every row right (skipping NaN had made it 2: rows 2 and 3)
        using var loss = Put([1f], [1]);
        using var metrics = Put([0f, 0f, -1f], [3]);
        Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, new Kernels.MetricSlots(0, 1, 2), 0);
        Assert.Equal(5f, Backend.DownloadArray(metrics)[1]);
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Metrics_count_every_row_of_a_batch_longer_than_a_group()
    {
        // 300 rows: more than a GPU kernel's group of 256 threads and the CPU accelerator's 16, so threads take several rows.
        const int rows = 300, classes = 7;
        var random = new Random(5);
        float[] logits = [.. Enumerable.Range(0, rows * classes).Select(_ => MathF.Round(random.NextSingle() * 8f))]; // ties too
        int[] labels = [.. Enumerable.Range(0, rows).Select(_ => random.Next(classes))];
        int expected = Enumerable.Range(0, rows).Count(n =>
        {
            int best = 0;
            for (int j = 1; j < classes; j++)
            {
                best = logits[(n * classes) + j] > logits[(n * classes) + best] ? j : best;
            }

            return best == labels[n];
        });
        using var dlogits = Put(logits, [rows, classes]);
        using var dlabels = Backend.Upload<int>([rows], labels);
        using var loss = Put([0.25f], [1]);
        using var metrics = Put([0f, 0f, -1f], [3]);
        Backend.AccumulateMetrics(dlogits, dlabels, loss, metrics, new Kernels.MetricSlots(0, 1, 2), 0);
        Assert.Equal([0.25f * rows, expected, -1f], Backend.DownloadArray(metrics));
        Assert.InRange(expected, 20, rows - 20); // the case is not trivial
    }

    [Fact]
    [Trait("Category", "CrossCheck")]
    public void Views_share_storage_and_die_with_their_owner()
    {
        var owner = Put([1, 2, 3, 4, 5, 6], [1, 2, 3]);
        var view = owner.View([2, 3]);
        Backend.ActivationForward(default(Kernels.Relu), view, view);
        Backend.Fill(view, 7f);
        Assert.Equal(Enumerable.Repeat(7f, 6), Backend.DownloadArray(owner));
        Assert.Throws<ArgumentException>(() => owner.View([4, 2]));
        view.Dispose();
        Assert.False(owner.IsDisposed);
        var second = owner.View([6]);
        owner.Dispose();
        Assert.True(second.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => Backend.Fill(second, 0f));
    }
}
