namespace Kernels;

/// <summary>
/// The int8 KV cache format of <see cref="KernelSession.AttentionDecodeInt8Kv"/>: values sbyte
/// [B, KvH, capacity, D] and float32 scales [B, KvH, capacity], one per (sequence, kv head, token);
/// the cached value is int8 · scale.
/// </summary>
public static class KvCacheQuantization
{
    /// <summary>
    /// Quantizes a float cache [B, KvH, capacity, D] symmetrically per token per head: scale = max|x| / 127,
    /// q = round-half-to-even(x / scale) clamped to ±127; an all-zero token gets scale 0 and zeros.
    /// Every |x − q·scale| ≤ scale / 2.
    /// </summary>
    public static (sbyte[] Values, float[] Scales) Quantize(ReadOnlySpan<float> x, int batch, int kvHeads, int capacity, int headDim)
    {
        Check.Positive(batch, nameof(batch));
        Check.Positive(kvHeads, nameof(kvHeads));
        Check.Positive(capacity, nameof(capacity));
        Check.Positive(headDim, nameof(headDim));
        Check.ExactLength(x.Length, (Int128)batch * kvHeads * capacity * headDim, nameof(x), "batch·kvHeads·capacity·headDim");
        long tokens = x.Length / headDim;
        Check.Finite(x, nameof(x));
        var values = new sbyte[x.Length];
        var scales = new float[tokens];
        for (long t = 0; t < tokens; t++)
        {
            ReadOnlySpan<float> row = x.Slice((int)(t * headDim), headDim);
            float max = 0;
            foreach (float value in row)
                max = Math.Max(max, Math.Abs(value));
            if (max == 0)
                continue;
            float scale = max / 127f;
            scales[t] = scale;
            for (int i = 0; i < headDim; i++)
                values[t * headDim + i] = (sbyte)Math.Clamp(MathF.Round(row[i] / scale, MidpointRounding.ToEven), -127f, 127f);
        }
        return (values, scales);
    }

    /// <summary>The float cache int8 · scale that <see cref="Quantize"/> stands for.</summary>
    public static float[] Dequantize(ReadOnlySpan<sbyte> values, ReadOnlySpan<float> scales, int headDim)
    {
        Check.Positive(headDim, nameof(headDim));
        Check.ExactLength(values.Length, (long)scales.Length * headDim, nameof(values), "scales.Length·headDim");
        var result = new float[values.Length];
        for (int i = 0; i < values.Length; i++)
            result[i] = values[i] * scales[i / headDim];
        return result;
    }
}
