using System.Diagnostics;
using System.Globalization;

namespace Kernels.Energy;

/// <summary>One RAPL domain that is read: its zone directory, its name, and the counter's range.</summary>
/// <param name="Zone">The zone's directory name (e.g. <c>intel-rapl:0</c>, <c>intel-rapl:0:0</c>).</param>
/// <param name="Name">The domain name (<c>package-0</c>, <c>dram</c>).</param>
/// <param name="Path">The zone directory.</param>
/// <param name="MaxEnergyRangeMicrojoules">The counter's range (<c>max_energy_range_uj</c>); null when unreadable (then a wrap cannot be corrected).</param>
public sealed record RaplDomain(string Zone, string Name, string Path, long? MaxEnergyRangeMicrojoules);

/// <summary>
/// Linux powercap / RAPL energy (Intel, and AMD Zen through <c>intel_rapl_msr</c> since Linux 5.8): the
/// <c>package-N</c> domains and, optionally, their <c>dram</c> subdomains. <c>psys</c>, <c>core</c> and <c>uncore</c>
/// are skipped because they overlap the package (summing them double-counts). A negative delta is a wrap,
/// corrected with <c>max_energy_range_uj</c>; when that range is unreadable the delta is dropped and flagged,
/// never turned into negative energy. Deltas are accumulated on every read, so a window is wrap-safe as long as
/// it is read at least once per wrap period (the meter reads between repetitions).
/// </summary>
public sealed class RaplEnergySource : EnergySource
{
    /// <summary>The sysfs root of the powercap class.</summary>
    public const string DefaultRoot = "/sys/class/powercap";

    private readonly Lock _sync = new();
    private readonly long[] _last;
    private double _joules;

    private RaplEnergySource(string root, List<RaplDomain> domains, long[] first, List<string> skipped, bool dram)
    {
        Root = root;
        Domains = domains;
        SkippedDomains = skipped;
        _last = first;
        Boundary = dram && domains.Any(d => d.Name == "dram") ? EnergyBoundary.CpuPackageAndDram : EnergyBoundary.CpuPackage;
    }

    /// <summary>The sysfs root read.</summary>
    public string Root { get; }

    /// <summary>The domains summed.</summary>
    public IReadOnlyList<RaplDomain> Domains { get; }

    /// <summary>Domains seen but not used, each with the reason (overlapping, unreadable, duplicate).</summary>
    public IReadOnlyList<string> SkippedDomains { get; }

    /// <inheritdoc/>
    public override EnergySourceKind Kind => EnergySourceKind.Rapl;

    /// <inheritdoc/>
    public override EnergyBoundary Boundary { get; }

    /// <inheritdoc/>
    public override string Description => $"RAPL energy_uj ({string.Join(", ", Domains.Select(d => $"{d.Zone} {d.Name}"))})";

    /// <summary>The RAPL MSRs update about every millisecond.</summary>
    public override double UpdatePeriodSeconds => 0.001;

    /// <summary>The coarser of the usual energy-status units (Intel 61 µJ; AMD 15.3 µJ).</summary>
    public override double ResolutionJoules => 61e-6;

    /// <summary>
    /// Opens the RAPL domains under <paramref name="root"/>, or returns null with the reason (no powercap tree,
    /// no package domain, every domain unreadable: <c>energy_uj</c> is root-only since Linux 5.10).
    /// </summary>
    /// <param name="root">The powercap root (default <see cref="DefaultRoot"/>; tests pass a fixture tree).</param>
    /// <param name="includeDram">Also sum the <c>dram</c> subdomains.</param>
    /// <param name="reason">Why no source could be opened; empty on success.</param>
    public static RaplEnergySource? TryCreate(string root, bool includeDram, out string reason)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (!Directory.Exists(root))
        {
            reason = $"no powercap tree at {root} (RAPL absent: a VM, a container without /sys, or not Linux)";
            return null;
        }

        // Zones appear flat in /sys/class/powercap (symlinks) and nested under their parents; dedupe by zone name.
        var zones = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (string dir in SafeDirectories(root))
        {
            string zone = Path.GetFileName(dir);
            if (!IsZone(zone))
                continue;
            zones.TryAdd(zone, dir);
            foreach (string sub in SafeDirectories(dir))
            {
                string subZone = Path.GetFileName(sub);
                if (IsZone(subZone))
                    zones.TryAdd(subZone, sub);
            }
        }

        var skipped = new List<string>();
        var chosen = new Dictionary<string, (RaplDomain Domain, long First)>(StringComparer.Ordinal);
        foreach ((string zone, string dir) in zones)
        {
            string? name = ReadText(Path.Combine(dir, "name"), out string? nameError)?.Trim();
            if (name is null)
            {
                skipped.Add($"{zone}: name unreadable ({nameError})");
                continue;
            }
            bool isPackage = name.StartsWith("package", StringComparison.Ordinal);
            bool isDram = name == "dram";
            if (!isPackage && !(isDram && includeDram))
            {
                skipped.Add($"{zone} {name}: {(isDram ? "DRAM not requested" : "overlaps the package domain")}");
                continue;
            }
            string energyPath = Path.Combine(dir, "energy_uj");
            string? energyText = ReadText(energyPath, out string? energyError);
            if (energyText is null || !long.TryParse(energyText.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long first))
            {
                skipped.Add($"{zone} {name}: energy_uj unreadable ({energyError ?? $"not a number: '{energyText?.Trim()}'"})");
                continue;
            }
            string? rangeText = ReadText(Path.Combine(dir, "max_energy_range_uj"), out _);
            long? range = rangeText is not null && long.TryParse(rangeText.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long r) && r > 0 ? r : null;

            // A dram subzone is per package: key it by its parent package zone. MMIO duplicates of a package win (CodeCarbon PR #950).
            string key = isDram ? ParentZone(zone) + "/dram" : name;
            var domain = new RaplDomain(zone, name, dir, range);
            if (chosen.TryGetValue(key, out var existing))
            {
                bool preferNew = zone.Contains("mmio", StringComparison.Ordinal) && !existing.Domain.Zone.Contains("mmio", StringComparison.Ordinal);
                skipped.Add(preferNew ? $"{existing.Domain.Zone} {name}: duplicate of {zone}" : $"{zone} {name}: duplicate of {existing.Domain.Zone}");
                if (!preferNew)
                    continue;
            }
            chosen[key] = (domain, first);
        }

        if (!chosen.Values.Any(c => c.Domain.Name.StartsWith("package", StringComparison.Ordinal)))
        {
            reason = zones.Count == 0
                ? $"no RAPL zones under {root}"
                : $"no readable RAPL package domain under {root}: {string.Join("; ", skipped)}";
            return null;
        }

        var list = chosen.Values.OrderBy(c => c.Domain.Zone, StringComparer.Ordinal).ToList();
        reason = "";
        return new RaplEnergySource(root, list.Select(c => c.Domain).ToList(), list.Select(c => c.First).ToArray(), skipped, includeDram);
    }

    /// <inheritdoc/>
    public override EnergyReading Read()
    {
        lock (_sync)
        {
            EnergyIssues flags = EnergyIssues.None;
            for (int i = 0; i < Domains.Count; i++)
            {
                RaplDomain d = Domains[i];
                string? text = ReadText(Path.Combine(d.Path, "energy_uj"), out _);
                if (text is null || !long.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long now))
                {
                    flags |= EnergyIssues.ReadFailed;
                    continue;
                }
                long delta = now - _last[i];
                if (delta < 0)
                {
                    if (d.MaxEnergyRangeMicrojoules is long range)
                    {
                        delta += range;
                        flags |= EnergyIssues.CounterWrapped;
                    }
                    else
                    {
                        delta = 0;
                        flags |= EnergyIssues.CounterResetUncorrected;
                    }
                }
                _last[i] = now;
                _joules += delta * 1e-6;
            }
            return new EnergyReading(_joules, Stopwatch.GetTimestamp(), flags);
        }
    }

    private static bool IsZone(string name) =>
        (name.StartsWith("intel-rapl", StringComparison.Ordinal) || name.StartsWith("amd-rapl", StringComparison.Ordinal))
        && name.Contains(':', StringComparison.Ordinal);

    private static string ParentZone(string zone)
    {
        int last = zone.LastIndexOf(':');
        return last > 0 && zone.IndexOf(':', StringComparison.Ordinal) != last ? zone[..last] : zone;
    }

    private static string[] SafeDirectories(string dir)
    {
        try
        {
            return Directory.GetDirectories(dir);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    private static string? ReadText(string path, out string? error)
    {
        try
        {
            error = null;
            return File.ReadAllText(path);
        }
        catch (UnauthorizedAccessException)
        {
            error = "permission denied: energy_uj is root-only since Linux 5.10; see docs/energy.md for a udev rule";
            return null;
        }
        catch (Exception ex) when (ex is IOException)
        {
            error = ex is FileNotFoundException or DirectoryNotFoundException ? "missing" : ex.Message;
            return null;
        }
    }
}
