using System.Runtime.InteropServices;
using Half = System.Half;

namespace Kernels;

public sealed partial class KernelSession
{
    /// <summary>
    /// Fused attention (online softmax; the score matrix is never stored): Q [B, H, Sq, D], K and V
    /// [B, KvH, Sk, D], output like Q, float32, default scale 1/√D. See <see cref="HostReference.Attention"/>
    /// for the exact semantics (causal alignment, windows, rows with no visible key).
    /// </summary>
    public float[] Attention(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape) =>
        Attention(q, k, v, shape, AttentionOptions.Default);

    /// <summary>Fused attention with options (scale, sliding window).</summary>
    public float[] Attention(
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape, AttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AttentionHost(q, k, v, default, shape, options, splits: 0, decode: false);
    }

    /// <summary>
    /// Fused attention into the caller's <paramref name="output"/> (no allocation per call): it must hold exactly
    /// Batch·Heads·QueryLength·HeadDim elements and must not overlap q, k or v. Nothing is written when an
    /// argument is rejected.
    /// </summary>
    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output,
        AttentionShape shape, AttentionOptions? options = null) =>
        AttentionHost(q, k, v, default, output, shape, options, splits: 0, decode: false);

    /// <summary>
    /// Decode attention over a KV cache with a length per sequence (a ragged batch): K and V are
    /// [B, KvH, capacity = shape.KeyLength, D]; sequence b uses its first cacheLengths[b] positions and its
    /// queries are the last QueryLength positions (causal alignment bottom-right against cacheLengths[b]).
    /// Long caches are split along the keys into <paramref name="splits"/> parts (0: chosen from the
    /// cache length) whose partial softmax results are combined exactly.
    /// </summary>
    public float[] AttentionDecode(
        ReadOnlySpan<float> q, ReadOnlySpan<float> kCache, ReadOnlySpan<float> vCache, ReadOnlySpan<int> cacheLengths,
        AttentionShape shape, AttentionOptions? options = null, int splits = 0) =>
        AttentionHost(q, kCache, vCache, cacheLengths, shape, options, splits, decode: true);

    /// <summary>
    /// Enqueues fused attention on device buffers (see <see cref="Attention(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, AttentionShape, AttentionOptions)"/>):
    /// buffers may be longer than needed; only the first elements are read and written. Returns at once on GPU
    /// backends; the result is ready after <see cref="Synchronize"/> or a copy back.
    /// </summary>
    public void Attention(
        DeviceBuffer<float> q, DeviceBuffer<float> k, DeviceBuffer<float> v, DeviceBuffer<float> output,
        AttentionShape shape, AttentionOptions? options = null)
    {
        options ??= AttentionOptions.Default;
        lock (_sync)
        {
            ThrowIfDisposed();
            ValidateAttentionBuffers(q, k, v, output, shape, options);
            _attention.Float(q.View, k.View, v.View, default, false, output.View, AttentionProblem.Of(shape, options, 1));
        }
    }

    /// <summary>
    /// Enqueues decode attention on device buffers: the KV cache stays on the device between steps; the
    /// B cache lengths are read back once per call to be validated before anything runs.
    /// </summary>
    public void AttentionDecode(
        DeviceBuffer<float> q, DeviceBuffer<float> kCache, DeviceBuffer<float> vCache, DeviceBuffer<int> cacheLengths,
        DeviceBuffer<float> output, AttentionShape shape, AttentionOptions? options = null, int splits = 0)
    {
        options ??= AttentionOptions.Default;
        Check.Splits(splits);
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffer(cacheLengths, this, nameof(cacheLengths));
            Check.MinLength(cacheLengths.Length, shape.Batch, nameof(cacheLengths), "Batch");
            var lengths = new int[Math.Max(0, shape.Batch)];
            HostCopy.ToHost(Stream, cacheLengths.View, lengths);
            Check.Attention(shape, options, shape.QueryElements, shape.KeyElements, shape.KeyElements, lengths, decode: true);
            ValidateAttentionBuffers(q, kCache, vCache, output, shape, options);
            int resolved = ResolveSplits(shape, splits);
            _attention.Float(q.View, kCache.View, vCache.View, cacheLengths.View, true, output.View,
                AttentionProblem.Of(shape, options, resolved));
        }
    }

    private void ValidateAttentionBuffers(
        DeviceBuffer<float> q, DeviceBuffer<float> k, DeviceBuffer<float> v, DeviceBuffer<float> output,
        AttentionShape shape, AttentionOptions options)
    {
        Check.Buffer(q, this, nameof(q));
        Check.Buffer(k, this, nameof(k));
        Check.Buffer(v, this, nameof(v));
        Check.Buffer(output, this, nameof(output));
        Check.NotAliased(output, nameof(output), q, nameof(q));
        Check.NotAliased(output, nameof(output), k, "k (kCache)");
        Check.NotAliased(output, nameof(output), v, "v (vCache)");
        // Shape and options first (lengths as if exact), then the buffers hold at least what is needed.
        Check.Attention(shape, options, shape.QueryElements, shape.KeyElements, shape.KeyElements, default, decode: false);
        Check.MinLength(q.Length, shape.QueryElements, nameof(q), "Batch·Heads·QueryLength·HeadDim");
        Check.MinLength(k.Length, shape.KeyElements, nameof(k), "Batch·KvHeads·KeyLength·HeadDim");
        Check.MinLength(v.Length, shape.KeyElements, nameof(v), "Batch·KvHeads·KeyLength·HeadDim");
        Check.MinLength(output.Length, shape.QueryElements, nameof(output), "Batch·Heads·QueryLength·HeadDim");
    }

    /// <summary>The key splits of a decode call: as asked (at most one per key), or <see cref="AutoSplits"/> for 0.</summary>
    private int ResolveSplits(AttentionShape shape, int splits) =>
        splits > 0 ? Math.Min(splits, shape.KeyLength) : AutoSplits(shape);

    /// <summary>Key splits for decode: enough independent work for the device, at least 256 keys per split.</summary>
    internal int AutoSplits(AttentionShape shape)
    {
        int rows = shape.Batch * shape.Heads;
        int byWork = (_attention.Parallelism + rows - 1) / rows;
        int byLength = Math.Max(1, shape.KeyLength / 256);
        return Math.Clamp(Math.Min(byWork, byLength), 1, 64);
    }

    /// <summary>
    /// The host-array attention calls with float or half storage, into a new array: validation (shape, options,
    /// lengths; for decode the splits), then <see cref="RunHost"/>.
    /// </summary>
    private T[] AttentionHost<T>(
        ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<int> keyLengths,
        AttentionShape shape, AttentionOptions? options, int splits, bool decode)
        where T : unmanaged
    {
        options ??= AttentionOptions.Default;
        splits = CheckHost(q, k, v, keyLengths, shape, options, splits, decode);
        var result = new T[Check.ArrayLength(shape.QueryElements, "Batch·Heads·QueryLength·HeadDim")];
        RunHost(q, k, v, keyLengths, result, shape, options, splits);
        return result;
    }

    /// <summary>The same into the caller's <paramref name="output"/>: also its length and the aliasing rule.</summary>
    private void AttentionHost<T>(
        ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<int> keyLengths, Span<T> output,
        AttentionShape shape, AttentionOptions? options, int splits, bool decode)
        where T : unmanaged
    {
        options ??= AttentionOptions.Default;
        splits = CheckHost(q, k, v, keyLengths, shape, options, splits, decode);
        Check.ExactLength(output.Length, shape.QueryElements, nameof(output), "Batch·Heads·QueryLength·HeadDim");
        Check.NotAliased<T>(output, nameof(output), q, "q");
        Check.NotAliased<T>(output, nameof(output), k, decode ? "kCache" : "k");
        Check.NotAliased<T>(output, nameof(output), v, decode ? "vCache" : "v");
        RunHost(q, k, v, keyLengths, output, shape, options, splits);
    }

    /// <summary>Validates a host call's inputs; returns the key splits to run (1 unless decode).</summary>
    private int CheckHost<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<int> keyLengths,
        AttentionShape shape, AttentionOptions options, int splits, bool decode)
    {
        Check.Attention(shape, options, q.Length, k.Length, v.Length, keyLengths, decode);
        if (!decode)
            return 1;
        Check.Splits(splits);
        return ResolveSplits(shape, splits);
    }

    /// <summary>The backend's <see cref="IAttentionBackend.Float(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{int}, Span{float}, in AttentionProblem)"/> or <see cref="IAttentionBackend.Half"/> on validated host memory.</summary>
    private void RunHost<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<int> keyLengths, Span<T> result,
        AttentionShape shape, AttentionOptions options, int splits)
        where T : unmanaged
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            var problem = AttentionProblem.Of(shape, options, splits);
            if (typeof(T) == typeof(float))
            {
                _attention.Float(MemoryMarshal.Cast<T, float>(q), MemoryMarshal.Cast<T, float>(k), MemoryMarshal.Cast<T, float>(v),
                    keyLengths, MemoryMarshal.Cast<T, float>(result), problem);
            }
            else
            {
                _attention.Half(MemoryMarshal.Cast<T, Half>(q), MemoryMarshal.Cast<T, Half>(k), MemoryMarshal.Cast<T, Half>(v),
                    keyLengths, MemoryMarshal.Cast<T, Half>(result), problem);
            }
        }
    }
}
