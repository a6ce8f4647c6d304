namespace Kernels;

public sealed partial class KernelSession
{
    /// <summary>
    /// Decode attention over an int8 KV cache: <paramref name="kCache"/> and <paramref name="vCache"/> are sbyte
    /// [B, KvH, capacity = shape.KeyLength, D] with scales [B, KvH, capacity] (value = int8 · scale, see
    /// <see cref="KvCacheQuantization"/>). Same semantics as
    /// <see cref="AttentionDecode(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{int}, AttentionShape, AttentionOptions?, int)"/>
    /// on the dequantized cache. Scales must be finite and ≥ 0.
    /// </summary>
    public float[] AttentionDecodeInt8Kv(
        ReadOnlySpan<float> q, ReadOnlySpan<sbyte> kCache, ReadOnlySpan<float> kScale, ReadOnlySpan<sbyte> vCache,
        ReadOnlySpan<float> vScale, ReadOnlySpan<int> cacheLengths, AttentionShape shape, AttentionOptions? options = null,
        int splits = 0)
    {
        options ??= AttentionOptions.Default;
        Check.Attention(shape, options, q.Length, kCache.Length, vCache.Length, cacheLengths, decode: true);
        long tokens = (long)shape.Batch * shape.KvHeads * shape.KeyLength;
        CheckScales(kScale, tokens, nameof(kScale));
        CheckScales(vScale, tokens, nameof(vScale));
        Check.Splits(splits);
        int resolved = ResolveSplits(shape, splits);
        var result = new float[Check.ArrayLength(shape.QueryElements, "Batch·Heads·QueryLength·HeadDim")];
        lock (_sync)
        {
            ThrowIfDisposed();
            _attention.Int8Kv(q, kCache, kScale, vCache, vScale, cacheLengths, result, AttentionProblem.Of(shape, options, resolved));
        }
        return result;
    }

    private static void CheckScales(ReadOnlySpan<float> scales, long expected, string name)
    {
        Check.ExactLength(scales.Length, expected, name, "Batch·KvHeads·KeyLength");
        for (int i = 0; i < scales.Length; i++)
        {
            if (!float.IsFinite(scales[i]) || scales[i] < 0)
                throw new ArgumentException($"{name}: expected finite scales ≥ 0, got {scales[i]} at index {i}.", name);
        }
    }
}
