namespace Kernels.Simd;

/// <summary>SIMD CPU attention: STUB of the contract, to be replaced.</summary>
internal static unsafe class AttentionSimd
{
    /// <summary>
    /// Fused attention on host memory with the semantics of <see cref="HostReference.Attention"/>:
    /// q [B, H, Sq, D], k and v [B, KvH, Sk, D], output [B, H, Sq, D]; keyLengths: null, or B lengths
    /// (ragged decode). splits ≥ 1: key splits combined exactly (results equal within float rounding).
    /// Arguments are validated by the caller.
    /// </summary>
    public static void Forward(float* q, float* k, float* v, float* output, int* keyLengths,
        AttentionShape shape, float scale, int window, int splits) =>
        throw new NotImplementedException("SIMD attention is not written yet.");
}
