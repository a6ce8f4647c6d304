namespace Kernels;

/// <summary>Which ILGPU kernel runs int8 sparse products for more than <see cref="DeviceCode.SparseKernels.SmallM"/> tokens (benchmarks compare them).</summary>
internal enum SparseInt8Kernel
{
    /// <summary>The tiled kernel (<see cref="DeviceCode.SparseKernels.TiledInt8"/>) when the matrix has its tiles.</summary>
    Auto,

    /// <summary>One thread per output on Xᵀ (<see cref="DeviceCode.SparseKernels.General"/>).</summary>
    General,

    /// <summary>Groups of four non-zeros × four tokens per dp4a, X chunks in shared memory.</summary>
    Tiled,
}

/// <summary>The kernels an int8 sparse product can run on, as <see cref="ISparseBackend.Select"/> picks them.</summary>
internal enum SparseInt8Path
{
    /// <summary>The SIMD CPU kernels (cpu-simd), which may themselves fall back to the dense GEMM.</summary>
    Simd,

    /// <summary>The sparse tensor cores (<c>mma.sp</c>, CUDA, 2:4).</summary>
    TensorCore,

    /// <summary>The ILGPU tiled kernel.</summary>
    Tiled,

    /// <summary>The ILGPU small-m kernel (m ≤ <c>SparseKernels.SmallM</c>).</summary>
    SmallM,

    /// <summary>The ILGPU general kernel (on Xᵀ).</summary>
    General,
}
