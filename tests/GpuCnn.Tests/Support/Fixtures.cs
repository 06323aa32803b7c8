using System.Text.Json;

namespace GpuCnn.Tests.Support;

/// <summary>The PyTorch fixtures in Fixtures/torch (made by make_fixtures.py there), NumPy's in Fixtures/npy, and scratch folders.</summary>
public static class Fixtures
{
    public static string Torch(string file) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "torch", file);

    /// <summary>A file NumPy wrote (make_npy_fixtures.py in Fixtures/npy).</summary>
    public static string Npy(string file) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "npy", file);

    public static JsonElement Manifest { get; } = JsonDocument.Parse(File.ReadAllText(Torch("manifest.json"))).RootElement;

    public static TheoryData<string> PredictCases => new(Manifest.GetProperty("predict").EnumerateObject().Select(p => p.Name));

    public static TheoryData<string> TrainCases => new(Manifest.GetProperty("train").EnumerateObject().Select(p => p.Name));

    /// <summary>Several full-batch steps of an optimizer with settings the command line does not expose.</summary>
    public static TheoryData<string> OptimizerCases => new(Manifest.GetProperty("optimizers").EnumerateObject().Select(p => p.Name));

    /// <summary>Many steps of an optimizer's update formula alone, on one tensor with given gradients.</summary>
    public static TheoryData<string> UpdateCases => new(Manifest.GetProperty("updates").EnumerateObject().Select(p => p.Name));

    /// <summary>The bundled MNIST sample (data/mnist-sample, copied next to the CLI).</summary>
    public static string MnistSample => Path.Combine(AppContext.BaseDirectory, "data", "mnist-sample");

    /// <summary>A fresh empty folder, deleted when disposed.</summary>
    public static TempFolder TempFolder() => new();
}

public sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "gpucnn-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp folder is harmless.
        }
    }
}
