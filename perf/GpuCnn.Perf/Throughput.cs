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

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats ||
            Activator.CreateInstance(benchmarkCase.Descriptor.Type) is not IFlopCount instance)
        {
            return "-";
        }

        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            benchmarkCase.Descriptor.Type.GetProperty(parameter.Name)?.SetValue(instance, parameter.Value);
            benchmarkCase.Descriptor.Type.GetField(parameter.Name)?.SetValue(instance, parameter.Value);
        }

        double seconds = stats.Mean * 1e-9;
        return (instance.Flops / seconds / 1e9).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
    }

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}

/// <summary>The config every suite uses: default jobs plus the GFLOP/s column.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig()
    {
        AddColumn(new GflopsColumn());
    }
}

/// <summary>The devices present on this machine, for [ParamsSource].</summary>
public static class PresentDevices
{
    public static IEnumerable<string> Names() =>
        Backends.List().Where(d => d.Available).Select(d => d.Name);
}
