using System.CommandLine;
using GpuCnn.Cli;

return GpuCnnCli.Run(args, Console.Out, Console.Error);
