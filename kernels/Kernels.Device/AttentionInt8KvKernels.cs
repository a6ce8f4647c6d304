using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>Device kernels of the int8 KV cache decode attention.</summary>
public static class AttentionInt8KvKernels
{
    /// <summary>
    /// output[i] = values[i] · scales[i / headDim]: the int8 cache [B, KvH, capacity, D] with one scale per
    /// token to float32, one element per thread.
    /// </summary>
    public static void Dequantize(Index1D i, ArrayView<sbyte> values, ArrayView<float> scales, ArrayView<float> output, int headDim)
    {
        output[i] = values[i] * scales[i / headDim];
    }
}
