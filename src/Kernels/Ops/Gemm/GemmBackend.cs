using ILGPU;
using Kernels.DeviceCode;

namespace Kernels;

/// <summary>One validated GEMM call, as every GEMM backend receives it: C = A·Bᵀ, a strided batch of them.</summary>
/// <param name="M">Rows of A and of the output.</param>
/// <param name="N">Rows of B (weights), columns of the output.</param>
/// <param name="K">The reduction length.</param>
/// <param name="Batch">The batch (count and element strides; a stride of 0 shares the operand).</param>
internal readonly record struct GemmProblem(int M, int N, int K, StridedBatch Batch)
{
    /// <summary>Outputs of the whole batch (m·n·count, never overflowing: each factor is an int).</summary>
    public long Outputs => (long)M * N * Batch.Count;
}

/// <summary>
/// Int8 GEMM on one backend. <see cref="KernelSession"/> picks its implementation once, when it is
/// created: <see cref="Backends.Ilgpu.IlgpuGemmBackend"/> (the ILGPU kernels, on every accelerator),
/// <see cref="Backends.Simd.SimdGemmBackend"/> (cpu-simd: the SIMD kernels, the ILGPU kernels on request) or
/// <see cref="Backends.CudaPtx.PtxGemmBackend"/> (CUDA: the generated tensor-core PTX, the ILGPU kernels below
/// compute capability 8.0 or on request). The session's GEMM methods validate, build the
/// <see cref="GemmProblem"/> and the output's epilogue, and call here with the session's lock held.
/// Every method takes the kernel the caller asked for (<see cref="GemmKernel.Auto"/> included) and
/// resolves it with <see cref="Select"/>, the one selector.
/// </summary>
internal interface IGemmBackend : IDisposable
{
    /// <summary>
    /// The kernel this backend runs for <paramref name="kernel"/> (Auto resolved; a kernel the
    /// device cannot run replaced by the one that stands in for it).
    /// </summary>
    /// <exception cref="ArgumentException">The kernel belongs to another backend (the message names <c>kernel</c>).</exception>
    GemmKernel Select(GemmKernel kernel);

    /// <summary>
    /// The distinct kernels worth comparing on this backend (<c>kernels cost --kernel all</c>): dp4a only
    /// where it is a kernel of its own, no ILGPU simulator kernels on cpu-simd.
    /// </summary>
    IReadOnlyList<GemmKernel> Compared { get; }

    /// <summary>Why the selected kernel cannot run <paramref name="problem"/> (a message naming the argument), or null when it can.</summary>
    string? WhyNot(in GemmProblem problem, GemmKernel requested);

    /// <summary>The int32 GEMM on host arrays.</summary>
    void Int32(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<int> c, in GemmProblem problem, GemmKernel requested);

    /// <summary>The dequantizing GEMM on host arrays (one GEMM; empty <paramref name="bias"/> for none).</summary>
    void Dequant(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, ReadOnlySpan<float> aScale, ReadOnlySpan<float> bScale,
        ReadOnlySpan<float> bias, Span<float> y, in GemmProblem problem, GemmKernel requested);

    /// <summary>
    /// The GEMM on session buffers (the device API), enqueued on the session's stream. <paramref name="weights"/>
    /// is B's buffer, which a backend may keep a prepared copy of until it is written or released.
    /// </summary>
    void Run<TEpilogue>(ArrayView<sbyte> a, ArrayView<sbyte> b, in GemmProblem problem, TEpilogue epilogue,
        GemmKernel requested, DeviceBuffer<sbyte>? weights)
        where TEpilogue : struct, IGemmEpilogue;

    /// <summary>Drops whatever the backend prepared from <paramref name="weights"/> (the buffer is being released).</summary>
    void Forget(object weights);
}
