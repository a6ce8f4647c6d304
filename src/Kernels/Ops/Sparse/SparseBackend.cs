using ILGPU;
using Kernels.DeviceCode;

namespace Kernels;

/// <summary>What a sparse backend prepared from an uploaded matrix in its own format (kept and freed with the matrix).</summary>
internal interface IPreparedSparse : IDisposable
{
    /// <summary>Device memory held, in bytes (0 for host-side plans).</summary>
    long LengthInBytes { get; }
}

/// <summary>The kernel a sparse int8 product runs on, described for people (the CLI, <see cref="SparseAdvisor"/>).</summary>
/// <param name="Path">The selector's choice.</param>
/// <param name="Kernel">What runs, in words.</param>
/// <param name="DenseFallback">Whether the backend runs the product as a dense GEMM (the matrix is too dense to gain).</param>
internal readonly record struct SparseKernelChoice(SparseInt8Path Path, string Kernel, bool DenseFallback);

/// <summary>
/// Sparse products (<c>Y = X·Wᵀ</c>, W sparse) on one backend, chosen once when the
/// <see cref="KernelSession"/> is created: <see cref="Backends.Ilgpu.IlgpuSparseBackend"/> (the ILGPU kernels),
/// <see cref="Backends.Simd.SimdSparseBackend"/> (cpu-simd) or <see cref="Backends.CudaPtx.PtxSparseBackend"/> (CUDA: the
/// sparse tensor cores for 2:4, the ILGPU kernels otherwise). The session's sparse methods validate and
/// call here with the session's lock held.
/// </summary>
internal interface ISparseBackend : IDisposable
{
    /// <summary>Prepares an uploaded matrix in this backend's own format (tiles, packed copies, plans), or null when it needs nothing.</summary>
    IPreparedSparse? Prepare<T>(DeviceSparseMatrix<T> w, SparseParts<T> parts)
        where T : unmanaged;

    /// <summary>The one choice of kernel for an int8 product of <paramref name="w"/> with m tokens.</summary>
    SparseInt8Path Select(DeviceSparseMatrix<sbyte> w, int m);

    /// <summary><see cref="Select"/>, described.</summary>
    SparseKernelChoice Describe(DeviceSparseMatrix<sbyte> w, int m);

    /// <summary>The kernel a float32 product of <paramref name="w"/> with m tokens runs on, in words.</summary>
    string DescribeFloat32(DeviceSparseMatrix<float> w, int m);

    /// <summary>The int8 product on session buffers, enqueued on the session's stream.</summary>
    void Int8<TEpilogue>(DeviceSparseMatrix<sbyte> w, ArrayView<sbyte> x, int m, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue;

    /// <summary>The float32 product on session buffers.</summary>
    void Float32(DeviceSparseMatrix<float> w, ArrayView<float> x, int m, Float32Product output);

    /// <summary>The int8 product on host arrays (int32 output).</summary>
    void Int8(SparseMatrix w, ReadOnlySpan<sbyte> x, int m, Span<int> y);

    /// <summary>The int8 product with the dequantizing epilogue on host arrays (empty bias for none).</summary>
    void Int8Dequant(SparseMatrix w, ReadOnlySpan<sbyte> x, ReadOnlySpan<float> xScale, ReadOnlySpan<float> wScale,
        ReadOnlySpan<float> bias, int m, Span<float> y);

    /// <summary>The float32 product on host arrays (empty bias for none).</summary>
    void Float32(SparseMatrixF32 w, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, int m, Span<float> y);

    /// <summary>Matrices of host-array calls this backend holds uploaded (for tests).</summary>
    int CachedUploads { get; }
}
