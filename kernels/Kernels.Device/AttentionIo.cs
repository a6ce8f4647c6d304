using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// How the fused attention kernels read Q, K and V and write their output: the storage formats differ
/// (float32, half bits, an int8 KV cache with per-token scales), the tiling, softmax and float32
/// accumulation of <see cref="AttentionKernels.Forward{TIo}"/> do not.
/// </summary>
public interface IAttentionIo
{
    /// <summary>Element <paramref name="index"/> of Q [B, H, Sq, D] as float32.</summary>
    float Q(long index);

    /// <summary>Feature <paramref name="x"/> of K token <paramref name="token"/> ([B, KvH, Sk] flattened) as float32.</summary>
    float K(long token, int headDim, int x);

    /// <summary>Feature <paramref name="x"/> of V token <paramref name="token"/> as float32.</summary>
    float V(long token, int headDim, int x);

    /// <summary>Writes output element <paramref name="index"/> of [B, H, Sq, D].</summary>
    void Store(long index, float value);
}

/// <summary>float32 Q, K, V and output.</summary>
public struct FloatAttentionIo : IAttentionIo
{
    /// <summary>Q [B, H, Sq, D].</summary>
    public ArrayView<float> Query;

    /// <summary>K [B, KvH, Sk, D].</summary>
    public ArrayView<float> Key;

    /// <summary>V [B, KvH, Sk, D].</summary>
    public ArrayView<float> Value;

    /// <summary>The output [B, H, Sq, D].</summary>
    public ArrayView<float> Output;

    /// <inheritdoc />
    public readonly float Q(long index) => Query[index];

    /// <inheritdoc />
    public readonly float K(long token, int headDim, int x) => Key[(token * headDim) + x];

    /// <inheritdoc />
    public readonly float V(long token, int headDim, int x) => Value[(token * headDim) + x];

    /// <inheritdoc />
    public readonly void Store(long index, float value) => Output[index] = value;
}

/// <summary>
/// IEEE binary16 Q, K, V and output, as raw bits (ushort, so OpenCL needs no fp16 capability): converted
/// exactly to float32 at the loads, the output rounded to half once (nearest even).
/// </summary>
public struct HalfAttentionIo : IAttentionIo
{
    /// <summary>Q [B, H, Sq, D], half bits.</summary>
    public ArrayView<ushort> Query;

    /// <summary>K [B, KvH, Sk, D], half bits.</summary>
    public ArrayView<ushort> Key;

    /// <summary>V [B, KvH, Sk, D], half bits.</summary>
    public ArrayView<ushort> Value;

    /// <summary>The output [B, H, Sq, D], half bits.</summary>
    public ArrayView<ushort> Output;

    /// <inheritdoc />
    public readonly float Q(long index) => AttentionHalfKernels.HalfToFloat(Query[index]);

    /// <inheritdoc />
    public readonly float K(long token, int headDim, int x) => AttentionHalfKernels.HalfToFloat(Key[(token * headDim) + x]);

    /// <inheritdoc />
    public readonly float V(long token, int headDim, int x) => AttentionHalfKernels.HalfToFloat(Value[(token * headDim) + x]);

    /// <inheritdoc />
    public readonly void Store(long index, float value) => Output[index] = AttentionHalfKernels.FloatToHalf(value);
}

/// <summary>float32 Q and output; an int8 K/V cache with one float32 scale per (batch, kv head, token).</summary>
public struct Int8KvAttentionIo : IAttentionIo
{
    /// <summary>Q [B, H, Sq, D].</summary>
    public ArrayView<float> Query;

    /// <summary>K [B, KvH, capacity, D], int8.</summary>
    public ArrayView<sbyte> Key;

    /// <summary>K scales [B, KvH, capacity].</summary>
    public ArrayView<float> KeyScale;

    /// <summary>V [B, KvH, capacity, D], int8.</summary>
    public ArrayView<sbyte> Value;

    /// <summary>V scales [B, KvH, capacity].</summary>
    public ArrayView<float> ValueScale;

    /// <summary>The output [B, H, Sq, D].</summary>
    public ArrayView<float> Output;

    /// <inheritdoc />
    public readonly float Q(long index) => Query[index];

    /// <inheritdoc />
    public readonly float K(long token, int headDim, int x) => Key[(token * headDim) + x] * KeyScale[token];

    /// <inheritdoc />
    public readonly float V(long token, int headDim, int x) => Value[(token * headDim) + x] * ValueScale[token];

    /// <inheritdoc />
    public readonly void Store(long index, float value) => Output[index] = value;
}
