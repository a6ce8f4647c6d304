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
