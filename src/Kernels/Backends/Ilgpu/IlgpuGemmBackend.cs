using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels.Backends.Ilgpu;

/// <summary>
/// Int8 GEMM with the ILGPU kernels of <see cref="Int8GemmKernels"/> on any accelerator (CUDA, OpenCL,
/// the CPU accelerator): the reference kernel (one thread per output), the tiled kernel with the
/// portable 4-byte dot product, and the same with <c>dp4a</c>. Rows whose length or batch stride is not
/// a multiple of 4 are packed into whole words first. Host arrays are staged in this backend's scratch
/// buffers (grown, never shrunk). <see cref="Backends.Simd.SimdGemmBackend"/> and <see cref="Backends.CudaPtx.PtxGemmBackend"/>
/// extend it with their own kernels and keep these for the kernels they do not have.
/// </summary>
internal class IlgpuGemmBackend(KernelSession session) : IGemmBackend
{
    private readonly ScratchBuffers _scratch = new(session);

    protected KernelSession Session => session;

    public virtual GemmKernel Select(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Auto => GemmKernel.Tiled,
        GemmKernel.Reference or GemmKernel.Tiled or GemmKernel.Dp4a => kernel,
        GemmKernel.Simd => throw OtherBackends(kernel, "only the cpu-simd backend has it"),
        GemmKernel.TensorCore => throw OtherBackends(kernel, "only the cuda backend has it"),
        _ => throw new ArgumentOutOfRangeException(nameof(kernel), kernel, $"kernel: expected a GemmKernel value, got {(int)kernel}."),
    };

    public virtual IReadOnlyList<GemmKernel> Compared => [GemmKernel.Reference, GemmKernel.Tiled];

    public string? WhyNot(in GemmProblem problem, GemmKernel requested) =>
        Select(requested) == GemmKernel.Reference && problem.Outputs > int.MaxValue
            ? $"kernel: the reference kernel launches one thread per output and handles at most {int.MaxValue} outputs; got {problem.Outputs}."
            : null;

    public virtual void Int32(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<int> c, in GemmProblem problem, GemmKernel requested)
    {
        ArrayView<sbyte> av = _scratch.Stage(nameof(a), a);
        ArrayView<sbyte> bv = _scratch.Stage(nameof(b), b);
        ArrayView<int> cv = _scratch.Get<int>("c", c.Length);
        var epilogue = new Int32Epilogue { C = cv, BatchStride = problem.Batch.StrideC, Ldc = problem.N };
        Run(av, bv, problem, epilogue, requested, weights: null);
        HostCopy.ToHost(session.Stream, cv, c);
    }

    public virtual void Dequant(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, ReadOnlySpan<float> aScale, ReadOnlySpan<float> bScale,
        ReadOnlySpan<float> bias, Span<float> y, in GemmProblem problem, GemmKernel requested)
    {
        int m = problem.M, n = problem.N;
        ArrayView<sbyte> av = _scratch.Stage(nameof(a), a);
        ArrayView<sbyte> bv = _scratch.Stage(nameof(b), b);
        // One staging buffer for the scales and the bias: [aScale | bScale | bias].
        ArrayView<float> scales = _scratch.Get<float>("scales", (long)m + 2L * n);
        ArrayView<float> asv = scales.SubView(0, m), bsv = scales.SubView(m, n), biasv = scales.SubView((long)m + n, n);
        session.CopyIn(asv, aScale);
        session.CopyIn(bsv, bScale);
        if (!bias.IsEmpty)
            session.CopyIn(biasv, bias);
        ArrayView<float> yv = _scratch.Get<float>("y", y.Length);
        DequantEpilogue epilogue = session.DequantOutput(yv, asv, bsv, bias.IsEmpty ? null : biasv, n);
        Run(av, bv, problem, epilogue, requested, weights: null);
        HostCopy.ToHost(session.Stream, yv, y);
    }

    public virtual void Run<TEpilogue>(ArrayView<sbyte> a, ArrayView<sbyte> b, in GemmProblem problem, TEpilogue epilogue,
        GemmKernel requested, DeviceBuffer<sbyte>? weights)
        where TEpilogue : struct, IGemmEpilogue =>
        Launch(Select(requested), a, b, problem, epilogue);

    public virtual void Forget(object weights)
    {
    }

    public virtual void Dispose()
    {
    }

    /// <summary>Enqueues one of this backend's kernels (reference, tiled, dp4a).</summary>
    protected void Launch<TEpilogue>(GemmKernel kernel, ArrayView<sbyte> a, ArrayView<sbyte> b, in GemmProblem problem, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        (int m, int n, int k, StridedBatch batch) = problem;
        string epi = typeof(TEpilogue).Name;
        if (kernel == GemmKernel.Reference)
        {
            var reference = session.Kernel($"reference/{epi}", acc =>
                acc.LoadAutoGroupedKernel<Index3D, ArrayView<sbyte>, ArrayView<sbyte>, int, long, long, TEpilogue>(
                    Int8GemmKernels.Reference));
            reference(session.Stream, new Index3D(n, m, batch.Count), a, b, k, batch.StrideA, batch.StrideB, epilogue);
            return;
        }
        if (kernel is not (GemmKernel.Tiled or GemmKernel.Dp4a))
            throw new InvalidOperationException($"The ILGPU GEMM has no kernel {kernel}.");

        int kWords = (k + 3) / 4;
        (ArrayView<int> aw, long strideAw) = PackedRows(a, m, k, kWords, batch.Count, batch.StrideA, "packed a");
        (ArrayView<int> bw, long strideBw) = PackedRows(b, n, k, kWords, batch.Count, batch.StrideB, "packed b");
        var tiled = kernel == GemmKernel.Dp4a
            ? session.Kernel($"dp4a/{epi}", acc =>
                GroupedKernels.Load<ArrayView<int>, ArrayView<int>, int, int, int, long, long, TEpilogue>(acc,
                    Int8GemmKernels.Tiled<Dp4aDot4, TEpilogue>))
            : session.Kernel($"tiled/{epi}", acc =>
                GroupedKernels.Load<ArrayView<int>, ArrayView<int>, int, int, int, long, long, TEpilogue>(acc,
                    Int8GemmKernels.Tiled<PortableDot4, TEpilogue>));
        var config = new KernelConfig(
            new Index3D(
                (n + Int8GemmKernels.TileN - 1) / Int8GemmKernels.TileN,
                (m + Int8GemmKernels.TileM - 1) / Int8GemmKernels.TileM,
                batch.Count),
            new Index3D(Int8GemmKernels.GroupDim, Int8GemmKernels.GroupDim, 1));
        tiled(session.Stream, config, aw, bw, m, n, kWords, strideAw, strideBw, epilogue);
    }

    /// <summary>
    /// Rows of int8 values as whole 4-byte words for the tiled kernel: a reinterpretation when k and
    /// the batch stride are multiples of 4, else a packed, zero-padded copy in this backend's scratch.
    /// </summary>
    private (ArrayView<int> Words, long StrideWords) PackedRows(
        ArrayView<sbyte> source, int rows, int k, int kWords, int batchCount, long stride,
        string role)
    {
        int batches = stride == 0 ? 1 : batchCount;
        if (k % 4 == 0 && stride % 4 == 0)
        {
            long bytes = (batches - 1) * stride + (long)rows * k;
            return (source.SubView(0, bytes).Cast<int>(), stride / 4);
        }
        ArrayView<int> packed = _scratch.Get<int>(role, (long)batches * rows * kWords);
        RowPacking.Pack(session, source, packed, rows, k, kWords, batches, stride);
        return (packed, stride == 0 ? 0 : (long)rows * kWords);
    }

    private ArgumentException OtherBackends(GemmKernel kernel, string which) => new(
        $"kernel: expected a kernel of the {session.Backend.ToName()} backend, got {kernel.ToString().ToLowerInvariant()} ({which}).", nameof(kernel));
}
