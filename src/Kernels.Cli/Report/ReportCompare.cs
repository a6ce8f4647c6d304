using System.Globalization;
using System.Text;

namespace Kernels.Cli.Report;

/// <summary>
/// <c>kernels report --compare A B</c>: two report folders (two machines, or two versions) side by side, ratios only:
/// B's speed ÷ A's for each (op, shape, backend) both measured, ours ÷ the best peer in each, and J/token B ÷ A.
/// </summary>
internal static class ReportCompare
{
    public const string CompareFile = "compare.md";
    public const string ComparePlot = "compare.png";

    /// <summary>Writes compare.md and compare.png for the folders <paramref name="a"/> and <paramref name="b"/> (read as
    /// <paramref name="fa"/>, <paramref name="fb"/>) into <paramref name="output"/>; returns compare.md's path.</summary>
    public static string Write(string a, ReportWriter.Folder fa, string b, ReportWriter.Folder fb, string output)
    {
        string nameA = Path.GetFileName(Path.GetFullPath(a).TrimEnd(Path.DirectorySeparatorChar));
        string nameB = Path.GetFileName(Path.GetFullPath(b).TrimEnd(Path.DirectorySeparatorChar));
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Kernels report comparison: B = {nameB} against A = {nameA}");
        md.AppendLine();
        md.Append(Markdown.Table(["", "A", "B"], [
            ["folder", a, b],
            ["machine", $"{fa.Machine.Host}: {fa.Machine.Summary}", $"{fb.Machine.Host}: {fb.Machine.Summary}"],
            ["Kernels", Version(fa.Machine), Version(fb.Machine)],
            ["run", fa.Machine.StartedUtc, fb.Machine.StartedUtc],
            ["load", ReportWriter.LoadLine(fa.Machine), ReportWriter.LoadLine(fb.Machine)]]));
        md.AppendLine();
        md.AppendLine("Ratios only. **B ÷ A** is B's speed over A's (A's median time ÷ B's; > 1: B faster) for each op, shape and backend measured in both. "
            + "A ratio from a result that failed verification in either folder is marked **NOT VERIFIED**.");
        md.AppendLine();

        Dictionary<string, ReportRow> byKeyA = Index(fa.Rows), byKeyB = Index(fb.Rows);
        var both = byKeyA.Keys.Where(byKeyB.ContainsKey).ToList();
        var bars = new List<PlotBar>();
        md.Append(Markdown.Table(["op", "shape", "backend", "B ÷ A (speed)", "ours ÷ best peer in A", "ours ÷ best peer in B"],
            both.Select(key =>
            {
                ReportRow ra = byKeyA[key], rb = byKeyB[key];
                double ratio = ra.MedianMs / rb.MedianMs;
                bool verified = ra.Verified && rb.Verified;
                bars.Add(new PlotBar($"{ra.Op} {ra.Case} · {ra.Backend}{(verified ? "" : " NOT VERIFIED")}", ratio, ra.Backend));
                return (IReadOnlyList<string>)[ra.Op, ra.Case, ra.Backend, Mark(verified, $"{ratio:F2}×"), PeerRatio(ra), PeerRatio(rb)];
            })));
        md.AppendLine();
        var onlyA = byKeyA.Keys.Where(k => !byKeyB.ContainsKey(k)).ToList();
        var onlyB = byKeyB.Keys.Where(k => !byKeyA.ContainsKey(k)).ToList();
        if (onlyA.Count + onlyB.Count > 0)
        {
            md.AppendLine("Not in both (other shapes or backends; no ratio):");
            md.AppendLine();
            foreach (string k in onlyA)
                md.AppendLine(CultureInfo.InvariantCulture, $"- only in A: {k}");
            foreach (string k in onlyB)
                md.AppendLine(CultureInfo.InvariantCulture, $"- only in B: {k}");
            md.AppendLine();
        }

        var energyA = fa.Energy.GroupBy(e => (e.Backend, e.Shape)).ToDictionary(g => g.Key, g => g.First());
        var energyBoth = fb.Energy.Where(e => energyA.ContainsKey((e.Backend, e.Shape))).GroupBy(e => (e.Backend, e.Shape)).Select(g => g.First()).ToList();
        if (energyBoth.Count > 0)
        {
            md.AppendLine("Energy per token, **B ÷ A** (< 1: B uses less). Each side carries its own uncertainty (an estimate is ±50 %); "
                + "two estimates from the same model share most of it, but the ratio is marked as an estimate all the same.");
            md.AppendLine();
            md.Append(Markdown.Table(["backend", "GEMM", "J/token B ÷ A", "sources (A / B)"],
                energyBoth.Select(e =>
                {
                    CostCommand.CostRow ea = energyA[(e.Backend, e.Shape)];
                    string estimate = ea.EnergySource == "estimated" || e.EnergySource == "estimated" ? " (estimates)" : "";
                    return (IReadOnlyList<string>)[e.Backend, e.Shape ?? e.Variant, $"{e.JoulesPerToken / ea.JoulesPerToken:F2}×{estimate}", $"{ea.EnergySource} / {e.EnergySource}"];
                })));
            md.AppendLine();
        }

        string plotPath = Path.Combine(output, ComparePlot);
        if (bars.Count > 0)
        {
            ReportPlots.LogBars(bars, $"B ÷ A speed ({nameB} over {nameA}; > 1: B faster)", "speed ratio", plotPath, fromOne: true);
            md.AppendLine(CultureInfo.InvariantCulture, $"![B over A]({ComparePlot})");
        }
        else
        {
            md.AppendLine("No op, shape and backend was measured in both folders: nothing to compare.");
        }
        string path = Path.Combine(output, CompareFile);
        File.WriteAllText(path, md.ToString());
        return path;
    }

    private static Dictionary<string, ReportRow> Index(List<ReportRow> rows) =>
        rows.GroupBy(r => r.Key).ToDictionary(g => g.Key, g => g.First());

    private static string Version(MachineFacts m) => m.KernelsVersion + (m.Commit is { } c ? $" ({c[..Math.Min(12, c.Length)]})" : "");

    private static string PeerRatio(ReportRow r) => r.BestPeer is { OursPerPeer: { } x } best
        ? Mark(r.Verified, $"{x:F2}× ({best.Name.Split(' ', 2)[0]})")
        : "-";

    private static string Mark(bool verified, string value) => verified ? value : $"{value} **NOT VERIFIED**";
}
