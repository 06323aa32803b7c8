using GpuCnn.Cli;

namespace GpuCnn.Tests.Support;

/// <summary>Runs the gpucnn command line in-process and captures its exit code and output.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Out, string Error)
    {
        public string LastLine => Out.TrimEnd().Split('\n')[^1].TrimEnd('\r');

        /// <summary>The one "error:" line; fails if there is none, several, or a stack trace without --verbose.</summary>
        public string ErrorLine
        {
            get
            {
                string[] lines = Error.Split('\n');
                Assert.DoesNotContain(lines, l => l.StartsWith("   at ", StringComparison.Ordinal));
                return Assert.Single(lines, l => l.StartsWith("error:", StringComparison.Ordinal));
            }
        }
    }

    public static Result Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = GpuCnnCli.Run(args, output, error);
        return new Result(code, output.ToString(), error.ToString());
    }
}
