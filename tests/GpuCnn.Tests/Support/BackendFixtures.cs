using GpuCnn.Cpu;
using GpuCnn.Ilgpu;

namespace GpuCnn.Tests.Support;

/// <summary>
/// Owns one backend for a test class, opened once. A device this machine lacks leaves <see cref="Backend"/> null
/// and <see cref="SkipReason"/> set, and every test of that class reports as skipped with that reason.
/// </summary>
public abstract class BackendFixture : IDisposable
{
    /// <summary>An ILGPU device with <paramref name="settings"/> forced on it.</summary>
    protected BackendFixture(string name, IlgpuSettings settings)
        : this(name, settings.ApplyTo)
    {
    }

    protected BackendFixture(string name, Action<Backend>? configure = null)
        : this(name, () => Backends.Open(name), configure)
    {
    }

    /// <summary>A backend <paramref name="open"/> makes, with <paramref name="configure"/> applied.</summary>
    protected BackendFixture(string name, Func<Backend> open, Action<Backend>? configure = null)
    {
        Name = name;
        try
        {
            Backend = open();
            configure?.Invoke(Backend);
        }
        catch (DeviceUnavailableException e) when (!e.DeviceFound)
        {
            SkipReason = $"{name} is not available on this machine: {e.Message}";
        }
        catch (DeviceUnavailableException e)
        {
            // The device is there but failed to start: that is a failure to report, not a reason to skip.
            FailureReason = $"{name} was found but failed to start: {e.Message}";
        }
    }

    public string Name { get; }

    public Backend? Backend { get; }

    public string? SkipReason { get; }

    /// <summary>Why a device that is present could not be used; its tests fail with this.</summary>
    public string? FailureReason { get; }

    /// <summary>The backend, or a skip (never a pass) when the device is absent, or a failure when it would not start.</summary>
    public Backend Require()
    {
        Assert.True(FailureReason is null, FailureReason);
        Assert.SkipWhen(Backend is null, SkipReason ?? "");
        return Backend!;
    }

    public void Dispose()
    {
        Backend?.Dispose();
        GC.SuppressFinalize(this);
    }
}

public sealed class ReferenceFixture() : BackendFixture("reference");

public sealed class CpuFixture() : BackendFixture("cpu");

public sealed class IlgpuCpuFixture() : BackendFixture("ilgpu-cpu");

/// <summary>ILGPU's CPU accelerator with the tensor-list operations a launch per tensor (GPUCNN_TENSOR_LISTS=0; OpenCL's way).</summary>
public sealed class IlgpuCpuPerTensorFixture() : BackendFixture("ilgpu-cpu", backend => ((IlgpuBackend)backend).TensorListLaunches = false);

/// <summary>ILGPU's CPU accelerator forced onto the fast kernels: tiled GEMM and im2col + GEMM convolution, the latter in several chunks of images (a tiny workspace).</summary>
public sealed class IlgpuCpuTiledFixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Gemm: GemmAlgorithm.Tiled, Convolution: ConvolutionAlgorithm.Im2ColGemm, ConvolutionWorkspaceFloats: 300));

/// <summary>ILGPU's CPU accelerator on the 8×8-blocked GEMM (32×32 tiles here, 128×128 on GPUs) and im2col + GEMM convolution.</summary>
public sealed class IlgpuCpuTiled8x8Fixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Gemm: GemmAlgorithm.Tiled8x8, Convolution: ConvolutionAlgorithm.Im2ColGemm));

/// <summary>
/// ILGPU's CPU accelerator forced onto the split reductions a GPU takes for big shapes: 8×8-blocked GEMMs with the
/// depth split in three (partial products summed by a second kernel) and direct filter gradients (with their bias),
/// bias gradients and batch norm's sums in three chunks.
/// </summary>
public sealed class IlgpuCpuSplitFixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Gemm: GemmAlgorithm.Tiled8x8, Convolution: ConvolutionAlgorithm.Direct, DepthSplits: 3, ReductionChunks: 3));

/// <summary>
/// ILGPU's CPU accelerator on the implicit-GEMM convolution (forward, filter gradient and stride-1 backward data;
/// 64-filter × 16-pixel tiles here, 64 × 256 on GPUs), strided backward data by im2col + GEMM; every filter gradient
/// on the GEMM (both few-taps kernels off: they would take nearly every test layer, all of at most 64 taps).
/// </summary>
public sealed class IlgpuCpuImplicitFixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm, FilterGradientsOnGemm: true));

/// <summary>
/// The implicit-GEMM convolution with the filter gradients of layers of at most 64 taps on
/// <see cref="Kernels.ConvolutionFewTapsKernels"/> (the default; here nearly every test layer's), in three chunks. On
/// GPUs <see cref="CudaFixture"/> (Auto) runs it with 256-thread groups; the fixtures that force the implicit GEMM turn it
/// off, so that their filter gradients stay on the GEMM.
/// </summary>
public sealed class IlgpuCpuFewTapsFixture() : BackendFixture("ilgpu-cpu", new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm));

/// <summary>
/// Simulated 128-thread groups with the filter gradients on <see cref="Kernels.ConvolutionFewTapsKernels.FilterGradientBlocked"/>
/// wherever a group holds a thread per block of 16 filters and tap, whatever its taps, in three chunks — the few-taps
/// kernel off, which would otherwise keep the layers of at most 64 taps whose groups are small, nearly every test
/// layer; the implicit GEMM for the rest. 128 threads hold every test layer the classes check on it (two blocks of
/// filters included), and the three classes took 46 s here against 64 s on 256-thread groups when they ran every
/// operation (an OS thread per simulated thread); groups up to 512 run on CUDA only
/// (<see cref="CudaBlockedFewTapsFixture"/>).
/// </summary>
public sealed class IlgpuCpuBlockedFewTapsFixture() : BackendFixture("ilgpu-cpu", () => IlgpuDevices.OpenCpuAccelerator(groupThreads: 128),
    new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm, FewTapsFilterGradient: 0, BlockedFewTapsFilterGradient: 4096).ApplyTo);

/// <summary>The implicit-GEMM convolution with its depth split in three (partial NCHW slices summed by a second kernel), as GPUs run few-tile layers.</summary>
public sealed class IlgpuCpuImplicitSplitFixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm, DepthSplits: 3, FilterGradientsOnGemm: true));

/// <summary>
/// The implicit GEMM on its 64-filter tiles for narrow layers too (the default gives layers of at most 32 filters, every
/// test layer, 32-filter tiles, and the forwards of those of at most 16 16-filter ones), unsplit and with its depth
/// split in three.
/// </summary>
public sealed class IlgpuCpuImplicitWideFixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm, ImplicitGemmFilters: 64, FilterGradientsOnGemm: true));

/// <summary>
/// The implicit GEMM with the forwards (and stride-1 backward data) of layers of at most 16 filters on 32-filter tiles
/// (<see cref="Kernels.ConvolutionImplicitGemmKernels.ForwardNarrow"/>, GPUCNN_IMPLICIT_GEMM_FILTERS=32) instead of the
/// default 16-filter ones.
/// </summary>
public sealed class IlgpuCpuNarrow32Fixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm, ImplicitGemmFilters: 32));

public sealed class IlgpuCpuImplicitWideSplitFixture() : BackendFixture("ilgpu-cpu",
    new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm, ImplicitGemmFilters: 64, DepthSplits: 3, FilterGradientsOnGemm: true));

/// <summary>
/// ILGPU's CPU accelerator simulating 256-thread groups, on the routes a GPU takes for big shapes: 8×8-blocked GEMM on
/// 128×128 tiles at depth 16, implicit-GEMM convolution on 64 × 256 tiles, 256-thread reductions — what only CUDA
/// would otherwise run.
/// </summary>
public sealed class IlgpuCpuGpuGroupsFixture() : BackendFixture("ilgpu-cpu", () => IlgpuDevices.OpenCpuAccelerator(groupThreads: 256),
    new IlgpuSettings(Gemm: GemmAlgorithm.Tiled8x8, Convolution: ConvolutionAlgorithm.ImplicitGemm, FilterGradientsOnGemm: true).ApplyTo);

/// <summary>
/// The same simulated 256-thread groups on the 4×4 GEMM with tile groups of 128 threads (16 × 8, the one non-square
/// group) and im2col + GEMM convolution in several chunks of images.
/// </summary>
public sealed class IlgpuCpuGpuGroupsTiledFixture() : BackendFixture("ilgpu-cpu", () => IlgpuDevices.OpenCpuAccelerator(groupThreads: 256),
    new IlgpuSettings(Gemm: GemmAlgorithm.Tiled, Convolution: ConvolutionAlgorithm.Im2ColGemm, TileGroupThreads: 128, ConvolutionWorkspaceFloats: 300).ApplyTo);

public sealed class CudaFixture() : BackendFixture("cuda");

/// <summary>CUDA forced onto the implicit-GEMM convolution and the 8×8 GEMM, whatever the shape (Auto keeps small shapes on the simple kernels).</summary>
public sealed class CudaImplicitFixture() : BackendFixture("cuda",
    new IlgpuSettings(Gemm: GemmAlgorithm.Tiled8x8, Convolution: ConvolutionAlgorithm.ImplicitGemm, FilterGradientsOnGemm: true));

/// <summary>
/// The same with tile groups of 64 threads (<see cref="IlgpuBackend.TileGroupThreads"/>): 64×64 GEMM tiles, implicit-GEMM
/// groups of 8 × 8 threads.
/// </summary>
public sealed class CudaTileGroups64Fixture() : BackendFixture("cuda",
    new IlgpuSettings(Gemm: GemmAlgorithm.Tiled8x8, Convolution: ConvolutionAlgorithm.ImplicitGemm, TileGroupThreads: 64, FilterGradientsOnGemm: true));

/// <summary>CUDA's implicit GEMM (forced) on its 64-filter tiles for narrow layers too, every filter gradient on the GEMM.</summary>
public sealed class CudaImplicitWideFixture() : BackendFixture("cuda",
    new IlgpuSettings(Convolution: ConvolutionAlgorithm.ImplicitGemm, ImplicitGemmFilters: 64, FilterGradientsOnGemm: true));

/// <summary>CUDA with 32-filter implicit-GEMM tiles for the forwards of layers of at most 16 filters too (the default: 16-filter ones).</summary>
public sealed class CudaNarrow32Fixture() : BackendFixture("cuda", new IlgpuSettings(ImplicitGemmFilters: 32));

/// <summary>
/// CUDA with the blocked few-taps filter gradient wherever it fits, the few-taps kernel off (by default the blocked
/// kernel takes layers of at most 160 taps, the few-taps kernel keeps most of those of at most 64).
/// </summary>
public sealed class CudaBlockedFewTapsFixture() : BackendFixture("cuda", new IlgpuSettings(FewTapsFilterGradient: 0, BlockedFewTapsFilterGradient: 4096));

/// <summary>CUDA's 4×4 GEMM (forced) with groups of 16 × 8 threads, the one non-square group.</summary>
public sealed class CudaTiled128Fixture() : BackendFixture("cuda", new IlgpuSettings(Gemm: GemmAlgorithm.Tiled, TileGroupThreads: 128));

/// <summary>What a fixture forces on an ILGPU backend; null leaves the backend's own choice.</summary>
public sealed record IlgpuSettings(
    GemmAlgorithm? Gemm = null,
    ConvolutionAlgorithm? Convolution = null,
    int? DepthSplits = null,
    int? ReductionChunks = null,
    int? ImplicitGemmFilters = null,
    int? TileGroupThreads = null,
    long? ConvolutionWorkspaceFloats = null,
    int? FewTapsFilterGradient = null,
    int? BlockedFewTapsFilterGradient = null,
    bool FilterGradientsOnGemm = false)
{
    public void ApplyTo(Backend backend)
    {
        var ilgpu = (IlgpuBackend)backend;
        ilgpu.GemmAlgorithm = Gemm ?? ilgpu.GemmAlgorithm;
        ilgpu.ConvolutionAlgorithm = Convolution ?? ilgpu.ConvolutionAlgorithm;
        ilgpu.GemmDepthSplits = DepthSplits ?? ilgpu.GemmDepthSplits;
        ilgpu.ReductionChunks = ReductionChunks ?? ilgpu.ReductionChunks;
        ilgpu.ImplicitGemmFilters = ImplicitGemmFilters ?? ilgpu.ImplicitGemmFilters;
        ilgpu.TileGroupThreads = TileGroupThreads ?? ilgpu.TileGroupThreads;
        ilgpu.ConvolutionWorkspaceFloats = ConvolutionWorkspaceFloats ?? ilgpu.ConvolutionWorkspaceFloats;
        // The GEMM's filter gradients: both few-taps kernels off (they would take nearly every test layer).
        ilgpu.FewTapsFilterGradient = FilterGradientsOnGemm ? 0 : FewTapsFilterGradient ?? ilgpu.FewTapsFilterGradient;
        ilgpu.BlockedFewTapsFilterGradient = FilterGradientsOnGemm ? 0 : BlockedFewTapsFilterGradient ?? ilgpu.BlockedFewTapsFilterGradient;
    }
}

public sealed class OpenCLFixture() : BackendFixture("opencl");
