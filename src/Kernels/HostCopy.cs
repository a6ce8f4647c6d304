using ILGPU;
using ILGPU.Runtime;

namespace Kernels;

/// <summary>
/// Copies between host memory and device views. The host side is pinned for the whole copy (ILGPU
/// takes a <c>ref T</c>) and the stream is synchronized around each copy. Without both, a convenience
/// call on the CPU accelerator returned zeros now and then while other tests ran (2 failures in 6
/// runs of one test filter; none in 8 runs with this); which of the two mattered was not isolated.
/// </summary>
internal static class HostCopy
{
    public static unsafe void ToDevice<T>(AcceleratorStream stream, ArrayView<T> target, ReadOnlySpan<T> source)
        where T : unmanaged
    {
        if (source.IsEmpty)
            return;
        fixed (T* pointer = source)
        {
            target.SubView(0, source.Length).CopyFromCPU(stream, ref *pointer, source.Length);
            stream.Synchronize();
        }
    }

    public static unsafe void ToHost<T>(AcceleratorStream stream, ArrayView<T> source, Span<T> target)
        where T : unmanaged
    {
        if (target.IsEmpty)
            return;
        stream.Synchronize();
        fixed (T* pointer = target)
        {
            source.SubView(0, target.Length).CopyToCPU(stream, ref *pointer, target.Length);
            stream.Synchronize();
        }
    }
}
