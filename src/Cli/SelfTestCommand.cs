using System.CommandLine;
using System.Globalization;
using GpuCnn.Cpu;
using GpuCnn.Ilgpu;

namespace GpuCnn.Cli;

/// <summary>
/// <c>gpucnn selftest [--device D]</c>: what to run first on a new GPU. Every operation runs on the device and on the
/// reference at several random shapes and must agree; the reference's backward passes are checked against central
/// finite differences in double. On an ILGPU device both kernel ladders run (the simple kernels, then the tiled
/// GEMM and im2col convolution). Prints a pass/fail table; exit code 1 if anything failed.
/// </summary>
internal static class SelfTestCommand
{
    public static Command Create(CliIo io)
    {
        var device = CommonOptions.Device();
        var seed = new Option<int>("--seed") { Description = "Seed for the random shapes and values.", DefaultValueFactory = _ => 1 };
        var command = new Command("selftest", "Cross-check every operation on a device against the reference.") { device, seed };
        command.SetAction(parse =>
        {
            using var backend = CommonOptions.OpenDevice(parse.GetValue(device)!, io.Error);
            io.Out.WriteLine($"device: {backend.Name} ({backend.DeviceName})");
            io.Out.WriteLine($"{"check",-42} {"shape",-44} {"max |diff|",11}  result");
            int failures = 0, total = 0;
            void Report(SelfTestResult r)
            {
                total++;
                failures += r.Passed ? 0 : 1;
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{r.Check,-42} {r.Shape,-44} {r.MaxDiff,11:G3}  {(r.Passed ? "pass" : "FAIL")}"));
            }

            foreach (var variant in Variants(backend))
            {
                variant.Apply();
                foreach (var result in SelfTest.CrossChecks(backend, parse.GetValue(seed)))
                {
                    Report(result with { Check = variant.Label + result.Check });
                }
            }

            foreach (var result in SelfTest.GradientChecks(parse.GetValue(seed)))
            {
                Report(result);
            }

            io.Out.WriteLine($"{total - failures} of {total} checks passed{(failures == 0 ? "" : $"; {failures} FAILED")}");
            return failures == 0 ? 0 : 1;
        });
        return command;
    }

    private static IEnumerable<(string Label, Action Apply)> Variants(Backend backend)
    {
        if (backend is not IlgpuBackend ilgpu)
        {
            yield return ("", () => { });
            yield break;
        }

        yield return ("simple/", () => (ilgpu.GemmAlgorithm, ilgpu.ConvolutionAlgorithm) = (GemmAlgorithm.Naive, ConvolutionAlgorithm.Direct));
        yield return ("tiled/", () => (ilgpu.GemmAlgorithm, ilgpu.ConvolutionAlgorithm) = (GemmAlgorithm.Tiled, ConvolutionAlgorithm.Im2ColGemm));
        yield return ("implicit/", () => (ilgpu.GemmAlgorithm, ilgpu.ConvolutionAlgorithm) = (GemmAlgorithm.Tiled8x8, ConvolutionAlgorithm.ImplicitGemm));
        yield return ("auto/", () => (ilgpu.GemmAlgorithm, ilgpu.ConvolutionAlgorithm) = (GemmAlgorithm.Auto, ConvolutionAlgorithm.Auto));
    }
}
