using Kernels.Energy;

namespace Kernels.Tests.Energy;

public class CostModelTests
{
    private static readonly CostInputs Simple = new(PricePerKwh: 0.10, Currency: "USD", Pue: 1.2, CarbonGramsPerKwh: 400);

    [Fact]
    public void Energy_cost_and_carbon_match_hand_computation()
    {
        // 0.12 J/token → 0.12e6 J per 1M tokens = 0.12e6 / 3.6e6 kWh = 0.033333 kWh; ×1.2 PUE = 0.04 kWh.
        CostBreakdown c = CostModel.PerMillionTokens(0.12, Simple);
        Assert.Equal(0.0333333333, c.KwhPerMillionTokens, 9);
        Assert.Equal(0.04, c.FacilityKwhPerMillionTokens, 12);
        Assert.Equal(0.004, c.EnergyCostPerMillionTokens, 12);     // 0.04 kWh × $0.10
        Assert.Equal(16.0, c.Co2GramsPerMillionTokens, 10);        // 0.04 kWh × 400 g
        Assert.Null(c.HardwareCostPerMillionTokens);
        Assert.Equal(c.EnergyCostPerMillionTokens, c.CostPerMillionTokens);
        Assert.Equal("USD", c.Currency);
    }

    [Fact]
    public void Hardware_part_uses_throughput_and_utilization()
    {
        // $2/h at 4000 tokens/s: 14.4M tokens per hour → $0.138889 per 1M; at 50 % utilization twice that.
        CostBreakdown c = CostModel.PerMillionTokens(0.12, Simple with { HardwareCostPerHour = 2, Utilization = 0.5 }, tokensPerSecond: 4000);
        Assert.Equal(2.0 / 14.4 * 2, c.HardwareCostPerMillionTokens!.Value, 12);
        Assert.Equal(0.004 + 2.0 / 14.4 * 2, c.CostPerMillionTokens, 12);
    }

    [Fact]
    public void Node_factor_widens_the_boundary()
    {
        CostBreakdown c = CostModel.PerMillionTokens(0.36, Simple with { NodeFactor = 1.5, Pue = 1 });
        Assert.Equal(0.15, c.KwhPerMillionTokens, 12); // 0.36/3.6 × 1.5
    }

    [Fact]
    public void Region_prices_are_converted_with_the_dated_rate()
    {
        CostProfiles p = CostProfiles.BuiltIn();
        RegionProfile de = p.Region("de");
        CostInputs usd = CostModel.InputsFor(de, "USD", p.Rates);
        Assert.Equal(0.1677 / 0.924, usd.PricePerKwh, 12);
        Assert.Equal(1.56, usd.Pue);
        CostInputs eur = CostModel.InputsFor(de, "eur", p.Rates, pueOverride: 1.1);
        Assert.Equal(0.1677, eur.PricePerKwh, 12);
        Assert.Equal(1.1, eur.Pue);
        CostInputs cny = CostModel.InputsFor(p.Region("cn-ningxia"), "USD", p.Rates);
        Assert.Equal(0.36 / 7.19, cny.PricePerKwh, 12);
    }

    public static TheoryData<string, CostInputs> BadInputs => new()
    {
        { "pricePerKwh", Simple with { PricePerKwh = -0.01 } },
        { "pricePerKwh", Simple with { PricePerKwh = double.NaN } },
        { "pricePerKwh", Simple with { PricePerKwh = double.PositiveInfinity } },
        { "pue", Simple with { Pue = 0.9 } },
        { "pue", Simple with { Pue = double.NaN } },
        { "carbonGramsPerKwh", Simple with { CarbonGramsPerKwh = -1 } },
        { "hardwareCostPerHour", Simple with { HardwareCostPerHour = -2 } },
        { "utilization", Simple with { Utilization = 0 } },
        { "nodeFactor", Simple with { NodeFactor = 0.5 } },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void Invalid_inputs_are_rejected_naming_the_argument(string name, CostInputs inputs)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => CostModel.PerMillionTokens(0.1, inputs));
        Assert.Equal(name, ex.ParamName);
        Assert.Contains("expected", ex.Message, StringComparison.Ordinal);
        Assert.Contains("got", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Negative_or_non_finite_energy_is_rejected()
    {
        Assert.Equal("joulesPerToken", Assert.ThrowsAny<ArgumentException>(() => CostModel.PerMillionTokens(-1, Simple)).ParamName);
        Assert.Equal("joulesPerToken", Assert.ThrowsAny<ArgumentException>(() => CostModel.PerMillionTokens(double.NaN, Simple)).ParamName);
        Assert.Equal("tokensPerSecond", Assert.ThrowsAny<ArgumentException>(() => CostModel.PerMillionTokens(1, Simple, 0)).ParamName);
    }

    [Fact]
    public void Unknown_region_currency_pue_and_model_are_clear_errors()
    {
        CostProfiles p = CostProfiles.BuiltIn();
        var region = Assert.Throws<ArgumentException>(() => p.Region("atlantis"));
        Assert.Equal("region", region.ParamName);
        Assert.Contains("'atlantis'", region.Message, StringComparison.Ordinal);
        Assert.Contains("cn-guizhou", region.Message, StringComparison.Ordinal);
        Assert.Equal("currency", Assert.Throws<ArgumentException>(() => p.Rates.Get("XYZ")).ParamName);
        Assert.Equal("pue", Assert.Throws<ArgumentException>(() => Presets.Pue("space")).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentException>(() => ModelShapes.Get("gpt-9")).ParamName);
    }

    [Fact]
    public void Every_preset_carries_a_value_a_date_and_a_source()
    {
        string[] required = ["cn-industrial", "cn-inner-mongolia", "cn-guizhou", "cn-ningxia", "us-industrial", "de", "ie", "fi"];
        Assert.Equal(required.Order(StringComparer.Ordinal), Presets.Regions.Select(r => r.Id).Order(StringComparer.Ordinal));
        foreach (RegionProfile r in Presets.Regions)
        {
            foreach (DatedValue v in new[] { r.PricePerKwh, r.CarbonGramsPerKwh, r.Pue })
            {
                Assert.True(double.IsFinite(v.Value) && v.Value > 0, $"{r.Id}: value {v.Value}");
                Assert.False(string.IsNullOrWhiteSpace(v.Date), $"{r.Id}: no date");
                Assert.False(string.IsNullOrWhiteSpace(v.Source), $"{r.Id}: no source");
            }
            CostModel.Validate(CostModel.InputsFor(r, "USD", CostProfiles.BuiltIn().Rates));
        }
        foreach ((string id, DatedValue v) in Presets.PueValues)
        {
            Assert.True(v.Value >= 1, id);
            Assert.False(string.IsNullOrWhiteSpace(v.Date) || string.IsNullOrWhiteSpace(v.Source), id);
        }
        foreach (ExchangeRate r in Presets.ExchangeRates)
            Assert.False(string.IsNullOrWhiteSpace(r.Date) || string.IsNullOrWhiteSpace(r.Source), r.Currency);
    }

    [Fact]
    public void User_profiles_add_and_replace_regions()
    {
        const string json = """
        {
          "regions": [
            { "id": "my-dc", "name": "Ours", "currency": "GBP", "price_per_kwh": 0.2, "price_date": "2026-01", "price_source": "contract",
              "carbon_g_per_kwh": 200, "carbon_date": "2025", "carbon_source": "grid operator", "pue": 1.3, "hardware_cost_per_hour": 1.5,
              "confidence": "verified" },
            { "id": "de", "currency": "EUR", "price_per_kwh": 0.1, "price_date": "2026", "price_source": "x",
              "carbon_g_per_kwh": 300, "carbon_date": "2026", "carbon_source": "y" }
          ],
          "exchange_rates": [ { "currency": "GBP", "units_per_usd": 0.8, "date": "2026-01", "source": "test" } ]
        }
        """;
        CostProfiles p = CostProfiles.Parse(json);
        RegionProfile mine = p.Region("MY-DC");
        Assert.Equal(Confidence.Verified, mine.PricePerKwh.Confidence);
        Assert.Equal(1.3, mine.Pue.Value);
        CostInputs usd = CostModel.InputsFor(mine, "USD", p.Rates);
        Assert.Equal(0.25, usd.PricePerKwh, 12);
        Assert.Equal(1.875, usd.HardwareCostPerHour, 12);
        Assert.Equal(0.1, p.Region("de").PricePerKwh.Value);
        Assert.Equal(Presets.Regions.Count + 1, p.Regions.Count);
    }

    [Theory]
    [InlineData("""{ "regions": [ { "id": "x", "currency": "USD", "price_per_kwh": 0.1, "price_source": "s", "carbon_g_per_kwh": 1, "carbon_date": "d", "carbon_source": "s" } ] }""", "regions[x].price_date")]
    [InlineData("""{ "regions": [ { "id": "x", "currency": "USD", "price_per_kwh": -0.1, "price_date": "d", "price_source": "s", "carbon_g_per_kwh": 1, "carbon_date": "d", "carbon_source": "s" } ] }""", "pricePerKwh")]
    [InlineData("""{ "regions": [ { "id": "x", "currency": "USD", "price_per_kwh": 0.1, "price_date": "d", "price_source": "s", "carbon_g_per_kwh": 1, "carbon_date": "d", "carbon_source": "s", "pue": 0.8 } ] }""", "pue")]
    [InlineData("""{ "regions": [ { "id": "x", "currency": "ZZZ", "price_per_kwh": 0.1, "price_date": "d", "price_source": "s", "carbon_g_per_kwh": 1, "carbon_date": "d", "carbon_source": "s" } ] }""", "currency")]
    [InlineData("""{ "regions": [ """, "json")]
    public void Bad_profiles_are_rejected_naming_the_field(string json, string field)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => CostProfiles.Parse(json));
        Assert.Equal(field, ex.ParamName);
    }

    [Fact]
    public void Model_shapes_compose_the_weight_gemms()
    {
        TransformerShape llama = ModelShapes.Get("llama-3.1-8b");
        IReadOnlyList<LayerGemm> g = llama.LayerGemms(7);
        Assert.Equal(new LayerGemm("qkv", 7, 6144, 4096), g[0]);
        Assert.Equal(new LayerGemm("attn_out", 7, 4096, 4096), g[1]);
        Assert.Equal(new LayerGemm("ffn_gate_up", 7, 28672, 4096), g[2]);
        Assert.Equal(new LayerGemm("ffn_down", 7, 4096, 14336), g[3]);
        // ≈ 6.98 G MACs per token: the 8B model's weights minus embeddings and LM head.
        Assert.Equal(32L * (6144 * 4096 + 4096 * 4096 + 28672 * 4096 + 4096 * 14336), llama.MacsPerToken);
        LayerGemm fitted = ModelEnergy.Fit(new LayerGemm("x", 1, 6144, 4096), 1 << 18);
        Assert.True(fitted.Macs <= 1 << 18);
        Assert.Equal(1, fitted.M);
    }
}
