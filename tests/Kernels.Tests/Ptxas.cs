using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Kernels.Tests;

/// <summary>One function of a <c>ptxas -v</c> summary.</summary>
internal sealed record PtxasFunction(string Name, int StackBytes, int SpillStores, int SpillLoads, int Registers, int SharedBytes);

/// <summary>NVIDIA's offline PTX assembler, where this machine has it: the tests assemble generated PTX with <c>-v</c> and read its summary.</summary>
internal static partial class Ptxas
{
    /// <summary>ptxas from KERNELS_PTXAS, PATH, /opt/cuda-ptxas/usr/bin (Debian's nvidia-cuda-toolkit unpacked) or /usr/local/cuda/bin.</summary>
    public static string? Find()
    {
        string? configured = Environment.GetEnvironmentVariable("KERNELS_PTXAS");
        if (!string.IsNullOrEmpty(configured))
            return File.Exists(configured) ? configured : null;
        IEnumerable<string> folders = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/opt/cuda-ptxas/usr/bin", "/usr/local/cuda/bin"]);
        return folders.Select(f => Path.Combine(f, "ptxas")).FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// Assembles <paramref name="ptx"/> for <paramref name="arch"/> with <c>-v</c> (skips the test when ptxas is
    /// missing), asserts that it succeeded without errors, and returns the summary of each function.
    /// </summary>
    public static IReadOnlyList<PtxasFunction> Assemble(string ptx, string arch, string label)
    {
        string? ptxas = Find();
        if (ptxas is null)
            Assert.Skip("ptxas not found (set KERNELS_PTXAS, put it on PATH, or unpack Debian's nvidia-cuda-toolkit into /opt/cuda-ptxas)");
        string folder = Path.Combine(Path.GetTempPath(), $"kernels-ptxas-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            string input = Path.Combine(folder, "module.ptx");
            File.WriteAllText(input, ptx);
            var start = new ProcessStartInfo(ptxas!, ["-v", $"-arch={arch}", input, "-o", Path.Combine(folder, "module.cubin")])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using Process process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit();
            TestContext.Current.TestOutputHelper?.WriteLine(output);
            Assert.True(process.ExitCode == 0, $"{label} ({arch}): ptxas failed ({process.ExitCode}):\n{output}");
            Assert.DoesNotContain("error", output, StringComparison.OrdinalIgnoreCase);
            return [.. FunctionRegex().Matches(output).Select(f => new PtxasFunction(
                f.Groups["name"].Value, Int(f, "stack"), Int(f, "stores"), Int(f, "loads"), Int(f, "regs"),
                f.Groups["smem"].Success ? Int(f, "smem") : 0))];
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static int Int(Match m, string group) => int.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"Function properties for (?<name>\w+)\s+(?<stack>\d+) bytes stack frame, (?<stores>\d+) bytes spill stores, (?<loads>\d+) bytes spill loads\s+ptxas info\s+: Used (?<regs>\d+) registers(, (?<smem>\d+) bytes smem)?")]
    private static partial Regex FunctionRegex();
}
