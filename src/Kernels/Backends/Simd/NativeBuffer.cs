using System.Runtime.InteropServices;

namespace Kernels.Backends.Simd;

/// <summary>
/// A 64-byte-aligned block of native memory that grows on demand; freed when disposed or, for one
/// that is dropped (for example with the thread that held it), when it is finalized.
/// </summary>
internal sealed unsafe class NativeBuffer : SafeHandle
{
    public NativeBuffer()
        : base(IntPtr.Zero, ownsHandle: true)
    {
    }

    public long Capacity { get; private set; }

    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>The buffer, at least <paramref name="bytes"/> long (contents not kept when it grows).</summary>
    public byte* Ensure(long bytes)
    {
        if (bytes > Capacity)
        {
            long size = Math.Max(bytes, Capacity + Capacity / 2);
            size = (size + 4095) & ~4095L;
            if (handle != IntPtr.Zero)
                NativeMemory.AlignedFree((void*)handle);
            handle = IntPtr.Zero;
            Capacity = 0;
            handle = (IntPtr)NativeMemory.AlignedAlloc((nuint)size, 64);
            Capacity = size;
        }
        return (byte*)handle;
    }

    protected override bool ReleaseHandle()
    {
        NativeMemory.AlignedFree((void*)handle);
        return true;
    }
}

/// <summary>A small thread-safe pool of <see cref="NativeBuffer"/>s, so steady-state calls allocate no packing memory.</summary>
internal static class NativeBufferPool
{
    private const int MaxPooled = 8;
    private static readonly NativeBuffer?[] Pool = new NativeBuffer?[MaxPooled];
    private static readonly Lock Sync = new();

    public static NativeBuffer Rent()
    {
        lock (Sync)
        {
            for (int i = 0; i < MaxPooled; i++)
            {
                if (Pool[i] is { } b)
                {
                    Pool[i] = null;
                    return b;
                }
            }
        }
        return new NativeBuffer();
    }

    public static void Return(NativeBuffer buffer)
    {
        lock (Sync)
        {
            for (int i = 0; i < MaxPooled; i++)
            {
                if (Pool[i] is null)
                {
                    Pool[i] = buffer;
                    return;
                }
            }
        }
        buffer.Dispose();
    }
}
