namespace Kernels.Energy;

/// <summary>A value with when it held, where it came from and how far it was checked.</summary>
/// <param name="Value">The number.</param>
/// <param name="Date">When it held (e.g. "2024", "H1 2024", "2015-03").</param>
/// <param name="Source">Where it comes from.</param>
/// <param name="Confidence">How far it was checked.</param>
/// <param name="Note">Caveats, if any.</param>
public sealed record DatedValue(double Value, string Date, string Source, Confidence Confidence, string? Note = null);

/// <summary>A site's electricity: price per kWh in its own currency, grid carbon intensity, PUE, optional hardware cost.</summary>
/// <param name="Id">Short id used on the command line (e.g. <c>de</c>, <c>cn-ningxia</c>).</param>
/// <param name="Name">Human name.</param>
/// <param name="Currency">ISO code of <paramref name="PricePerKwh"/> (and of <paramref name="HardwareCostPerHour"/>).</param>
/// <param name="PricePerKwh">Electricity price per kWh.</param>
/// <param name="CarbonGramsPerKwh">Location-based grid carbon intensity, gCO2/kWh.</param>
/// <param name="Pue">Power usage effectiveness of the facility (≥ 1).</param>
/// <param name="HardwareCostPerHour">Amortized or rented hardware cost per hour, in <paramref name="Currency"/>; null when not costed.</param>
public sealed record RegionProfile(
    string Id,
    string Name,
    string Currency,
    DatedValue PricePerKwh,
    DatedValue CarbonGramsPerKwh,
    DatedValue Pue,
    double? HardwareCostPerHour = null);

/// <summary>An exchange rate: how many units of <paramref name="Currency"/> one US dollar buys, dated.</summary>
public sealed record ExchangeRate(string Currency, double UnitsPerUsd, string Date, string Source, Confidence Confidence);

/// <summary>The inputs of one cost computation, all in one currency.</summary>
/// <param name="PricePerKwh">Electricity price per kWh (finite, ≥ 0).</param>
/// <param name="Currency">ISO code of the prices.</param>
/// <param name="Pue">Facility power ÷ IT power (finite, ≥ 1).</param>
/// <param name="CarbonGramsPerKwh">Grid carbon intensity (finite, ≥ 0).</param>
/// <param name="HardwareCostPerHour">Hardware cost per hour (finite, ≥ 0; 0 when not costed).</param>
/// <param name="Utilization">Fraction of paid hours doing this work (0 &lt; u ≤ 1); divides the hardware part.</param>
/// <param name="NodeFactor">k_node ≥ 1: widens a GPU- or package-only measurement to the node (NIC, fans, PSU loss); 1 by default.</param>
public sealed record CostInputs(
    double PricePerKwh,
    string Currency,
    double Pue,
    double CarbonGramsPerKwh,
    double HardwareCostPerHour = 0,
    double Utilization = 1,
    double NodeFactor = 1);

/// <summary>Cost, energy and carbon per million tokens.</summary>
/// <param name="JoulesPerToken">The input energy per token (at the measurement's boundary).</param>
/// <param name="KwhPerMillionTokens">Energy per 1M tokens at the measurement's boundary (× k_node), before PUE.</param>
/// <param name="FacilityKwhPerMillionTokens">The same × PUE: what the site draws from the grid.</param>
/// <param name="EnergyCostPerMillionTokens">Electricity cost per 1M tokens (facility energy × price).</param>
/// <param name="HardwareCostPerMillionTokens">Hardware cost per 1M tokens (hourly cost ÷ tokens per hour ÷ utilization); null when no throughput or no hardware cost was given.</param>
/// <param name="CostPerMillionTokens">Energy part + hardware part.</param>
/// <param name="Currency">Currency of the costs.</param>
/// <param name="Co2GramsPerMillionTokens">gCO2 per 1M tokens (facility energy × carbon intensity).</param>
public sealed record CostBreakdown(
    double JoulesPerToken,
    double KwhPerMillionTokens,
    double FacilityKwhPerMillionTokens,
    double EnergyCostPerMillionTokens,
    double? HardwareCostPerMillionTokens,
    double CostPerMillionTokens,
    string Currency,
    double Co2GramsPerMillionTokens);

/// <summary>
/// The cost arithmetic: kWh/1M tokens = J/token × 10⁶ ÷ 3.6·10⁶ (× k_node); energy cost = kWh × PUE × price;
/// CO2 = kWh × PUE × carbon intensity; hardware cost = cost per hour ÷ (tokens/s × 3600) × 10⁶ ÷ utilization.
/// </summary>
public static class CostModel
{
    /// <summary>Joules in one kWh.</summary>
    public const double JoulesPerKwh = 3.6e6;

    /// <summary>Cost per million tokens for <paramref name="joulesPerToken"/> (and, for the hardware part, <paramref name="tokensPerSecond"/>).</summary>
    /// <exception cref="ArgumentException">An input is negative, not finite, or out of range (the message names it, what was expected and what came).</exception>
    public static CostBreakdown PerMillionTokens(double joulesPerToken, CostInputs inputs, double? tokensPerSecond = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        NonNegative(joulesPerToken, nameof(joulesPerToken));
        Validate(inputs);
        if (tokensPerSecond is double tps && (!double.IsFinite(tps) || tps <= 0))
            throw new ArgumentOutOfRangeException(nameof(tokensPerSecond), tps, $"{nameof(tokensPerSecond)}: expected a finite value > 0, got {tps}.");

        double kwh = joulesPerToken * 1e6 / JoulesPerKwh * inputs.NodeFactor;
        double facility = kwh * inputs.Pue;
        double energyCost = facility * inputs.PricePerKwh;
        double? hardware = tokensPerSecond is double r && inputs.HardwareCostPerHour > 0
            ? inputs.HardwareCostPerHour / (r * 3600) * 1e6 / inputs.Utilization
            : null;
        var result = new CostBreakdown(joulesPerToken, kwh, facility, energyCost, hardware, energyCost + (hardware ?? 0),
            inputs.Currency, facility * inputs.CarbonGramsPerKwh);
        if (!double.IsFinite(result.CostPerMillionTokens) || !double.IsFinite(result.Co2GramsPerMillionTokens))
            throw new ArgumentException(
                $"joulesPerToken: {joulesPerToken} J/token with these inputs gives a cost or CO2 that is not a finite number ({result.CostPerMillionTokens} {inputs.Currency}, {result.Co2GramsPerMillionTokens} g per 1M tokens).",
                nameof(joulesPerToken));
        return result;
    }

    /// <summary>
    /// The inputs for a region in <paramref name="currency"/>: its price (and hardware cost) converted with
    /// <paramref name="rates"/>; <paramref name="pueOverride"/> and <paramref name="hardwareCostPerHour"/> (in
    /// <paramref name="currency"/>) replace the region's own values when given.
    /// </summary>
    public static CostInputs InputsFor(RegionProfile region, string currency, ExchangeRates rates,
        double? pueOverride = null, double? hardwareCostPerHour = null, double utilization = 1, double nodeFactor = 1)
    {
        ArgumentNullException.ThrowIfNull(region);
        ArgumentNullException.ThrowIfNull(rates);
        double factor = rates.Convert(1, region.Currency, currency);
        double hardware = hardwareCostPerHour ?? (region.HardwareCostPerHour is double h ? h * factor : 0);
        var inputs = new CostInputs(region.PricePerKwh.Value * factor, currency.ToUpperInvariant(), pueOverride ?? region.Pue.Value,
            region.CarbonGramsPerKwh.Value, hardware, utilization, nodeFactor);
        Validate(inputs);
        return inputs;
    }

    /// <summary>Checks every input; throws an <see cref="ArgumentException"/> naming the first bad one.</summary>
    public static void Validate(CostInputs inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        // Upper bounds far above any real value, so that no finite energy figure can make a cost overflow.
        NonNegative(inputs.PricePerKwh, "pricePerKwh", MaxPricePerKwh);
        if (!double.IsFinite(inputs.Pue) || inputs.Pue < 1 || inputs.Pue > MaxPue)
            throw OutOfRange("pue", inputs.Pue, $"pue: expected a finite value in [1, {MaxPue}] (facility power ÷ IT power), got {inputs.Pue}.");
        NonNegative(inputs.CarbonGramsPerKwh, "carbonGramsPerKwh", MaxCarbonGramsPerKwh);
        NonNegative(inputs.HardwareCostPerHour, "hardwareCostPerHour", MaxHardwareCostPerHour);
        if (!double.IsFinite(inputs.Utilization) || inputs.Utilization <= 0 || inputs.Utilization > 1)
            throw OutOfRange("utilization", inputs.Utilization, $"utilization: expected a value in (0, 1], got {inputs.Utilization}.");
        if (!double.IsFinite(inputs.NodeFactor) || inputs.NodeFactor < 1 || inputs.NodeFactor > MaxNodeFactor)
            throw OutOfRange("nodeFactor", inputs.NodeFactor, $"nodeFactor: expected a finite value in [1, {MaxNodeFactor}], got {inputs.NodeFactor}.");
        if (string.IsNullOrWhiteSpace(inputs.Currency))
            throw Invalid("currency", $"currency: expected an ISO currency code, got '{inputs.Currency}'.");
    }

    internal static ArgumentOutOfRangeException OutOfRange(string name, object value, string message) => new(name, value, message);

    internal static ArgumentException Invalid(string name, string message) => new(message, name);

    /// <summary>The largest price per kWh accepted, in any currency (real prices are below 10³ even in the smallest units).</summary>
    public const double MaxPricePerKwh = 1e6;

    /// <summary>The largest grid carbon intensity accepted, g/kWh (coal is about 10³).</summary>
    public const double MaxCarbonGramsPerKwh = 1e5;

    /// <summary>The largest PUE accepted (real facilities are below 3).</summary>
    public const double MaxPue = 100;

    /// <summary>The largest hardware cost per hour accepted, in any currency.</summary>
    public const double MaxHardwareCostPerHour = 1e9;

    /// <summary>The largest node factor accepted.</summary>
    public const double MaxNodeFactor = 1e6;

    internal static void NonNegative(double value, string name, double max = double.MaxValue)
    {
        if (!double.IsFinite(value) || value < 0 || value > max)
            throw new ArgumentOutOfRangeException(name, value,
                max == double.MaxValue ? $"{name}: expected a finite value ≥ 0, got {value}." : $"{name}: expected a finite value in [0, {max}], got {value}.");
    }
}

/// <summary>Dated exchange rates against the US dollar.</summary>
public sealed class ExchangeRates
{
    private readonly Dictionary<string, ExchangeRate> _rates = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Rates from <paramref name="rates"/> (USD = 1 is always present).</summary>
    public ExchangeRates(IEnumerable<ExchangeRate> rates)
    {
        ArgumentNullException.ThrowIfNull(rates);
        _rates["USD"] = new ExchangeRate("USD", 1, "-", "identity", Confidence.Verified);
        foreach (ExchangeRate r in rates)
            Add(r);
    }

    /// <summary>The rates known.</summary>
    public IReadOnlyCollection<ExchangeRate> All => _rates.Values;

    /// <summary>Adds or replaces a rate.</summary>
    /// <exception cref="ArgumentException">No currency code, a rate that is not finite and in (0, 10⁹], or a USD rate other than 1 (USD is the base).</exception>
    public void Add(ExchangeRate rate)
    {
        ArgumentNullException.ThrowIfNull(rate);
        if (string.IsNullOrWhiteSpace(rate.Currency))
            throw new ArgumentException($"rate.Currency: expected an ISO currency code, got '{rate.Currency}'.", nameof(rate));
        if (!double.IsFinite(rate.UnitsPerUsd) || rate.UnitsPerUsd <= 0 || rate.UnitsPerUsd > MaxUnitsPerUsd)
            throw new ArgumentOutOfRangeException(nameof(rate), rate.UnitsPerUsd, $"rate.UnitsPerUsd ({rate.Currency}): expected a finite value in (0, {MaxUnitsPerUsd}], got {rate.UnitsPerUsd}.");
        if (string.Equals(rate.Currency.Trim(), "USD", StringComparison.OrdinalIgnoreCase) && rate.UnitsPerUsd != 1)
            throw new ArgumentOutOfRangeException(nameof(rate), rate.UnitsPerUsd, $"rate.UnitsPerUsd (USD): expected 1 (USD is the base of every rate), got {rate.UnitsPerUsd}.");
        _rates[rate.Currency.Trim()] = rate;
    }

    /// <summary>The largest units per US dollar accepted.</summary>
    public const double MaxUnitsPerUsd = 1e9;

    /// <summary>The rate of <paramref name="currency"/>, or an error listing the known ones.</summary>
    public ExchangeRate Get(string currency)
    {
        ArgumentNullException.ThrowIfNull(currency);
        return _rates.TryGetValue(currency.Trim(), out ExchangeRate? r)
            ? r
            : throw new ArgumentException($"currency: expected one of {string.Join(", ", _rates.Keys.Order(StringComparer.Ordinal))}, got '{currency}'.", nameof(currency));
    }

    /// <summary>Converts <paramref name="amount"/> from one currency to another through USD.</summary>
    public double Convert(double amount, string from, string to) => amount / Get(from).UnitsPerUsd * Get(to).UnitsPerUsd;
}
