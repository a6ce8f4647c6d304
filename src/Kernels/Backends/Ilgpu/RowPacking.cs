using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels.Backends.Ilgpu;

/// <summary>The one launch of <see cref="Int8GemmKernels.PackRows"/>: int8 rows as zero-padded rows of whole words.</summary>
internal static class RowPacking
{
    /// <summary>
    /// Copies <paramref name="batches"/> × <paramref name="rows"/> rows of k int8 values (batch stride
    /// <paramref name="stride"/> bytes) into <paramref name="packed"/> as rows of <paramref name="kWords"/>
    /// words, zero-padded, enqueued on the session's stream.
    /// </summary>
    public static void Pack(KernelSession session, ArrayView<sbyte> source, ArrayView<int> packed, int rows, int k, int kWords,
        int batches, long stride)
    {
        var pack = session.Kernel("pack", acc =>
            acc.LoadAutoGroupedKernel<Index3D, ArrayView<sbyte>, ArrayView<int>, int, int, int, long>(
                Int8GemmKernels.PackRows));
        pack(session.Stream, new Index3D(kWords, rows, batches), source, packed, rows, k, kWords, stride);
    }
}
