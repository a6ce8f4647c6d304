using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// IEEE binary16 conversions for device code (used by <see cref="HalfAttentionIo"/>): half attention reads Q,
/// K and V as half bits, converts them to float32 at the loads, and rounds the output to half once.
/// </summary>
public static class AttentionHalfKernels
{
    /// <summary>IEEE binary16 bits to float (exact: every half is a float), including subnormals, ±∞ and NaN.</summary>
    /// <param name="h">The half's bits.</param>
    /// <returns>The value as a float.</returns>
    public static float HalfToFloat(ushort h)
    {
        int exponent = (h >> 10) & 0x1F;
        int mantissa = h & 0x3FF;
        bool negative = (h & 0x8000) != 0;
        if (exponent == 0)
        {
            // Zero or subnormal: mantissa · 2^-24, exact in float.
            float value = mantissa * 5.9604644775390625e-8f;
            return negative ? -value : value;
        }
        uint sign = negative ? 0x80000000u : 0u;
        uint bits = exponent == 0x1F
            ? sign | 0x7F800000u | ((uint)mantissa << 13)
            : sign | ((uint)(exponent + 112) << 23) | ((uint)mantissa << 13);
        return Interop.IntAsFloat(bits);
    }

    /// <summary>
    /// Float to IEEE binary16 bits, rounding to nearest even like <c>(System.Half)f</c>: overflow (|f| ≥ 65520) to ±∞,
    /// subnormal results rounded, NaN to a quiet NaN.
    /// </summary>
    /// <param name="f">The value.</param>
    /// <returns>The half's bits.</returns>
    public static ushort FloatToHalf(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000u;
        uint ax = x & 0x7FFFFFFFu;
        if (ax > 0x7F800000u)
            return (ushort)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu)); // NaN stays NaN (quiet, payload kept where it fits)
        if (ax >= 0x477FF000u)
            return (ushort)(sign | 0x7C00u); // ±∞ and |f| ≥ 65520 (rounds past the largest half)
        if (ax < 0x38800000u)
        {
            // |f| < 2^-14: a subnormal half; adding 0.5 (ulp 2^-24) rounds to nearest even at the half's ulp.
            float rounded = Interop.IntAsFloat(ax) + 0.5f;
            return (ushort)(sign | (Interop.FloatAsInt(rounded) - 0x3F000000u));
        }
        uint odd = (ax >> 13) & 1u;
        ax += 0xC8000FFFu + odd; // rebias the exponent (−112 · 2^23) and round to nearest even
        return (ushort)(sign | (ax >> 13));
    }
}
