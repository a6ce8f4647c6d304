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

    /// <summary>The window is shorter than the default (1 s, or 20 counter update periods if longer): quantization and scheduling noise are large (see the uncertainty).</summary>
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
    /// <param name="estimatedWatts">The socket's (CPU) or board's (GPU) watts for the fallback estimate (null: <see cref="EstimatedEnergySource.DefaultWatts"/>; see <see cref="EstimatedEnergySource.For"/>).</param>
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
        return EstimatedEnergySource.For(session.Backend, estimatedWatts, reason);
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
/// Not a measurement: modelled watts × elapsed wall time. Every result from it is labelled
/// <see cref="EnergySourceKind.Estimated"/> and carries <see cref="ModelRelativeUncertainty"/>.
/// The model (docs/energy.md, "The estimate"): a device's power figure, charged in the share of the device
/// the work uses — on a CPU, <c>socketWatts × threadsUsed / socketLogicalCpus</c>; a GPU board is charged whole,
/// as NVML would count it. <see cref="For"/> builds it; the constructor takes already-charged watts.
/// </summary>
public sealed class EstimatedEnergySource : EnergySource
{
    /// <summary>CodeCarbon's <c>POWER_CONSTANT</c>: the power it assumes for a CPU it cannot identify (W).</summary>
    public const double UnidentifiedCpuWatts = 85;

    /// <summary>A round figure for a busy data-centre GPU below its board limit (W): an assumption, replace it.</summary>
    public const double UnidentifiedGpuWatts = 300;

    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly TimeSpan _startCpu = Environment.CpuUsage.TotalTime;

    /// <summary>Creates an estimate at <paramref name="watts"/> for the whole window.</summary>
    /// <param name="watts">The assumed average power charged to the work (finite, &gt; 0).</param>
    /// <param name="reason">Why no measured source is used (shown in the description).</param>
    /// <param name="relativeUncertainty">The model's relative uncertainty (default ±50 %).</param>
    /// <param name="model">How <paramref name="watts"/> was arrived at (shown in the description); null: "configured".</param>
    /// <param name="wattsPerCpuSecond">
    /// When set, the joules are this × the process's CPU time (user + system, all threads) instead of
    /// <paramref name="watts"/> × wall time: a process is charged for the logical CPUs it kept busy, not for the
    /// time other processes held them (the CPU model of <see cref="For"/>).
    /// </param>
    public EstimatedEnergySource(double watts, string reason = "no energy counter available", double relativeUncertainty = 0.5, string? model = null,
        double? wattsPerCpuSecond = null)
    {
        if (wattsPerCpuSecond is double c && (!double.IsFinite(c) || c <= 0))
            throw new ArgumentOutOfRangeException(nameof(wattsPerCpuSecond), c, $"wattsPerCpuSecond: expected a finite value > 0, got {c}.");
        WattsPerCpuSecond = wattsPerCpuSecond;
        if (!double.IsFinite(watts) || watts <= 0)
            throw new ArgumentOutOfRangeException(nameof(watts), watts, $"watts: expected a finite value > 0, got {watts}.");
        if (!double.IsFinite(relativeUncertainty) || relativeUncertainty < 0)
            throw new ArgumentOutOfRangeException(nameof(relativeUncertainty), relativeUncertainty, $"relativeUncertainty: expected a finite value ≥ 0, got {relativeUncertainty}.");
        Watts = watts;
        Reason = reason ?? "";
        Model = model ?? "configured";
        ModelRelativeUncertainty = relativeUncertainty;
    }

    /// <summary>
    /// The estimate for <paramref name="backend"/>: on the CPU backends <c>socketWatts × threads / socketCpus</c>
    /// (<paramref name="deviceWatts"/> is the socket's power, default <see cref="UnidentifiedCpuWatts"/>; the threads
    /// are the logical CPUs this process may run on, the session's worker count; the socket's logical CPUs come
    /// from sysfs), on a GPU the whole board (<paramref name="deviceWatts"/>, default <see cref="UnidentifiedGpuWatts"/>).
    /// </summary>
    /// <param name="backend">Where the work runs.</param>
    /// <param name="deviceWatts">The socket's (CPU) or board's (GPU) power; null for the default.</param>
    /// <param name="reason">Why no measured source is used.</param>
    /// <param name="topology">The CPU topology (null: read from this machine).</param>
    public static EstimatedEnergySource For(Backend backend, double? deviceWatts = null, string reason = "no energy counter available", CpuTopology? topology = null)
    {
        if (deviceWatts is double d && (!double.IsFinite(d) || d <= 0))
            throw new ArgumentOutOfRangeException(nameof(deviceWatts), d, $"deviceWatts: expected a finite value > 0, got {d}.");
        string figure;
        if (backend is not (Backend.Cpu or Backend.CpuSimd))
        {
            double board = deviceWatts ?? UnidentifiedGpuWatts;
            figure = deviceWatts is null ? $"{board:G4} W board (an assumed figure for a busy GPU)" : $"{board:G4} W board (given)";
            return new EstimatedEnergySource(board, reason, model: figure + ", charged whole");
        }
        topology ??= CpuTopology.Read();
        double socket = deviceWatts ?? UnidentifiedCpuWatts;
        int threads = Math.Min(topology.ProcessCpus, topology.SocketCpus);
        double perCpu = socket / topology.SocketCpus;
        double watts = perCpu * threads;
        figure = deviceWatts is null ? $"{socket:G4} W socket (CodeCarbon's constant for an unidentified CPU)" : $"{socket:G4} W socket (given)";
        string share = $" ÷ {topology.SocketCpus} logical CPUs = {perCpu:G4} W per busy CPU, × the process's CPU time ({threads} CPUs busy: {watts:G4} W)";
        string vm = topology.Virtualized
            ? $"; virtual machine: only {topology.SocketCpus} CPUs of a larger socket are visible, so the share is probably overstated"
            : "";
        return new EstimatedEnergySource(watts, reason, model: figure + share + vm, wattsPerCpuSecond: perCpu);
    }

    /// <summary>The assumed power charged to the work.</summary>
    public double Watts { get; }

    /// <summary>Why the estimate is used.</summary>
    public string Reason { get; }

    /// <summary>How <see cref="Watts"/> was arrived at.</summary>
    public string Model { get; }

    /// <summary>Watts per busy logical CPU when the joules follow the process's CPU time; null when they follow wall time.</summary>
    public double? WattsPerCpuSecond { get; }

    /// <summary>
    /// The default power per backend when nothing is given, before the CPU share is applied: CPU 85 W
    /// (<see cref="UnidentifiedCpuWatts"/>), GPU 300 W (<see cref="UnidentifiedGpuWatts"/>). Both are assumptions: pass your own.
    /// </summary>
    public static double DefaultWatts(Backend backend) => backend is Backend.Cpu or Backend.CpuSimd ? UnidentifiedCpuWatts : UnidentifiedGpuWatts;

    /// <inheritdoc/>
    public override EnergySourceKind Kind => EnergySourceKind.Estimated;

    /// <inheritdoc/>
    public override EnergyBoundary Boundary => EnergyBoundary.Modelled;

    /// <inheritdoc/>
    public override string Description => WattsPerCpuSecond is null
        ? $"estimated: {Model} × wall time, ±{ModelRelativeUncertainty:P0} ({Reason})"
        : $"estimated: {Model}, ±{ModelRelativeUncertainty:P0} ({Reason})";

    /// <inheritdoc/>
    public override double UpdatePeriodSeconds => 0;

    /// <inheritdoc/>
    public override double ModelRelativeUncertainty { get; }

    /// <inheritdoc/>
    public override EnergyReading Read()
    {
        long now = Stopwatch.GetTimestamp();
        double joules = WattsPerCpuSecond is double perCpu
            ? perCpu * (Environment.CpuUsage.TotalTime - _startCpu).TotalSeconds
            : Watts * Stopwatch.GetElapsedTime(_start, now).TotalSeconds;
        return new EnergyReading(joules, now, EnergyIssues.Estimated);
    }
}

/// <summary>What the CPU estimate needs to know about this machine's CPUs.</summary>
/// <param name="ProcessCpus">Logical CPUs this process may run on (the worker threads of a CPU session).</param>
/// <param name="SocketCpus">Logical CPUs of the socket (package) the process runs on.</param>
/// <param name="Virtualized">The CPU reports a hypervisor: the visible socket is a slice of a larger one.</param>
public sealed record CpuTopology(int ProcessCpus, int SocketCpus, bool Virtualized)
{
    /// <summary>
    /// Reads this machine: <see cref="Environment.ProcessorCount"/>; the CPUs whose
    /// <c>/sys/devices/system/cpu/cpuN/topology/physical_package_id</c> equals cpu0's (else the process's count);
    /// the <c>hypervisor</c> flag in <c>/proc/cpuinfo</c>.
    /// </summary>
    public static CpuTopology Read(string sysCpu = "/sys/devices/system/cpu", string cpuinfo = "/proc/cpuinfo")
    {
        int process = Environment.ProcessorCount;
        int socket = process;
        try
        {
            string cpu0 = Path.Combine(sysCpu, "cpu0", "topology", "physical_package_id");
            if (File.Exists(cpu0))
            {
                string first = File.ReadAllText(cpu0).Trim();
                int count = Directory.EnumerateDirectories(sysCpu, "cpu*")
                    .Select(dir => Path.Combine(dir, "topology", "physical_package_id"))
                    .Count(file => File.Exists(file) && File.ReadAllText(file).Trim() == first);
                socket = Math.Max(count, 1);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        bool virtualized = false;
        try
        {
            virtualized = File.Exists(cpuinfo) && File.ReadLines(cpuinfo)
                .Any(line => line.StartsWith("flags", StringComparison.Ordinal) && line.Split(' ').Contains("hypervisor"));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
        return new CpuTopology(process, Math.Max(socket, 1), virtualized);
    }
}
