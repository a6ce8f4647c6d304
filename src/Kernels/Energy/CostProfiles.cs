using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kernels.Energy;

/// <summary>
/// Regions and exchange rates: the built-in presets plus the user's own from a JSON file:
/// <code>
/// {
///   "regions": [
///     { "id": "my-dc", "name": "Our Frankfurt racks", "currency": "EUR",
///       "price_per_kwh": 0.14, "price_date": "2026-01", "price_source": "supply contract",
///       "carbon_g_per_kwh": 381, "carbon_date": "2023", "carbon_source": "OWID",
///       "pue": 1.3, "pue_source": "facility report 2025", "hardware_cost_per_hour": 1.9,
///       "confidence": "verified" }
///   ],
///   "exchange_rates": [ { "currency": "GBP", "units_per_usd": 0.79, "date": "2026-01", "source": "ECB" } ]
/// }
/// </code>
/// Price, carbon and PUE need a date and a source, like the presets. A region with a preset's id replaces it.
/// </summary>
public sealed class CostProfiles
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    private readonly List<RegionProfile> _regions;

    private CostProfiles(List<RegionProfile> regions, ExchangeRates rates)
    {
        _regions = regions;
        Rates = rates;
    }

    /// <summary>The built-in presets only.</summary>
    public static CostProfiles BuiltIn() => new([.. Presets.Regions], new ExchangeRates(Presets.ExchangeRates));

    /// <summary>The presets plus the regions and rates of the JSON file at <paramref name="path"/>.</summary>
    /// <exception cref="ArgumentException">The file is missing, not valid JSON, or a region lacks a field or has an invalid value.</exception>
    public static CostProfiles Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
            throw new ArgumentException($"profiles: expected an existing JSON file, got '{path}' (not found).", nameof(path));
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>The presets plus the regions and rates of <paramref name="json"/>; <paramref name="origin"/> names it in errors.</summary>
    public static CostProfiles Parse(string json, string origin = "profiles")
    {
        ProfileFile? file;
        try
        {
            file = JsonSerializer.Deserialize<ProfileFile>(json, Json);
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"{origin}: expected a JSON object with 'regions' and/or 'exchange_rates', got invalid JSON: {ex.Message}", nameof(json), ex);
        }
        CostProfiles profiles = BuiltIn();
        List<RateEntry?> rates = file?.ExchangeRates ?? [];
        List<RegionEntry?> regions = file?.Regions ?? [];
        Distinct(rates.Select(r => r?.Currency), "exchange_rates", "currency", origin);
        Distinct(regions.Select(r => r?.Id), "regions", "id", origin);
        for (int i = 0; i < rates.Count; i++)
        {
            RateEntry r = rates[i] ?? throw NullEntry($"exchange_rates[{i}]", origin);
            string cur = Required(r.Currency, $"exchange_rates[{i}].currency", origin);
            profiles.Rates.Add(new ExchangeRate(cur.ToUpperInvariant(), r.UnitsPerUsd ?? double.NaN,
                Required(r.Date, $"exchange_rates[{cur}].date", origin), Required(r.Source, $"exchange_rates[{cur}].source", origin),
                r.Confidence ?? Confidence.Unverified));
        }
        for (int i = 0; i < regions.Count; i++)
        {
            RegionEntry e = regions[i] ?? throw NullEntry($"regions[{i}]", origin);
            string id = Required(e.Id, $"regions[{i}].id", origin);
            string field(string name) => $"regions[{id}].{name}";
            Confidence confidence = e.Confidence ?? Confidence.Unverified;
            var region = new RegionProfile(
                id,
                e.Name ?? id,
                Required(e.Currency, field("currency"), origin).ToUpperInvariant(),
                new DatedValue(e.PricePerKwh ?? throw Missing(field("price_per_kwh"), origin), Required(e.PriceDate, field("price_date"), origin), Required(e.PriceSource, field("price_source"), origin), confidence),
                new DatedValue(e.CarbonGPerKwh ?? throw Missing(field("carbon_g_per_kwh"), origin), Required(e.CarbonDate, field("carbon_date"), origin), Required(e.CarbonSource, field("carbon_source"), origin), confidence),
                e.Pue is double pue ? new DatedValue(pue, e.PueDate ?? "-", e.PueSource ?? "user profile", confidence) : Presets.Pue("industry-avg"),
                e.HardwareCostPerHour);
            // Validate now, with the region named, rather than at costing time.
            _ = profiles.Rates.Get(region.Currency);
            CostModel.Validate(new CostInputs(region.PricePerKwh.Value, region.Currency, region.Pue.Value, region.CarbonGramsPerKwh.Value, region.HardwareCostPerHour ?? 0));
            profiles._regions.RemoveAll(r => string.Equals(r.Id, id, StringComparison.OrdinalIgnoreCase));
            profiles._regions.Add(region);
        }
        return profiles;
    }

    /// <summary>Every region, presets first.</summary>
    public IReadOnlyList<RegionProfile> Regions => _regions;

    /// <summary>The exchange rates.</summary>
    public ExchangeRates Rates { get; }

    /// <summary>The region with id <paramref name="region"/> (case-insensitive), or an error listing the known ids.</summary>
    public RegionProfile Region(string region)
    {
        ArgumentNullException.ThrowIfNull(region);
        return _regions.FirstOrDefault(r => string.Equals(r.Id, region.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"region: expected one of {string.Join(", ", _regions.Select(r => r.Id))}, got '{region}'.", nameof(region));
    }

    private static string Required(string? value, string field, string origin) =>
        string.IsNullOrWhiteSpace(value) ? throw Missing(field, origin) : value;

    private static ArgumentException NullEntry(string field, string origin) =>
        new($"{origin}: {field}: expected an object, got null.", field);

    /// <summary>No two entries of a list share a key (case-insensitive): a file that names a region twice is refused, not resolved silently.</summary>
    private static void Distinct(IEnumerable<string?> keys, string list, string key, string origin)
    {
        var seen = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        int i = 0;
        foreach (string? k in keys)
        {
            if (!string.IsNullOrWhiteSpace(k) && !seen.TryAdd(k.Trim(), i))
                throw new ArgumentException($"{origin}: {list}[{i}].{key}: expected each {key} once, got '{k}' again (first at {list}[{seen[k.Trim()]}]).", $"{list}[{i}].{key}");
            i++;
        }
    }

    private static ArgumentException Missing(string field, string origin) =>
        new($"{origin}: {field}: expected a value (presets and profiles carry a value, a date and a source), got none.", field);

    private sealed class ProfileFile
    {
        public List<RegionEntry?>? Regions { get; set; }

        public List<RateEntry?>? ExchangeRates { get; set; }
    }

    /// <summary>A region as the JSON file gives it (every field optional here; validated above).</summary>
    private sealed record RegionEntry(
        string? Id, string? Name, string? Currency, double? PricePerKwh, string? PriceDate, string? PriceSource, double? CarbonGPerKwh,
        string? CarbonDate, string? CarbonSource, double? Pue, string? PueDate, string? PueSource, double? HardwareCostPerHour, Confidence? Confidence);

    /// <summary>An exchange rate as the JSON file gives it.</summary>
    private sealed record RateEntry(string? Currency, double? UnitsPerUsd, string? Date, string? Source, Confidence? Confidence);
}
