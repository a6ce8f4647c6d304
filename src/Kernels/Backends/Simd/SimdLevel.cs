namespace Kernels.Simd;

/// <summary>
/// The instruction-set levels of the CPU int8 GEMM, lowest first: a level may run on any processor
/// that supports it or a higher one.
/// </summary>
public enum SimdLevel
{
    /// <summary>Portable scalar code (int32 accumulation); always available.</summary>
    Scalar = 0,

    /// <summary>AVX2: exact s8→s16 widening and <c>vpmaddwd</c> on 256-bit vectors.</summary>
    Avx2 = 1,

    /// <summary>
    /// AVX-VNNI: VEX-encoded 256-bit <c>vpdpbusd</c> (u8×s8 dot products of four) with the +128 offset
    /// trick. The widest level: .NET 10 exposes no managed intrinsic for the 512-bit EVEX form (no
    /// <c>Avx512Vnni</c> class; <c>Avx10v1.V512</c> has no VNNI methods), so there is no AVX-512 path.
    /// </summary>
    AvxVnni = 2,
}

/// <summary>What the processor and the runtime support, and what the library is allowed to use.</summary>
public static class CpuSimd
{
    /// <summary>The environment variable that caps <see cref="Effective"/>: scalar, avx2 or avx-vnni.</summary>
    public const string MaxLevelVariable = "KERNELS_SIMD_MAX";

    /// <summary>The highest level that both the processor and the .NET runtime support.</summary>
    public static SimdLevel Detected { get; } = Detect();

    /// <summary>
    /// <see cref="Detected"/> capped by <see cref="MaxLevelVariable"/> (read on every access).
    /// </summary>
    /// <exception cref="ArgumentException">The variable holds something other than the four level names.</exception>
    public static SimdLevel Effective =>
        Min(Detected, ParseCap(Environment.GetEnvironmentVariable(MaxLevelVariable)) ?? SimdLevel.AvxVnni);

    /// <summary>
    /// The level a call runs at: <see cref="Effective"/> further capped by <paramref name="cap"/>
    /// (null: no cap). Tests pass each level as the cap to force each code path in one process.
    /// </summary>
    public static SimdLevel Resolve(SimdLevel? cap) => cap is { } c ? Min(Effective, c) : Effective;

    /// <summary>Parses a level name as <see cref="MaxLevelVariable"/> spells it (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Not one of scalar, avx2, avx-vnni.</exception>
    public static SimdLevel Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return TryParse(name) ?? throw new ArgumentException(
            $"{MaxLevelVariable}: expected one of scalar, avx2, avx-vnni, got '{name}'.", nameof(name));
    }

    /// <summary>The name of a level as <see cref="MaxLevelVariable"/> spells it.</summary>
    public static string ToName(this SimdLevel level) => level switch
    {
        SimdLevel.Scalar => "scalar",
        SimdLevel.Avx2 => "avx2",
        SimdLevel.AvxVnni => "avx-vnni",
        _ => throw new ArgumentOutOfRangeException(nameof(level), level, $"level: expected a SimdLevel, got {(int)level}."),
    };

    /// <summary>The cap a value of <see cref="MaxLevelVariable"/> sets (null or blank: none).</summary>
    /// <exception cref="ArgumentException">An invalid value; the exception names the variable.</exception>
    internal static SimdLevel? ParseCap(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            return null;
#pragma warning disable CA2208 // The bad value comes from the environment: name the variable, not the parameter.
        return TryParse(value) ?? throw new ArgumentException(
            $"{MaxLevelVariable}: expected one of scalar, avx2, avx-vnni, got '{value}'.", MaxLevelVariable);
#pragma warning restore CA2208
    }

    private static SimdLevel? TryParse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "scalar" => SimdLevel.Scalar,
        "avx2" => SimdLevel.Avx2,
        "avx-vnni" => SimdLevel.AvxVnni,
        _ => null,
    };

    private static SimdLevel Min(SimdLevel a, SimdLevel b) => a <= b ? a : b;

    private static SimdLevel Detect()
    {
        if (AvxVnni.IsSupported && Avx2.IsSupported)
            return SimdLevel.AvxVnni;
        if (Avx2.IsSupported)
            return SimdLevel.Avx2;
        return SimdLevel.Scalar;
    }
}
