using GpuCnn.Cpu;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>The README's C# example, call for call, on a small dataset so it runs in a test.</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public void Readme_example_trains_saves_loads_and_predicts()
    {
        using var temp = Fixtures.TempFolder();
        var (train, test) = (TrainingTests.QuadrantData(32, 1), TrainingTests.QuadrantData(12, 2));
        using Backend backend = Backends.Open("reference");
        using var model = Sequential.Create("conv(4,3,pad=1),relu,maxpool(2),flatten,dense(4)", [1, 8, 8], backend, seed: 1);
        using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(LearningRate: 0.05f, Momentum: 0.9f));
        var trainer = new Trainer(model, sgd, new TrainingOptions(Epochs: 3, BatchSize: 8, Schedule: LearningRateSchedule.Cosine));
        var epochs = new List<EpochMetrics>();
        trainer.Fit(train, test, epochs.Add);
        ModelFile.Save(model, temp.File("model.safetensors"));

        using var loaded = ModelFile.Load(temp.File("model.safetensors"), backend);
        Tensor logits = loaded.Predict(test.Images);
        Evaluation result = Trainer.Evaluate(loaded, test);

        Assert.Equal(3, epochs.Count);
        Assert.Equal(new Shape(12, 4), logits.Shape);
        Assert.Equal(model.Predict(test.Images).Data, logits.Data);
        Assert.Equal(epochs[^1].TestAccuracy!.Value, result.Accuracy, 6);
    }

    [Fact]
    public void Readme_example_is_the_consumer_sample_that_ci_builds_and_runs_through_the_package()
    {
        // samples/Consumer carries the README's block between two markers; .ci/run builds it against the packed package
        // and runs it, so the README's code is compiled and run as a user would (it had read a folder only this
        // repository has, and nothing compiled it as written).
        string? root = AppContext.BaseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "GpuCnn.sln")))
        {
            root = Path.GetDirectoryName(root);
        }

        Assert.SkipWhen(root is null, "the repository is not above this test executable (a published copy): README.md and samples/ are not here");
        string readme = File.ReadAllText(Path.Combine(root!, "README.md")).ReplaceLineEndings("\n");
        string sample = File.ReadAllText(Path.Combine(root!, "samples", "Consumer", "Program.cs")).ReplaceLineEndings("\n");
        string readmeBlock = Between(readme, "## Train from C#\n\n```csharp\n", "```");
        string sampleBlock = Between(sample, "// README: Train from C#\n", "// end of the README's block\n");
        Assert.Contains("Idx.ReadMnist(", readmeBlock, StringComparison.Ordinal);
        Assert.Equal(readmeBlock, sampleBlock);
    }

    private static string Between(string text, string start, string end)
    {
        int from = text.IndexOf(start, StringComparison.Ordinal);
        Assert.True(from >= 0, $"'{start.Trim()}' is missing");
        from += start.Length;
        int to = text.IndexOf(end, from, StringComparison.Ordinal);
        Assert.True(to >= 0, $"'{end.Trim()}' is missing after '{start.Trim()}'");
        return text[from..to];
    }
}
