using System.Globalization;
using System.Text;
using System.Text.Json;

#pragma warning disable CA2208 // Exceptions are named after the command-line options they came from.

namespace Kernels.Cli.Report;

/// <summary>
/// Writes report.md and the plots of a report folder from its results.jsonl, energy.jsonl and machine.json alone, so a
/// folder can be rendered again (and compared) without the machine it was measured on.
/// </summary>
internal static class ReportWriter
{
    public const string Results = "results.jsonl";
    public const string Energy = "energy.jsonl";
    public const string Machine = "machine.json";
    public const string ReportFile = "report.md";
    public const string ThroughputPlot = "throughput.png";
    public const string RatioPlot = "ratio-to-peer.png";
    public const string EnergyPlot = "energy.png";

    /// <summary>A report folder read back.</summary>
    internal sealed record Folder(MachineFacts Machine, List<ReportRow> Rows, List<CostCommand.CostRow> Energy);

    public static Folder Read(string folder)
    {
        string Need(string name) => File.Exists(Path.Combine(folder, name))
            ? Path.Combine(folder, name)
            : throw new ArgumentException($"--compare: expected a `kernels report` folder with {name}, got '{folder}' (no {name}).", "--compare");
        MachineFacts machine = JsonSerializer.Deserialize<MachineFacts>(File.ReadAllText(Need(Machine)), Program.Json)
            ?? throw new ArgumentException($"--compare: {folder}/{Machine} is empty.", "--compare");
        List<ReportRow> rows = ReportRow.ReadLines(File.ReadLines(Need(Results)));
        string energyPath = Path.Combine(folder, Energy);
        List<CostCommand.CostRow> energy = File.Exists(energyPath)
            ? File.ReadLines(energyPath).Where(l => !string.IsNullOrWhiteSpace(l))
                .Select(l => JsonSerializer.Deserialize<CostCommand.CostRow>(l, Program.Json)!).ToList()
            : [];
        return new Folder(machine, rows, energy);
    }

    /// <summary>Writes report.md and the PNG plots into <paramref name="folder"/>; returns report.md's path.</summary>
    public static string Write(string folder)
    {
        Folder f = Read(folder);
        MachineFacts m = f.Machine;
        string date = m.StartedUtc.Length >= 10 ? m.StartedUtc[..10] : m.StartedUtc;
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Kernels report: {m.Host}, {date}");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"`{m.Command}` — Kernels {m.KernelsVersion}{(m.Commit is { } c ? $" (commit {c[..Math.Min(12, c.Length)]})" : "")}, "
            + $"{m.StartedUtc} to {m.FinishedUtc}, {m.Seconds:F0} s. {m.Summary}; {LoadLine(m)}.");
        md.AppendLine();
        md.AppendLine("Every time is a median of the repetitions after one warm-up. Every result is checked against the library's host reference "
            + "(int64 for int8 products, float64 for attention; the `verified` column says how); a result that failed it is marked **NOT VERIFIED** "
            + "and so is every figure derived from it. Energy is an estimate unless a counter was readable, and is marked with its uncertainty.");
        md.AppendLine();

        md.AppendLine("## Results");
        md.AppendLine();
        md.Append(Markdown.Table(
            ["op", "shape", "backend", "median ms", "throughput", "verified", "best peer, same run", "ours ÷ peer"],
            f.Rows.Select(r => (IReadOnlyList<string>)[
                r.Op, r.Case, r.Backend, Mark(r, ReportRow.Fmt(r.MedianMs)), Mark(r, $"{ReportRow.Fmt(r.Throughput)} {r.Unit}"),
                r.Verified ? $"yes ({r.Verification})" : $"**NOT VERIFIED** ({r.Verification})",
                PeerCell(r), r.BestPeer?.OursPerPeer is { } x ? Mark(r, $"{x:F2}×") : r.Ran.FirstOrDefault() is { } reference ? Mark(r, $"{reference.OursPerPeer:F2}× (throughput reference)") : "-"])));
        md.AppendLine();
        foreach (ReportRow r in f.Rows.Where(r => r.Baseline is not null))
            md.AppendLine(CultureInfo.InvariantCulture, $"- {r.Op} {r.Case} on {r.Backend}: {Mark(r, r.Baseline!)}.");
        if (f.Rows.Any(r => r.Baseline is not null))
            md.AppendLine();
        if (m.Failures is { Count: > 0 })
        {
            md.AppendLine("Cases that failed to run:");
            md.AppendLine();
            foreach (string failure in m.Failures)
                md.AppendLine(CultureInfo.InvariantCulture, $"- **FAILED** {failure}");
            md.AppendLine();
        }

        var throughputBars = f.Rows.Select(r => new PlotBar($"{r.Op} {r.Case} · {r.Backend}{(r.Verified ? "" : " NOT VERIFIED")}", r.Throughput * 1000, r.Backend)).ToList();
        ReportPlots.LogBars(throughputBars, $"Throughput by op and shape, {m.Host} {date} (medians; verified unless marked)",
            "GOPS (sparse: dense-equivalent; attention: GFLOPS)", Path.Combine(folder, ThroughputPlot));
        md.AppendLine(CultureInfo.InvariantCulture, $"![Throughput by op, shape and backend]({ThroughputPlot})");
        md.AppendLine();

        md.AppendLine("## Ratio to the best peer");
        md.AppendLine();
        var withPeer = f.Rows.Where(r => r.BestPeer is not null).ToList();
        string ratioPath = Path.Combine(folder, RatioPlot);
        if (withPeer.Count > 0)
        {
            ReportPlots.LogBars(withPeer.Select(r => new PlotBar($"{r.Op} {r.Case} · {r.Backend} vs {Short(r.BestPeer!.Name)}{(r.Verified ? "" : " NOT VERIFIED")}",
                r.BestPeer!.OursPerPeer!.Value, r.Backend)).ToList(),
                $"Ours ÷ the best peer in the same run (> 1: ours faster), {m.Host} {date}", "speed ratio", ratioPath, fromOne: true);
            md.AppendLine(CultureInfo.InvariantCulture, $"![Ours divided by the best peer]({RatioPlot})");
        }
        else
        {
            File.Delete(ratioPath);
            var reasons = f.Rows.SelectMany(r => r.Peers).Where(p => p.OursPerPeer is null).Select(p => p.Note is { } why ? $"{Short(p.Name)}: {why}" : p.Name).Distinct().ToList();
            md.AppendLine("No peer ran on the same work in this process, so there is no ratio plot."
                + (reasons.Count > 0 ? " Why: " + string.Join("; ", reasons) : " (run without --no-peer to load them)."));
        }
        md.AppendLine();

        md.AppendLine("## Energy per token");
        md.AppendLine();
        if (f.Energy.Count > 0)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"From each int8 GEMM result above (a token = one row of the activations, m), by `kernels cost --from-bench`'s model; "
                + $"cost in {f.Energy[0].RegionName} ({f.Energy[0].Region}: {f.Energy[0].PricePerKwhNative} {f.Energy[0].PriceCurrency}/kWh, {f.Energy[0].PriceDate}, PUE {f.Energy[0].Pue}).");
            md.AppendLine();
            md.Append(Markdown.Table(
                ["backend", "GEMM", "J/token", "tokens/s", "kWh per 1M tokens", $"{f.Energy[0].Currency} per 1M tokens", "energy source"],
                f.Energy.Select(e =>
                {
                    bool verified = VerifiedFor(f.Rows, e);
                    string u = e.Uncertainty > 0 ? $" ±{e.Uncertainty:P0}" : "";
                    return (IReadOnlyList<string>)[
                        e.Backend, e.Shape ?? e.Variant, Mark(verified, ReportRow.Fmt(e.JoulesPerToken) + u + (e.EnergySource == "estimated" ? " (estimate)" : "")),
                        Mark(verified, ReportRow.Fmt(e.TokensPerSecond)), Mark(verified, ReportRow.Fmt(e.KwhPerMillionTokens) + u),
                        Mark(verified, ReportRow.Fmt(e.CostPerMillionTokens) + u), e.SourceDescription];
                })));
            md.AppendLine();
            ReportPlots.LogBars(f.Energy.Select(e => new PlotBar($"int8-gemm {e.Shape} · {e.Backend}{(VerifiedFor(f.Rows, e) ? "" : " NOT VERIFIED")}",
                e.JoulesPerToken, e.Backend, e.Uncertainty)).ToList(),
                $"Energy per token by backend ({string.Join(", ", f.Energy.Select(e => e.EnergySource).Distinct())}; error bars: its uncertainty), {m.Host} {date}",
                "J/token", Path.Combine(folder, EnergyPlot));
            md.AppendLine(CultureInfo.InvariantCulture, $"![Energy per token by backend, with error bars]({EnergyPlot})");
        }
        else
        {
            md.AppendLine("No int8 GEMM result, so no energy figure.");
        }
        md.AppendLine();

        md.AppendLine("## Machine");
        md.AppendLine();
        md.Append(Markdown.Table(["fact", "value"], [
            ["host", m.Host], ["CPU", m.Cpu], ["logical CPUs", m.LogicalCpus.ToString(CultureInfo.InvariantCulture)],
            ["memory", m.MemoryBytes is { } bytes ? $"{bytes / (1024.0 * 1024 * 1024):F1} GiB" : "unknown"],
            ["OS", m.Os], [".NET", m.Dotnet], ["Kernels", m.KernelsVersion + (m.Commit is { } commit ? $" ({commit})" : "")]]));
        md.AppendLine();
        md.Append(Markdown.Table(["backend", "device", "usable", "details (driver, version) or reason"],
            m.Devices.Select(d => (IReadOnlyList<string>)[d.Backend, d.Name, d.Usable ? "yes" : "no", d.Usable ? d.Details : d.Reason ?? ""])));
        md.AppendLine();
        md.AppendLine("Load average (1, 5, 15 min) at the start, after each backend's cases and at the end:");
        md.AppendLine();
        md.Append(Markdown.Table(["when", "UTC", "1 min", "5 min", "15 min"],
            m.Load.Select(l => (IReadOnlyList<string>)[l.At, l.Utc, Opt(l.One), Opt(l.Five), Opt(l.Fifteen)])));
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Raw data: [{Results}]({Results}) (one `kernels bench --json` object per line), [{Energy}]({Energy}) (one `kernels cost --json` object per line), [{Machine}]({Machine}).");

        string path = Path.Combine(folder, ReportFile);
        File.WriteAllText(path, md.ToString());
        return path;
    }

    /// <summary>"load average 1.2 at the start, at most 2.3 during, 1.9 at the end".</summary>
    internal static string LoadLine(MachineFacts m)
    {
        var ones = m.Load.Where(l => l.One is not null).ToList();
        if (ones.Count == 0)
            return "load average not readable";
        return $"load average (1 min) {Opt(ones[0].One)} at the start, at most {Opt(ones.Max(l => l.One))} during, {Opt(ones[^1].One)} at the end";
    }

    private static bool VerifiedFor(List<ReportRow> rows, CostCommand.CostRow e) =>
        rows.Where(r => r.Op == "int8-gemm" && r.Backend == e.Backend && r.Case.EndsWith(e.Shape?.Replace('x', '×') ?? "?", StringComparison.Ordinal))
            .Select(r => r.Verified).DefaultIfEmpty(false).First();

    private static string PeerCell(ReportRow r)
    {
        if (r.BestPeer is { } best)
            return $"{best.Name}" + (best.MedianMs is { } ms ? $": {ReportRow.Fmt(ms)} ms" : "")
                + (best.Verified switch { true => ", output identical", false => ", output DIFFERS", null => "" })
                + (r.Peers.Count(p => p.OursPerPeer is not null) > 1 ? $" (of {r.Peers.Count(p => p.OursPerPeer is not null)} peers)" : "");
        if (r.Ran.FirstOrDefault() is { } reference)
            return $"{reference.Name} (other work: a throughput reference, not verified here)";
        return r.Peers.Count > 0 ? string.Join("; ", r.Peers.Select(p => p.Note is { } why ? $"{Short(p.Name)}: {why}" : p.Name)) : "-";
    }

    private static string Short(string name) => name.Split(' ', 2)[0];

    private static string Mark(ReportRow r, string value) => Mark(r.Verified, value);

    private static string Mark(bool verified, string value) => verified ? value : $"{value} **NOT VERIFIED**";

    private static string Opt(double? value) => value is { } v ? v.ToString("0.00", CultureInfo.InvariantCulture) : "-";
}
