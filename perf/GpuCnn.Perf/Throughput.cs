using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using GpuCnn.Cpu;

namespace GpuCnn.Perf;

/// <summary>A benchmark that knows how many floating-point operations one invocation performs.</summary>
public interface IFlopCount
{
    /// <summary>FLOPs of one invocation for the current parameter values (2 per multiply-add).</summary>
    double Flops { get; }
}

/// <summary>A benchmark that knows how many bytes one invocation must move (memory-bound kernels).</summary>
public interface IByteCount
{
    /// <summary>Bytes read plus bytes written by one invocation, at minimum.</summary>
    double Bytes { get; }
}

/// <summary>Adds a GB/s column computed from the mean time and <see cref="IByteCount.Bytes"/>.</summary>
public sealed class GbpsColumn : IColumn
{
    public string Id => nameof(GbpsColumn);

    public string ColumnName => "GB/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 1;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "Bytes moved per second (the minimum the kernel must read and write), from the mean time";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) =>
        GflopsColumn.Rate<IByteCount>(summary, benchmarkCase, b => b.Bytes);

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}

/// <summary>Adds a GFLOP/s column computed from the mean time and <see cref="IFlopCount.Flops"/>.</summary>
public sealed class GflopsColumn : IColumn
{
    public string Id => nameof(GflopsColumn);

    public string ColumnName => "GFLOP/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "Floating-point operations per second (multiply-add = 2), from the mean time";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) =>
        Rate<IFlopCount>(summary, benchmarkCase, b => b.Flops);

    /// <summary>count(benchmark with the case's parameters) / mean seconds / 1e9, or "-".</summary>
    internal static string Rate<T>(Summary summary, BenchmarkCase benchmarkCase, Func<T, double> count)
        where T : class
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats || Activator.CreateInstance(benchmarkCase.Descriptor.Type) is not T instance)
        {
            return "-";
        }

        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            benchmarkCase.Descriptor.Type.GetProperty(parameter.Name)?.SetValue(instance, parameter.Value);
        }

        return (count(instance) / (stats.Mean * 1e-9) / 1e9).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
    }

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}

/// <summary>The config every suite uses: default jobs plus the GFLOP/s column.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig()
    {
        AddColumn(new GflopsColumn(), new GbpsColumn());
    }
}

/// <summary>The devices present on this machine, for [ParamsSource].</summary>
public static class PresentDevices
{
    public static IEnumerable<string> Names() =>
        Backends.List().Where(d => d.Available).Select(d => d.Name);
}
