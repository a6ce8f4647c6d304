using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Kernels.Cli.Report;

/// <summary>One device as <c>kernels devices --json</c> lists it.</summary>
internal sealed record DeviceFact(string Backend, string Name, long MemoryBytes, bool Usable, string? Reason, string Details);

/// <summary>The load average (/proc/loadavg: 1, 5 and 15 minutes) at one moment of the run.</summary>
/// <param name="At">When: start, after a case (its label), or end.</param>
/// <param name="Utc">The time, ISO 8601.</param>
/// <param name="One">1-minute load average.</param>
/// <param name="Five">5-minute load average.</param>
/// <param name="Fifteen">15-minute load average.</param>
internal sealed record LoadSample(string At, string Utc, double? One, double? Five, double? Fifteen);

/// <summary>machine.json: what the numbers were measured on, how busy the machine was meanwhile, and the cases that failed to run.</summary>
internal sealed record MachineFacts(
    string Host,
    string Cpu,
    int LogicalCpus,
    long? MemoryBytes,
    string Os,
    string Kernel,
    string Dotnet,
    string KernelsVersion,
    string? Commit,
    IReadOnlyList<DeviceFact> Devices,
    string StartedUtc,
    string? FinishedUtc,
    double? Seconds,
    string Command,
    IReadOnlyList<LoadSample> Load,
    IReadOnlyList<string>? Failures = null)
{
    /// <summary>The facts of this machine now; <see cref="Load"/> holds one sample, "start".</summary>
    public static MachineFacts Collect(string command)
    {
        string version = typeof(KernelSession).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
        int plus = version.IndexOf('+', StringComparison.Ordinal);
        string? commit = plus >= 0 ? version[(plus + 1)..] : null;
        var devices = DeviceCatalog.List()
            .Select(d => new DeviceFact(d.Backend.ToName(), d.Name, d.MemoryBytes, d.Usable, d.Reason, d.Details)).ToList();
        return new MachineFacts(Environment.MachineName, CpuModel(), Environment.ProcessorCount, MemoryBytesTotal(),
            RuntimeInformation.OSDescription, Environment.OSVersion.VersionString, RuntimeInformation.FrameworkDescription,
            plus >= 0 ? version[..plus] : version, commit, devices, Now(), null, null, command, [SampleLoad("start")]);
    }

    /// <summary>The load average now (all null where /proc/loadavg is not readable).</summary>
    public static LoadSample SampleLoad(string at)
    {
        try
        {
            string[] parts = File.ReadAllText("/proc/loadavg").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return new LoadSample(at, Now(), Parse(parts[0]), Parse(parts[1]), Parse(parts[2]));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or IndexOutOfRangeException)
        {
            return new LoadSample(at, Now(), null, null, null);
        }

        static double? Parse(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null;
    }

    /// <summary>Short, for titles: "CPU, N logical CPUs".</summary>
    public string Summary => $"{Cpu}, {LogicalCpus} logical CPUs";

    internal static string Now() => DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private static string CpuModel()
    {
        try
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line is not null)
                return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static long? MemoryBytesTotal()
    {
        try
        {
            string? line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
            string[]? parts = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts is { Length: >= 2 } && long.TryParse(parts[1], CultureInfo.InvariantCulture, out long kib))
                return kib * 1024;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
