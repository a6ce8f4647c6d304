using Kernels.Backends.Simd.Jit;

namespace Kernels.Tests;

/// <summary>
/// <paramref name="bytes"/> of read-write memory between two inaccessible pages, flush against the one after
/// it (<paramref name="atEnd"/>) or the one before it: a kernel that reads or writes outside it crashes the test.
/// </summary>
internal sealed unsafe class GuardedBuffer : IDisposable
{
    private readonly byte* _map;
    private readonly long _mapBytes;

    public GuardedBuffer(long bytes, bool atEnd)
    {
        int page = ExecutablePages.PageSize;
        long dataPages = Math.Max(1, (bytes + page - 1) / page);
        _mapBytes = (dataPages + 2) * page;
        _map = ExecutablePages.MapNoAccess(dataPages + 2);
        ExecutablePages.MakeReadWrite(_map + page, dataPages * page);
        Pointer = atEnd ? _map + (dataPages + 1) * page - bytes : _map + page;
    }

    public byte* Pointer { get; }

    /// <summary>A guarded copy of <paramref name="data"/>.</summary>
    public static GuardedBuffer Of(float[] data, bool atEnd)
    {
        var buffer = new GuardedBuffer((long)data.Length * sizeof(float), atEnd);
        data.AsSpan().CopyTo(new Span<float>(buffer.Pointer, data.Length));
        return buffer;
    }

    public void Dispose() => ExecutablePages.Unmap(_map, _mapBytes);
}
