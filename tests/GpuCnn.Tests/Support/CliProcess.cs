using System.Collections.Concurrent;
using System.Diagnostics;

namespace GpuCnn.Tests.Support;

/// <summary>The gpucnn CLI as a process of its own, for the tests that signal, kill or limit it.</summary>
public static class CliProcess
{
    /// <summary>
    /// The command that runs the CLI: its own launcher where the build left one (a self-contained bundle has no
    /// `dotnet` to run the dll with), else `dotnet gpucnn.dll`.
    /// </summary>
    public static string[] Command
    {
        get
        {
            string launcher = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "gpucnn.exe" : "gpucnn");
            return File.Exists(launcher) ? [launcher] : ["dotnet", Path.Combine(AppContext.BaseDirectory, "gpucnn.dll")];
        }
    }

    /// <summary>
    /// Starts <paramref name="wrapper"/> + the CLI + <paramref name="args"/> with redirected output;
    /// <paramref name="environment"/> adds variables.
    /// </summary>
    public static Process Start(IEnumerable<string> wrapper, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(wrapper.First()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in wrapper.Skip(1).Concat(Command).Concat(args))
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        return Watched(Process.Start(start)!);
    }

    /// <summary>How long a child process may run before <see cref="Watched"/> kills it: far past any test's child.</summary>
    public static TimeSpan Deadline { get; } = TimeSpan.FromMinutes(5);

    private static readonly ConcurrentDictionary<Process, Timer> s_watchdogs = new(); // keeps each timer alive until its process ends

    /// <summary>
    /// Kills <paramref name="process"/> and its children if it still runs after <see cref="Deadline"/>: a child that
    /// hangs (mpirun waiting for a rank, a deadlock) then ends the test's blocking reads and waits, and the test fails
    /// with what the child printed, rather than holding the whole run until CI's limit without a word.
    /// </summary>
    public static Process Watched(Process process)
    {
        ArgumentNullException.ThrowIfNull(process);
        var watchdog = new Timer(static state =>
        {
            try
            {
                var child = (Process)state!;
                if (!child.HasExited)
                {
                    child.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
                // disposed by its test, or ended meanwhile
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // ended while being killed
            }
        }, process, Deadline, Timeout.InfiniteTimeSpan);
        s_watchdogs[process] = watchdog;
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) =>
        {
            if (s_watchdogs.TryRemove(process, out var done))
            {
                done.Dispose();
            }
        };
        return process;
    }

    /// <summary>Runs the CLI with <paramref name="args"/> and one more environment variable, to its end (a minute at most).</summary>
    public static CliRunner.Result RunWithEnvironment(string[] args, string variable, string value)
    {
        using var run = Start(["env"], args, new Dictionary<string, string> { [variable] = value });
        var output = run.StandardOutput.ReadToEndAsync();
        string error = run.StandardError.ReadToEnd();
        Assert.True(run.WaitForExit(60_000), "gpucnn did not finish");
        return new CliRunner.Result(run.ExitCode, output.Result, error);
    }
}
