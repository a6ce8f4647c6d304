using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Backends.CudaPtx;

/// <summary>
/// The generated 2:4 sparse tensor-core PTX (<see cref="SparseTensorCorePtx"/>) loaded into a session's
/// CUDA context once, launched on ILGPU's buffers and stream like <see cref="TensorCoreGemm"/>.
/// </summary>
/// <remarks>
/// On compute capability 9.0 and newer the <c>mma.sp::ordered_metadata</c> module (PTX ISA 8.5) is tried
/// first: a third-party note says plain <c>mma.sp</c> runs on a slower path there (not confirmed by us);
/// when the driver rejects it the plain <c>mma.sp</c> module (PTX ISA 7.8) is loaded instead and the
/// reason is kept in <see cref="OrderedFailure"/>. Our metadata always has first &lt; second, so both
/// forms compute the same product.
/// </remarks>
internal sealed class SparseTensorCoreGemm : IDisposable
{
    private readonly TensorCoreGemm _module;

    private SparseTensorCoreGemm(TensorCoreGemm module, bool ordered, string? orderedFailure)
    {
        _module = module;
        OrderedMetadata = ordered;
        OrderedFailure = orderedFailure;
    }

    /// <summary>Whether the loaded module uses <c>mma.sp::ordered_metadata</c>.</summary>
    public bool OrderedMetadata { get; }

    /// <summary>Why the ordered-metadata module was not loaded on a device of compute capability ≥ 9.0 (null otherwise).</summary>
    public string? OrderedFailure { get; }

    /// <summary>Every entry of the library module.</summary>
    internal static IEnumerable<string> EntryNames()
    {
        foreach (PtxEpilogue epilogue in new[] { PtxEpilogue.Raw, PtxEpilogue.Dequant })
        {
            foreach (SparseTensorCoreTile tile in SparseTensorCorePtx.Tiles)
                yield return SparseTensorCorePtx.EntryName(tile, epilogue);
        }
    }

    /// <summary>Loads the module (see the remarks for which form).</summary>
    /// <exception cref="NotSupportedException">Not a CUDA accelerator, or compute capability below 8.0.</exception>
    /// <exception cref="InvalidOperationException">The driver rejected the PTX; the message holds the JIT log.</exception>
    public static SparseTensorCoreGemm Load(Accelerator accelerator)
    {
        string? why = TensorCoreGemm.WhyUnsupported(accelerator);
        if (why is not null)
            throw new NotSupportedException(why.Replace("tensor-core GEMM", "sparse tensor-core GEMM", StringComparison.Ordinal));
        string? orderedFailure = null;
        if (((CudaAccelerator)accelerator).Architecture.Major >= 9)
        {
            try
            {
                return new SparseTensorCoreGemm(
                    TensorCoreGemm.Load(accelerator, SparseTensorCorePtx.LibraryModule(orderedMetadata: true), EntryNames()), true, null);
            }
            catch (InvalidOperationException ex)
            {
                orderedFailure = ex.Message;
            }
        }
        return new SparseTensorCoreGemm(
            TensorCoreGemm.Load(accelerator, SparseTensorCorePtx.LibraryModule(orderedMetadata: false), EntryNames()), false, orderedFailure);
    }

    /// <summary>The tile and grid of a call with <paramref name="m"/> tokens and <paramref name="n"/> weight rows.</summary>
    internal static SparseTensorCorePlan Plan(int m, int n)
    {
        SparseTensorCoreTile tile = SparseTensorCorePtx.TileFor(m);
        return new SparseTensorCorePlan(tile,
            ((n + tile.RowsPerBlock - 1) / tile.RowsPerBlock, (m + tile.TokensPerBlock - 1) / tile.TokensPerBlock, 1), tile.Threads);
    }

    /// <summary>
    /// Whether the packed matrix can be addressed with the kernel's 32-bit fragment indices:
    /// row tiles · k steps · 32 lanes · 16 bytes must stay below 2³¹.
    /// </summary>
    internal static bool Addressable(int rowTiles, int kSteps) => (long)rowTiles * kSteps * 32 * 16 < int.MaxValue;

    /// <summary>The kernel arguments in <see cref="SparseTensorCorePtx.Parameters"/> order.</summary>
    internal static long[] Arguments(int m, int n, int kSteps, in SparseTensorCoreOperands o) =>
    [
        o.Values, o.Meta, o.X, o.Output, o.XScale, o.WScale, o.Bias,
        m, n, kSteps, o.Ldx, o.XBytes, o.Ldc, o.HasBias ? 1 : 0,
    ];

    /// <summary>Enqueues the plan's kernel on <paramref name="stream"/>.</summary>
    public void Launch(SparseTensorCorePlan plan, PtxEpilogue epilogue, AcceleratorStream stream, ReadOnlySpan<long> arguments)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (arguments.Length != SparseTensorCorePtx.Parameters.Count)
            throw new ArgumentException($"arguments: expected {SparseTensorCorePtx.Parameters.Count}, got {arguments.Length}.", nameof(arguments));
        _module.Launch(SparseTensorCorePtx.EntryName(plan.Tile, epilogue), plan.Grid, plan.Threads, stream, arguments);
    }

    /// <summary>Unloads the module.</summary>
    public void Dispose() => _module.Dispose();
}

/// <summary>The device addresses a sparse tensor-core launch works on.</summary>
/// <param name="Values">Packed weight values (<see cref="SparseTensorCorePacked.Values"/>).</param>
/// <param name="Meta">Packed metadata (<see cref="SparseTensorCorePacked.Meta"/>).</param>
/// <param name="X">Tokens: rows of <paramref name="Ldx"/> bytes, 16-byte aligned.</param>
/// <param name="Output">Y[token·ldc + channel], int32 or float32.</param>
/// <param name="XScale">Per-token scales (dequant only).</param>
/// <param name="WScale">Per-channel scales (dequant only).</param>
/// <param name="Bias">Per-channel bias (read only when <paramref name="HasBias"/>).</param>
/// <param name="Ldx">Bytes between rows of X (a multiple of 16).</param>
/// <param name="XBytes">Bytes of a row of X the kernel may read (a multiple of 16, ≥ k).</param>
/// <param name="Ldc">Elements between output rows.</param>
/// <param name="HasBias">Whether the bias is added.</param>
internal readonly record struct SparseTensorCoreOperands(
    long Values, long Meta, long X, long Output, long XScale, long WScale, long Bias, int Ldx, int XBytes, int Ldc, bool HasBias);

/// <summary>Which sparse tensor-core kernel runs a call, on which grid.</summary>
/// <param name="Tile">The tile.</param>
/// <param name="Grid">Blocks in x (weight rows), y (tokens), z (1).</param>
/// <param name="Threads">Threads per block.</param>
internal sealed record SparseTensorCorePlan(SparseTensorCoreTile Tile, (int X, int Y, int Z) Grid, int Threads);
