using System.CommandLine;
using System.Globalization;
using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;

namespace GpuCnn.Cli;

/// <summary><c>gpucnn devices</c>: the accelerators found and which one auto picks.</summary>
internal static class DevicesCommand
{
    public static Command Create(CliIo io)
    {
        var command = new Command("devices", "List the compute devices and the one --device auto picks.");
        command.SetAction(_ =>
        {
            var devices = Backends.List();
            io.Out.WriteLine($"{"name",-10} {"kind",-4} {"memory",-10} {"status",-11} description");
            foreach (var d in devices)
            {
                string memory = d.MemoryBytes > 0 ? $"{d.MemoryBytes / (1 << 20)} MiB" : d.Available ? "host" : "-";
                string status = d.Available ? "available" : "absent";
                io.Out.WriteLine($"{d.Name,-10} {d.Kind,-4} {memory,-10} {status,-11} {(d.Available ? d.Description : d.Reason)}");
            }

            using var cpu = new CpuBackend();
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"cpu path: {cpu.Width} on {cpu.Threads} threads (instruction sets: {Simd.InstructionSets}); measured FMA peak {cpu.MeasurePeakGflops():F1} GFLOP/s; 3x3 Winograd {cpu.Winograd}"));
            io.Out.WriteLine($"auto picks: {Backends.AutoChoice(devices)}");
            return 0;
        });
        return command;
    }
}
