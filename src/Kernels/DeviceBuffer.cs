using ILGPU;
using ILGPU.Runtime;

namespace Kernels;

/// <summary>
/// A buffer in device memory, owned by one <see cref="KernelSession"/>. Create it with
/// <see cref="KernelSession.Allocate{T}(long)"/> or <see cref="KernelSession.Upload{T}(ReadOnlySpan{T})"/>,
/// keep it across calls (weights are uploaded once), and dispose it when done.
/// </summary>
/// <typeparam name="T">The element type.</typeparam>
public sealed class DeviceBuffer<T> : IDisposable
    where T : unmanaged
{
    private MemoryBuffer1D<T, Stride1D.Dense>? _buffer;

    internal DeviceBuffer(KernelSession session, MemoryBuffer1D<T, Stride1D.Dense> buffer)
    {
        Session = session;
        _buffer = buffer;
        Length = buffer.Length;
    }

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>Size in bytes.</summary>
    public long LengthInBytes => Length * Unsafe.SizeOf<T>();

    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    public bool IsDisposed => _buffer is null;

    internal KernelSession Session { get; }

    /// <summary>Incremented by every write through <see cref="CopyFrom"/> (caches derived from the contents check it).</summary>
    internal long Version { get; private set; }

    internal ArrayView<T> View =>
        (_buffer ?? throw new ObjectDisposedException(nameof(DeviceBuffer<T>))).View.AsContiguous();

    /// <summary>Copies <paramref name="source"/> into the buffer at <paramref name="offset"/> (ordered after earlier calls).</summary>
    public void CopyFrom(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(source.Length, offset, nameof(source));
        lock (Session.SyncRoot)
        {
            Session.ThrowIfDisposed();
            HostCopy.ToDevice(Session.Stream, View.SubView(offset, source.Length), source);
            Version++;
        }
    }

    /// <summary>Copies from the buffer at <paramref name="offset"/> into <paramref name="destination"/>, after all earlier calls finished.</summary>
    public void CopyTo(Span<T> destination, long offset = 0)
    {
        CheckRange(destination.Length, offset, nameof(destination));
        lock (Session.SyncRoot)
        {
            Session.ThrowIfDisposed();
            HostCopy.ToHost(Session.Stream, View.SubView(offset, destination.Length), destination);
        }
    }

    /// <summary>The whole buffer as a new array (waits for earlier calls).</summary>
    public T[] ToArray()
    {
        if (Length > Array.MaxLength)
            throw new InvalidOperationException($"The buffer holds {Length} elements, more than an array can ({Array.MaxLength}).");
        var result = new T[Length];
        CopyTo(result);
        return result;
    }

    /// <summary>Releases the device memory. Further use throws.</summary>
    public void Dispose()
    {
        MemoryBuffer1D<T, Stride1D.Dense>? buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null)
            Session.Release(this, buffer, LengthInBytes);
    }

    private void CheckRange(int count, long offset, string argument)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (offset < 0 || offset > Length - count)
            throw new ArgumentOutOfRangeException(argument,
                $"{argument}: expected {count} elements at offset {offset} to fit in a buffer of {Length}; they do not.");
    }
}
