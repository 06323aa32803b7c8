// The README's C# sample as a consumer runs it: one package, every device. Trains LeNet-5 for one epoch on the MNIST
// sample and fails (exit 1) unless the test accuracy clears 80 %.
using GpuCnn;
using GpuCnn.IO;
using GpuCnn.Models;

string data = args.Length > 0 ? args[0] : Path.Combine("..", "..", "data", "mnist-sample");
var (train, test) = Idx.ReadMnist(data);
using Backend backend = Backends.Open("auto");
using var model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend, seed: 1);
using var sgd = new Sgd(backend, model.NamedParameters(), new SgdOptions(LearningRate: 0.05f, Momentum: 0.9f));
var trainer = new Trainer(model, sgd, new TrainingOptions(Epochs: 1, BatchSize: 64));
trainer.Fit(train, test, e => Console.WriteLine($"epoch {e.Epoch}: test accuracy {e.TestAccuracy:P2} on {backend.Name}"));

string file = Path.Combine(Path.GetTempPath(), $"gpucnn-consumer-{Environment.ProcessId}.safetensors");
ModelFile.Save(model, file);
using var loaded = ModelFile.Load(file, backend);
File.Delete(file);
Evaluation result = Trainer.Evaluate(loaded, test);
Console.WriteLine($"reloaded: test accuracy {result.Accuracy:P2}");
return result.Accuracy >= 0.8 ? 0 : 1;
