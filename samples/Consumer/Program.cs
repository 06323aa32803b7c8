// The README's "Train from C#" example as a consumer runs it, through the package alone; the lines between the
// markers are the README's block, character for character (ReadmeExampleTests compares them), so CI builds and runs
// exactly what the README shows. Fails (exit 1) unless the reloaded model's test accuracy clears 90 %, before and after
// fine-tuning with an optimizer of its own.
// README: Train from C#
using GpuCnn;
using GpuCnn.IO;
using GpuCnn.Models;

string folder = args.Length > 0 ? args[0] : "data/mnist-sample"; // MNIST's four IDX files (this repository ships 10,000 digits here)
var (train, test) = Idx.ReadMnist(folder);                       // images (N,1,28,28) in [0,1], labels 0…9
using Backend backend = Backends.Open("auto");
using var model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend, seed: 1);
using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(LearningRate: 0.05f, Momentum: 0.9f));
var trainer = new Trainer(model, sgd, new TrainingOptions(Epochs: 8, BatchSize: 64, Schedule: LearningRateSchedule.Cosine));
trainer.Fit(train, test, e => Console.WriteLine($"epoch {e.Epoch}: test accuracy {e.TestAccuracy:P2} on {backend.Name}"));
ModelFile.Save(model, "lenet5.safetensors");

using var loaded = ModelFile.Load("lenet5.safetensors", backend);
Tensor logits = loaded.Predict(test.Images);                     // (2000, 10)
Evaluation result = Trainer.Evaluate(loaded, test);              // loss, accuracy, confusion matrix
Console.WriteLine($"reloaded: test accuracy {result.Accuracy:P2}");
// end of the README's block

File.Delete("lenet5.safetensors");

// Fine-tuned for an epoch by an optimizer of the user's own (CustomOptimizer.cs): the public surface suffices to write one.
using var custom = new HalfMomentumSgd(backend, loaded.NamedParameters(), learningRate: 0.01f);
new Trainer(loaded, custom, new TrainingOptions(Epochs: 1, BatchSize: 64)).Fit(train);
Evaluation tuned = Trainer.Evaluate(loaded, test);
Console.WriteLine($"fine-tuned by its own optimizer ({custom.StepCount} steps): test accuracy {tuned.Accuracy:P2}");
return logits.Shape == new Shape(test.Count, 10) && result.Accuracy >= 0.9 && tuned.Accuracy >= 0.9 ? 0 : 1;
