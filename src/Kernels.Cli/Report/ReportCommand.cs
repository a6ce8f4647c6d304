using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Kernels.Energy;
using Spectre.Console;

#pragma warning disable CA2208 // Exceptions are named after the command-line options they came from.

namespace Kernels.Cli.Report;

/// <summary>
/// <c>kernels report</c>: the benchmark suite (<see cref="ReportSuite"/>) on every usable backend with every peer that
/// loads in the process, written to one folder: report.md, results.jsonl, energy.jsonl, machine.json and PNG plots.
/// <c>kernels report --compare A B</c>: two such folders side by side, ratios only (docs/report.md).
/// </summary>
internal static class ReportCommand
{
    private static readonly JsonSerializerOptions Indented = new(Program.Json) { WriteIndented = true };

    public static Command Create()
    {
        var output = new Option<string?>("--out") { Description = "Folder to write (created; must not exist or be empty). Default: kernels-report-<UTC date and time>, or kernels-compare-<…> with --compare." };
        var quick = new Option<bool>("--quick") { Description = "Half the default sizes and 5 repetitions instead of 15." };
        var backend = new Option<string>("--backend") { Description = "all (every usable backend: the default) or a comma-separated list of cuda, opencl, cpu-simd, cpu.", DefaultValueFactory = _ => "all" };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the peer libraries (oneDNN on cpu-simd, and any other the bench runners load) that otherwise run in the same process on the same data." };
        var seed = new Option<int>("--seed") { Description = "Seed of the random inputs.", DefaultValueFactory = _ => 1234 };
        var region = new Option<string>("--region") { Description = "Region of the cost per 1M tokens (a `kernels cost` region id).", DefaultValueFactory = _ => "us-industrial" };
        var watts = new Option<double?>("--watts") { Description = "Socket (CPU) or board (GPU) power for the energy estimate (as `kernels cost --watts`)." };
        var compare = new Option<string[]>("--compare")
        {
            Description = "Compare two report folders A and B instead of running: compare.md (B ÷ A ratios) and compare.png.",
            Arity = new ArgumentArity(2, 2),
            AllowMultipleArgumentsPerToken = true,
        };
        // For the tests: tiny shapes on every backend (seconds, not minutes).
        var scale = new Option<string>("--scale") { Hidden = true, DefaultValueFactory = _ => "default" };
        scale.AcceptOnlyFromAmong("default", "quick", "tiny");

        var command = new Command("report", "Run the benchmark suite on every usable backend and peer and write one folder: a Markdown report, the raw JSON lines, machine facts and plots; or compare two such folders.")
        {
            output, quick, backend, noPeer, seed, region, watts, compare, scale,
        };
        command.SetAction(result =>
        {
            string stamp = DateTime.UtcNow.ToString("yyyy-MM-dd-HHmm", CultureInfo.InvariantCulture);
            if (result.GetValue(compare) is { Length: 2 } pair)
            {
                // Both folders are read before the output folder is made: nothing is written when either is not a report.
                ReportWriter.Folder first = ReportWriter.Read(pair[0]), second = ReportWriter.Read(pair[1]);
                string folder = Prepare(result.GetValue(output) ?? $"kernels-compare-{stamp}");
                string path = ReportCompare.Write(pair[0], first, pair[1], second, folder);
                Console.WriteLine(path);
                return 0;
            }
            ReportScale chosen = result.GetValue(quick) ? ReportScale.Quick
                : Enum.Parse<ReportScale>(result.GetValue(scale) ?? "default", ignoreCase: true);
            double? w = result.GetValue(watts);
            if (w is double ww && (!double.IsFinite(ww) || ww <= 0))
                throw new ArgumentException($"--watts: expected a finite value > 0, got {ww}.", "--watts");
            CostProfiles profiles = CostProfiles.BuiltIn();
            RegionProfile costRegion = profiles.Region(result.GetValue(region)!);
            List<Backend> backends = Backends(result.GetValue(backend)!);
            string dir = Prepare(result.GetValue(output) ?? $"kernels-report-{stamp}");
            string line = "kernels report" + (result.GetValue(quick) ? " --quick" : "") + (result.GetValue(noPeer) ? " --no-peer" : "")
                + (result.GetValue(backend) is { } b && b != "all" ? $" --backend {b}" : "")
                + (chosen == ReportScale.Tiny ? " --scale tiny" : "");
            return Run(dir, backends, chosen, result.GetValue(seed), !result.GetValue(noPeer), costRegion, profiles, w, line);
        });
        return command;
    }

    /// <summary>Creates the folder; refuses one that holds files (a report is never overwritten).</summary>
    private static string Prepare(string folder)
    {
        if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any())
            throw new ArgumentException($"--out: expected a new or empty folder, got '{folder}' (it holds files).", "--out");
        if (File.Exists(folder))
            throw new ArgumentException($"--out: expected a folder, got the file '{folder}'.", "--out");
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static List<Backend> Backends(string value)
    {
        var usable = DeviceCatalog.List().Where(d => d.Usable).Select(d => d.Backend).Distinct().ToList();
        if (value.Trim().Equals("all", StringComparison.OrdinalIgnoreCase))
            return usable;
        var chosen = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(name => BackendNames.Parse(name, "--backend")).Distinct().ToList();
        foreach (Backend b in chosen.Where(b => !usable.Contains(b)))
            throw new ArgumentException($"--backend: {b.ToName()} is not usable here (see `kernels devices`).", "--backend");
        return chosen;
    }

    private static int Run(string dir, List<Backend> backends, ReportScale scale, int seed, bool peer, RegionProfile region,
        CostProfiles profiles, double? watts, string commandLine)
    {
        long start = Stopwatch.GetTimestamp();
        MachineFacts machine = MachineFacts.Collect(commandLine);
        var load = new List<LoadSample>(machine.Load);
        var failures = new List<string>();
        var lines = new List<string>();
        var cases = backends.Select(b => (Backend: b, Cases: ReportSuite.Cases(b, scale, seed, peer))).ToList();
        int total = cases.Sum(c => c.Cases.Count), done = 0;
        Console.Error.WriteLine($"kernels report: {total} cases on {string.Join(", ", backends.Select(b => b.ToName()))} into {dir}");
        using (StreamWriter results = File.CreateText(Path.Combine(dir, ReportWriter.Results)))
        {
            foreach ((Backend backend, List<ReportCase> list) in cases)
            {
                using KernelSession session = KernelSession.Create(backend);
                foreach (ReportCase c in list)
                {
                    done++;
                    try
                    {
                        List<object> records = CliProgress.Step($"[{done}/{total}] {c.Label} on {backend.ToName()}", () => c.Run(session).ToList());
                        foreach (object record in records)
                        {
                            string json = ReportSuite.ToJsonLine(record);
                            lines.Add(json);
                            results.WriteLine(json);
                        }
                        results.Flush();
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        failures.Add($"{c.Label} on {backend.ToName()}: {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")}");
                        Console.Error.WriteLine($"error: {failures[^1]}");
                    }
                }
                load.Add(MachineFacts.SampleLoad($"after {backend.ToName()}"));
            }
        }

        // Energy per token of each int8 GEMM result: `kernels cost --from-bench`'s estimate (one place for the model).
        using (StreamWriter energy = File.CreateText(Path.Combine(dir, ReportWriter.Energy)))
        {
            foreach (string json in lines)
            {
                BenchResult? r = JsonSerializer.Deserialize<BenchResult>(json, Program.Json);
                if (r is not { Op: "int8-gemm" })
                    continue;
                CostCommand.Variant v = CostCommand.EstimateFromBench(r, watts);
                foreach (CostCommand.CostRow row in CostCommand.Rows([v], [region], profiles.Rates, "USD", null, null, 1.0))
                    energy.WriteLine(JsonSerializer.Serialize(row, Program.Json));
            }
        }

        load.Add(MachineFacts.SampleLoad("end"));
        machine = machine with
        {
            FinishedUtc = MachineFacts.Now(),
            Seconds = Math.Round(Stopwatch.GetElapsedTime(start).TotalSeconds, 1),
            Load = load,
            Failures = failures,
        };
        File.WriteAllText(Path.Combine(dir, ReportWriter.Machine), JsonSerializer.Serialize(machine, Indented));
        string report = CliProgress.Step("writing report.md and plots", () => ReportWriter.Write(dir));

        List<ReportRow> rows = ReportRow.ReadLines(lines);
        var table = new Table().AddColumns("op", "shape", "backend", "median ms", "throughput", "verified", "ours ÷ best peer");
        foreach (ReportRow r in rows)
        {
            table.AddRow(r.Op, Markup.Escape(r.Case), r.Backend, ReportRow.Fmt(r.MedianMs), Markup.Escape($"{ReportRow.Fmt(r.Throughput)} {r.Unit}"),
                r.Verified ? "[green]yes[/]" : "[red]NO[/]", r.BestPeer?.OursPerPeer is { } x ? $"{x:F2}× ({Markup.Escape(r.BestPeer.Name.Split(' ', 2)[0])})" : "-");
        }
        AnsiConsole.Write(table);
        Console.WriteLine($"report written to {report} in {machine.Seconds:F0} s; {ReportWriter.LoadLine(machine)}");

        var unverified = rows.Where(r => !r.Verified).ToList();
        foreach (ReportRow r in unverified)
            Console.Error.WriteLine($"error: not verified: {r.Op} {r.Case} on {r.Backend} ({r.Verification})");
        return unverified.Count == 0 && failures.Count == 0 ? 0 : 1;
    }
}
