using System.Runtime.InteropServices;

namespace Kernels.Backends.Simd.Jit;

/// <summary>
/// Pages holding generated machine code, W^X: mapped read-write, filled, then switched to read-execute
/// before any code runs; never writable and executable at once. Linux only (<c>mmap</c>/<c>mprotect</c>
/// from libc); kept for the life of the process (the generated kernels are cached process-wide).
/// </summary>
internal sealed unsafe partial class ExecutablePages
{
    private const int ProtRead = 1;
    private const int ProtWrite = 2;
    private const int ProtExec = 4;
    private const int MapPrivate = 0x02;
    private const int MapAnonymous = 0x20;

    private ExecutablePages(byte* address, long length)
    {
        Address = address;
        Length = length;
    }

    /// <summary>The first byte of the mapping (page-aligned).</summary>
    public byte* Address { get; }

    /// <summary>The mapped length in bytes (whole pages).</summary>
    public long Length { get; }

    /// <summary>The system page size.</summary>
    public static int PageSize => Environment.SystemPageSize;

    /// <summary>
    /// Maps whole pages read-write, copies <paramref name="code"/> to their start, and makes them
    /// read-execute.
    /// </summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux.</exception>
    /// <exception cref="InvalidOperationException"><c>mmap</c> or <c>mprotect</c> failed (errno in the message).</exception>
    public static ExecutablePages Create(ReadOnlySpan<byte> code)
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException("Generated code needs Linux (mmap/mprotect); this process runs elsewhere.");
        long length = Math.Max(PageSize, (code.Length + (long)PageSize - 1) / PageSize * PageSize);
        byte* p = Map(length, ProtRead | ProtWrite);
        try
        {
            code.CopyTo(new Span<byte>(p, code.Length));
            Protect(p, length, ProtRead | ProtExec);
        }
        catch
        {
            Unmap(p, length);
            throw;
        }
        return new ExecutablePages(p, length);
    }

    /// <summary>
    /// Maps <paramref name="pages"/> pages with no access at all (tests: guard pages around buffers);
    /// <see cref="MakeReadWrite"/> opens some of them, <see cref="Unmap"/> frees them.
    /// </summary>
    internal static byte* MapNoAccess(long pages) => Map(pages * PageSize, 0);

    /// <summary>Makes whole pages read-write (tests: the buffer between guard pages).</summary>
    internal static void MakeReadWrite(byte* p, long length) => Protect(p, length, ProtRead | ProtWrite);

    /// <summary>Unmaps pages mapped by this class.</summary>
    internal static void Unmap(byte* p, long length) => _ = munmap(p, (nuint)length);

    private static byte* Map(long length, int protection)
    {
        nint p = mmap(null, (nuint)length, protection, MapPrivate | MapAnonymous, -1, 0);
        if (p == -1)
            throw new InvalidOperationException($"mmap of {length} bytes failed (errno {Marshal.GetLastPInvokeError()}).");
        return (byte*)p;
    }

    private static void Protect(byte* p, long length, int protection)
    {
        if (mprotect(p, (nuint)length, protection) != 0)
            throw new InvalidOperationException($"mprotect to {protection} failed (errno {Marshal.GetLastPInvokeError()}).");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mprotect(void* address, nuint length, int protection);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(void* address, nuint length);
}
