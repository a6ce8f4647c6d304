using Kernels.Energy;

namespace Kernels.Tests.Energy;

/// <summary>A powercap tree laid out as sysfs, in a temporary directory.</summary>
internal sealed class PowercapFixture : IDisposable
{
    public PowercapFixture() => Directory.CreateDirectory(Root);

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "kernels-rapl-" + Guid.NewGuid().ToString("N"));

    public string Zone(string zone, string name, long energy, long? range = 262_143_999_938, string? parent = null)
    {
        string dir = parent is null ? Path.Combine(Root, zone) : Path.Combine(Root, parent, zone);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "name"), name + "\n");
        File.WriteAllText(Path.Combine(dir, "energy_uj"), energy + "\n");
        if (range is long r)
            File.WriteAllText(Path.Combine(dir, "max_energy_range_uj"), r + "\n");
        return dir;
    }

    public static void Set(string dir, long energy) => File.WriteAllText(Path.Combine(dir, "energy_uj"), energy + "\n");

    /// <summary>Makes energy_uj unreadable: a directory in its place (the tests may run as root, where chmod does not stop reads).</summary>
    public static void MakeUnreadable(string dir)
    {
        File.Delete(Path.Combine(dir, "energy_uj"));
        Directory.CreateDirectory(Path.Combine(dir, "energy_uj"));
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

public class RaplTests
{
    [Fact]
    public void Packages_and_dram_are_summed_and_overlapping_domains_skipped()
    {
        using var fx = new PowercapFixture();
        Directory.CreateDirectory(Path.Combine(fx.Root, "intel-rapl")); // the control type: not a zone
        string p0 = fx.Zone("intel-rapl:0", "package-0", 1_000_000);
        string p1 = fx.Zone("intel-rapl:1", "package-1", 5_000_000);
        string d0 = fx.Zone("intel-rapl:0:0", "dram", 100, parent: "intel-rapl:0");
        fx.Zone("intel-rapl:0:1", "core", 100, parent: "intel-rapl:0");
        fx.Zone("intel-rapl:2", "psys", 100);

        using RaplEnergySource rapl = RaplEnergySource.TryCreate(fx.Root, includeDram: true, out string reason)!;
        Assert.NotNull(rapl);
        Assert.Equal("", reason);
        Assert.Equal(["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:1"], rapl.Domains.Select(d => d.Zone));
        Assert.Equal(EnergyBoundary.CpuPackageAndDram, rapl.Boundary);
        Assert.Contains(rapl.SkippedDomains, s => s.Contains("psys", StringComparison.Ordinal));
        Assert.Contains(rapl.SkippedDomains, s => s.Contains("core", StringComparison.Ordinal));

        Assert.Equal(0, rapl.Read().Joules);
        PowercapFixture.Set(p0, 3_000_000);   // +2 J
        PowercapFixture.Set(p1, 5_500_000);   // +0.5 J
        PowercapFixture.Set(d0, 250_100);     // +0.25 J
        EnergyReading r = rapl.Read();
        Assert.Equal(2.75, r.Joules, 9);
        Assert.Equal(EnergyIssues.None, r.Flags);
    }

    [Fact]
    public void A_wrap_is_corrected_with_the_counter_range()
    {
        using var fx = new PowercapFixture();
        string p0 = fx.Zone("intel-rapl:0", "package-0", 999_000, range: 1_000_000);
        using RaplEnergySource rapl = RaplEnergySource.TryCreate(fx.Root, includeDram: false, out _)!;
        PowercapFixture.Set(p0, 4_000);       // wrapped: 1000 µJ to the top, then 4000 µJ
        EnergyReading r = rapl.Read();
        Assert.Equal(0.005, r.Joules, 12);
        Assert.True(r.Flags.HasFlag(EnergyIssues.CounterWrapped));
        Assert.Equal(EnergyBoundary.CpuPackage, rapl.Boundary);
    }

    [Fact]
    public void A_wrap_without_a_readable_range_is_dropped_and_flagged_never_negative()
    {
        using var fx = new PowercapFixture();
        string p0 = fx.Zone("intel-rapl:0", "package-0", 999_000, range: null);
        using RaplEnergySource rapl = RaplEnergySource.TryCreate(fx.Root, includeDram: false, out _)!;
        Assert.Null(rapl.Domains[0].MaxEnergyRangeMicrojoules);
        PowercapFixture.Set(p0, 4_000);
        EnergyReading r = rapl.Read();
        Assert.Equal(0, r.Joules);
        Assert.True(r.Flags.HasFlag(EnergyIssues.CounterResetUncorrected));
        PowercapFixture.Set(p0, 6_000);       // counting resumes from the new value
        Assert.Equal(0.002, rapl.Read().Joules, 12);
    }

    [Fact]
    public void Missing_tree_missing_packages_and_unreadable_files_give_reasons()
    {
        Assert.Null(RaplEnergySource.TryCreate("/nonexistent/powercap", true, out string missing));
        Assert.Contains("no powercap tree", missing, StringComparison.Ordinal);

        using var fx = new PowercapFixture();
        Assert.Null(RaplEnergySource.TryCreate(fx.Root, true, out string empty));
        Assert.Contains("no RAPL zones", empty, StringComparison.Ordinal);

        fx.Zone("intel-rapl:0:0", "dram", 5, parent: "intel-rapl:0x");
        string p0 = fx.Zone("intel-rapl:0", "package-0", 5);
        PowercapFixture.MakeUnreadable(p0);
        Assert.Null(RaplEnergySource.TryCreate(fx.Root, true, out string unreadable));
        Assert.Contains("energy_uj unreadable", unreadable, StringComparison.Ordinal);
    }

    [Fact]
    public void A_domain_that_becomes_unreadable_is_flagged()
    {
        using var fx = new PowercapFixture();
        string p0 = fx.Zone("intel-rapl:0", "package-0", 1_000);
        string p1 = fx.Zone("intel-rapl:1", "package-1", 1_000);
        string p2 = fx.Zone("intel-rapl:2", "package-2", 1_000);
        PowercapFixture.MakeUnreadable(p2);
        using RaplEnergySource rapl = RaplEnergySource.TryCreate(fx.Root, true, out _)!;
        Assert.Equal(2, rapl.Domains.Count);
        Assert.Contains(rapl.SkippedDomains, s => s.Contains("package-2", StringComparison.Ordinal));
        PowercapFixture.MakeUnreadable(p1);
        PowercapFixture.Set(p0, 2_000);
        EnergyReading r = rapl.Read();
        Assert.True(r.Flags.HasFlag(EnergyIssues.ReadFailed));
        Assert.Equal(0.001, r.Joules, 12);
    }

    [Fact]
    public void Mmio_duplicates_of_a_package_are_preferred_not_summed()
    {
        using var fx = new PowercapFixture();
        fx.Zone("intel-rapl:0", "package-0", 0);
        string mmio = fx.Zone("intel-rapl-mmio:0", "package-0", 0);
        using RaplEnergySource rapl = RaplEnergySource.TryCreate(fx.Root, true, out _)!;
        Assert.Equal("intel-rapl-mmio:0", Assert.Single(rapl.Domains).Zone);
        PowercapFixture.Set(mmio, 1_000_000);
        Assert.Equal(1.0, rapl.Read().Joules, 12);
    }
}
