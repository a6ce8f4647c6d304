namespace Kernels.Energy;

/// <summary>
/// Built-in presets, each value with its date, source and confidence, taken from the project's reference notes
/// (shared/reference/energy-anchors.md, written 2026-11-28). Prices are industrial / data-centre tariffs in the
/// region's own currency; carbon is the location-based annual average. Chinese hub prices are old (2015–2021):
/// check them before relying on them. Add your own regions with <see cref="CostProfiles.Load(string)"/>.
/// </summary>
public static class Presets
{
    private const string Owid = "Our World in Data 2023, via CodeCarbon global_energy_mix.json (file changed 2024-11-15)";

    /// <summary>Typical PUE values.</summary>
    public static IReadOnlyList<(string Id, DatedValue Pue)> PueValues { get; } =
    [
        ("none", new DatedValue(1.0, "-", "no facility overhead: the measurement's boundary only", Confidence.Verified)),
        ("hyperscale", new DatedValue(1.10, "2023", "Google fleet ≈1.10 (AWS 1.15, Microsoft 1.18, Meta ≈1.08), DatacenterDynamics Dec 2024", Confidence.Secondary)),
        ("modern-colo", new DatedValue(1.3, "2025", "China's requirement for new large data centres (≤ 1.3, 2021 plan / Jul 2025 notice); a modern colocation site", Confidence.Secondary)),
        ("china-hub", new DatedValue(1.25, "2021", "China 'national hub node' data centres ≤ 1.25 (2021 plan, via Dialogue Earth)", Confidence.Secondary)),
        ("industry-avg", new DatedValue(1.56, "2024", "Uptime Institute global survey, average of largest sites", Confidence.Secondary)),
    ];

    /// <summary>The PUE preset named <paramref name="pue"/>, or an error listing them.</summary>
    public static DatedValue Pue(string pue)
    {
        ArgumentNullException.ThrowIfNull(pue);
        foreach ((string i, DatedValue v) in PueValues)
        {
            if (string.Equals(i, pue.Trim(), StringComparison.OrdinalIgnoreCase))
                return v;
        }
        throw new ArgumentException($"pue: expected a number ≥ 1 or one of {string.Join(", ", PueValues.Select(p => p.Id))}, got '{pue}'.", nameof(pue));
    }

    private static readonly DatedValue ChinaCarbon = new(582.3, "2023", Owid, Confidence.Verified,
        "national average; MEE official 2022 factor is 536.6 (585.6 excluding traded green power)");

    private static readonly DatedValue ChinaHubCarbon = ChinaCarbon with
    {
        Confidence = Confidence.Unverified,
        Note = "national average used: provincial factor not retrieved; Inner Mongolia and Ningxia grids are coal-heavy, so likely higher unless direct green-power lines are used",
    };

    /// <summary>The built-in regions.</summary>
    public static IReadOnlyList<RegionProfile> Regions { get; } =
    [
        new("cn-industrial", "China, national average industrial", "USD",
            new DatedValue(0.088, "2024", "China Briefing (Dezan Shira & Associates)", Confidence.Secondary),
            ChinaCarbon, Pue("industry-avg")),
        new("cn-inner-mongolia", "China, Inner Mongolia (Hohhot) data-centre hub", "CNY",
            new DatedValue(0.38, "2015-03", "China Daily: Hohhot 'standard charge'", Confidence.Secondary, "dated; 2026 reports (Xinhua) say direct green-power lines cut costs further"),
            ChinaHubCarbon, Pue("china-hub")),
        new("cn-guizhou", "China, Guizhou (Gui'an New Area) data-centre hub", "CNY",
            new DatedValue(0.35, "2021", "udfspace / China Today; repeated by Chosun Biz 2026-04", Confidence.Secondary, "discounted tariff vs ≈0.5 CNY elsewhere"),
            ChinaHubCarbon, Pue("china-hub")),
        new("cn-ningxia", "China, Ningxia (Zhongwei) data-centre hub", "CNY",
            new DatedValue(0.36, "2020-11", "China Daily (cccweb mirror)", Confidence.Secondary, "dated"),
            ChinaHubCarbon, Pue("china-hub")),
        new("us-industrial", "United States, average industrial", "USD",
            new DatedValue(0.0806, "2023", "EIA via Statista (Mar 2024)", Confidence.Secondary),
            new DatedValue(369.5, "2023", Owid, Confidence.Verified), Pue("industry-avg")),
        new("de", "Germany, industrial (no reductions)", "EUR",
            new DatedValue(0.1677, "2024", "Bundesnetzagentur SMARD, 2025-02-11", Confidence.Verified),
            new DatedValue(381.0, "2023", Owid, Confidence.Verified), Pue("industry-avg")),
        new("ie", "Ireland, non-household", "EUR",
            new DatedValue(0.256, "H1 2024", "Eurostat Statistics Explained", Confidence.Secondary, "highest in the EU"),
            new DatedValue(290.8, "2023", Owid, Confidence.Verified), Pue("industry-avg")),
        new("fi", "Finland, non-household", "EUR",
            new DatedValue(0.0939, "H1 2024", "Eurostat Statistics Explained", Confidence.Secondary, "lowest in the EU"),
            new DatedValue(79.2, "2023", Owid, Confidence.Verified), Pue("industry-avg")),
    ];

    /// <summary>
    /// Default exchange rates (units per USD). The reference notes give none verified: these are 2024 annual
    /// averages from memory, marked unverified; override them in a profile file.
    /// </summary>
    public static IReadOnlyList<ExchangeRate> ExchangeRates { get; } =
    [
        new("CNY", 7.19, "2024 average", "approximate 2024 annual average (from memory; the notes' worked example uses 7.1)", Confidence.Unverified),
        new("EUR", 0.924, "2024 average", "approximate 2024 annual average, 1 EUR ≈ 1.082 USD (from memory)", Confidence.Unverified),
    ];
}
