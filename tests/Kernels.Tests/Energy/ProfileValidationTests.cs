using Kernels.Energy;

namespace Kernels.Tests.Energy;

/// <summary>
/// Cost profiles validated field by field (issue 15): null entries, duplicate ids and currencies, a USD
/// rate other than 1 and absurd values are refused with an ArgumentException naming the field; a
/// cost that would not be finite is refused when it is computed, never written as infinity.
/// </summary>
public class ProfileValidationTests
{
    private const string Region = """
        { "id": "dc", "currency": "EUR", "price_per_kwh": 0.1, "price_date": "2026", "price_source": "s",
          "carbon_g_per_kwh": 300, "carbon_date": "2026", "carbon_source": "s" }
        """;

    private static void Refused(string json, string param, string fragment)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => CostProfiles.Parse(json, "p.json"));
        Assert.Equal(param, ex.ParamName);
        Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NullEntriesAreNamed()
    {
        Refused("""{ "regions": [ null ] }""", "regions[0]", "expected an object, got null");
        Refused("""{ "exchange_rates": [ { "currency": "GBP", "units_per_usd": 0.8, "date": "d", "source": "s" }, null ] }""",
            "exchange_rates[1]", "got null");
    }

    [Fact]
    public void MissingCurrencyOfARateIsNamedByItsIndex() =>
        Refused("""{ "exchange_rates": [ { "units_per_usd": 0.8, "date": "d", "source": "s" } ] }""",
            "exchange_rates[0].currency", "expected a value");

    [Fact]
    public void DuplicatesWithinTheFileAreRefused()
    {
        Refused($$"""{ "regions": [ {{Region}}, {{Region.Replace("0.1", "0.2", StringComparison.Ordinal)}} ] }""",
            "regions[1].id", "first at regions[0]");
        Refused("""{ "exchange_rates": [ { "currency": "GBP", "units_per_usd": 0.8, "date": "d", "source": "s" }, { "currency": "gbp", "units_per_usd": 0.7, "date": "d", "source": "s" } ] }""",
            "exchange_rates[1].currency", "expected each currency once");
    }

    [Fact]
    public void TheUsdRateIsOne()
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => CostProfiles.Parse(
            """{ "exchange_rates": [ { "currency": "USD", "units_per_usd": 1.2, "date": "d", "source": "s" } ] }"""));
        Assert.Contains("USD is the base", ex.Message, StringComparison.Ordinal);
        Assert.NotNull(CostProfiles.Parse("""{ "exchange_rates": [ { "currency": "USD", "units_per_usd": 1, "date": "d", "source": "s" } ] }"""));
    }

    [Theory]
    [InlineData("\"price_per_kwh\": 0.1", "\"price_per_kwh\": 1e308", "pricePerKwh")]
    [InlineData("\"carbon_g_per_kwh\": 300", "\"carbon_g_per_kwh\": 1e300", "carbonGramsPerKwh")]
    public void AbsurdValuesAreRefusedAtLoad(string field, string absurd, string param)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(() => CostProfiles.Parse($$"""{ "regions": [ {{Region.Replace(field, absurd, StringComparison.Ordinal)}} ] }"""));
        Assert.Equal(param, ex.ParamName);
        Assert.Contains("expected a finite value in [0, ", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ACostThatWouldNotBeFiniteIsRefused()
    {
        var inputs = new CostInputs(CostModel.MaxPricePerKwh, "USD", CostModel.MaxPue, 300, 0);
        var ex = Assert.ThrowsAny<ArgumentException>(() => CostModel.PerMillionTokens(1e305, inputs));
        Assert.Equal("joulesPerToken", ex.ParamName);
        Assert.True(double.IsFinite(CostModel.PerMillionTokens(1e3, inputs).CostPerMillionTokens));
    }
}
