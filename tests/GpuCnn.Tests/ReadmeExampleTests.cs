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
}
