using GpuCnn.IO;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>`gpucnn train --arch resnet8` with the modern training options, end to end.</summary>
public sealed partial class CliTests
{
    [Fact]
    public void Train_resnet8_with_augmentation_normalisation_adamw_and_a_schedule_writes_a_normalising_model()
    {
        using var temp = Fixtures.TempFolder();
        var data = TrainingTests.QuadrantData(48, seed: 1);
        Npy.Write(temp.File("x.npy"), data.Images);
        Npy.Write(temp.File("y.npy"), new Npy.Array([48], "i4", [.. data.Labels.SelectMany(BitConverter.GetBytes)]));
        var result = CliRunner.Run("train", "--arch", "resnet8", "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"),
            "--test-images", temp.File("x.npy"), "--test-labels", temp.File("y.npy"), "--epochs", "2", "--batch-size", "16",
            "--optimizer", "adamw", "--schedule", "step", "--step-size", "1", "--gamma", "0.5", "--warmup", "2", "--label-smoothing", "0.1",
            "--augment", "crop=1,flip", "--normalize", "0.1,0.2", "--device", "cpu", "--out", temp.File("r.safetensors"), "--checkpoint", temp.File("c.safetensors"));
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("training conv(16,3,pad=1,bias=false),batchnorm,relu,residual(", result.Error, StringComparison.Ordinal);
        Assert.Matches(@"^test accuracy: \d{1,3}\.\d\d%$", result.LastLine);

        var file = Safetensors.Read(temp.File("r.safetensors"));
        Assert.Equal("0.1,0.2", file.Metadata["normalize"]);
        Assert.Equal(2 * 3, file.Tensors["1.num_batches_tracked"].Data[0]); // two epochs of three batches
        // What the run trained with, as its checkpoint records it (a run that dropped an option would pass the rest).
        var recorded = Safetensors.Read(temp.File("c.safetensors")).Metadata;
        Assert.Equal(("adamw", "step", "2", "0.1", "crop=1,flip"),
            (recorded["optimizer"], recorded["schedule"], recorded["warmup"], recorded["label_smoothing"], recorded["augment"]));
        Assert.Contains(".exp_avg_sq", string.Join(",", Safetensors.Read(temp.File("c.safetensors")).Tensors.Keys), StringComparison.Ordinal); // Adam's moments
        using var backend = new Cpu.ReferenceBackend();
        using var model = ModelFile.Load(temp.File("r.safetensors"), backend);
        Assert.Equal(Models.ArchitectureSpec.ResNet8, model.Spec);
        Assert.NotNull(model.Normalization);
    }
}
