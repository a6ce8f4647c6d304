using ILGPU;

namespace Kernels;

public sealed partial class KernelSession
{
    /// <summary>
    /// ILGPU attention (CUDA, OpenCL, CPU accelerator): STUB of the contract, to be replaced. Enqueues the
    /// fused kernel(s) writing <paramref name="output"/> [B, H, Sq, D]; <paramref name="keyLengths"/> holds
    /// B key lengths when <paramref name="ragged"/> (else every sequence uses shape.KeyLength);
    /// <paramref name="splits"/> ≥ 1 key splits combined exactly.
    /// </summary>
    private void RunAttentionIlgpu(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output, ArrayView<int> keyLengths,
        bool ragged, AttentionShape shape, float scale, int window, int splits) =>
        throw new NotImplementedException("ILGPU attention kernels are not written yet.");
}
