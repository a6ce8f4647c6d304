using System.Diagnostics;

namespace Kernels.Energy;

/// <summary>How a number of joules was obtained.</summary>
public enum EnergySourceKind
{
    /// <summary>NVML's total-energy counter (mJ since driver load), read at the window's edges (Volta and newer).</summary>
    NvmlEnergyCounter,

    /// <summary>NVML board power (<c>nvmlDeviceGetPowerUsage</c>) sampled and integrated over the window; a fallback when the counter is missing.</summary>
    NvmlPowerIntegrated,

    /// <summary>Linux powercap / RAPL <c>energy_uj</c> counters (package and, optionally, DRAM domains).</summary>
    Rapl,

    /// <summary>Not measured: configured watts × wall time of the window. Always labelled as an estimate.</summary>
    Estimated,
}

/// <summary>What part of the machine the joules cover.</summary>
public enum EnergyBoundary
{
    /// <summary>The GPU board (NVML: "this GPU and its associated circuitry").</summary>
    Gpu,

    /// <summary>CPU package(s) only.</summary>
    CpuPackage,

    /// <summary>CPU package(s) and DRAM.</summary>
    CpuPackageAndDram,

    /// <summary>Whatever the configured wattage stands for (a model, not a measurement).</summary>
    Modelled,
}

/// <summary>How far a preset value or an input has been checked (the legend of the reference notes).</summary>
public enum Confidence
{
    /// <summary>[V] checked against a primary source.</summary>
    Verified,

    /// <summary>[S] from a secondary source (news, blog, vendor page): indicative.</summary>
    Secondary,

    /// <summary>[U] unverified: from memory, inferred, or sources disagree.</summary>
    Unverified,
}

/// <summary>Conditions that make a reading or a measurement less trustworthy. Never hidden: they travel with the result.</summary>
[Flags]
public enum EnergyIssues
{
    /// <summary>Nothing to report.</summary>
    None = 0,

    /// <summary>The window is shorter than 20 counter update periods: the quantization error is large (see the uncertainty).</summary>
    ShortWindow = 1,

    /// <summary>The window's average power is above the board's power limit: almost certainly a window-length artefact.</summary>
    AboveBoardLimit = 2,

    /// <summary>A counter wrapped during the window and was corrected with <c>max_energy_range_uj</c>.</summary>
    CounterWrapped = 4,

    /// <summary>A counter went backwards and could not be corrected (range unknown, or a driver reload reset it): that domain's delta was dropped.</summary>
    CounterResetUncorrected = 8,

    /// <summary>A counter source reported no energy at all for the window (shorter than one counter update).</summary>
    ZeroDelta = 16,

    /// <summary>A counter could not be read during the window; its contribution is missing.</summary>
    ReadFailed = 32,

    /// <summary>The joules are a modelled estimate, not a measurement.</summary>
    Estimated = 64,

    /// <summary>The window was not extended to the requested length because the repeat limit was reached.</summary>
    RepeatLimitReached = 128,
}

/// <summary>A cumulative reading: joules since the source was opened, when, and what went wrong while reading.</summary>
/// <param name="Joules">Energy since the source was created (wraps corrected).</param>
/// <param name="Timestamp">A <see cref="Stopwatch"/> timestamp of the read.</param>
/// <param name="Flags">Problems seen since the previous read.</param>
public readonly record struct EnergyReading(double Joules, long Timestamp, EnergyIssues Flags);

/// <summary>
/// A source of cumulative energy readings. A window's energy is the difference of two readings; the meter
/// (<see cref="EnergyMeter"/>) takes them at the window's edges after synchronizing the device.
/// </summary>
public abstract class EnergySource : IDisposable
{
    /// <summary>How this source measures.</summary>
    public abstract EnergySourceKind Kind { get; }

    /// <summary>What the joules cover.</summary>
    public abstract EnergyBoundary Boundary { get; }

    /// <summary>One line saying what is read (device, domains, or the model and its wattage).</summary>
    public abstract string Description { get; }

    /// <summary>How often the underlying counter changes, in seconds (the quantum of a window's edges); 0 for an estimate.</summary>
    public abstract double UpdatePeriodSeconds { get; }

    /// <summary>The smallest step of the counter in joules.</summary>
    public virtual double ResolutionJoules => 0;

    /// <summary>The enforced power limit of the device in watts, when known (used to flag impossible averages).</summary>
    public virtual double? PowerLimitWatts => null;

    /// <summary>For <see cref="EnergySourceKind.Estimated"/>: the relative uncertainty of the model (0.5 = ±50 %).</summary>
    public virtual double ModelRelativeUncertainty => 0;

    /// <summary>True when the joules are modelled rather than measured.</summary>
    public bool IsEstimate => Kind == EnergySourceKind.Estimated;

    /// <summary>Reads the cumulative energy since the source was created.</summary>
    public abstract EnergyReading Read();

    /// <summary>The lower-case name used in reports: nvml_energy_counter, nvml_power_integrated, rapl, estimated.</summary>
    public static string NameOf(EnergySourceKind kind) => kind switch
    {
        EnergySourceKind.NvmlEnergyCounter => "nvml_energy_counter",
        EnergySourceKind.NvmlPowerIntegrated => "nvml_power_integrated",
        EnergySourceKind.Rapl => "rapl",
        EnergySourceKind.Estimated => "estimated",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown energy source kind"),
    };

    /// <summary>
    /// The best source for a session's device: NVML (counter, else integrated power) for CUDA, RAPL for the CPU
    /// accelerator; otherwise an <see cref="EstimatedEnergySource"/> at <paramref name="estimatedWatts"/> (default
    /// per device kind), labelled <see cref="EnergySourceKind.Estimated"/>, with the reason the measured source was absent.
    /// </summary>
    /// <param name="session">The session whose device runs the work.</param>
    /// <param name="estimatedWatts">Watts for the fallback estimate (null: <see cref="EstimatedEnergySource.DefaultWatts"/>).</param>
    /// <param name="raplRoot">The powercap sysfs root (a parameter so tests use a fixture tree).</param>
    public static EnergySource ForSession(KernelSession session, double? estimatedWatts = null, string raplRoot = RaplEnergySource.DefaultRoot)
    {
        ArgumentNullException.ThrowIfNull(session);
        string reason;
        if (session.Backend == Backend.Cuda)
        {
            NvmlEnergySource? nvml = NvmlEnergySource.TryCreate(session, out reason);
            if (nvml is not null)
                return nvml;
        }
        else if (session.Backend is Backend.Cpu or Backend.CpuSimd)
        {
            RaplEnergySource? rapl = RaplEnergySource.TryCreate(raplRoot, includeDram: true, out reason);
            if (rapl is not null)
                return rapl;
        }
        else
        {
            reason = $"no energy counter is read for the {session.Backend.ToName()} backend";
        }
        return new EstimatedEnergySource(estimatedWatts ?? EstimatedEnergySource.DefaultWatts(session.Backend), reason);
    }

    /// <summary>Releases what the source holds (NVML handles, sampling threads).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }
}

/// <summary>
/// Not a measurement: configured watts × elapsed wall time. Every result from it is labelled
/// <see cref="EnergySourceKind.Estimated"/> and carries <see cref="ModelRelativeUncertainty"/>.
/// </summary>
public sealed class EstimatedEnergySource : EnergySource
{
    private readonly long _start = Stopwatch.GetTimestamp();

    /// <summary>Creates an estimate at <paramref name="watts"/> for the whole window.</summary>
    /// <param name="watts">The assumed average power (finite, &gt; 0).</param>
    /// <param name="reason">Why no measured source is used (shown in the description).</param>
    /// <param name="relativeUncertainty">The model's relative uncertainty (default ±50 %).</param>
    public EstimatedEnergySource(double watts, string reason = "no energy counter available", double relativeUncertainty = 0.5)
    {
        if (!double.IsFinite(watts) || watts <= 0)
            throw new ArgumentOutOfRangeException(nameof(watts), watts, $"watts: expected a finite value > 0, got {watts}.");
        if (!double.IsFinite(relativeUncertainty) || relativeUncertainty < 0)
            throw new ArgumentOutOfRangeException(nameof(relativeUncertainty), relativeUncertainty, $"relativeUncertainty: expected a finite value ≥ 0, got {relativeUncertainty}.");
        Watts = watts;
        Reason = reason ?? "";
        ModelRelativeUncertainty = relativeUncertainty;
    }

    /// <summary>The assumed power.</summary>
    public double Watts { get; }

    /// <summary>Why the estimate is used.</summary>
    public string Reason { get; }

    /// <summary>
    /// The default assumed power per backend: CPU 85 W (CodeCarbon's constant for a CPU it cannot identify),
    /// GPU 300 W (a round assumption for a busy data-centre GPU below its board limit). Both are assumptions: pass your own.
    /// </summary>
    public static double DefaultWatts(Backend backend) => backend is Backend.Cpu or Backend.CpuSimd ? 85 : 300;

    /// <inheritdoc/>
    public override EnergySourceKind Kind => EnergySourceKind.Estimated;

    /// <inheritdoc/>
    public override EnergyBoundary Boundary => EnergyBoundary.Modelled;

    /// <inheritdoc/>
    public override string Description => $"estimated: {Watts:G4} W × busy time ({Reason})";

    /// <inheritdoc/>
    public override double UpdatePeriodSeconds => 0;

    /// <inheritdoc/>
    public override double ModelRelativeUncertainty { get; }

    /// <inheritdoc/>
    public override EnergyReading Read()
    {
        long now = Stopwatch.GetTimestamp();
        return new EnergyReading(Watts * Stopwatch.GetElapsedTime(_start, now).TotalSeconds, now, EnergyIssues.Estimated);
    }
}
