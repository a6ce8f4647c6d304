using ScottPlot;

namespace Kernels.Cli.Report;

/// <summary>One horizontal bar of a report plot: its label, value, series (the legend's entry) and relative uncertainty.</summary>
internal sealed record PlotBar(string Label, double Value, string Series, double RelativeUncertainty = 0);

/// <summary>
/// The report's plots (ScottPlot): horizontal bars on a log₁₀ axis (throughputs span five orders of magnitude between
/// the simulating CPU accelerator and a GPU), one colour and legend entry per series (backend), and an error bar
/// wherever a value carries an uncertainty: on a log axis ±u is asymmetric, log₁₀(1 + u) up and log₁₀(1 − u) down.
/// </summary>
internal static class ReportPlots
{
    private static readonly string[] BackendOrder = ["cuda", "opencl", "cpu-simd", "cpu"];

    /// <summary>Writes <paramref name="bars"/> to <paramref name="path"/> (PNG). <paramref name="fromOne"/>: bars grow from 1 (ratios) instead of below the smallest value.</summary>
    public static void LogBars(IReadOnlyList<PlotBar> bars, string title, string axisLabel, string path, bool fromOne = false)
    {
        ArgumentNullException.ThrowIfNull(bars);
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var series = bars.Select(b => b.Series).Distinct()
            .OrderBy(s => Array.IndexOf(BackendOrder, s) is int i && i >= 0 ? i : BackendOrder.Length).ThenBy(s => s, StringComparer.Ordinal).ToList();
        var positive = bars.Where(b => b.Value > 0 && double.IsFinite(b.Value)).ToList();
        double floor = fromOne ? 0
            : Math.Floor(Math.Log10(positive.Count == 0 ? 1 : positive.Min(b => b.Value * (1 - Math.Min(b.RelativeUncertainty, 0.9))))) - 0.0;
        // Top bar first: positions count down.
        int count = bars.Count;
        // ScottPlot's bar error is symmetric in axis units (ErrorPositive/ErrorNegative only switch a side on or off): the
        // lower whisker goes on the bar, the upper on a transparent twin bar of the same value, each one-sided.
        var upper = new List<Bar>();
        foreach (string name in series)
        {
            var mine = new List<Bar>();
            for (int i = 0; i < count; i++)
            {
                PlotBar b = bars[i];
                if (b.Series != name || !(b.Value > 0) || !double.IsFinite(b.Value))
                    continue;
                double log = Math.Log10(b.Value);
                double u = b.RelativeUncertainty;
                mine.Add(new Bar
                {
                    Position = count - 1 - i,
                    Value = log,
                    ValueBase = floor,
                    FillColor = palette.GetColor(series.IndexOf(name)),
                    Error = u > 0 ? (u < 1 ? -Math.Log10(1 - u) : log - floor) : 0,
                    ErrorPositive = false,
                    ErrorNegative = true,
                    Label = u > 0 ? $"{ReportRow.Fmt(b.Value)} ±{u:P0}" : ReportRow.Fmt(b.Value),
                });
                if (u > 0)
                {
                    upper.Add(new Bar
                    {
                        Position = count - 1 - i,
                        Value = log,
                        ValueBase = floor,
                        FillColor = Colors.Transparent,
                        LineColor = Colors.Transparent,
                        LineWidth = 0,
                        Error = Math.Log10(1 + u),
                        ErrorPositive = true,
                        ErrorNegative = false,
                    });
                }
            }
            if (mine.Count == 0)
                continue;
            ScottPlot.Plottables.BarPlot barPlot = plot.Add.Bars(mine);
            barPlot.Horizontal = true;
            barPlot.LegendText = name;
            barPlot.ValueLabelStyle.FontSize = 11;
        }
        if (upper.Count > 0)
            plot.Add.Bars(upper).Horizontal = true;
        if (fromOne)
            plot.Add.VerticalLine(0, 1, Colors.Black);
        plot.Axes.Left.SetTicks(
            Enumerable.Range(0, count).Select(i => (double)(count - 1 - i)).ToArray(),
            bars.Select(b => b.Label).ToArray());
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
            IntegerTicksOnly = true,
            LabelFormatter = x => ReportRow.Fmt(Math.Pow(10, x)),
        };
        plot.Axes.Margins(left: fromOne ? 0.15 : 0, right: 0.2);
        plot.Title(title);
        plot.XLabel(axisLabel + " (log scale)");
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(path, 1100, Math.Max(260, 90 + count * 28));
    }
}
