using System.Diagnostics;

namespace Kernels.Tests;

/// <summary>
/// The command line keeps its promises (issue 15): exit code 2 for every bad argument or value, before
/// any work, with a one-line error on stderr and nothing on stdout; never a stack trace.
/// </summary>
public class CliExitCodeTests
{
    internal static (int Code, string Stdout, string Stderr) Run(params string[] args) =>
        RunWith(new Dictionary<string, string>(), args);

    /// <summary>As <see cref="Run"/>, with extra environment variables for the child process.</summary>
    internal static (int Code, string Stdout, string Stderr) RunWith(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Kernels.sln")))
            root = Path.GetDirectoryName(root.TrimEnd(Path.DirectorySeparatorChar)) ?? throw new InvalidOperationException("Kernels.sln not found above the test binaries.");
        string cli = Path.Combine(root, "src", "Kernels.Cli", "bin", configuration, "net10.0", "Kernels.Cli.dll");
        Assert.True(File.Exists(cli), $"{cli} was not built");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(cli);
        foreach (string a in args)
            start.ArgumentList.Add(a);
        start.Environment["KERNELS_BACKEND"] = "cpu-simd";
        foreach ((string name, string value) in environment)
            start.Environment[name] = value;
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result, stderr);
    }

    [Theory]
    [InlineData("bench", "--m", "abc")]
    [InlineData("bench", "--op", "foo")]
    [InlineData("bench", "--backend", "cpu-simd", "--m", "2000000000", "--n", "2000000000", "--k", "100000")]
    [InlineData("bench", "--backend", "cpu-simd", "--op", "attention", "--batch", "1073741824", "--heads", "1073741824", "--seq", "4", "--head-dim", "4")]
    [InlineData("bench", "--backend", "nosuch")]
    [InlineData("nosuch")]
    [InlineData("cost", "--profiles", "/nonexistent/profiles.json")]
    [InlineData("cost", "--run")]
    [InlineData("cost", "--model", "llama-3.1-70b", "--run")]
    [InlineData("cost", "--model", "tiny", "--run", "--layers", "0")]
    [InlineData("cost", "--model", "tiny", "--run", "--decode-steps", "0")]
    [InlineData("cost", "--model", "tiny", "--run", "--peer", "vllm")]
    [InlineData("cost", "--backend", "cpu-simd", "--m", "16", "--plot", "/nonexistent/folder/cost.png")]
    public void BadArgumentsExitTwoWithOneLineAndNoStackTrace(params string[] args)
    {
        (int code, string stdout, string stderr) = Run(args);
        Assert.True(code == 2, $"exit {code}; stderr: {stderr}");
        Assert.Equal("", stdout);
        Assert.StartsWith("error: ", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void DevicesExitsZero()
    {
        (int code, string stdout, _) = Run("devices", "--json");
        Assert.Equal(0, code);
        Assert.Contains("cpu-simd", stdout, StringComparison.Ordinal);
    }
}
