using GpuCnn.Cli;

// Ctrl+C asks training to stop after the current batch and write a checkpoint; a second Ctrl+C ends the process.
using var interrupt = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (!interrupt.IsCancellationRequested)
    {
        e.Cancel = true;
        Console.Error.WriteLine();
        Console.Error.WriteLine("interrupt: finishing the current batch and writing a checkpoint (Ctrl+C again to quit at once)");
        interrupt.Cancel();
    }
};

return GpuCnnCli.Run(args, Console.Out, Console.Error, interrupt.Token);
