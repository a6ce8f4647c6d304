using System.Buffers;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;
using Kernels.Simd;
using Half = System.Half;

namespace Kernels;

public sealed partial class KernelSession
{
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _stageQHalf;
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _stageKHalf;
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _stageVHalf;
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _stageOHalf;

    /// <summary>
    /// Fused attention with half-precision storage: Q, K, V and the output are <see cref="Half"/>, scores, softmax
    /// and accumulation are float32. Same semantics as
    /// <see cref="Attention(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, AttentionShape, AttentionOptions)"/>
    /// on the inputs converted to float (exact), with the output rounded to half once, to nearest even. The ILGPU
    /// backends stage half data and convert in the kernel; cpu-simd converts the inputs to float and runs the float kernel.
    /// </summary>
    public Half[] Attention(
        ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, AttentionShape shape, AttentionOptions? options = null)
    {
        options ??= AttentionOptions.Default;
        Check.Attention(shape, options, q.Length, k.Length, v.Length, default, decode: false);
        return RunAttentionHalfHost(q, k, v, default, shape, options, splits: 1);
    }

    /// <summary>
    /// Decode attention over a half-precision KV cache (see
    /// <see cref="AttentionDecode(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{int}, AttentionShape, AttentionOptions?, int)"/>):
    /// half storage, float32 accumulation, the output rounded to half once.
    /// </summary>
    public Half[] AttentionDecode(
        ReadOnlySpan<Half> q, ReadOnlySpan<Half> kCache, ReadOnlySpan<Half> vCache, ReadOnlySpan<int> cacheLengths,
        AttentionShape shape, AttentionOptions? options = null, int splits = 0)
    {
        options ??= AttentionOptions.Default;
        Check.Attention(shape, options, q.Length, kCache.Length, vCache.Length, cacheLengths, decode: true);
        Check.Splits(splits);
        int resolved = ResolveSplits(shape, splits);
        return RunAttentionHalfHost(q, kCache, vCache, cacheLengths, shape, options, resolved);
    }

    private unsafe Half[] RunAttentionHalfHost(
        ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, ReadOnlySpan<int> keyLengths,
        AttentionShape shape, AttentionOptions options, int splits)
    {
        int length = Check.ArrayLength(shape.QueryElements, "Batch·Heads·QueryLength·HeadDim");
        var result = new Half[length];
        float scale = options.Scale ?? 1f / MathF.Sqrt(shape.HeadDim);
        lock (_sync)
        {
            ThrowIfDisposed();
            if (Backend == Backend.CpuSimd)
            {
                // cpu-simd converts: the inputs to float (pooled buffers), the float kernel, the output back to half.
                Stream.Synchronize();
                float[] qf = ArrayPool<float>.Shared.Rent(q.Length);
                float[] kf = ArrayPool<float>.Shared.Rent(k.Length);
                float[] vf = ArrayPool<float>.Shared.Rent(v.Length);
                float[] of = ArrayPool<float>.Shared.Rent(length);
                try
                {
                    ToSingle(q, qf);
                    ToSingle(k, kf);
                    ToSingle(v, vf);
                    fixed (float* qp = qf, kp = kf, vp = vf, op = of)
                    fixed (int* lp = keyLengths)
                    {
                        AttentionSimd.Forward(qp, kp, vp, op, keyLengths.IsEmpty ? null : lp, shape, scale, options.Window, splits);
                    }
                    for (int i = 0; i < length; i++)
                        result[i] = (Half)of[i];
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(qf);
                    ArrayPool<float>.Shared.Return(kf);
                    ArrayPool<float>.Shared.Return(vf);
                    ArrayPool<float>.Shared.Return(of);
                }
                return result;
            }
            ArrayView<ushort> qv = Stage(ref _stageQHalf, MemoryMarshal.Cast<Half, ushort>(q), nameof(q));
            ArrayView<ushort> kv = Stage(ref _stageKHalf, MemoryMarshal.Cast<Half, ushort>(k), nameof(k));
            ArrayView<ushort> vv = Stage(ref _stageVHalf, MemoryMarshal.Cast<Half, ushort>(v), nameof(v));
            ArrayView<ushort> ov = Scratch(ref _stageOHalf, length, "output");
            bool ragged = !keyLengths.IsEmpty;
            ArrayView<int> lv = ragged ? Stage(ref _stageLengths, keyLengths, "cacheLengths") : Scratch(ref _stageLengths, 1, "cacheLengths");
            RunAttentionHalfIlgpu(qv, kv, vv, ov, lv, ragged, shape, scale, options.Window, splits);
            HostCopy.ToHost(Stream, ov, MemoryMarshal.Cast<Half, ushort>(result.AsSpan()));
        }
        return result;
    }

    private static void ToSingle(ReadOnlySpan<Half> source, Span<float> destination)
    {
        for (int i = 0; i < source.Length; i++)
            destination[i] = (float)source[i];
    }

    /// <summary>
    /// ILGPU path (the caller holds the lock): the fused half kernel, which converts Q/K/V to float while staging its
    /// shared tiles and writes half output directly or, with splits &gt; 1, float partials that
    /// the combine kernel merges and rounds to half.
    /// </summary>
    private void RunAttentionHalfIlgpu(
        ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v, ArrayView<ushort> output, ArrayView<int> keyLengths,
        bool ragged, AttentionShape shape, float scale, int window, int splits)
    {
        AttentionLaunch launch = PrepareAttentionLaunch(shape, scale, window, ragged, splits);
        LaunchAttention(new HalfAttentionIo { Query = q, Key = k, Value = v, Output = output }, keyLengths, launch, shape.HeadDim);
    }
}
