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

    /// <summary>Incremented by every write through the <c>CopyFrom</c> methods (caches derived from the contents check it).</summary>
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

    /// <summary>
    /// Enqueues a device-to-device copy of <paramref name="count"/> elements from <paramref name="source"/> at
    /// <paramref name="sourceOffset"/> into this buffer at <paramref name="offset"/>, ordered after earlier calls
    /// (e.g. one token's row of a prefill's activations, without a trip through host memory).
    /// </summary>
    /// <exception cref="ArgumentException">The buffers belong to different sessions, a range does not fit, or the ranges of one buffer overlap.</exception>
    public void CopyFrom(DeviceBuffer<T> source, long sourceOffset, long offset, long count)
    {
        ArgumentNullException.ThrowIfNull(source);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ObjectDisposedException.ThrowIf(source.IsDisposed, source);
        if (!ReferenceEquals(source.Session, Session))
            throw new ArgumentException("source: expected a buffer of this buffer's session, got one of another session.", nameof(source));
        if (count < 0)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"count: expected ≥ 0, got {count}.");
        if (sourceOffset < 0 || sourceOffset > source.Length - count)
            throw new ArgumentOutOfRangeException(nameof(sourceOffset), $"sourceOffset: expected {count} elements at offset {sourceOffset} to fit in the source's {source.Length}; they do not.");
        if (offset < 0 || offset > Length - count)
            throw new ArgumentOutOfRangeException(nameof(offset), $"offset: expected {count} elements at offset {offset} to fit in a buffer of {Length}; they do not.");
        if (ReferenceEquals(source, this) && sourceOffset < offset + count && offset < sourceOffset + count)
            throw new ArgumentException($"source: expected a range not overlapping the destination, got [{sourceOffset}, {sourceOffset + count}) and [{offset}, {offset + count}) of one buffer.", nameof(source));
        if (count == 0)
            return;
        lock (Session.SyncRoot)
        {
            Session.ThrowIfDisposed();
            source.View.SubView(sourceOffset, count).CopyTo(Session.Stream, View.SubView(offset, count));
            Version++;
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
