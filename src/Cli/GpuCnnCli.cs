using System.CommandLine;
using System.Globalization;
using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>A mistake in the command line itself (exit code 2).</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The gpucnn command line: devices, train, eval, predict. Exit code 0 on success, 2 on a usage error, 1 on any
/// other failure; errors are one "error:" line on stderr, with the stack trace only under --verbose.
/// </summary>
internal static class GpuCnnCli
{
    /// <summary>
    /// Runs one command in the invariant culture: "--lr 0.05" is 0.05 and accuracies print with a point whatever the
    /// caller's culture. The gpucnn executable is globalization-invariant anyway; a host that runs commands in process
    /// in a German culture (the tests) had had "--momentum 1.5" read as 15. The caller's culture comes back after.
    /// </summary>
    public static int Run(string[] args, TextWriter output, TextWriter error, Interrupt? interrupt = null)
    {
        var (culture, uiCulture) = (CultureInfo.CurrentCulture, CultureInfo.CurrentUICulture);
        CultureInfo.CurrentCulture = CultureInfo.CurrentUICulture = CultureInfo.InvariantCulture;
        try
        {
            return RunInvariant(args, output, error, interrupt);
        }
        finally
        {
            (CultureInfo.CurrentCulture, CultureInfo.CurrentUICulture) = (culture, uiCulture);
        }
    }

    private static int RunInvariant(string[] args, TextWriter output, TextWriter error, Interrupt? interrupt)
    {
        var verbose = new Option<bool>("--verbose") { Description = "Show stack traces on errors.", Recursive = true };
        var root = new RootCommand("GpuCnn: train and run convolutional networks on CUDA, OpenCL or the CPU.");
        root.Options.Add(verbose);
        var io = new CliIo(output, error, interrupt);
        root.Subcommands.Add(DevicesCommand.Create(io));
        root.Subcommands.Add(TrainCommand.Create(io));
        root.Subcommands.Add(EvalCommand.Create(io));
        root.Subcommands.Add(PredictCommand.Create(io));
        root.Subcommands.Add(ExportCommand.Create(io));
        root.Subcommands.Add(BenchCommand.Create(io));
        root.Subcommands.Add(ProfileCommand.Create(io));
        root.Subcommands.Add(SelfTestCommand.Create(io));

        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            error.WriteLine($"error: {Readable(parse.Errors[0].Message)}");
            return 2;
        }

        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            error.WriteLine($"error: {Describe(e)}");
            if (parse.GetValue(verbose))
            {
                error.WriteLine(e.ToString());
            }

            return ExitCodeOf(e);
        }
    }

    /// <summary>2 for a mistake in the command line, 1 for any other failure.</summary>
    internal static int ExitCodeOf(Exception e) => e is UsageException or SpecException ? 2 : 1;

    /// <summary>System.CommandLine names .NET types in its messages ("System.Nullable`1[System.Single]"); say what a user types.</summary>
    private static string Readable(string message) => System.Text.RegularExpressions.Regex.Replace(message,
        @"as expected type '([^']*)'", m => m.Groups[1].Value.Contains("Int32", StringComparison.Ordinal) ? "as an integer" : "as a number");

    internal static string Describe(Exception e)
    {
        string message = e.Message;
        int note = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        message = note > 0 ? message[..note] : message;
        // The engine's messages name no flag; the command line adds the one that helps.
        message += e switch
        {
            DeviceOutOfMemoryException => " (--batch-size)",
            GpuCnn.IO.FileFormatException when message.Contains("not a gpucnn checkpoint", StringComparison.Ordinal) => " (--init)",
            ArgumentException when message.Contains("no \"arch\" in its metadata", StringComparison.Ordinal) => " (--arch)",
            ArgumentException when message.Contains("no \"input\" shape in its metadata", StringComparison.Ordinal) => " (--input-shape)",
            _ => "",
        };
        return message.ReplaceLineEndings(" ");
    }
}

/// <summary>Where commands write, and Ctrl+C (null: not wired to a console, as in tests).</summary>
internal sealed record CliIo(TextWriter Out, TextWriter Error, Interrupt? Interrupt)
{
    /// <summary>Cancelled by a first Ctrl+C while a command watches for it.</summary>
    public CancellationToken Cancel => Interrupt?.Token ?? CancellationToken.None;

    /// <summary>Until the result is disposed, a first Ctrl+C asks for a clean stop, described by <paramref name="plan"/>.</summary>
    public IDisposable? Watch(string plan) => Interrupt?.Watch(plan);
}

/// <summary>
/// Ctrl+C. While a command that can stop cleanly watches for it (train: after the current batch, writing a
/// checkpoint), a first Ctrl+C asks it to; otherwise, and on a second Ctrl+C, the process ends at once, as any
/// program's does.
/// </summary>
internal sealed class Interrupt : IDisposable
{
    private readonly CancellationTokenSource _requested = new();
    private string? _plan;
    private int _asked; // 1 once a clean stop was asked for (two handlers at once must not both see the first)

    public CancellationToken Token => _requested.Token;

    public IDisposable Watch(string plan)
    {
        Volatile.Write(ref _plan, plan);
        return new Unwatch(this);
    }

    /// <summary>On Ctrl+C: the watching command's plan when this is the first (and cancels <see cref="Token"/>); null: end the process.</summary>
    public string? Request()
    {
        string? plan = Volatile.Read(ref _plan);
        if (plan is null || Interlocked.Exchange(ref _asked, 1) != 0)
        {
            return null;
        }

        _requested.Cancel();
        return plan;
    }

    public void Dispose() => _requested.Dispose();

    private sealed class Unwatch(Interrupt interrupt) : IDisposable
    {
        public void Dispose() => Volatile.Write(ref interrupt._plan, null);
    }
}
