using System.Globalization;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Backends.CudaPtx;

/// <summary>
/// The generated tensor-core PTX (<see cref="TensorCorePtx"/>) loaded into a session's CUDA context
/// once (<c>cuModuleLoadDataEx</c> through ILGPU's <see cref="CudaAPI"/>), and launched with
/// <c>cuLaunchKernel</c> on ILGPU's buffers and stream, so it orders with the ILGPU kernels.
/// </summary>
internal sealed class TensorCoreGemm : IDisposable
{
    /// <summary>The lowest compute capability the PTX targets (mma m16n8k32 s8, ldmatrix, cp.async).</summary>
    public const int MinimumMajor = 8;

    private readonly CudaAccelerator _accelerator;
    private readonly Dictionary<string, IntPtr> _functions = new(StringComparer.Ordinal);
    private IntPtr _module;

    private TensorCoreGemm(CudaAccelerator accelerator, IntPtr module)
    {
        _accelerator = accelerator;
        _module = module;
    }

    /// <summary>Why <paramref name="accelerator"/> cannot run the tensor-core kernels, or null when it can.</summary>
    public static string? WhyUnsupported(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        if (accelerator is not CudaAccelerator cuda)
            return $"the tensor-core GEMM needs a CUDA device; this accelerator is {accelerator.AcceleratorType}";
        CudaArchitecture arch = cuda.Architecture;
        return arch.Major < MinimumMajor
            ? string.Create(CultureInfo.InvariantCulture, $"the tensor-core GEMM needs compute capability {MinimumMajor}.0 or newer; {cuda.Name} has {arch.Major}.{arch.Minor}")
            : null;
    }

    /// <summary>Loads the library module into the accelerator's context and resolves every entry.</summary>
    /// <exception cref="NotSupportedException">Not a CUDA accelerator, or compute capability below 8.0 (the message says which).</exception>
    /// <exception cref="InvalidOperationException">The driver rejected the PTX; the message holds the JIT log.</exception>
    public static TensorCoreGemm Load(Accelerator accelerator) => Load(accelerator, TensorCorePtx.LibraryModule());

    /// <summary>Loads <paramref name="ptx"/> (see <see cref="Load(Accelerator)"/>).</summary>
    internal static TensorCoreGemm Load(Accelerator accelerator, string ptx) => Load(accelerator, ptx, EntryNames());

    /// <summary>Loads <paramref name="ptx"/> and resolves the entries <paramref name="entryNames"/> (see <see cref="Load(Accelerator)"/>).</summary>
    internal static TensorCoreGemm Load(Accelerator accelerator, string ptx, IEnumerable<string> entryNames)
    {
        string? why = WhyUnsupported(accelerator);
        if (why is not null)
            throw new NotSupportedException(why);
        var cuda = (CudaAccelerator)accelerator;
        using ScopedAcceleratorBinding binding = cuda.BindScoped();
        CudaError error = CudaAPI.CurrentAPI.LoadModule(out IntPtr module, ptx, out string? log);
        if (error != CudaError.CUDA_SUCCESS)
            throw new InvalidOperationException(JitFailure(error.ToString(), CudaAPI.CurrentAPI.GetErrorString(error), log));
        var gemm = new TensorCoreGemm(cuda, module);
        try
        {
            foreach (string name in entryNames)
            {
                error = CudaAPI.CurrentAPI.GetModuleFunction(out IntPtr function, module, name);
                if (error != CudaError.CUDA_SUCCESS)
                    throw new InvalidOperationException($"Tensor-core PTX: cuModuleGetFunction({name}) failed: {error} ({CudaAPI.CurrentAPI.GetErrorString(error)}).");
                gemm._functions[name] = function;
            }
        }
        catch
        {
            gemm.Dispose();
            throw;
        }
        return gemm;
    }

    /// <summary>The message of a failed module load: the driver's error and its JIT log (trimmed of padding).</summary>
    internal static string JitFailure(string error, string description, string? log)
    {
        string trimmed = (log ?? "").TrimEnd('\0', ' ', '\n', '\r');
        return $"Tensor-core PTX: the CUDA driver could not load the generated module: {error} ({description})."
            + (trimmed.Length > 0 ? $" JIT log: {trimmed}" : " The JIT log is empty.");
    }

    /// <summary>Every entry of the library module.</summary>
    internal static IEnumerable<string> EntryNames()
    {
        foreach (PtxEpilogue epilogue in new[] { PtxEpilogue.Raw, PtxEpilogue.Dequant })
        {
            foreach (TensorCoreTile tile in TensorCorePtx.GemmTiles)
                yield return TensorCorePtx.EntryName(tile, epilogue);
            foreach (DecodeTile tile in TensorCorePtx.DecodeTiles)
                yield return TensorCorePtx.EntryName(tile, epilogue);
        }
    }

    /// <summary>The kernel a shape runs: the decode kernel for m ≤ 32, else the large or the small GEMM tile.</summary>
    internal static TensorCorePlan Plan(int m, int n, int batchCount, int multiprocessors)
    {
        if (m <= 32)
        {
            DecodeTile decode = TensorCorePtx.DecodeTiles.First(t => t.MaxTokens >= m);
            return new TensorCorePlan(decode.Name, null, decode, ((n + DecodeTile.RowsPerBlock - 1) / DecodeTile.RowsPerBlock, 1, batchCount), decode.Threads);
        }
        TensorCoreTile large = TensorCorePtx.GemmTiles[0], small = TensorCorePtx.GemmTiles[1];
        long largeBlocks = (long)Blocks(m, large.BlockM) * Blocks(n, large.BlockN) * batchCount;
        TensorCoreTile tile = largeBlocks >= multiprocessors ? large : small;
        return new TensorCorePlan(tile.Name, tile, null, (Blocks(n, tile.BlockN), Blocks(m, tile.BlockM), batchCount), tile.Threads);
    }

    private static int Blocks(int size, int tile) => (size + tile - 1) / tile;

    /// <summary>
    /// Whether rows of int8 values can be read in place: k, the address and the batch stride all
    /// multiples of 16 bytes (cp.async 16 and the 16-byte loads need aligned row starts). Otherwise the
    /// host copies them into zero-padded rows of ⌈k/16⌉·16 bytes first.
    /// </summary>
    internal static bool RowsUsableInPlace(int k, long address, long stride) =>
        k % 16 == 0 && address % 16 == 0 && stride % 16 == 0;

    /// <summary>The kernel arguments in <see cref="TensorCorePtx.Parameters"/> order.</summary>
    /// <remarks>The decode kernel needs k % 16 = 0: it gets the row stride (the padded k; the padding is zeros).</remarks>
    internal static long[] Arguments(TensorCorePlan plan, int m, int n, int k, in TensorCoreOperands o)
    {
        ArgumentNullException.ThrowIfNull(plan);
        int kernelK = plan.Decode is not null ? o.RowBytes : k;
        return
        [
            o.A, o.B, o.Output, o.AScale, o.BScale, o.Bias,
            m, n, kernelK, o.RowBytes, o.RowBytes, o.Ldc, o.HasBias ? 1 : 0,
            o.StrideA, o.StrideB, o.StrideC, o.StrideAScale, o.StrideBScale,
        ];
    }

    /// <summary>The entry a plan launches.</summary>
    internal static string EntryName(TensorCorePlan plan, PtxEpilogue epilogue) =>
        plan.Gemm is not null ? TensorCorePtx.EntryName(plan.Gemm, epilogue) : TensorCorePtx.EntryName(plan.Decode!, epilogue);

    /// <summary>Enqueues one kernel on <paramref name="stream"/>; <paramref name="arguments"/> in <see cref="TensorCorePtx.Parameters"/> order.</summary>
    public void Launch(TensorCorePlan plan, PtxEpilogue epilogue, AcceleratorStream stream, ReadOnlySpan<long> arguments)
    {
        if (arguments.Length != TensorCorePtx.Parameters.Count)
            throw new ArgumentException($"arguments: expected {TensorCorePtx.Parameters.Count}, got {arguments.Length}.", nameof(arguments));
        Launch(EntryName(plan, epilogue), plan.Grid, plan.Threads, stream, arguments);
    }

    /// <summary>Enqueues entry <paramref name="name"/> of the loaded module on <paramref name="stream"/>; every argument in an 8-byte slot.</summary>
    internal unsafe void Launch(string name, (int X, int Y, int Z) grid, int threads, AcceleratorStream stream, ReadOnlySpan<long> arguments)
    {
        ObjectDisposedException.ThrowIf(_module == IntPtr.Zero, this);
        IntPtr function = _functions[name];
        var cudaStream = (CudaStream)stream;
        // Every argument lives in an 8-byte slot; the u32 parameters read the low half (little-endian).
        long* values = stackalloc long[arguments.Length];
        IntPtr* pointers = stackalloc IntPtr[arguments.Length];
        for (int i = 0; i < arguments.Length; i++)
        {
            values[i] = arguments[i];
            pointers[i] = (IntPtr)(values + i);
        }
        using ScopedAcceleratorBinding binding = _accelerator.BindScoped();
        CudaError error = CudaAPI.CurrentAPI.LaunchKernel(
            function, grid.X, grid.Y, grid.Z, threads, 1, 1, 0,
            cudaStream.StreamPtr, (IntPtr)pointers, IntPtr.Zero);
        if (error != CudaError.CUDA_SUCCESS)
            throw new InvalidOperationException($"Tensor-core GEMM: cuLaunchKernel({name}, grid {grid}) failed: {error} ({CudaAPI.CurrentAPI.GetErrorString(error)}).");
    }

    /// <summary>Unloads the module.</summary>
    public void Dispose()
    {
        if (_module == IntPtr.Zero)
            return;
        if (!_accelerator.IsDisposed)
        {
            using ScopedAcceleratorBinding binding = _accelerator.BindScoped();
            _ = CudaAPI.CurrentAPI.DestroyModule(_module);
        }
        _module = IntPtr.Zero;
        _functions.Clear();
    }
}

/// <summary>The device addresses and strides a tensor-core launch works on.</summary>
/// <param name="A">Address of A (rows of <paramref name="RowBytes"/> bytes, 16-byte aligned).</param>
/// <param name="B">Address of B (rows of <paramref name="RowBytes"/> bytes, 16-byte aligned).</param>
/// <param name="Output">Address of C (int32) or Y (float32).</param>
/// <param name="AScale">Address of the per-row scales (dequant only; any valid address otherwise).</param>
/// <param name="BScale">Address of the per-column scales (dequant only).</param>
/// <param name="Bias">Address of the bias (read only when <paramref name="HasBias"/>).</param>
/// <param name="RowBytes">Bytes between rows of A and of B: ⌈k/16⌉·16.</param>
/// <param name="Ldc">Elements between output rows.</param>
/// <param name="HasBias">Whether the bias is added.</param>
/// <param name="StrideA">Bytes of A between GEMMs of a batch.</param>
/// <param name="StrideB">Bytes of B between GEMMs (0: shared).</param>
/// <param name="StrideC">Output elements between GEMMs.</param>
/// <param name="StrideAScale">aScale elements between GEMMs.</param>
/// <param name="StrideBScale">bScale and bias elements between GEMMs (0: shared).</param>
internal readonly record struct TensorCoreOperands(
    long A, long B, long Output, long AScale, long BScale, long Bias, int RowBytes, int Ldc, bool HasBias,
    long StrideA, long StrideB, long StrideC, long StrideAScale, long StrideBScale);

/// <summary>Which generated kernel runs a shape, on which grid.</summary>
/// <param name="Name">The tile's name.</param>
/// <param name="Gemm">The GEMM tile, or null for the decode kernel.</param>
/// <param name="Decode">The decode tile, or null for the GEMM kernel.</param>
/// <param name="Grid">Blocks in x, y, z (z = batch).</param>
/// <param name="Threads">Threads per block.</param>
internal sealed record TensorCorePlan(string Name, TensorCoreTile? Gemm, DecodeTile? Decode, (int X, int Y, int Z) Grid, int Threads);
