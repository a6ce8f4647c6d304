using System.Diagnostics;
using Kernels.Energy;

namespace Kernels.Tests.Energy;

/// <summary>A counter that advances at a fixed power but only updates every <c>period</c> seconds, like NVML's.</summary>
internal sealed class FakeCounter(double watts, double period, double? limit = null) : EnergySource
{
    private readonly long _start = Stopwatch.GetTimestamp();

    public override EnergySourceKind Kind => EnergySourceKind.NvmlEnergyCounter;

    public override EnergyBoundary Boundary => EnergyBoundary.Gpu;

    public override string Description => "fake counter";

    public override double UpdatePeriodSeconds => period;

    public override double ResolutionJoules => 1e-3;

    public override double? PowerLimitWatts => limit;

    public override EnergyReading Read()
    {
        long now = Stopwatch.GetTimestamp();
        double t = Stopwatch.GetElapsedTime(_start, now).TotalSeconds;
        return new EnergyReading(watts * Math.Floor(t / period) * period, now, EnergyIssues.None);
    }
}

public class EnergyMeterTests
{
    private static void Spin(double seconds)
    {
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start).TotalSeconds < seconds)
        {
        }
    }

    [Fact]
    public void An_estimate_is_labelled_and_carries_its_model_uncertainty()
    {
        using var meter = new EnergyMeter(new EstimatedEnergySource(50, "test"), options: new() { Warmup = false });
        EnergyMeasurement m = meter.MeasureOnce(() => Spin(0.02), tokens: 10);
        Assert.True(m.IsEstimated);
        Assert.Equal(EnergySourceKind.Estimated, m.Source);
        Assert.True(m.Flags.HasFlag(EnergyIssues.Estimated));
        Assert.Equal(50 * m.WindowSeconds, m.WindowJoules, 2);
        Assert.Equal(0.5 * m.WindowJoules, m.UncertaintyJoules, 9);
        Assert.Equal(m.WindowJoules / 10, m.JoulesPerToken, 12);
        Assert.Equal(10 / m.WindowJoules, m.TokensPerJoule, 9);
        Assert.Contains("estimated", EnergySource.NameOf(m.Source), StringComparison.Ordinal);
    }

    [Fact]
    public void Short_windows_are_extended_by_repeating_the_work()
    {
        using var meter = new EnergyMeter(new FakeCounter(100, 0.01), options: new() { MinWindowSeconds = 0.2, Warmup = false });
        int calls = 0;
        EnergyMeasurement m = meter.Measure(() => { calls++; Spin(0.005); }, tokensPerCall: 4);
        Assert.True(m.WindowSeconds >= 0.2, $"window {m.WindowSeconds}");
        Assert.Equal(calls, m.Repeats);
        // More than one call (40 without preemption; a loaded machine stretches single calls, so no fixed count).
        Assert.True(m.Repeats > 1, $"repeats {m.Repeats}");
        Assert.Equal(4L * m.Repeats, m.Tokens);
        Assert.Equal(m.WindowJoules / m.Repeats, m.Joules, 12);
        // About 100 W, within the counter's quantum at the edges.
        Assert.InRange(m.AverageWatts, 80, 110);
        Assert.Equal(2 * 0.01 * m.AverageWatts + 2e-3, m.UncertaintyJoules, 9);
        // 20 counter periods, but shorter than the 1 s floor that was overridden: still flagged.
        Assert.True(m.Flags.HasFlag(EnergyIssues.ShortWindow));
    }

    [Fact]
    public void The_default_window_is_one_second_or_twenty_counter_periods_whatever_the_source()
    {
        using var meter = new EnergyMeter(new FakeCounter(10, 0.1));
        Assert.Equal(2.0, meter.TargetWindowSeconds, 12);
        using var rapl = new EnergyMeter(new FakeCounter(10, 0.001));
        Assert.Equal(1.0, rapl.TargetWindowSeconds, 12);
        using var estimate = new EnergyMeter(new EstimatedEnergySource(10));
        Assert.Equal(1.0, estimate.TargetWindowSeconds, 12);
        using var asked = new EnergyMeter(new EstimatedEnergySource(10), options: new() { MinWindowSeconds = 0.05 });
        Assert.Equal(0.05, asked.TargetWindowSeconds, 12);
    }

    [Fact]
    public void An_estimated_window_shorter_than_a_second_is_flagged()
    {
        using var meter = new EnergyMeter(new EstimatedEnergySource(10), options: new() { MinWindowSeconds = 0.01, Warmup = false });
        EnergyMeasurement m = meter.Measure(() => Spin(0.002), 1);
        Assert.True(m.Flags.HasFlag(EnergyIssues.ShortWindow), $"flags {m.Flags}");
    }

    [Fact]
    public void The_cpu_estimate_charges_the_share_of_the_socket_in_use()
    {
        var topology = new CpuTopology(ProcessCpus: 8, SocketCpus: 64, Virtualized: false);
        EstimatedEnergySource e = EstimatedEnergySource.For(Backend.CpuSimd, 320, "test", topology);
        Assert.Equal(320.0 * 8 / 64, e.Watts, 12);
        Assert.Contains("320 W socket (given)", e.Description, StringComparison.Ordinal);
        Assert.Contains("÷ 64 logical CPUs = 5 W per busy CPU", e.Description, StringComparison.Ordinal);
        Assert.Equal(5, e.WattsPerCpuSecond!.Value, 12);
        EstimatedEnergySource byDefault = EstimatedEnergySource.For(Backend.Cpu, null, "test", new CpuTopology(2, 2, Virtualized: true));
        Assert.Equal(EstimatedEnergySource.UnidentifiedCpuWatts, byDefault.Watts, 12);
        Assert.Contains("CodeCarbon", byDefault.Description, StringComparison.Ordinal);
        Assert.Contains("virtual machine", byDefault.Description, StringComparison.Ordinal);
        // A process allowed more CPUs than the socket has (two sockets) is charged one socket at most.
        Assert.Equal(100, EstimatedEnergySource.For(Backend.Cpu, 100, "test", new CpuTopology(16, 8, false)).Watts, 12);
        Assert.Equal(250, EstimatedEnergySource.For(Backend.Cuda, 250, "test").Watts, 12);
        Assert.Equal("deviceWatts", Assert.ThrowsAny<ArgumentException>(() => EstimatedEnergySource.For(Backend.Cpu, double.NaN)).ParamName);
        CpuTopology here = CpuTopology.Read();
        Assert.InRange(here.SocketCpus, 1, 4096);
        Assert.Equal(Environment.ProcessorCount, here.ProcessCpus);
    }

    [Fact]
    public void A_short_single_window_is_flagged_and_a_zero_delta_is_never_silent()
    {
        using var meter = new EnergyMeter(new FakeCounter(100, 10));
        EnergyMeasurement m = meter.MeasureOnce(() => Spin(0.001), 1);
        Assert.True(m.Flags.HasFlag(EnergyIssues.ShortWindow));
        Assert.True(m.Flags.HasFlag(EnergyIssues.ZeroDelta));
        Assert.Equal(double.PositiveInfinity, m.RelativeUncertainty);
    }

    [Fact]
    public void Average_power_above_the_board_limit_is_flagged()
    {
        using var meter = new EnergyMeter(new FakeCounter(800, 0.005, limit: 700), options: new() { MinWindowSeconds = 0.1, Warmup = false });
        EnergyMeasurement m = meter.Measure(() => Spin(0.01), 1);
        Assert.True(m.Flags.HasFlag(EnergyIssues.AboveBoardLimit), $"{m.AverageWatts} W, flags {m.Flags}");
    }

    [Fact]
    public void Zero_tokens_are_rejected()
    {
        using var meter = new EnergyMeter(new EstimatedEnergySource(10));
        var ex = Assert.ThrowsAny<ArgumentException>(() => meter.Measure(() => { }, 0));
        Assert.Equal("tokensPerCall", ex.ParamName);
        Assert.Contains("got 0", ex.Message, StringComparison.Ordinal);
        Assert.Equal("tokens", Assert.ThrowsAny<ArgumentException>(() => meter.Begin().End(0)).ParamName);
        Assert.Equal("watts", Assert.ThrowsAny<ArgumentException>(() => new EstimatedEnergySource(-5)).ParamName);
    }

    [Fact]
    public void Overhead_is_below_one_percent_for_a_100_ms_window()
    {
        // Wall-clock: a preemption between the meter's reads and the work (other processes on a shared CI
        // machine) only ever adds time, so the best of up to five windows is compared (1.5 % was seen once
        // in a single window under load).
        using var meter = new EnergyMeter(new FakeCounter(100, 0.001), synchronize: () => { }, options: new() { MinWindowSeconds = 0, Warmup = false });
        double bestRatio = double.MaxValue;
        string best = "";
        for (int attempt = 0; attempt < 5 && bestRatio > 1.01; attempt++)
        {
            double inside = 0;
            EnergyMeasurement m = meter.Measure(() =>
            {
                long t = Stopwatch.GetTimestamp();
                Spin(0.1);
                inside += Stopwatch.GetElapsedTime(t).TotalSeconds;
            }, 1);
            if (m.WindowSeconds / inside < bestRatio)
            {
                bestRatio = m.WindowSeconds / inside;
                best = $"window {m.WindowSeconds * 1e3:F3} ms, work {inside * 1e3:F3} ms";
            }
        }
        Assert.True(bestRatio <= 1.01, $"best of five: {best}");
    }

    [Fact]
    public void Without_nvml_or_rapl_a_session_gets_the_labelled_estimate_and_measures_a_gemm()
    {
        KernelSession session = Sessions.Get(Backend.Cpu);
        using EnergyMeter meter = EnergyMeter.ForSession(session, new EnergyMeterOptions { MinWindowSeconds = 0.05 }, estimatedWatts: 40, raplRoot: "/nonexistent/powercap");
        Assert.IsType<EstimatedEnergySource>(meter.Source);
        Assert.Contains("no powercap tree", meter.Source.Description, StringComparison.Ordinal);

        const int m = 16, n = 16, k = 32;
        using DeviceBuffer<sbyte> a = session.Upload<sbyte>(new sbyte[m * k]);
        using DeviceBuffer<sbyte> b = session.Upload<sbyte>(new sbyte[n * k]);
        using DeviceBuffer<int> c = session.Allocate<int>(m * n);
        EnergyMeasurement e = meter.Measure(() => session.Int8Gemm(a, b, c, m, n, k), m);
        Assert.True(e.IsEstimated);
        Assert.True(e.JoulesPerToken > 0);
        var estimate = (EstimatedEnergySource)meter.Source;
        Assert.Equal(40.0 / CpuTopology.Read().SocketCpus, estimate.WattsPerCpuSecond!.Value, 9);
        // Charged by CPU time: at most every logical CPU of the process busy for the whole window.
        Assert.InRange(e.WindowJoules, 1e-9, estimate.Watts * e.WindowSeconds * 1.05 + 0.1);
    }

    [Fact]
    public void Nvml_absent_is_reported_with_a_reason()
    {
        NvmlEnergySource? nvml = NvmlEnergySource.TryCreate(0, out string reason);
        if (nvml is not null)
        {
            nvml.Dispose();
            Assert.Skip("NVML is present on this machine");
        }
        Assert.False(string.IsNullOrWhiteSpace(reason));
        Assert.Contains("NVML", reason, StringComparison.Ordinal);
        var ex = Assert.ThrowsAny<ArgumentException>(() => RaplEnergySource.TryCreate(null!, true, out _));
        Assert.NotNull(ex);
    }

    [Fact]
    public void A_model_phase_is_measured_with_its_attention()
    {
        KernelSession session = Sessions.Get(Backend.Cpu);
        using var meter = new EnergyMeter(new EstimatedEnergySource(10), session.Synchronize, new EnergyMeterOptions { Warmup = false, MinWindowSeconds = 0.02 });
        ModelPhaseEnergy e = ModelEnergy.Measure(session, meter, ModelShapes.Get("qwen2.5-7b"), InferencePhase.Decode, batch: 2, context: 64, maxMacsPerGemm: 1 << 14);
        Assert.Equal(2, e.Rows);
        Assert.Equal(4, e.Gemms.Count);
        Assert.True(e.Extrapolated);
        Assert.All(e.Gemms, g => Assert.True(g.Measured.Macs <= 1 << 14));
        Assert.True(e.JoulesPerToken > 0 && double.IsFinite(e.JoulesPerToken));
        Assert.NotNull(e.AttentionPart);
        Assert.Equal(new AttentionShape(2, 28, 4, 1, 64, 128, true), e.AttentionPart!.Shape);
        Assert.True(AttentionEnergy.Macs(e.AttentionPart.Measured) <= 1 << 14 || e.AttentionPart.Measured.KeyLength == 1);
        Assert.True(e.AttentionPart.Joules > 0);
        Assert.StartsWith("measured", e.Attention, StringComparison.Ordinal);
        double gemmsOnly = e.Gemms.Sum(g => g.Joules) * e.Shape.Layers / e.Rows;
        Assert.True(e.JoulesPerToken > gemmsOnly);
    }
}
