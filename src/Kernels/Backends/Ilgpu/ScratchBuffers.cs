using ILGPU;
using ILGPU.Runtime;

namespace Kernels.Backends.Ilgpu;

/// <summary>
/// A backend's reusable scratch buffers on the session's accelerator, one per role and element type
/// (staged host arrays, packed or transposed operands, partial results): grown when a call needs more,
/// never shrunk, freed with the accelerator. Use under the session's lock.
/// </summary>
internal sealed class ScratchBuffers(KernelSession session)
{
    private readonly Dictionary<(string Role, Type Element), object> _buffers = [];

    /// <summary>A view of at least <paramref name="length"/> elements of the buffer of <paramref name="role"/> (contents undefined).</summary>
    public ArrayView<T> Get<T>(string role, long length)
        where T : unmanaged
    {
        if (!_buffers.TryGetValue((role, typeof(T)), out object? holder))
            _buffers[(role, typeof(T))] = holder = new Holder<T>();
        return session.Scratch(ref ((Holder<T>)holder).Buffer, length, role);
    }

    /// <summary>The buffer of <paramref name="role"/> holding a copy of <paramref name="data"/>.</summary>
    public ArrayView<T> Stage<T>(string role, ReadOnlySpan<T> data)
        where T : unmanaged
    {
        ArrayView<T> view = Get<T>(role, data.Length);
        session.CopyIn(view, data);
        return view;
    }

    private sealed class Holder<T>
        where T : unmanaged
    {
#pragma warning disable SA1401, CA1051 // Passed by reference to the session's grow-only allocator.
        public MemoryBuffer1D<T, Stride1D.Dense>? Buffer;
#pragma warning restore SA1401, CA1051
    }
}
