using System.Globalization;
using GpuCnn.Cpu;
using GpuCnn.Ilgpu;

namespace GpuCnn.Cli.Bench;

/// <summary>
/// `gpucnn bench --launches`: the kernels each bench row launches, as planned for a GPU (on ILGPU's CPU accelerator,
/// for a 132-SM Hopper part, without running anything), and whether the row's dominant kernel — the one with the
/// most thread-steps, threads × longest serial loop — fills the device: at least two groups per multiprocessor
/// (264 on 132 SMs) and no thread looping serially over more than 4,096 elements. The waves column is groups over
/// the groups of that size all multiprocessors hold at once, 512 threads each
/// (<see cref="IlgpuBackend.GroupsPerMultiprocessor"/>): the kernels with 8×8 register blocks fit two groups of 256
/// per multiprocessor, and their depth splits are chosen to fill whole waves (0.95 of one wave ran faster than 1.5
/// waves on an H100: docs/benchmarks.md).
/// </summary>
internal static class LaunchReport
{
    private const int MaxSerial = 4096;

    public static int Print(TextWriter output, IlgpuBackend backend, IEnumerable<OperationCase> cases)
    {
        var profile = backend.IsGpu ? backend.Profile : IlgpuBackend.DeviceProfile.Hopper;
        long minGroups = 2L * profile.Multiprocessors;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"planned for {profile.Multiprocessors} multiprocessors; implicitly grouped kernels counted in groups of {IlgpuBackend.AutoGroupAssumed}; goal: dominant kernel ≥ {minGroups} groups, serial loop ≤ {MaxSerial}"));
        output.WriteLine($"{"row",-22} {"kernel",-28} {"groups",8} {"waves",6} {"group",6} {"shared B",9} {"serial",8}  note");
        int rows = 0, met = 0;
        foreach (var operation in cases)
        {
            using var body = operation.Prepare(backend);
            var records = backend.PlanLaunches(profile, body.Run);
            var dominant = records.MaxBy(r => r.Groups * r.GroupSize * r.SerialLoop);
            bool ok = dominant is null || (dominant.Groups >= minGroups && dominant.SerialLoop <= MaxSerial);
            rows++;
            met += ok ? 1 : 0;
            foreach (var r in records.DistinctBy(r => (r.Kernel, r.Groups, r.GroupSize, r.SharedBytes, r.SerialLoop)))
            {
                string note = ReferenceEquals(r, dominant) ? (ok ? "dominant, ok" : "dominant, MISSES THE GOAL") : "";
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{operation.Name,-22} {r.Kernel,-28} {r.Groups,8} {(double)r.Groups / (profile.Multiprocessors * IlgpuBackend.GroupsPerMultiprocessor(r.GroupSize)),6:0.00} {r.GroupSize,6} {r.SharedBytes,9} {r.SerialLoop,8}  {note}"));
            }
        }

        output.WriteLine($"{met} of {rows} rows meet the goal");
        return 0;
    }
}
