using GpuCnn.Cpu;
using GpuCnn.IO;
using GpuCnn.Kernels;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>What augmentation and input normalisation mean, independent of any backend.</summary>
public sealed class AugmentationTests
{
    [Theory]
    [InlineData(2, false)]
    [InlineData(2, true)]
    public void Each_sample_is_a_window_of_its_zero_padded_image_with_every_shift_and_flips_only_when_asked(int padding, bool flip)
    {
        const int batch = 400, size = 6;
        // Value h·10 + w + 1: every pixel distinct and non-zero, so a copied pixel tells where it came from.
        var x = new double[batch * size * size];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = (i / size % size * 10) + (i % size) + 1;
        }

        var crop = new CropFlip(1, size, size, padding, flip ? 1 : 0, Key: 5);
        var y = new double[x.Length];
        ReferenceMath.RandomCropFlip<double>(crop, x, y, batch);
        var shifts = new HashSet<(int, int)>();
        int mirrored = 0;
        for (int n = 0; n < batch; n++)
        {
            int dy = crop.ShiftY(n) - padding, dx = crop.ShiftX(n) - padding;
            bool mirror = crop.Mirrored(n);
            shifts.Add((dy, dx));
            mirrored += mirror ? 1 : 0;
            for (int h = 0; h < size; h++)
            {
                for (int w = 0; w < size; w++)
                {
                    int row = h + dy, column = (mirror ? size - 1 - w : w) + dx;
                    double expected = row is >= 0 and < size && column is >= 0 and < size ? (row * 10) + column + 1 : 0;
                    Assert.Equal(expected, y[(n * size * size) + (h * size) + w]);
                }
            }
        }

        Assert.Equal((2 * padding) + 1, shifts.Select(s => s.Item1).Distinct().Count());
        Assert.Equal((2 * padding) + 1, shifts.Select(s => s.Item2).Distinct().Count());
        if (flip)
        {
            Assert.InRange(mirrored, 140, 260); // ½ of 400 within 6σ
        }
        else
        {
            Assert.Equal(0, mirrored);
        }
    }

    [Theory]
    [InlineData("crop=4,flip", 4, true)]
    [InlineData("flip", 0, true)]
    [InlineData("crop=2", 2, false)]
    public void Augmentation_specs_parse_and_format_back(string text, int padding, bool flip)
    {
        var augment = Augmentation.Parse(text);
        Assert.Equal(new Augmentation(padding, flip), augment);
        Assert.Equal(text, augment.ToString());
    }

    [Theory]
    [InlineData("crop=0", "augment: 'crop=0' is not crop=PAD (PAD from 1 to 1000) or flip.")]
    [InlineData("rotate", "augment: 'rotate' is not crop=PAD")]
    [InlineData("crop=2,crop=3", "augment: 'crop=2,crop=3' gives crop twice; give each once.")] // the last one had won, silently
    [InlineData("flip,crop=2,flip", "augment: 'flip,crop=2,flip' gives flip twice; give each once.")]
    public void Bad_augmentation_says_what_is_wrong(string text, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => Augmentation.Parse(text)).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData("0.5", 1, "normalize: '0.5' has 1 numbers; give MEAN,STD or 1 means then 1 standard deviations for 1-channel inputs.")]
    [InlineData("0.5,0", 1, "standard deviations positive")]
    [InlineData("0.1,0.2,0.3,1,1", 3, "has 5 numbers")]
    [InlineData("a,1", 1, "'a' in 'a,1' is not a number")]
    public void Bad_normalization_says_what_is_wrong(string text, int channels, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => ChannelNormalization.Parse(text, channels)).Message, StringComparison.Ordinal);

    [Fact]
    public void A_normalizing_model_predicts_on_raw_images_as_a_plain_model_on_normalized_ones_and_keeps_it_in_its_file()
    {
        using var backend = new ReferenceBackend();
        const string spec = "conv(3,3,pad=1),batchnorm,relu,flatten,dense(4)";
        var images = new Tensor([5, 3, 4, 4], TestData.Uniform(240, 61, 0f, 1f));
        float[] mean = [0.4f, 0.5f, 0.6f], std = [0.2f, 0.25f, 0.3f];
        var normalizedImages = new Tensor(images.Shape, [.. images.Data.Select((v, i) => (v - mean[i / 16 % 3]) / std[i / 16 % 3])]);

        using var plain = Sequential.Create(spec, [3, 4, 4], backend, seed: 2);
        using var normalizing = Sequential.Create(spec, [3, 4, 4], backend, seed: 2);
        normalizing.Normalization = ChannelNormalization.Parse("0.4,0.5,0.6,0.2,0.25,0.3", 3);
        TensorAssert.Identical<float>(plain.Predict(normalizedImages).Data, normalizing.Predict(images).Data, "normalised inside vs before");

        using var temp = Fixtures.TempFolder();
        ModelFile.Save(normalizing, temp.File("m.safetensors"));
        using var loaded = ModelFile.Load(temp.File("m.safetensors"), backend);
        Assert.Equal(normalizing.Normalization, loaded.Normalization);
        TensorAssert.Identical<float>(normalizing.Predict(images).Data, loaded.Predict(images).Data, "loaded model");

        var wrong = Assert.Throws<ArgumentException>(() => plain.Normalization = ChannelNormalization.Parse("0.5,0.5", 1));
        Assert.Contains("normalize: 1 channel(s) given, the model's input (3,4,4) has 3", wrong.Message, StringComparison.Ordinal);
    }
}
