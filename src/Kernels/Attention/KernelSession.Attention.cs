using ILGPU;
using ILGPU.Runtime;
using Kernels.Simd;

namespace Kernels;

public sealed partial class KernelSession
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageQ;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageK;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageV;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageO;
    private MemoryBuffer1D<int, Stride1D.Dense>? _stageLengths;

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
        Check.Attention(shape, options, q.Length, k.Length, v.Length, default, decode: false);
        return RunAttentionHost(q, k, v, default, shape, options, splits: 1);
    }

    /// <summary>
    /// Decode attention over a KV cache with a length per sequence (a ragged batch): K and V are
    /// [B, KvH, capacity = shape.KeyLength, D]; sequence b uses its first cacheLengths[b] positions and its
    /// queries are the last QueryLength positions (causal alignment bottom-right against cacheLengths[b]).
    /// Long caches are split along the keys into <paramref name="splits"/> parts (0: chosen from the
    /// cache length) whose partial softmax results are combined exactly.
    /// </summary>
    public float[] AttentionDecode(
        ReadOnlySpan<float> q, ReadOnlySpan<float> kCache, ReadOnlySpan<float> vCache, ReadOnlySpan<int> cacheLengths,
        AttentionShape shape, AttentionOptions? options = null, int splits = 0)
    {
        options ??= AttentionOptions.Default;
        Check.Attention(shape, options, q.Length, kCache.Length, vCache.Length, cacheLengths, decode: true);
        Check.Splits(splits);
        int resolved = ResolveSplits(shape, splits);
        return RunAttentionHost(q, kCache, vCache, cacheLengths, shape, options, resolved);
    }

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
            RunAttention(q.View, k.View, v.View, output.View, NoKeyLengths(), false, shape,
                options.Scale ?? 1f / MathF.Sqrt(shape.HeadDim), options.Window, 1);
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
            RunAttention(q.View, kCache.View, vCache.View, output.View, cacheLengths.View, true, shape,
                options.Scale ?? 1f / MathF.Sqrt(shape.HeadDim), options.Window, resolved);
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
        // Shape and options first (lengths as if exact), then the buffers hold at least what is needed.
        Check.Attention(shape, options, shape.QueryElements, shape.KeyElements, shape.KeyElements, default, decode: false);
        Check.MinLength(q.Length, shape.QueryElements, nameof(q), "Batch·Heads·QueryLength·HeadDim");
        Check.MinLength(k.Length, shape.KeyElements, nameof(k), "Batch·KvHeads·KeyLength·HeadDim");
        Check.MinLength(v.Length, shape.KeyElements, nameof(v), "Batch·KvHeads·KeyLength·HeadDim");
        Check.MinLength(output.Length, shape.QueryElements, nameof(output), "Batch·Heads·QueryLength·HeadDim");
    }

    private ArrayView<int> NoKeyLengths() => Scratch(ref _stageLengths, 1, "cacheLengths");

    /// <summary>The key splits of a decode call: as asked (at most one per key), or <see cref="AutoSplits"/> for 0.</summary>
    private int ResolveSplits(AttentionShape shape, int splits) =>
        splits > 0 ? Math.Min(splits, shape.KeyLength) : AutoSplits(shape);

    /// <summary>Key splits for decode: enough independent work for the device, at least 256 keys per split.</summary>
    internal int AutoSplits(AttentionShape shape)
    {
        int rows = shape.Batch * shape.Heads;
        int parallelism = Backend switch
        {
            Backend.Cuda or Backend.OpenCL => Math.Max(1, _accelerator.NumMultiprocessors * 4),
            _ => Environment.ProcessorCount,
        };
        int byWork = (parallelism + rows - 1) / rows;
        int byLength = Math.Max(1, shape.KeyLength / 256);
        return Math.Clamp(Math.Min(byWork, byLength), 1, 64);
    }

    private unsafe float[] RunAttentionHost(
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> keyLengths,
        AttentionShape shape, AttentionOptions options, int splits)
    {
        int length = Check.ArrayLength(shape.QueryElements, "Batch·Heads·QueryLength·HeadDim");
        var result = new float[length];
        float scale = options.Scale ?? 1f / MathF.Sqrt(shape.HeadDim);
        lock (_sync)
        {
            ThrowIfDisposed();
            if (Backend == Backend.CpuSimd)
            {
                // Host memory already: no staging copies.
                Stream.Synchronize();
                fixed (float* qp = q, kp = k, vp = v, op = result)
                fixed (int* lp = keyLengths)
                {
                    AttentionSimd.Forward(qp, kp, vp, op, keyLengths.IsEmpty ? null : lp, shape, scale, options.Window, splits);
                }
                return result;
            }
            ArrayView<float> qv = Stage(ref _stageQ, q, nameof(q));
            ArrayView<float> kv = Stage(ref _stageK, k, nameof(k));
            ArrayView<float> vv = Stage(ref _stageV, v, nameof(v));
            ArrayView<float> ov = Scratch(ref _stageO, length, "output");
            bool ragged = !keyLengths.IsEmpty;
            ArrayView<int> lv = ragged ? Stage(ref _stageLengths, keyLengths, "cacheLengths") : Scratch(ref _stageLengths, 1, "cacheLengths");
            RunAttention(qv, kv, vv, ov, lv, ragged, shape, scale, options.Window, splits);
            HostCopy.ToHost(Stream, ov, result);
        }
        return result;
    }

    /// <summary>Dispatches one validated attention call on staged or device-resident views (the caller holds the lock).</summary>
    private unsafe void RunAttention(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output, ArrayView<int> keyLengths,
        bool ragged, AttentionShape shape, float scale, int window, int splits)
    {
        if (Backend == Backend.CpuSimd)
        {
            Stream.Synchronize();
            AttentionSimd.Forward(
                (float*)q.LoadEffectiveAddressAsPtr(), (float*)k.LoadEffectiveAddressAsPtr(), (float*)v.LoadEffectiveAddressAsPtr(),
                (float*)output.LoadEffectiveAddressAsPtr(), ragged ? (int*)keyLengths.LoadEffectiveAddressAsPtr() : null,
                shape, scale, window, splits);
            return;
        }
        RunAttentionIlgpu(q, k, v, output, keyLengths, ragged, shape, scale, window, splits);
    }
}
