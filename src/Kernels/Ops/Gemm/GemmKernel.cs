namespace Kernels;

/// <summary>Which int8 GEMM kernel runs. All give bit-identical int32 results.</summary>
public enum GemmKernel
{
    /// <summary>
    /// The best kernel for the backend: <see cref="TensorCore"/> on CUDA devices of compute capability 8.0
    /// and newer, <see cref="Dp4a"/> on older CUDA devices, <see cref="Simd"/> on the SIMD CPU path,
    /// <see cref="Tiled"/> elsewhere.
    /// </summary>
    Auto,

    /// <summary>One thread per output, a plain loop over k. Simple and slow; the device-side reference.</summary>
    Reference,

    /// <summary>64×64 tiles through shared memory with packed 4-byte loads (portable, the default off CUDA).</summary>
    Tiled,

    /// <summary>The tiled kernel with PTX <c>dp4a</c> for the dot products (CUDA only; elsewhere the same as <see cref="Tiled"/>).</summary>
    Dp4a,

    /// <summary>
    /// The SIMD CPU GEMM (<see cref="Backend.CpuSimd"/> only). On that backend <see cref="Reference"/> and
    /// <see cref="Tiled"/> run the ILGPU kernels on ILGPU's CPU accelerator over the same buffers.
    /// </summary>
    Simd,

    /// <summary>
    /// Tensor cores through generated PTX (<c>mma.sync m16n8k32</c> s8, <c>cp.async</c> pipeline, fused
    /// epilogue; a weight-streaming kernel for m ≤ 32). CUDA only; on a CUDA device older than compute
    /// capability 8.0 it runs <see cref="Dp4a"/>.
    /// </summary>
    TensorCore,
}
