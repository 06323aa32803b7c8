using GpuCnn.Cli;

// Ctrl+C asks training to stop after the current batch and write a checkpoint; a second Ctrl+C, or one during any
// other command, ends the process.
using var interrupt = new Interrupt();
Console.CancelKeyPress += (_, e) =>
{
    if (interrupt.Request() is { } plan)
    {
        e.Cancel = true;
        Console.Error.WriteLine();
        Console.Error.WriteLine($"interrupt: {plan} (Ctrl+C again to quit at once)");
    }
};

return GpuCnnCli.Run(args, Console.Out, Console.Error, interrupt);
