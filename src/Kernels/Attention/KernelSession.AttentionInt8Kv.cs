using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;
using Kernels.Simd;

namespace Kernels;

public sealed partial class KernelSession
{
    private MemoryBuffer1D<sbyte, Stride1D.Dense>? _stageKInt8;
    private MemoryBuffer1D<sbyte, Stride1D.Dense>? _stageVInt8;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageKScale;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageVScale;

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
                unsafe
                {
                    fixed (float* qp = q, ksp = kScale, vsp = vScale, op = result)
                    fixed (sbyte* kp = kCache, vp = vCache)
                    fixed (int* lp = cacheLengths)
                    {
                        AttentionInt8KvSimd.Forward(qp, kp, ksp, vp, vsp, op, lp, shape, scale, options.Window, resolved);
                    }
                }
                return result;
            }
            ArrayView<float> qv = Stage(ref _stageQ, q, nameof(q));
            ArrayView<sbyte> kv = Stage(ref _stageKInt8, kCache, nameof(kCache));
            ArrayView<sbyte> vv = Stage(ref _stageVInt8, vCache, nameof(vCache));
            ArrayView<float> ksv = Stage(ref _stageKScale, kScale, nameof(kScale));
            ArrayView<float> vsv = Stage(ref _stageVScale, vScale, nameof(vScale));
            ArrayView<float> ov = Scratch(ref _stageO, length, "output");
            ArrayView<int> lv = Stage(ref _stageLengths, cacheLengths, "cacheLengths");
            RunAttentionInt8KvIlgpu(qv, kv, ksv, vv, vsv, ov, lv, shape, scale, options.Window, resolved);
            HostCopy.ToHost(Stream, ov, result);
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

    /// <summary>
    /// ILGPU path (the caller holds the lock): the fused int8 kernel, which dequantizes K/V while staging its
    /// shared tiles, writing the output directly or, with splits &gt; 1, partials that
    /// the combine kernel merges.
    /// </summary>
    private void RunAttentionInt8KvIlgpu(
        ArrayView<float> q, ArrayView<sbyte> k, ArrayView<float> kScale, ArrayView<sbyte> v, ArrayView<float> vScale,
        ArrayView<float> output, ArrayView<int> keyLengths, AttentionShape shape, float scale, int window, int splits)
    {
        AttentionLaunch launch = PrepareAttentionLaunch(shape, scale, window, ragged: true, splits);
        LaunchAttention(
            new Int8KvAttentionIo { Query = q, Key = k, KeyScale = kScale, Value = v, ValueScale = vScale, Output = output },
            keyLengths, launch, shape.HeadDim);
    }
}
