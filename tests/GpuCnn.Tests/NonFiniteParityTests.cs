using System.Globalization;
using System.Text.Json;
using GpuCnn.IO;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// NaN and ±∞ as PyTorch handles them, for every operation on every backend: inputs, weights and gradients hold NaN,
/// +∞ and −∞, and every output must be NaN exactly where PyTorch's is, the same infinity where PyTorch's is one, and
/// close elsewhere (1e-5 + 1e-4·|expected|). Fixtures: Fixtures/torch/make_nonfinite_fixtures.py (PyTorch 1.13 CPU).
/// </summary>
public abstract class NonFiniteParityTests(BackendFixture fixture)
{
    private static readonly JsonElement Manifest =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "torch", "nonfinite", "manifest.json"))).RootElement;

    public static TheoryData<string> Cases => new(Manifest.GetProperty("cases").EnumerateObject().Select(c => c.Name));

    [Theory]
    [Trait("Category", "Torch")]
    [MemberData(nameof(Cases))]
    public void Nan_and_infinity_follow_pytorch(string name)
    {
        var backend = fixture.Require();
        var info = CaseInfo(name);
        var t = Safetensors.Read(Path.Combine(AppContext.BaseDirectory, "Fixtures", "torch", "nonfinite", $"{name}.safetensors")).Tensors;
        var results = new List<(string Output, float[] Actual)>();
        var owned = new List<IDisposable>();
        DeviceTensor<float> Put(string key)
        {
            var tensor = backend.Upload(t[key]);
            owned.Add(tensor);
            return tensor;
        }

        DeviceTensor<float> Out(string key)
        {
            var tensor = backend.Allocate<float>(t[key].Shape);
            owned.Add(tensor);
            return tensor;
        }

        try
        {
            switch (info.GetProperty("op").GetString())
            {
                case "activation":
                {
                    var f = Support.Cases.Activation(info.GetProperty("spec").GetString()!);
                    var x = Put("x");
                    var dy = Put("dy");
                    var y = Out("y");
                    var dx = Out("dx");
                    f.Apply(backend, x, y);
                    f.ApplyBackward(backend, x, y, dy, dx);
                    results.Add(("y", backend.DownloadArray(y)));
                    results.Add(("dx", backend.DownloadArray(dx)));
                    if (f.CanFuse)
                    {
                        var fromOutput = Out("dx");
                        f.ApplyBackwardFromOutput(backend, y, dy, fromOutput);
                        results.Add(("dx", backend.DownloadArray(fromOutput)));
                    }

                    break;
                }

                case "maxpool":
                case "avgpool":
                {
                    var shape = t["x"].Shape;
                    int k = Int(info, "kernel"), s = Int(info, "stride"), pad = Int(info, "pad");
                    var g = new Pool2dGeometry(shape[0], shape[1], shape[2], shape[3], k, k, s, s, pad, pad);
                    var x = Put("x");
                    var dy = Put("dy");
                    var y = Out("y");
                    var dx = Out("dx");
                    if (info.GetProperty("op").GetString() == "maxpool")
                    {
                        using var switches = backend.Allocate<int>(t["y"].Shape);
                        backend.MaxPool2dForward(g, x, y, switches);
                        backend.MaxPool2dBackward(g, dy, switches, dx);
                        results.Add(("switches", Array.ConvertAll(backend.DownloadArray(switches), v => (float)v)));
                    }
                    else
                    {
                        backend.AvgPool2dForward(g, x, y);
                        backend.AvgPool2dBackward(g, dy, dx);
                    }

                    results.Add(("y", backend.DownloadArray(y)));
                    results.Add(("dx", backend.DownloadArray(dx)));
                    break;
                }

                case "conv2d":
                {
                    var g = ConvolutionGeometry(t, info);
                    var x = Put("x");
                    var w = Put("w");
                    var b = Put("b");
                    var dy = Put("dy");
                    var y = Out("y");
                    var dx = Out("dx");
                    var dw = Out("dw");
                    var db = Out("db");
                    backend.Conv2dForward(g, x, w, b, y);
                    backend.Conv2dBackwardData(g, dy, w, dx);
                    backend.Conv2dBackwardFilter(g, x, dy, dw, db);
                    results.AddRange([("y", backend.DownloadArray(y)), ("dx", backend.DownloadArray(dx)), ("dw", backend.DownloadArray(dw)), ("db", backend.DownloadArray(db))]);
                    break;
                }

                case "gemm":
                {
                    Shape a = t["a"].Shape, bm = t["b"].Shape;
                    var c = Out("c");
                    backend.Gemm(false, false, a[0], bm[1], a[1], 1f, Put("a"), Put("b"), 0f, c);
                    results.Add(("c", backend.DownloadArray(c)));
                    break;
                }

                case "softmax_ce":
                {
                    var z = Put("z");
                    using var labels = backend.Upload<int>([t["labels"].Shape[0]], Array.ConvertAll(t["labels"].Data, v => (int)v));
                    var dz = Out("dz");
                    var loss = Out("loss");
                    backend.SoftmaxCrossEntropy(z, labels, dz, loss);
                    results.AddRange([("loss", backend.DownloadArray(loss)), ("dz", backend.DownloadArray(dz))]);
                    break;
                }

                case "sgd":
                case "adam":
                {
                    var p = Put("p");
                    var g = Put("g");
                    int n = t["p"].Shape[0];
                    float lr = (float)info.GetProperty("lr").GetDouble(), decay = (float)info.GetProperty("weight_decay").GetDouble();
                    if (info.GetProperty("op").GetString() == "sgd")
                    {
                        using var velocity = backend.Upload<float>([n], new float[n]);
                        backend.SgdUpdate(new SgdOptions(lr, (float)info.GetProperty("momentum").GetDouble(), 0f, decay), true, p, g, velocity);
                    }
                    else
                    {
                        using var m = backend.Upload<float>([n], new float[n]);
                        using var v = backend.Upload<float>([n], new float[n]);
                        backend.AdamUpdate(new AdamOptions(lr, WeightDecay: decay), 1, p, g, m, v);
                    }

                    results.Add(("after", backend.DownloadArray(p)));
                    break;
                }

                default:
                    throw new InvalidOperationException($"unknown fixture operation in {name}");
            }
        }
        finally
        {
            foreach (var tensor in owned)
            {
                tensor.Dispose();
            }
        }

        foreach (var (output, actual) in results)
        {
            TensorAssert.Close(t[output].Data, actual, t[output].Shape, Atol, Rtol, $"{backend.Name} {name} {output}");
        }
    }

    /// <summary>The manifest entry of one fixture case (its parameters).</summary>
    internal static JsonElement CaseInfo(string name) => Manifest.GetProperty("cases").GetProperty(name);

    /// <summary>The geometry of a convolution case: shapes from its tensors, stride and padding from the manifest.</summary>
    internal static Conv2dGeometry ConvolutionGeometry(IReadOnlyDictionary<string, Tensor> t, JsonElement info)
    {
        Shape xs = t["x"].Shape, ws = t["w"].Shape;
        int s = Int(info, "stride"), pad = Int(info, "pad");
        return new Conv2dGeometry(xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], s, s, pad, pad);
    }

    private static int Int(JsonElement info, string key) => info.GetProperty(key).GetInt32();

    /// <summary>Tolerances of the finite values next to the non-finite ones.</summary>
    internal const double Atol = 1e-5, Rtol = 1e-4;
}

public sealed class ReferenceNonFiniteParity(ReferenceFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<ReferenceFixture>;

public sealed class CpuNonFiniteParity(CpuFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<CpuFixture>;

public sealed class IlgpuCpuNonFiniteParity(IlgpuCpuFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuFixture>;

public sealed class IlgpuCpuTiledNonFiniteParity(IlgpuCpuTiledFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuTiledFixture>;

public sealed class IlgpuCpuTiled8x8NonFiniteParity(IlgpuCpuTiled8x8Fixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuTiled8x8Fixture>;

public sealed class IlgpuCpuSplitNonFiniteParity(IlgpuCpuSplitFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuSplitFixture>;

public sealed class IlgpuCpuGpuGroupsNonFiniteParity(IlgpuCpuGpuGroupsFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuGpuGroupsFixture>;

public sealed class IlgpuCpuImplicitNonFiniteParity(IlgpuCpuImplicitFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuImplicitFixture>;

public sealed class IlgpuCpuFewTapsNonFiniteParity(IlgpuCpuFewTapsFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuFewTapsFixture>;

public sealed class IlgpuCpuNarrow32NonFiniteParity(IlgpuCpuNarrow32Fixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuNarrow32Fixture>;

public sealed class IlgpuCpuBlockedFewTapsNonFiniteParity(IlgpuCpuBlockedFewTapsFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuBlockedFewTapsFixture>;

public sealed class IlgpuCpuImplicitSplitNonFiniteParity(IlgpuCpuImplicitSplitFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<IlgpuCpuImplicitSplitFixture>;

public sealed class CudaNonFiniteParity(CudaFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<CudaFixture>;

public sealed class CudaNarrow32NonFiniteParity(CudaNarrow32Fixture fixture) : NonFiniteParityTests(fixture), IClassFixture<CudaNarrow32Fixture>;

public sealed class CudaBlockedFewTapsNonFiniteParity(CudaBlockedFewTapsFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<CudaBlockedFewTapsFixture>;

public sealed class OpenCLNonFiniteParity(OpenCLFixture fixture) : NonFiniteParityTests(fixture), IClassFixture<OpenCLFixture>;
