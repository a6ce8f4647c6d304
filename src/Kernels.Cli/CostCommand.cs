using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Kernels.Decoder;
using Kernels.Energy;
using Spectre.Console;

namespace Kernels.Cli;

/// <summary>
/// <c>kernels cost</c>: energy, cost and CO2 per 1M tokens across regions and kernel variants, from a GEMM run
/// here (a token = one activation row, m), from <c>bench --json</c> results, or for a transformer's weight GEMMs.
/// </summary>
internal static class CostCommand
{
    /// <summary>Default GEMM cube per backend for <c>kernels cost</c> (the CPU accelerator simulates threads: keep it small).</summary>
    internal static int DefaultSize(Backend backend) => backend switch
    {
        Backend.Cuda => 4096,
        Backend.OpenCL => 1024,
        Backend.CpuSimd => 1024,
        _ => 64,
    };

    /// <summary>Largest GEMM run per model part before a scaled proxy is used (CPU accelerator: ≈0.1 s).</summary>
    internal static long DefaultMaxMacs(Backend backend) => backend switch
    {
        Backend.Cuda => long.MaxValue,
        Backend.OpenCL => 1L << 33,
        Backend.CpuSimd => 1L << 34,
        _ => 1L << 18,
    };

    public static Command Create()
    {
        var backend = new Option<string>("--backend") { Description = "auto, cuda, opencl, cpu-simd or cpu.", DefaultValueFactory = _ => "auto" };
        var kernel = new Option<string>("--kernel") { Description = "all (every distinct kernel on the backend), auto, reference, tiled or dp4a.", DefaultValueFactory = _ => "all" };
        var m = new Option<int?>("--m") { Description = "Token rows of the GEMM (default per backend: 4096 CUDA, 1024 OpenCL, 64 CPU accelerator)." };
        var n = new Option<int?>("--n") { Description = "Output features (default: as --m)." };
        var k = new Option<int?>("--k") { Description = "Input features (default: as --m)." };
        var fromBench = new Option<string?>("--from-bench") { Description = "Read `kernels bench --json` lines from this file (- for stdin) instead of running; energy is then estimated from --watts × median time." };
        var model = new Option<string?>("--model") { Description = $"Model-level estimate for a transformer: {string.Join(", ", ModelShapes.All.Select(s => s.Name))}." };
        var context = new Option<int>("--context") { Description = "Context (prompt) length for --model.", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch") { Description = "Batch size (sequences) for --model.", DefaultValueFactory = _ => 1 };
        var run = new Option<bool>("--run") { Description = $"With --model ({string.Join(", ", LlamaConfig.Presets.Select(p => p.Name))}): run the reference decoder end to end on synthetic weights (prefill of --context tokens, then --decode-steps greedy steps) and report it beside the per-op estimate and a peer (llama.cpp) on the same weights." };
        var layers = new Option<int?>("--layers") { Description = "With --run: decoder layers (default: the model's)." };
        var decodeSteps = new Option<int>("--decode-steps") { Description = "With --run: tokens generated after the prompt per measured call.", DefaultValueFactory = _ => 32 };
        var blocks = new Option<int>("--blocks") { Description = "With --run: blocks alternating ours and the peer; medians are reported.", DefaultValueFactory = _ => 3 };
        var peerOption = new Option<string>("--peer") { Description = "With --run: llama.cpp (through LLamaSharp, on a GGUF file with the same Q8_0 weights) or none.", DefaultValueFactory = _ => "llama.cpp" };
        var maxMacs = new Option<long?>("--max-macs") { Description = "Largest GEMM run per model part; bigger ones are measured on a halved proxy and scaled by m·n·k (flagged extrapolated). Default: unlimited on CUDA, 2^18 on the CPU accelerator." };
        var regions = new Option<string>("--regions") { Description = "Comma-separated region ids, or all.", DefaultValueFactory = _ => "all" };
        var profiles = new Option<string?>("--profiles") { Description = "JSON file with your own regions and exchange rates (see docs/energy.md)." };
        var currency = new Option<string>("--currency") { Description = "Currency of every cost (presets are converted with dated rates).", DefaultValueFactory = _ => "USD" };
        var pue = new Option<string?>("--pue") { Description = "Override every region's PUE: a number ≥ 1 or none, hyperscale, modern-colo, china-hub, industry-avg." };
        var hardware = new Option<double?>("--hardware-cost-per-hour") { Description = "Amortized or rented hardware cost per hour, in --currency (adds the hardware part)." };
        var utilization = new Option<double>("--utilization") { Description = "Fraction of paid hours spent on this work (divides the hardware part).", DefaultValueFactory = _ => 1.0 };
        var watts = new Option<double?>("--watts") { Description = "Socket (CPU) or board (GPU) power assumed where no counter is readable (default: 85 W CPU socket, charged by the share of its logical CPUs in use; 300 W GPU); results are labelled estimated (docs/energy.md)." };
        var minWindow = new Option<double?>("--min-window") { Description = "Extend each measured window to at least this many seconds (default: 1 s, or 20 counter update periods if longer)." };
        var raplRoot = new Option<string>("--rapl-root") { Description = "powercap sysfs root.", DefaultValueFactory = _ => RaplEnergySource.DefaultRoot };
        var json = new Option<bool>("--json") { Description = "One JSON object per (region, variant) instead of a table." };
        var plot = new Option<string?>("--plot") { Description = "Write a bar chart of cost per 1M tokens to this .png or .svg file (ScottPlot)." };

        var command = new Command("cost", "Energy, cost and CO2 per 1M tokens across regions and kernel variants.")
        {
            backend, kernel, m, n, k, fromBench, model, context, batch, run, layers, decodeSteps, blocks, peerOption, maxMacs, regions, profiles, currency, pue,
            hardware, utilization, watts, minWindow, raplRoot, json, plot,
        };
        command.SetAction(result =>
        {
            try
            {
                return Run(result);
            }
            catch (Exception ex) when (ex is ArgumentException or BackendUnavailableException or DeviceOutOfMemoryException)
            {
                // System.CommandLine would print a stack trace: report the message and exit 2, like Program.Main does.
                Console.Error.WriteLine($"error: {ex.Message}");
                return 2;
            }
        });
        return command;

        int Run(ParseResult result)
        {
            CostProfiles costProfiles = result.GetValue(profiles) is string path ? CostProfiles.Load(path) : CostProfiles.BuiltIn();
            string cur = result.GetValue(currency)!.Trim().ToUpperInvariant();
            _ = costProfiles.Rates.Get(cur);
            List<RegionProfile> chosen = ChooseRegions(costProfiles, result.GetValue(regions)!);
            double? pueValue = ParsePue(result.GetValue(pue));
            double? hw = result.GetValue(hardware);
            if (hw is double h && (!double.IsFinite(h) || h < 0))
                throw new ArgumentException($"--hardware-cost-per-hour: expected a finite value ≥ 0, got {h}.", "--hardware-cost-per-hour");
            double? w = result.GetValue(watts);
            if (w is double ww && (!double.IsFinite(ww) || ww <= 0))
                throw new ArgumentException($"--watts: expected a finite value > 0, got {ww}.", "--watts");
            string? plotPath = result.GetValue(plot);
            if (plotPath is not null && !plotPath.EndsWith(".svg", StringComparison.OrdinalIgnoreCase)
                && !plotPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"--plot: expected a path ending in .png or .svg, got '{plotPath}'.", "--plot");
            // Every output path is checked before the measurement, not after it.
            if (plotPath is not null && Path.GetDirectoryName(Path.GetFullPath(plotPath)) is { } folder && !Directory.Exists(folder))
                throw new ArgumentException($"--plot: expected a path in an existing folder, got '{plotPath}' ({folder} does not exist).", "--plot");

            List<Variant> variants;
            if (result.GetValue(fromBench) is string benchPath)
            {
                variants = FromBench(benchPath, w);
            }
            else
            {
                var options = new EnergyMeterOptions { MinWindowSeconds = result.GetValue(minWindow) };
                using KernelSession session = KernelSession.Create(BackendNames.Parse(result.GetValue(backend)!, "--backend"));
                using EnergyMeter meter = EnergyMeter.ForSession(session, options, w, result.GetValue(raplRoot)!);
                List<GemmKernel> kernels = Kernels(session, result.GetValue(kernel)!);
                if (result.GetValue(run))
                {
                    string name = result.GetValue(model) ?? throw Bad("--run", "--run: expected --model NAME too, got none.");
                    var spec = new RunSpec(LlamaConfig.Get(name), result.GetValue(layers), result.GetValue(context), result.GetValue(decodeSteps),
                        result.GetValue(blocks), result.GetValue(peerOption)!, result.GetValue(maxMacs) ?? DefaultMaxMacs(session.Backend));
                    variants = ModelRun.Variants(session, meter, spec);
                }
                else if (result.GetValue(model) is string modelName)
                {
                    TransformerShape shape = ModelShapes.Get(modelName);
                    variants = Model(session, meter, shape, kernels, result.GetValue(batch), result.GetValue(context),
                        result.GetValue(maxMacs) ?? DefaultMaxMacs(session.Backend));
                }
                else
                {
                    int size = DefaultSize(session.Backend);
                    int mm = result.GetValue(m) ?? size, nn = result.GetValue(n) ?? mm, kk = result.GetValue(k) ?? mm;
                    variants = Gemm(session, meter, kernels, mm, nn, kk);
                }
            }

            List<CostRow> rows = Rows(variants, chosen, costProfiles.Rates, cur, pueValue, hw, result.GetValue(utilization));
            if (result.GetValue(json))
            {
                foreach (CostRow row in rows)
                    Console.WriteLine(JsonSerializer.Serialize(row, Program.Json));
            }
            else
            {
                PrintTable(rows, variants, cur);
            }
            if (plotPath is not null)
            {
                Plot(rows, cur, plotPath);
                if (!result.GetValue(json))
                    Console.WriteLine($"plot written to {plotPath}");
            }
            return 0;
        }
    }

    /// <summary>What was measured (or estimated) for one kernel variant (and phase).</summary>
    internal sealed record Variant(
        string Name,
        string Backend,
        string Device,
        double JoulesPerToken,
        double RelativeUncertainty,
        double TokensPerSecond,
        string EnergySource,
        string EnergyBoundary,
        string SourceDescription,
        IReadOnlyList<string> Flags,
        string? Phase = null,
        string? Attention = null,
        bool? Extrapolated = null,
        string? Shape = null);

    /// <summary>One (region, variant) result, as printed with <c>--json</c>.</summary>
    internal sealed record CostRow(
        string Region,
        string RegionName,
        string Variant,
        string? Phase,
        double JoulesPerToken,
        double TokensPerJoule,
        double TokensPerSecond,
        double KwhPerMillionTokens,
        double FacilityKwhPerMillionTokens,
        double EnergyCostPerMillionTokens,
        double? HardwareCostPerMillionTokens,
        double CostPerMillionTokens,
        string Currency,
        double Co2GramsPerMillionTokens,
        string EnergySource,
        string EnergyBoundary,
        double Uncertainty,
        IReadOnlyList<string> Flags,
        double Pue,
        double PricePerKwh,
        double PricePerKwhNative,
        string PriceCurrency,
        string PriceDate,
        string PriceSource,
        string PriceConfidence,
        double CarbonGramsPerKwh,
        string CarbonDate,
        string CarbonSource,
        string? ExchangeRateDate,
        string Backend,
        string Device,
        string SourceDescription,
        string? Attention,
        bool? Extrapolated,
        string? Shape);

    private static List<RegionProfile> ChooseRegions(CostProfiles profiles, string list)
    {
        if (string.IsNullOrWhiteSpace(list) || list.Trim().Equals("all", StringComparison.OrdinalIgnoreCase))
            return [.. profiles.Regions];
        return list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(profiles.Region).ToList();
    }

    private static double? ParsePue(string? value)
    {
        if (value is null)
            return null;
        double pue = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : Presets.Pue(value).Value;
        if (!double.IsFinite(pue) || pue < 1)
            throw Bad("--pue", $"--pue: expected a finite value ≥ 1 (facility power ÷ IT power), got {value}.");
        return pue;
    }

    private static List<GemmKernel> Kernels(KernelSession session, string value)
    {
        if (value.Trim().Equals("all", StringComparison.OrdinalIgnoreCase))
        {
            return session.ComparedGemmKernels.Select(session.ResolveKernel).Distinct().ToList();
        }
        return Enum.TryParse(value, ignoreCase: true, out GemmKernel parsed) && Enum.IsDefined(parsed)
            ? [session.ResolveKernel(parsed)]
            : throw Bad("--kernel", $"--kernel: expected all, auto, reference, tiled, dp4a or simd; got '{value}'.");
    }

    internal static ArgumentException Bad(string option, string message, Exception? inner = null) => new(message, option, inner);

    internal static string Lower(GemmKernel kernel) => kernel.ToString().ToLowerInvariant();

    internal static List<string> FlagNames(EnergyIssues issues) =>
        Enum.GetValues<EnergyIssues>().Where(f => f != EnergyIssues.None && issues.HasFlag(f)).Select(f => f.ToString()).ToList();

    private static List<Variant> Gemm(KernelSession session, EnergyMeter meter, List<GemmKernel> kernels, int m, int n, int k)
    {
        var random = new Random(1234);
        sbyte[] a = GemmBenchmark.RandomInt8(random, (long)m * k);
        sbyte[] b = GemmBenchmark.RandomInt8(random, (long)n * k);
        using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
        using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
        using DeviceBuffer<int> dc = session.Allocate<int>((long)m * n);
        var variants = new List<Variant>();
        foreach (GemmKernel kernel in kernels)
        {
            EnergyMeasurement e = CliProgress.Step($"energy of int8-gemm {Lower(kernel)} {m}×{n}×{k} on {session.Backend.ToName()}",
                () => meter.Measure(() => session.Int8Gemm(da, db, dc, m, n, k, kernel), m));
            variants.Add(new Variant($"{Lower(kernel)} {m}×{n}×{k}", session.Backend.ToName(), session.DeviceName,
                e.JoulesPerToken, e.RelativeUncertainty, e.TokensPerSecond, EnergySource.NameOf(e.Source),
                e.Boundary.ToString(), e.SourceDescription, FlagNames(e.Flags), Shape: $"{m}x{n}x{k}"));
        }
        return variants;
    }

    private static List<Variant> Model(KernelSession session, EnergyMeter meter, TransformerShape shape, List<GemmKernel> kernels, int batch, int context, long maxMacs)
    {
        var variants = new List<Variant>();
        foreach (GemmKernel kernel in kernels)
        {
            foreach (InferencePhase phase in new[] { InferencePhase.Prefill, InferencePhase.Decode })
            {
                ModelPhaseEnergy e = CliProgress.Step($"energy of {shape.Name} {phase.ToString().ToLowerInvariant()} ({Lower(kernel)}) on {session.Backend.ToName()}",
                    () => ModelEnergy.Measure(session, meter, shape, phase, batch, context, kernel, maxMacs));
                EnergyIssues issues = e.Gemms.Aggregate(EnergyIssues.None, (acc, g) => acc | g.Measurement.Flags);
                EnergyMeasurement first = e.Gemms[0].Measurement;
                string phaseName = phase.ToString().ToLowerInvariant();
                variants.Add(new Variant($"{shape.Name} {phaseName} b{batch} ctx{context} {Lower(kernel)}", session.Backend.ToName(), session.DeviceName,
                    e.JoulesPerToken, e.RelativeUncertainty, e.TokensPerSecond, EnergySource.NameOf(first.Source), first.Boundary.ToString(),
                    first.SourceDescription + (e.Extrapolated ? "; weight GEMMs extrapolated from smaller proxies by m·n·k: "
                        + string.Join(", ", e.Gemms.Append(e.HeadPart).OfType<GemmEnergy>().Where(g => g.Extrapolated).Select(g => $"{g.Gemm.Name} {g.Gemm.M}x{g.Gemm.N}x{g.Gemm.K} from {g.Measured.M}x{g.Measured.N}x{g.Measured.K}")) : ""),
                    FlagNames(issues), phaseName, e.Attention, e.Extrapolated,
                    string.Join(" ", e.Gemms.Select(g => $"{g.Gemm.Name}:{g.Gemm.M}x{g.Gemm.N}x{g.Gemm.K}")) + $" ×{shape.Layers} layers"
                        + (e.HeadPart is { } head ? $" + {head.Gemm.Name}:{head.Gemm.M}x{head.Gemm.N}x{head.Gemm.K}" : "")));
            }
        }
        return variants;
    }

    private static List<Variant> FromBench(string path, double? watts)
    {
        string text = path == "-" ? Console.In.ReadToEnd()
            : File.Exists(path) ? File.ReadAllText(path)
            : throw Bad("--from-bench", $"--from-bench: expected an existing file or -, got '{path}' (not found).");
        var variants = new List<Variant>();
        int line = 0;
        foreach (string raw in text.Split('\n'))
        {
            line++;
            if (string.IsNullOrWhiteSpace(raw))
                continue;
            BenchResult? r;
            try
            {
                r = JsonSerializer.Deserialize<BenchResult>(raw, Program.Json);
            }
            catch (JsonException ex)
            {
                throw Bad("--from-bench", $"--from-bench: line {line}: expected a `kernels bench --json` object, got invalid JSON: {ex.Message}", ex);
            }
            if (r is null || r.M < 1 || !(r.MedianMs > 0))
                throw Bad("--from-bench", $"--from-bench: line {line}: expected m ≥ 1 and median_ms > 0, got m={r?.M}, median_ms={r?.MedianMs}.");
            variants.Add(EstimateFromBench(r, watts));
        }
        if (variants.Count == 0)
            throw Bad("--from-bench", $"--from-bench: expected at least one result line, got none in '{path}'.");
        return variants;
    }

    /// <summary>
    /// The energy estimate of one int8 GEMM bench result (a token = one activation row, m): the same model as a run
    /// here (<see cref="EstimatedEnergySource.For"/>), so both figures are comparable: on the CPU, watts per busy CPU ×
    /// the process CPU time of one call (cpu_ms_per_call), else watts × the median. Used by <c>cost --from-bench</c>
    /// and by <c>kernels report</c>.
    /// </summary>
    internal static Variant EstimateFromBench(BenchResult r, double? watts)
    {
        ArgumentNullException.ThrowIfNull(r);
        Backend backend = BackendNames.Parse(r.Backend, "backend");
        EstimatedEnergySource estimate = EstimatedEnergySource.For(backend, watts, "bench results carry no energy");
        double seconds = r.MedianMs / 1000;
        bool byCpu = estimate.WattsPerCpuSecond is not null && r.CpuMsPerCall is > 0;
        double joules = byCpu ? estimate.WattsPerCpuSecond!.Value * r.CpuMsPerCall!.Value / 1000 : estimate.Watts * seconds;
        string how = byCpu ? $"{estimate.WattsPerCpuSecond:G4} W per busy CPU × {r.CpuMsPerCall:G4} CPU-ms per call"
            : estimate.WattsPerCpuSecond is not null ? $"{estimate.Watts:G4} W (every CPU of the process; the bench line has no cpu_ms_per_call) × bench median {r.MedianMs:G4} ms"
            : $"{estimate.Watts:G4} W × bench median {r.MedianMs:G4} ms";
        return new Variant($"{r.Kernel} {r.M}×{r.N}×{r.K} ({r.Backend})", r.Backend, r.Device, joules / r.M,
            estimate.ModelRelativeUncertainty, r.M / seconds,
            EnergySource.NameOf(EnergySourceKind.Estimated), EnergyBoundary.Modelled.ToString(),
            $"estimated: {estimate.Model}; here {how}, ±{estimate.ModelRelativeUncertainty:P0} ({estimate.Reason})",
            [nameof(EnergyIssues.Estimated)], Shape: $"{r.M}x{r.N}x{r.K}");
    }

    internal static List<CostRow> Rows(List<Variant> variants, List<RegionProfile> regions, ExchangeRates rates, string currency,
        double? pue, double? hardware, double utilization)
    {
        var rows = new List<CostRow>();
        foreach (RegionProfile region in regions)
        {
            CostInputs inputs = CostModel.InputsFor(region, currency, rates, pue, hardware, utilization);
            ExchangeRate fxFrom = rates.Get(region.Currency), fxTo = rates.Get(currency);
            string? fxDate = region.Currency.Equals(currency, StringComparison.OrdinalIgnoreCase) ? null
                : string.Join(" / ", new[] { fxFrom, fxTo }.Where(r => r.Currency != "USD").Select(r => $"{r.Currency} {r.UnitsPerUsd}/USD ({r.Date}, {r.Confidence.ToString().ToLowerInvariant()})"));
            foreach (Variant v in variants)
            {
                CostBreakdown c = CostModel.PerMillionTokens(v.JoulesPerToken, inputs, v.TokensPerSecond > 0 && double.IsFinite(v.TokensPerSecond) ? v.TokensPerSecond : null);
                rows.Add(new CostRow(region.Id, region.Name, v.Name, v.Phase, v.JoulesPerToken, 1 / v.JoulesPerToken, v.TokensPerSecond,
                    c.KwhPerMillionTokens, c.FacilityKwhPerMillionTokens, c.EnergyCostPerMillionTokens, c.HardwareCostPerMillionTokens,
                    c.CostPerMillionTokens, c.Currency, c.Co2GramsPerMillionTokens, v.EnergySource, v.EnergyBoundary, v.RelativeUncertainty, v.Flags,
                    inputs.Pue, inputs.PricePerKwh, region.PricePerKwh.Value, region.Currency, region.PricePerKwh.Date, region.PricePerKwh.Source,
                    region.PricePerKwh.Confidence.ToString().ToLowerInvariant(), region.CarbonGramsPerKwh.Value, region.CarbonGramsPerKwh.Date,
                    region.CarbonGramsPerKwh.Source, fxDate, v.Backend, v.Device, v.SourceDescription, v.Attention, v.Extrapolated, v.Shape));
            }
        }
        return rows;
    }

    private static string Num(double value) => value == 0 ? "0" : Math.Abs(value) >= 0.01 && Math.Abs(value) < 1e6 ? value.ToString("0.####", CultureInfo.InvariantCulture) : value.ToString("0.###e0", CultureInfo.InvariantCulture);

    private static void PrintTable(List<CostRow> rows, List<Variant> variants, string currency)
    {
        foreach (Variant v in variants)
        {
            string flags = v.Flags.Count == 0 ? "" : $" [{string.Join(", ", v.Flags)}]";
            AnsiConsole.MarkupLine(Markup.Escape($"{v.Name}: {Num(v.JoulesPerToken)} J/token ±{v.RelativeUncertainty:P0}, {Num(v.TokensPerSecond)} tokens/s on {v.Device} ({v.Backend}); energy {v.EnergySource} ({v.EnergyBoundary}): {v.SourceDescription}{flags}"));
            if (v.Attention is not null)
                AnsiConsole.MarkupLine(Markup.Escape($"  attention: {v.Attention}"));
        }
        var table = new Table().AddColumns("region", "variant", "J/token", "kWh/1M", $"energy {currency}/1M", $"hw {currency}/1M", $"total {currency}/1M", "gCO2/1M", "PUE", "price/kWh (date)");
        foreach (CostRow r in rows)
        {
            table.AddRow(
                Markup.Escape(r.Region), Markup.Escape(r.Variant), Num(r.JoulesPerToken), Num(r.KwhPerMillionTokens), Num(r.EnergyCostPerMillionTokens),
                r.HardwareCostPerMillionTokens is double h ? Num(h) : "-", Num(r.CostPerMillionTokens), Num(r.Co2GramsPerMillionTokens), r.Pue.ToString("0.##", CultureInfo.InvariantCulture),
                Markup.Escape($"{Num(r.PricePerKwhNative)} {r.PriceCurrency} ({r.PriceDate})"));
        }
        AnsiConsole.Write(table);
        foreach (string line in ModelRun.Summary(variants))
            AnsiConsole.MarkupLine(Markup.Escape(line));
        if (rows.Any(r => r.EnergySource == "estimated"))
            AnsiConsole.MarkupLine("[yellow]energy is ESTIMATED (no readable energy counter): modelled watts × busy time (see the source line above and docs/energy.md); not a measurement.[/]");
    }

    /// <summary>
    /// A horizontal bar chart of total cost per 1M tokens, one bar per (region, variant), coloured by variant,
    /// each with an error bar of ± the energy part × the energy figure's relative uncertainty (an estimate is ±50 %),
    /// drawn with ScottPlot and saved as PNG or SVG (by the file's extension).
    /// </summary>
    internal static void Plot(List<CostRow> rows, string currency, string path)
    {
        var plot = new ScottPlot.Plot();
        var variants = rows.Select(r => r.Variant).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = rows.Select((r, i) => new ScottPlot.Bar
        {
            Position = i,
            Value = r.CostPerMillionTokens,
            FillColor = palette.GetColor(variants.IndexOf(r.Variant)),
            // The energy part carries the energy figure's uncertainty (±50 % for an estimate); the hardware part is given.
            Error = r.EnergyCostPerMillionTokens * r.Uncertainty,
            Label = r.Uncertainty > 0 ? $"{Num(r.CostPerMillionTokens)} ±{Num(r.EnergyCostPerMillionTokens * r.Uncertainty)}" : Num(r.CostPerMillionTokens),
        }).ToList();
        ScottPlot.Plottables.BarPlot barPlot = plot.Add.Bars(bars);
        barPlot.Horizontal = true;
        barPlot.ValueLabelStyle.FontSize = 11;
        plot.Axes.Left.SetTicks(
            Enumerable.Range(0, rows.Count).Select(i => (double)i).ToArray(),
            rows.Select(r => $"{r.Region} · {r.Variant}").ToArray());
        plot.Axes.Margins(left: 0, right: 0.15);
        string sources = string.Join(", ", rows.Select(r => r.EnergySource).Distinct());
        plot.Title($"Cost per 1M tokens ({currency}); energy: {sources}; error bars: the energy figure's uncertainty");
        plot.XLabel($"{currency} per 1M tokens");
        int height = Math.Max(240, 60 + rows.Count * 26);
        if (path.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
            plot.SavePng(path, 1000, height);
        else
            plot.SaveSvg(path, 1000, height);
    }

}
