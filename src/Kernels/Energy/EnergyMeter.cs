using System.Diagnostics;

namespace Kernels.Energy;

/// <summary>
/// One measured window. <see cref="Seconds"/> and <see cref="Joules"/> are per call of the measured work
/// (the window divided by <see cref="Repeats"/>); <see cref="JoulesPerToken"/> divides the window's energy by every
/// token processed in it. Every result says where its joules came from and how uncertain they are.
/// </summary>
/// <param name="Seconds">Wall time of one call of the work (window ÷ repeats).</param>
/// <param name="Joules">Energy of one call of the work (window ÷ repeats).</param>
/// <param name="TokensPerCall">Tokens one call processes.</param>
/// <param name="Repeats">Calls in the window (more than one when the window was extended).</param>
/// <param name="WindowSeconds">The window's wall time.</param>
/// <param name="WindowJoules">The window's energy.</param>
/// <param name="UncertaintyJoules">Absolute uncertainty of <see cref="WindowJoules"/> (counter quantization at both edges plus resolution, or the model's relative error).</param>
/// <param name="Source">How the joules were obtained.</param>
/// <param name="Boundary">What the joules cover.</param>
/// <param name="SourceDescription">The source's own description (device, domains, or the estimate's wattage and why).</param>
/// <param name="Flags">Conditions that weaken the result.</param>
public sealed record EnergyMeasurement(
    double Seconds,
    double Joules,
    long TokensPerCall,
    int Repeats,
    double WindowSeconds,
    double WindowJoules,
    double UncertaintyJoules,
    EnergySourceKind Source,
    EnergyBoundary Boundary,
    string SourceDescription,
    EnergyIssues Flags)
{
    /// <summary>Tokens processed in the window.</summary>
    public long Tokens => TokensPerCall * Repeats;

    /// <summary>Joules per token.</summary>
    public double JoulesPerToken => WindowJoules / Tokens;

    /// <summary>Tokens per joule (infinite when no energy was seen: see <see cref="EnergyIssues.ZeroDelta"/>).</summary>
    public double TokensPerJoule => Tokens / WindowJoules;

    /// <summary>Tokens per second of wall time.</summary>
    public double TokensPerSecond => Tokens / WindowSeconds;

    /// <summary>Average power over the window.</summary>
    public double AverageWatts => WindowJoules / WindowSeconds;

    /// <summary>Uncertainty relative to the energy (e.g. 0.05 = ±5 %); infinite when no energy was seen.</summary>
    public double RelativeUncertainty => WindowJoules > 0 ? UncertaintyJoules / WindowJoules : double.PositiveInfinity;

    /// <summary>Absolute uncertainty of <see cref="JoulesPerToken"/>.</summary>
    public double UncertaintyJoulesPerToken => UncertaintyJoules / Tokens;

    /// <summary>True when the joules are modelled, not measured.</summary>
    public bool IsEstimated => Source == EnergySourceKind.Estimated;
}

/// <summary>How the meter shapes a window.</summary>
public sealed record EnergyMeterOptions
{
    /// <summary>The shortest window the meter aims for by default, whatever the source (seconds).</summary>
    public const double DefaultMinWindowSeconds = 1.0;

    /// <summary>
    /// Extend the window by repeating the work until it lasts this long (seconds). Null (default): the longer of
    /// <see cref="DefaultMinWindowSeconds"/> and <see cref="ShortWindowPeriods"/> counter update periods of the
    /// source (2 s for NVML's counter, 1 s for RAPL and for an estimate). A shorter window than that default is
    /// flagged <see cref="EnergyIssues.ShortWindow"/>.
    /// </summary>
    public double? MinWindowSeconds { get; init; }

    /// <summary>The default window for a source updating every <paramref name="updatePeriodSeconds"/>.</summary>
    public double DefaultWindowSeconds(double updatePeriodSeconds) =>
        Math.Max(DefaultMinWindowSeconds, ShortWindowPeriods * updatePeriodSeconds);

    /// <summary>The most calls of the work in one window.</summary>
    public int MaxRepeats { get; init; } = 10_000_000;

    /// <summary>Run the work once before the window (compiles kernels, warms caches).</summary>
    public bool Warmup { get; init; } = true;

    /// <summary>
    /// With <see cref="Warmup"/>, keep running the work (at least once) until this many seconds have passed before
    /// the window opens: .NET's tiered JIT recompiles hot methods on a background thread during the first fraction
    /// of a second, and that CPU time would otherwise land in the window.
    /// </summary>
    public double WarmupSeconds { get; init; } = 0.25;

    /// <summary>Windows shorter than this many update periods are flagged <see cref="EnergyIssues.ShortWindow"/>.</summary>
    public double ShortWindowPeriods { get; init; } = 20;
}

/// <summary>
/// Measures the energy of any work: a kernel call, a delegate, a whole benchmark. The device is synchronized
/// before the window opens and before it closes; the source's cumulative counter is read at both edges.
/// Windows shorter than the counter's quantum are extended by repeating the work (see
/// <see cref="EnergyMeterOptions.MinWindowSeconds"/>). The meter's own cost per window is two counter reads,
/// two synchronizations, and one clock read and synchronization per repetition: far below 1 % of a 100 ms window.
/// </summary>
public sealed class EnergyMeter : IDisposable
{
    private readonly Action? _synchronize;
    private readonly bool _ownsSource;

    /// <summary>Creates a meter on <paramref name="source"/>.</summary>
    /// <param name="source">Where joules come from.</param>
    /// <param name="synchronize">Waits for the device to finish enqueued work (e.g. <see cref="KernelSession.Synchronize"/>); null for synchronous work.</param>
    /// <param name="options">Window shaping (null: defaults).</param>
    /// <param name="ownsSource">Dispose the source with the meter.</param>
    public EnergyMeter(EnergySource source, Action? synchronize = null, EnergyMeterOptions? options = null, bool ownsSource = false)
    {
        ArgumentNullException.ThrowIfNull(source);
        Source = source;
        _synchronize = synchronize;
        _ownsSource = ownsSource;
        Options = options ?? new EnergyMeterOptions();
        if (Options.MaxRepeats < 1)
            throw new ArgumentOutOfRangeException(nameof(options), Options.MaxRepeats, $"options.MaxRepeats: expected ≥ 1, got {Options.MaxRepeats}.");
        if (!double.IsFinite(Options.WarmupSeconds) || Options.WarmupSeconds < 0)
            throw new ArgumentOutOfRangeException(nameof(options), Options.WarmupSeconds, $"options.WarmupSeconds: expected a finite value ≥ 0, got {Options.WarmupSeconds}.");
        if (Options.MinWindowSeconds is double w && (!double.IsFinite(w) || w < 0))
            throw new ArgumentOutOfRangeException(nameof(options), w, $"options.MinWindowSeconds: expected a finite value ≥ 0, got {w}.");
    }

    /// <summary>A meter for a session's device: NVML on CUDA, RAPL on the CPU, else an estimate (see <see cref="EnergySource.ForSession"/>).</summary>
    public static EnergyMeter ForSession(KernelSession session, EnergyMeterOptions? options = null, double? estimatedWatts = null, string raplRoot = RaplEnergySource.DefaultRoot)
    {
        ArgumentNullException.ThrowIfNull(session);
        return new EnergyMeter(EnergySource.ForSession(session, estimatedWatts, raplRoot), session.Synchronize, options, ownsSource: true);
    }

    /// <summary>The energy source.</summary>
    public EnergySource Source { get; }

    /// <summary>The window shaping.</summary>
    public EnergyMeterOptions Options { get; }

    /// <summary>The window length the meter aims for with this source.</summary>
    public double TargetWindowSeconds => Options.MinWindowSeconds ?? Options.DefaultWindowSeconds(Source.UpdatePeriodSeconds);

    /// <summary>
    /// Measures <paramref name="work"/>, which processes <paramref name="tokensPerCall"/> tokens per call,
    /// repeating it until the window reaches <see cref="TargetWindowSeconds"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokensPerCall"/> is not positive.</exception>
    public EnergyMeasurement Measure(Action work, long tokensPerCall)
    {
        ArgumentNullException.ThrowIfNull(work);
        CheckTokens(tokensPerCall, nameof(tokensPerCall));
        if (Options.Warmup)
        {
            long warm = Stopwatch.GetTimestamp();
            do
            {
                work();
                _synchronize?.Invoke();
            }
            while (Stopwatch.GetElapsedTime(warm).TotalSeconds < Options.WarmupSeconds);
        }

        double target = TargetWindowSeconds;
        EnergyWindow window = Begin();
        int repeats = 0;
        long lastPoll = window.StartTimestamp;
        long pollTicks = Stopwatch.Frequency; // read counters at least once a second: wrap-safe and cheap
        EnergyIssues flags = EnergyIssues.None;
        while (true)
        {
            work();
            _synchronize?.Invoke();
            repeats++;
            long now = Stopwatch.GetTimestamp();
            if (Stopwatch.GetElapsedTime(window.StartTimestamp, now).TotalSeconds >= target)
                break;
            if (repeats >= Options.MaxRepeats)
            {
                flags |= EnergyIssues.RepeatLimitReached;
                break;
            }
            if (now - lastPoll > pollTicks)
            {
                window.Poll();
                lastPoll = now;
            }
        }
        return window.End(tokensPerCall, repeats, flags);
    }

    /// <summary>Measures one call of <paramref name="work"/> without extending the window (short windows are flagged, with their uncertainty).</summary>
    public EnergyMeasurement MeasureOnce(Action work, long tokens)
    {
        ArgumentNullException.ThrowIfNull(work);
        CheckTokens(tokens, nameof(tokens));
        EnergyWindow window = Begin();
        work();
        return window.End(tokens);
    }

    /// <summary>Opens a window (after synchronizing the device) around code that is not a single delegate, e.g. a whole benchmark.</summary>
    public EnergyWindow Begin()
    {
        _synchronize?.Invoke();
        return new EnergyWindow(this, Source.Read());
    }

    /// <summary>Disposes the source if the meter owns it.</summary>
    public void Dispose()
    {
        if (_ownsSource)
            Source.Dispose();
    }

    internal void SynchronizeDevice() => _synchronize?.Invoke();

    internal static void CheckTokens(long tokens, string name)
    {
        if (tokens < 1)
            throw new ArgumentOutOfRangeException(name, tokens, $"{name}: expected ≥ 1 token, got {tokens}.");
    }

    internal EnergyMeasurement Complete(EnergyReading start, EnergyReading end, EnergyIssues flags, long tokensPerCall, int repeats)
    {
        double seconds = Stopwatch.GetElapsedTime(start.Timestamp, end.Timestamp).TotalSeconds;
        double joules = end.Joules - start.Joules;
        flags |= end.Flags;
        if (Source.IsEstimate)
            flags |= EnergyIssues.Estimated;
        double uncertainty;
        if (seconds < Options.DefaultWindowSeconds(Source.UpdatePeriodSeconds))
            flags |= EnergyIssues.ShortWindow;
        if (Source.IsEstimate)
        {
            uncertainty = Source.ModelRelativeUncertainty * joules;
        }
        else
        {
            double watts = seconds > 0 ? joules / seconds : 0;
            // Each edge can be off by up to one update period of energy at the window's average power, plus one counter step.
            uncertainty = 2 * Source.UpdatePeriodSeconds * watts + 2 * Source.ResolutionJoules;
            if (joules <= 0)
                flags |= EnergyIssues.ZeroDelta;
            if (Source.PowerLimitWatts is double limit && watts > limit)
                flags |= EnergyIssues.AboveBoardLimit;
        }
        return new EnergyMeasurement(
            seconds / repeats, joules / repeats, tokensPerCall, repeats, seconds, joules, uncertainty,
            Source.Kind, Source.Boundary, Source.Description, flags);
    }
}

/// <summary>An open measurement window; close it with <see cref="End(long)"/>.</summary>
public sealed class EnergyWindow
{
    private readonly EnergyMeter _meter;
    private readonly EnergyReading _start;
    private EnergyIssues _flags;
    private bool _ended;

    internal EnergyWindow(EnergyMeter meter, EnergyReading start)
    {
        _meter = meter;
        _start = start;
        _flags = start.Flags & ~EnergyIssues.Estimated;
    }

    /// <summary>When the window opened (a <see cref="Stopwatch"/> timestamp).</summary>
    public long StartTimestamp => _start.Timestamp;

    /// <summary>Reads the counters without closing the window (keeps wrap detection safe in long windows).</summary>
    public void Poll() => _flags |= _meter.Source.Read().Flags & ~EnergyIssues.Estimated;

    /// <summary>Closes the window (after synchronizing the device): <paramref name="tokens"/> tokens were processed in it.</summary>
    public EnergyMeasurement End(long tokens) => End(tokens, 1, EnergyIssues.None);

    internal EnergyMeasurement End(long tokensPerCall, int repeats, EnergyIssues flags)
    {
        if (_ended)
            throw new InvalidOperationException("This window was already ended.");
        EnergyMeter.CheckTokens(tokensPerCall, "tokens");
        _ended = true;
        _meter.SynchronizeDevice();
        EnergyReading end = _meter.Source.Read();
        return _meter.Complete(_start, end, _flags | flags, tokensPerCall, repeats);
    }
}
