using System.Reflection;
using GpuCnn.Kernels;
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
    public static TheoryData<string> Kernels => new(KernelMethods().Select(Name));

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_to_ptx(string name)
    {
        string ptx = CompileToPtx(KernelMethods().Single(m => Name(m) == name));
        Assert.Contains(".entry", ptx, StringComparison.Ordinal);
        Assert.Contains(".target sm_80", ptx, StringComparison.Ordinal);
        // A .NET method ILGPU cannot translate becomes a call of an undefined function, which CUDA refuses to load.
        Assert.DoesNotContain(".extern .func", ptx, StringComparison.Ordinal);
        if (Environment.GetEnvironmentVariable("GPUCNN_PTX_DUMP") is { Length: > 0 } folder)
        {
            // For ptxas's register and spill report on a machine with the CUDA toolkit (perf/gpu/check.sh).
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, new string([.. name.Select(c => char.IsLetterOrDigit(c) ? c : '_')]) + ".ptx"), ptx);
        }
    }

    /// <summary>
    /// The optimizer updates state their rounding (Rounded.cs): PyTorch's fused multiply-adds as <c>fma.rn.f32</c> and
    /// their rounded products as <c>mul.rn.f32</c>, which ptxas leaves as written (plain <c>mul.f32</c>/<c>add.f32</c>
    /// it would fuse as it chose). The variant for devices without doubles holds no double arithmetic (ILGPU writes the
    /// untaken branch of CudaAsm.IsSupported too, so the fused variant's PTX holds the double form, which ptxas drops).
    /// </summary>
    [Theory]
    [InlineData(nameof(OptimizerKernels.Sgd), 4, 1)]
    [InlineData(nameof(OptimizerKernels.Adam), 3, 5)]
    public void Optimizer_kernels_state_their_rounding(string kernel, int fused, int products)
    {
        var method = typeof(OptimizerKernels).GetMethod(kernel)!;
        string ptx = CompileToPtx(method.MakeGenericMethod(typeof(FusedMultiplyAdd)));
        Assert.Equal(fused, Count(ptx, "fma.rn.f32"));
        Assert.Equal(products, Count(ptx, "mul.rn.f32"));
        Assert.DoesNotContain(".f64", CompileToPtx(method.MakeGenericMethod(typeof(SinglePrecisionMultiplyAdd))), StringComparison.Ordinal);

        static int Count(string text, string instruction) => text.Split(instruction).Length - 1;
    }

    private static string CompileToPtx(MethodInfo method)
    {
        using var context = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
        var architecture = new CudaArchitecture(8, 0);
        using var backend = new PTXBackend(context, new CudaCapabilityContext(architecture), architecture, new CudaInstructionSet(8, 0), null!);
        var entry = method.GetParameters()[0].ParameterType == typeof(Index1D)
            ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
            : EntryPointDescription.FromExplicitlyGroupedKernel(method);
        return ((PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty)).PTXAssembly;
    }

    [Fact]
    public void Every_kernel_family_is_covered()
    {
        Assert.True(KernelMethods().Count() >= 28);
        Assert.Contains(KernelMethods(), m => m.Name == "Tiled");
        Assert.Contains(KernelMethods(), m => Name(m) == "ElementwiseKernels.ActivationForward<Gelu>");
        Assert.Contains(KernelMethods(), m => Name(m) == "GemmTiled8x8Kernels.Tiled<Silu>");
        Assert.Contains(KernelMethods(), m => Name(m) == "ForeachKernels.SgdList"); // views only inside a struct
    }

    /// <summary>
    /// The public static kernel entry points of GpuCnn.Kernels. Generic ones are instantiated for every type they are
    /// launched with: element types with float, activation-generic kernels with every activation function struct in
    /// the assembly (so a new activation is compiled to PTX with every kernel that can apply it).
    /// </summary>
    private static IEnumerable<MethodInfo> KernelMethods() =>
        typeof(Kernels.ConvolutionKernels).Assembly.GetTypes()
            .Where(t => t.Namespace == "GpuCnn.Kernels" && t.IsAbstract && t.IsSealed)
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
            .Where(m => m.ReturnType == typeof(void) && m.GetParameters().Any(p => p.ParameterType.Name.StartsWith("ArrayView", StringComparison.Ordinal)
                || p.ParameterType == typeof(TensorList)))
            .SelectMany(Instantiations)
            .OrderBy(Name, StringComparer.Ordinal);

    private static IEnumerable<MethodInfo> Instantiations(MethodInfo method)
    {
        if (!method.IsGenericMethodDefinition)
        {
            return [method];
        }

        var constraints = method.GetGenericArguments()[0].GetGenericParameterConstraints();
        var policy = constraints.Any(c => typeof(IActivationFunction).IsAssignableFrom(c)) ? typeof(IActivationFunction)
            : constraints.Any(c => c == typeof(IMultiplyAdd)) ? typeof(IMultiplyAdd) : null;
        return policy is null
            ? [method.MakeGenericMethod(typeof(float))]
            : typeof(IActivationFunction).Assembly.GetTypes()
                .Where(t => t.IsValueType && constraints.All(c => c.IsAssignableFrom(t)) && policy.IsAssignableFrom(t))
                .Select(t => method.MakeGenericMethod(t));
    }

    private static string Name(MethodInfo m) =>
        $"{m.DeclaringType!.Name}.{m.Name}{(m.IsGenericMethod ? $"<{m.GetGenericArguments()[0].Name}>" : "")}";
}
