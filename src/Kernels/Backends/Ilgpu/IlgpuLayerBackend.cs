using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels.Backends.Ilgpu;

/// <summary>
/// The decoder's small ops on the ILGPU accelerators (CUDA, OpenCL, the CPU accelerator): the row kernel
/// of <see cref="LayerKernels"/> (explicitly grouped, one group per row; OpenCL gets its fenced barriers
/// through <see cref="GroupedKernels"/>) and the element-wise kernels, which stride over 64-bit counts
/// from a launch of at most <see cref="MaxThreads"/> threads. Token ids are staged in scratch.
/// </summary>
internal sealed class IlgpuLayerBackend(KernelSession session) : ILayerBackend
{
    /// <summary>The most threads an element-wise launch starts (each then strides over the rest).</summary>
    private const int MaxThreads = 1 << 20;

    private readonly ScratchBuffers _scratch = new(session);

    public void Rows<TInput>(TInput input, RowOutput output, int rows, int n, float eps)
        where TInput : struct, IRowInput
    {
        var kernel = session.Kernel($"layer/rows/{typeof(TInput).Name}", acc =>
            GroupedKernels.Load<TInput, RowOutput, int, float>(acc, LayerKernels.Rows<TInput>));
        kernel(session.Stream, new KernelConfig(new Index3D(rows, 1, 1), new Index3D(LayerKernels.GroupSize, 1, 1)), input, output, n, eps);
    }

    public void Add(ArrayView<float> x, ArrayView<float> y, long count)
    {
        var kernel = session.Kernel("layer/add", acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, long, long>(LayerKernels.Add));
        int threads = Threads(count);
        kernel(session.Stream, threads, x, y, count, threads);
    }

    public void Embed(ArrayView<sbyte> table, ArrayView<float> rowScale, ReadOnlySpan<int> tokens, ArrayView<float> y, int n)
    {
        var kernel = session.Kernel("layer/embed", acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<sbyte>, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, long, long>(LayerKernels.Embed));
        long count = (long)tokens.Length * n;
        int threads = Threads(count);
        kernel(session.Stream, threads, table, rowScale, _scratch.Stage("tokens", tokens), y, n, count, threads);
    }

    public void Rope(RopeIo io, RopeParams p)
    {
        var kernel = session.Kernel("layer/rope", acc =>
            acc.LoadAutoGroupedKernel<Index1D, RopeIo, RopeParams, long>(LayerKernels.Rope));
        int threads = Threads(p.Pairs);
        kernel(session.Stream, threads, io, p, threads);
    }

    private static int Threads(long count) => (int)Math.Min(count, MaxThreads);
}
