using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GpuCnn.Tests;

/// <summary>
/// Every kernel compiles to CUDA PTX (sm_80, what ILGPU 1.5.3 emits for an H100), with the same context options as
/// the CUDA backend — no GPU needed. This catches what only the CUDA code generator rejects (a math function
/// without a PTX intrinsic, an unsupported construct) on machines without a GPU; running the PTX is the GPU check's job.
/// </summary>
[Trait("Category", "Ptx")]
public sealed class PtxCompilationTests
{
    public static TheoryData<string> Kernels => new(KernelMethods().Select(m => $"{m.DeclaringType!.Name}.{m.Name}"));

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_to_ptx(string name)
    {
        var method = KernelMethods().Single(m => $"{m.DeclaringType!.Name}.{m.Name}" == name);
        using var context = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
        var architecture = new CudaArchitecture(8, 0);
        using var backend = new PTXBackend(context, new CudaCapabilityContext(architecture), architecture, new CudaInstructionSet(8, 0), null!);
        var entry = method.GetParameters()[0].ParameterType == typeof(Index1D)
            ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
            : EntryPointDescription.FromExplicitlyGroupedKernel(method);
        var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
        Assert.Contains(".entry", compiled.PTXAssembly, StringComparison.Ordinal);
        Assert.Contains(".target sm_80", compiled.PTXAssembly, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_kernel_family_is_covered()
    {
        Assert.True(KernelMethods().Count() >= 28);
        Assert.Contains(KernelMethods(), m => m.Name == "Tiled");
    }

    /// <summary>The public static kernel entry points of GpuCnn.Kernels (generic ones instantiated for float).</summary>
    private static IEnumerable<MethodInfo> KernelMethods() =>
        typeof(Kernels.ConvolutionKernels).Assembly.GetTypes()
            .Where(t => t.Namespace == "GpuCnn.Kernels" && t.IsAbstract && t.IsSealed)
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
            .Where(m => m.ReturnType == typeof(void) && m.GetParameters().Any(p => p.ParameterType.Name.StartsWith("ArrayView", StringComparison.Ordinal)))
            .Select(m => m.IsGenericMethodDefinition ? m.MakeGenericMethod(typeof(float)) : m)
            .OrderBy(m => m.DeclaringType!.Name, StringComparer.Ordinal).ThenBy(m => m.Name, StringComparer.Ordinal);
}
