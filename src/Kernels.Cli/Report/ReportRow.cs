using System.Globalization;
using System.Text.Json;

namespace Kernels.Cli.Report;

/// <summary>A peer measured in the same run on the same data (or the reason it was not).</summary>
/// <param name="Name">The peer, as the result names it.</param>
/// <param name="MedianMs">Its median time, when the result carries one.</param>
/// <param name="OursPerPeer">Our speed ÷ the peer's (&gt; 1: ours faster); null when it did not run.</param>
/// <param name="SameWork">False where the peer is a throughput reference on other work (oneDNN sgemm 1024³ beside attention).</param>
/// <param name="Verified">Whether its output was checked against ours (int8: bit-identical), when the result says.</param>
/// <param name="Note">Why it did not run, when it did not.</param>
internal sealed record PeerFigure(string Name, double? MedianMs, double? OursPerPeer, bool SameWork = true, bool? Verified = null, string? Note = null);

/// <summary>
/// One line of results.jsonl (a <c>bench --json</c> object) as the report reads it. It is read from the JSON, not
/// from the typed records, so that a field or peer a later version adds (a list of peers per result) shows up in
/// reports and comparisons without changes here, and two folders from different versions compare.
/// </summary>
internal sealed record ReportRow(
    string Op,
    string Backend,
    string Device,
    string Case,
    double MedianMs,
    double Throughput,
    string Unit,
    bool Verified,
    string Verification,
    IReadOnlyList<PeerFigure> Peers,
    string? Baseline)
{
    /// <summary>What a comparison matches on: op, shape and backend.</summary>
    public string Key => $"{Op} | {Case} | {Backend}";

    /// <summary>The peers that ran, best (fastest against ours) first.</summary>
    public IEnumerable<PeerFigure> Ran => Peers.Where(p => p.OursPerPeer is not null).OrderBy(p => p.OursPerPeer);

    /// <summary>The best peer that ran on the same work (ours ÷ it is the smallest), or null.</summary>
    public PeerFigure? BestPeer => Ran.FirstOrDefault(p => p.SameWork);

    /// <summary>Reads every non-empty line of a results.jsonl file.</summary>
    public static List<ReportRow> ReadLines(IEnumerable<string> lines)
    {
        var rows = new List<ReportRow>();
        int number = 0;
        foreach (string line in lines)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line))
                continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                rows.Add(From(doc.RootElement));
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new ArgumentException($"line {number}: expected a `kernels bench --json` object, got: {ex.Message}", nameof(lines), ex);
            }
        }
        return rows;
    }

    /// <summary>One <c>bench --json</c> object.</summary>
    public static ReportRow From(JsonElement e)
    {
        string op = Str(e, "op")!;
        string caseName;
        double throughput;
        string unit;
        string? baseline = null;
        switch (op)
        {
            case "int8-gemm":
                caseName = (Int(e, "m") == 1 ? "decode " : "") + $"{Int(e, "m")}×{Int(e, "n")}×{Int(e, "k")}";
                throughput = Num(e, "tops") ?? 0;
                unit = "TOPS";
                break;
            case "sparse-gemm":
                caseName = $"{Str(e, "format")} {Num(e, "requested_sparsity"):P0} {Int(e, "m")}×{Int(e, "n")}×{Int(e, "k")}"
                    + (Str(e, "dtype") is { } dtype ? $" {dtype}" : "");
                throughput = Num(e, "dense_equivalent_tops") ?? 2.0 * Int(e, "m") * Int(e, "n") * Int(e, "k") / (Num(e, "median_ms")!.Value * 1e9);
                unit = "dense-equivalent TOPS";
                if (Num(e, "dense_median_ms") is { } dense)
                    baseline = $"dense int8 GEMM here {dense:G4} ms: sparse {Num(e, "speedup_vs_dense"):F2}× its speed";
                break;
            case "attention":
                int seq = Int(e, "seq"), kv = Int(e, "kv_seq");
                caseName = (seq == 1 ? $"decode 1×{kv}" : $"prefill {seq}" + (kv != seq ? $"×{kv}" : "") + (Bool(e, "causal") ? " causal" : ""))
                    + $" (B{Int(e, "batch")} H{Int(e, "heads")}/{Int(e, "kv_heads")} D{Int(e, "head_dim")})";
                throughput = Num(e, "tflops") ?? 0;
                unit = "TFLOPS";
                break;
            default:
                caseName = "";
                throughput = 0;
                unit = "";
                break;
        }
        double median = Num(e, "median_ms") ?? throw new KeyNotFoundException("median_ms");
        bool verified = Bool(e, "verified");
        return new ReportRow(op, Str(e, "backend")!, Str(e, "device") ?? "", caseName, median, throughput, unit, verified,
            Str(e, "verification") ?? (verified ? "verified" : "not verified"), PeersOf(e), baseline);
    }

    /// <summary>
    /// Every peer a result names: the <c>peers</c> list <c>bench --json</c> writes (name, detail, median_ms, ratio =
    /// our speed ÷ its speed, same_op, verified, note), and the single <c>peer</c> / <c>peer_median_ms</c> /
    /// <c>speedup_vs_peer</c> fields of the float32 sparse product. A peer that did not load has a note and no ratio.
    /// </summary>
    private static List<PeerFigure> PeersOf(JsonElement e)
    {
        var peers = new List<PeerFigure>();
        if (e.TryGetProperty("peers", out JsonElement list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement p in list.EnumerateArray().Where(p => p.ValueKind == JsonValueKind.Object))
            {
                string name = Str(p, "detail") is { } detail && Str(p, "name") is { } id && !detail.StartsWith(id, StringComparison.OrdinalIgnoreCase)
                    ? $"{id} ({detail})" : Str(p, "detail") ?? Str(p, "name") ?? "peer";
                bool sameOp = !p.TryGetProperty("same_op", out JsonElement so) || so.ValueKind != JsonValueKind.False;
                bool? verified = p.TryGetProperty("verified", out JsonElement v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
                    ? v.GetBoolean() : null;
                peers.Add(new PeerFigure(name, Num(p, "median_ms"), Num(p, "ratio"), sameOp, verified, Str(p, "note")));
            }
        }
        if (Str(e, "peer") is { } single && peers.All(p => p.Name != single))
            peers.Add(new PeerFigure(single, Num(e, "peer_median_ms"), Num(e, "speedup_vs_peer") ?? Num(e, "speed_vs_peer")));
        return peers;
    }

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static double? Num(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static int Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : throw new KeyNotFoundException(name);

    private static bool Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.True;

    /// <summary>A number for a table: 4 significant digits, invariant.</summary>
    public static string Fmt(double value) => value.ToString("G4", CultureInfo.InvariantCulture);
}
