using Kernels.Simd;

namespace Kernels.Backends.Simd;

/// <summary>
/// B (the weights) packed once, in the layout <see cref="Int8GemmSimd"/>'s micro-kernels stream, for
/// reuse by <see cref="Int8GemmSimd.Gemm(sbyte*, PackedWeights, int, int, long, in SimdEpilogue)"/>
/// across calls. Created by <see cref="Int8GemmSimd.PackWeights"/>; owns its native memory, which
/// <see cref="Dispose"/> frees.
/// </summary>
/// <remarks>
/// At the AVX-VNNI and AVX2 levels the memory holds, per batch slot, the NR-column panels (k grouped by
/// four bytes or two int16) followed by every slot's per-column correction; at the scalar level it
/// holds a plain copy of B. Shared weights (strideB = 0 or one GEMM) are packed once and serve any
/// batch count; per-GEMM weights serve exactly <see cref="BatchCount"/> GEMMs.
/// </remarks>
internal sealed unsafe class PackedWeights : IDisposable
{
    private readonly NativeBuffer _memory;

    internal PackedWeights(int n, int k, int batchCount, bool shared, SimdLevel level, int groups, int panelsN,
        long panelBytes, long bytesPerSlot, long totalBytes)
    {
        N = n;
        K = k;
        BatchCount = batchCount;
        Shared = shared;
        Level = level;
        Groups = groups;
        PanelsN = panelsN;
        PanelBytes = panelBytes;
        BytesPerSlot = bytesPerSlot;
        _memory = new NativeBuffer();
        Data = _memory.Ensure(Math.Max(totalBytes, 64));
        Bytes = _memory.Capacity;
    }

    /// <summary>Rows of B (columns of C).</summary>
    public int N { get; }

    /// <summary>The reduction length.</summary>
    public int K { get; }

    /// <summary>The number of GEMMs packed (1 when <see cref="Shared"/>).</summary>
    public int BatchCount { get; }

    /// <summary>One B for every GEMM of a batch (packed from strideB = 0 or a single GEMM).</summary>
    public bool Shared { get; }

    /// <summary>The level the layout was packed for (already resolved against the processor).</summary>
    public SimdLevel Level { get; }

    /// <summary>Native bytes owned (0 once disposed).</summary>
    public long Bytes { get; private set; }

    /// <summary>Whether <see cref="Dispose"/> has run.</summary>
    public bool IsDisposed => _memory.IsClosed;

    internal int Groups { get; }

    internal int PanelsN { get; }

    internal long PanelBytes { get; }

    /// <summary>Packed panel bytes of one batch slot (scalar: n·k bytes of the copy).</summary>
    internal long BytesPerSlot { get; }

    internal int Slots => Shared ? 1 : BatchCount;

    /// <summary>The packed panels (scalar: the copy of B), slot after slot.</summary>
    internal byte* Data { get; }

    /// <summary>The per-column corrections, <see cref="PanelsN"/>·NR per slot, after all slots' panels.</summary>
    internal int* Corr => (int*)(Data + Slots * BytesPerSlot);

    /// <summary>Keeps the memory alive for the duration of a call (a concurrent Dispose waits for it).</summary>
    internal void AddRef()
    {
        bool added = false;
        try
        {
            _memory.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            throw new ObjectDisposedException(nameof(PackedWeights), "b: the packed weights were disposed.");
        }
        if (!added)
            throw new ObjectDisposedException(nameof(PackedWeights), "b: the packed weights were disposed.");
    }

    internal void Release() => _memory.DangerousRelease();

    /// <summary>Frees the native memory (once no call is using it).</summary>
    public void Dispose()
    {
        _memory.Dispose();
        Bytes = 0;
    }
}
