using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kernels.Tests;

/// <summary>
/// <c>kernels report</c> (issue 18) in a child process, as a user runs it: the folder it writes, every row verified,
/// the peers read from the same run, <c>--compare</c> giving the ratios of two folders, and bad input refused before
/// anything is written. The suite runs at the hidden tiny scale (seconds); the default scale is timed by hand.
/// </summary>
public class ReportTests
{
    private static readonly byte[] PngMagic = [0x89, (byte)'P', (byte)'N', (byte)'G'];

    private static string NewFolder()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kernels-report-test-" + Guid.NewGuid().ToString("N"));
        return dir; // not created: the command makes it
    }

    private static string TinyReport()
    {
        string dir = NewFolder();
        (int code, string stdout, string stderr) = CliExitCodeTests.Run("report", "--scale", "tiny", "--backend", "cpu-simd", "--out", dir);
        Assert.True(code == 0, $"exit {code}\nstdout: {stdout}\nstderr: {stderr}");
        Assert.Contains("report written to", stdout, StringComparison.Ordinal);
        return dir;
    }

    private static void AssertPng(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        byte[] head = File.ReadAllBytes(path).AsSpan(0, 4).ToArray();
        Assert.Equal(PngMagic, head);
    }

    [Fact]
    public void Tiny_report_writes_every_file_with_every_row_verified_and_the_peers_of_the_same_run()
    {
        string dir = TinyReport();
        try
        {
            foreach (string name in new[] { "report.md", "results.jsonl", "machine.json", "energy.jsonl" })
                Assert.True(File.Exists(Path.Combine(dir, name)), $"{name} missing in {dir}");
            AssertPng(Path.Combine(dir, "throughput.png"));
            AssertPng(Path.Combine(dir, "energy.png"));

            var rows = File.ReadAllLines(Path.Combine(dir, "results.jsonl")).Where(l => l.Length > 0)
                .Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.Contains(rows, r => r.GetProperty("op").GetString() == "int8-gemm");
            Assert.Contains(rows, r => r.GetProperty("op").GetString() == "sparse-gemm");
            Assert.Contains(rows, r => r.GetProperty("op").GetString() == "attention");
            foreach (JsonElement r in rows)
            {
                Assert.True(r.GetProperty("verified").GetBoolean(), $"not verified: {r}");
                Assert.True(r.GetProperty("median_ms").GetDouble() > 0, $"no time: {r}");
            }

            // ONNX Runtime ships as a package, so it runs beside every cpu-simd int8 GEMM and attention row: its ratio is
            // our speed ÷ its speed from the same run, its int8 output bit-identical to ours.
            foreach (JsonElement r in rows.Where(r => r.GetProperty("op").GetString() is "int8-gemm" or "attention"))
            {
                JsonElement ort = r.GetProperty("peers").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "onnxruntime");
                Assert.True(ort.TryGetProperty("ratio", out JsonElement ratio) && ratio.ValueKind == JsonValueKind.Number,
                    $"onnxruntime did not run: {ort}");
                double expected = ort.GetProperty("median_ms").GetDouble() / r.GetProperty("median_ms").GetDouble();
                Assert.Equal(expected, ratio.GetDouble(), 1e-9 * expected);
                Assert.True(ort.GetProperty("verified").GetBoolean(), $"onnxruntime output differs: {r}");
                // With a peer, every side's first call of a block (after the pause) is timed apart, not in median_ms.
                Assert.True(ort.GetProperty("after_idle_ms").GetDouble() > 0, $"no after-idle time for onnxruntime: {r}");
                Assert.True(r.GetProperty("median_ms_after_idle").GetDouble() > 0, $"no after-idle time for ours: {r}");
            }
            AssertPng(Path.Combine(dir, "ratio-to-peer.png"));

            string md = File.ReadAllText(Path.Combine(dir, "report.md"));
            Assert.DoesNotContain(md.Split('\n'), l => l.StartsWith('|') && l.Contains("NOT VERIFIED", StringComparison.Ordinal));
            Assert.Contains("onnxruntime", md, StringComparison.Ordinal);
            Assert.Contains("±", md, StringComparison.Ordinal); // every energy estimate carries its uncertainty
            using JsonDocument machine = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "machine.json")));
            Assert.True(machine.RootElement.EnumerateObject().Any(), "machine.json is empty");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Compare_puts_two_folders_side_by_side_as_speed_ratios()
    {
        string a = TinyReport();
        string b = NewFolder(), output = NewFolder();
        try
        {
            // B: a copy of A whose first result took half the time, so B ÷ A is exactly 2 for it and 1 for the rest.
            Directory.CreateDirectory(b);
            foreach (string file in Directory.GetFiles(a))
                File.Copy(file, Path.Combine(b, Path.GetFileName(file)));
            string[] lines = File.ReadAllLines(Path.Combine(b, "results.jsonl")).Where(l => l.Length > 0).ToArray();
            JsonNode first = JsonNode.Parse(lines[0])!;
            first["median_ms"] = first["median_ms"]!.GetValue<double>() / 2;
            lines[0] = first.ToJsonString();
            File.WriteAllLines(Path.Combine(b, "results.jsonl"), lines);

            (int code, string stdout, string stderr) = CliExitCodeTests.Run("report", "--compare", a, b, "--out", output);
            Assert.True(code == 0, $"exit {code}: {stderr}");
            string md = File.ReadAllText(Path.Combine(output, "compare.md"));
            var ratios = md.Split('\n').Select(l => l.Split('|', StringSplitOptions.TrimEntries))
                .Where(cells => cells.Length > 4 && cells[1] is "int8-gemm" or "sparse-gemm" or "attention")
                .Select(cells => cells[4]).ToList();
            Assert.Equal(lines.Length, ratios.Count);
            Assert.Equal("2.00×", ratios[0]);
            Assert.All(ratios.Skip(1), r => Assert.Equal("1.00×", r));
            AssertPng(Path.Combine(output, "compare.png"));
        }
        finally
        {
            foreach (string d in new[] { a, b, output }.Where(Directory.Exists))
                Directory.Delete(d, recursive: true);
        }
    }

    [Fact]
    public void Bad_report_arguments_exit_two_and_write_nothing()
    {
        string missing = NewFolder(), output = NewFolder();
        string full = Path.Combine(Path.GetTempPath(), "kernels-report-full-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(full);
        File.WriteAllText(Path.Combine(full, "keep.txt"), "not a report");
        try
        {
            foreach ((string[] args, string names) in new (string[], string)[]
            {
                (["report", "--compare", missing, full, "--out", output], "--compare"),
                (["report", "--compare", full, full, "--out", output], "--compare"),
                (["report", "--out", full, "--scale", "tiny"], "--out"),
                (["report", "--watts", "0", "--out", output], "--watts"),
                (["report", "--watts", "NaN", "--out", output], "--watts"),
                (["report", "--backend", "tpu", "--out", output], "--backend"),
            })
            {
                (int code, string stdout, string stderr) = CliExitCodeTests.Run(args);
                string line = string.Join(' ', args);
                Assert.True(code == 2, $"{line}: exit {code}; stderr: {stderr}");
                Assert.Equal("", stdout);
                Assert.StartsWith("error: ", stderr, StringComparison.Ordinal);
                Assert.Contains(names, stderr, StringComparison.Ordinal);
                Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
                Assert.False(Directory.Exists(output), $"{line}: wrote {output}");
                Assert.Equal(["keep.txt"], Directory.GetFiles(full).Select(Path.GetFileName));
            }
        }
        finally
        {
            Directory.Delete(full, recursive: true);
            if (Directory.Exists(output))
                Directory.Delete(output, recursive: true);
        }
    }

    [Fact]
    public void Cost_plot_writes_the_chart_and_the_table_gives_each_estimate_its_uncertainty()
    {
        string dir = NewFolder();
        Directory.CreateDirectory(dir);
        try
        {
            string png = Path.Combine(dir, "cost.png");
            (int code, string stdout, string stderr) = CliExitCodeTests.Run("cost", "--backend", "cpu-simd", "--m", "16", "--plot", png);
            Assert.True(code == 0, $"exit {code}: {stderr}");
            AssertPng(png);
            Assert.Contains("±", stdout, StringComparison.Ordinal);
            Assert.True(new FileInfo(png).Length > 1000, "the plot is empty");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
