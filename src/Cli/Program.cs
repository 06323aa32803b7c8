using System.Runtime.InteropServices;
using GpuCnn.Cli;

// Ctrl+C asks training to stop after the current batch and write a checkpoint; a second Ctrl+C, or one during any
// other command, ends the process. SIGTERM (a job scheduler's notice, or mpirun's to every rank on Ctrl+C) asks the
// same, and so does SIGUSR1, which mpirun forwards to every rank without ending the job a second later.
using var interrupt = new Interrupt();
// Under mpirun every rank hears the signal; rank 0 speaks for the job.
bool speaks = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK") is null or "0";
bool Stop(string signal)
{
    if (interrupt.Request() is not { } plan)
    {
        return false;
    }

    if (speaks)
    {
        Console.Error.WriteLine();
        Console.Error.WriteLine($"interrupt ({signal}): {plan} (a second {signal} quits at once)");
    }

    return true;
}

Console.CancelKeyPress += (_, e) => e.Cancel = Stop("Ctrl+C");
using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => context.Cancel = Stop("SIGTERM"));
const int Sigusr1 = 10; // Linux's number; PosixSignal names only the signals every Unix numbers alike
using var user = OperatingSystem.IsLinux() ? PosixSignalRegistration.Create((PosixSignal)Sigusr1, context => context.Cancel = Stop("SIGUSR1")) : null;

return GpuCnnCli.Run(args, Console.Out, Console.Error, interrupt);
