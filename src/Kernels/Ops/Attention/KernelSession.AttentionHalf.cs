using Half = System.Half;

namespace Kernels;

public sealed partial class KernelSession
{
    /// <summary>
    /// Fused attention with half-precision storage: Q, K, V and the output are <see cref="Half"/>, scores, softmax
    /// and accumulation are float32. Same semantics as
    /// <see cref="Attention(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, AttentionShape, AttentionOptions)"/>
    /// on the inputs converted to float (exact), with the output rounded to half once, to nearest even. The ILGPU
    /// backends stage half data and convert in the kernel; cpu-simd converts the inputs to float and runs the float kernel.
    /// </summary>
    public Half[] Attention(
        ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, AttentionShape shape, AttentionOptions? options = null) =>
        AttentionHost(q, k, v, default, shape, options, splits: 0, decode: false);

    /// <summary>
    /// Decode attention over a half-precision KV cache (see
    /// <see cref="AttentionDecode(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{int}, AttentionShape, AttentionOptions?, int)"/>):
    /// half storage, float32 accumulation, the output rounded to half once.
    /// </summary>
    public Half[] AttentionDecode(
        ReadOnlySpan<Half> q, ReadOnlySpan<Half> kCache, ReadOnlySpan<Half> vCache, ReadOnlySpan<int> cacheLengths,
        AttentionShape shape, AttentionOptions? options = null, int splits = 0) =>
        AttentionHost(q, kCache, vCache, cacheLengths, shape, options, splits, decode: true);
}
