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
    /// trick. The widest level of managed intrinsics: .NET 10 exposes none for the 512-bit EVEX form (no
    /// <c>Avx512Vnni</c> class; <c>Avx10v1.V512</c> has no VNNI methods).
    /// </summary>
    AvxVnni = 2,

    /// <summary>
    /// AVX-512 VNNI through generated code: the dense int8 GEMM runs micro-kernels of 512-bit
    /// <c>vpdpbusd zmm</c> assembled at run time (Iced) into executable pages, on Linux x64 with
    /// AVX-512F/BW/VL and AVX512_VNNI; the same packing and +128 correction as <see cref="AvxVnni"/>,
    /// which every other kernel runs at this level. <see cref="CpuSimd.JitVariable"/> = 0 or
    /// <see cref="CpuSimd.GeneratedCode"/> = false turns it off.
    /// </summary>
    Avx512Vnni = 3,
}

/// <summary>What the processor and the runtime support, and what the library is allowed to use.</summary>
public static class CpuSimd
{
    /// <summary>The environment variable that caps <see cref="Effective"/>: scalar, avx2, avx-vnni or avx512-vnni.</summary>
    public const string MaxLevelVariable = "KERNELS_SIMD_MAX";

    /// <summary>
    /// The environment variable that turns generated code off: 0 (or false, off) caps <see cref="Effective"/>
    /// at <see cref="SimdLevel.AvxVnni"/>; unset, blank, 1 (true, on) leaves it on.
    /// </summary>
    public const string JitVariable = "KERNELS_JIT";

    private static volatile bool _generatedCode = true;

    /// <summary>
    /// The highest level that the processor, the .NET runtime and the operating system support
    /// (<see cref="SimdLevel.Avx512Vnni"/>: Linux x64 with AVX-512F/BW/VL enabled in the runtime and
    /// AVX512_VNNI in CPUID).
    /// </summary>
    public static SimdLevel Detected { get; } = Detect();

    /// <summary>
    /// Whether generated code (<see cref="SimdLevel.Avx512Vnni"/>) may run in this process (default true);
    /// false caps <see cref="Effective"/> at <see cref="SimdLevel.AvxVnni"/>, as <see cref="JitVariable"/> = 0 does.
    /// Weights packed while it was on must be packed again after turning it off.
    /// </summary>
    public static bool GeneratedCode
    {
        get => _generatedCode;
        set => _generatedCode = value;
    }

    /// <summary>
    /// <see cref="Detected"/> capped by <see cref="MaxLevelVariable"/>, <see cref="JitVariable"/> and
    /// <see cref="GeneratedCode"/> (read on every access).
    /// </summary>
    /// <exception cref="ArgumentException">A variable holds something other than the values it takes.</exception>
    public static SimdLevel Effective =>
        Runnable(Min(Min(Detected, ParseCap(Environment.GetEnvironmentVariable(MaxLevelVariable)) ?? SimdLevel.Avx512Vnni),
            _generatedCode && ParseJit(Environment.GetEnvironmentVariable(JitVariable)) ? SimdLevel.Avx512Vnni : SimdLevel.AvxVnni));

    /// <summary>
    /// The level a call runs at: <see cref="Effective"/> further capped by <paramref name="cap"/>
    /// (null: no cap). Tests pass each level as the cap to force each code path in one process.
    /// </summary>
    public static SimdLevel Resolve(SimdLevel? cap) => cap is { } c ? Runnable(Min(Effective, c)) : Effective;

    /// <summary>
    /// Whether code at <paramref name="level"/> may use the 256-bit AVX-VNNI intrinsics (<c>AvxVnni</c>). The
    /// levels are ordered, but one gap is real: AVX-512 servers before Sapphire Rapids (Cascade Lake, Ice
    /// Lake) and some virtual machines report AVX512_VNNI without AVX-VNNI, so they run the generated
    /// <see cref="SimdLevel.Avx512Vnni"/> kernels while every intrinsics kernel keyed on "≥ AVX-VNNI" (sparse
    /// int8) must take its AVX2 form. Every such decision asks this, not the level alone.
    /// </summary>
    internal static bool HasVnniIntrinsics(this SimdLevel level) => level >= SimdLevel.AvxVnni && AvxVnni.IsSupported;

    /// <summary>A level this process can run: AVX-VNNI (a cap, or generated code turned off) on a processor
    /// without the 256-bit AVX-VNNI instructions becomes AVX2.</summary>
    private static SimdLevel Runnable(SimdLevel level) =>
        level == SimdLevel.AvxVnni && !AvxVnni.IsSupported ? SimdLevel.Avx2 : level;

    /// <summary>Parses a level name as <see cref="MaxLevelVariable"/> spells it (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Not one of scalar, avx2, avx-vnni, avx512-vnni.</exception>
    public static SimdLevel Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return TryParse(name) ?? throw new ArgumentException(
            $"{MaxLevelVariable}: expected one of scalar, avx2, avx-vnni, avx512-vnni, got '{name}'.", nameof(name));
    }

    /// <summary>The name of a level as <see cref="MaxLevelVariable"/> spells it.</summary>
    public static string ToName(this SimdLevel level) => level switch
    {
        SimdLevel.Scalar => "scalar",
        SimdLevel.Avx2 => "avx2",
        SimdLevel.AvxVnni => "avx-vnni",
        SimdLevel.Avx512Vnni => "avx512-vnni",
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
            $"{MaxLevelVariable}: expected one of scalar, avx2, avx-vnni, avx512-vnni, got '{value}'.", MaxLevelVariable);
#pragma warning restore CA2208
    }

    private static SimdLevel? TryParse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "scalar" => SimdLevel.Scalar,
        "avx2" => SimdLevel.Avx2,
        "avx-vnni" => SimdLevel.AvxVnni,
        "avx512-vnni" => SimdLevel.Avx512Vnni,
        _ => null,
    };

    /// <summary>Whether a value of <see cref="JitVariable"/> leaves generated code on (null or blank: on).</summary>
    /// <exception cref="ArgumentException">Not one of 0, 1, false, true, off, on; the exception names the variable.</exception>
    internal static bool ParseJit(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            return true;
        switch (value.Trim().ToLowerInvariant())
        {
            case "1" or "true" or "on":
                return true;
            case "0" or "false" or "off":
                return false;
            default:
#pragma warning disable CA2208 // The bad value comes from the environment: name the variable, not the parameter.
                throw new ArgumentException($"{JitVariable}: expected 0 or 1 (false/true, off/on), got '{value}'.", JitVariable);
#pragma warning restore CA2208
        }
    }

    private static SimdLevel Min(SimdLevel a, SimdLevel b) => a <= b ? a : b;

    private static SimdLevel Detect()
    {
        // Generated code needs AVX-512F/BW/VL and AVX512_VNNI, not AVX-VNNI (see HasVnniIntrinsics).
        if (Avx2.IsSupported && Backends.Simd.Jit.VnniJit.CanRun)
            return SimdLevel.Avx512Vnni;
        if (AvxVnni.IsSupported && Avx2.IsSupported)
            return SimdLevel.AvxVnni;
        if (Avx2.IsSupported)
            return SimdLevel.Avx2;
        return SimdLevel.Scalar;
    }
}
