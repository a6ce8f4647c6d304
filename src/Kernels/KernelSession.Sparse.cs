using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Kernels.Cuda;
using Kernels.DeviceCode;
using Kernels.DeviceCode.Ptx;
using Kernels.Simd;

namespace Kernels;

public sealed partial class KernelSession
{
    private MemoryBuffer1D<byte, Stride1D.Dense>? _sparseXt;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageSparseX;
    private readonly ConditionalWeakTable<object, object> _sparseUploads = new();
    private readonly List<(WeakReference<object> Matrix, IDisposable Uploaded)> _sparseUploadList = [];
    private SparseTensorCoreGemm? _sparseTensorCore;
    private MemoryBuffer1D<byte, Stride1D.Dense>? _sparseXt4;

    /// <summary>Which ILGPU kernel runs int8 sparse products for m &gt; 16 (Auto: the tiled one); for benchmarks.</summary>
    internal SparseInt8Kernel SparseInt8Kernel { get; set; }

    /// <summary>Choices of the cpu-simd sparse kernels forced for in-process A/B benchmarks (default: none).</summary>
    internal SparseSimdOverrides SparseSimdOverrides { get; set; }
    private string? _sparseTensorCoreLoadFailure;

    // ---------------------------------------------------------------- convenience layer (host arrays)

    /// <summary>
    /// <c>Y[m, w.Rows] = X[m, w.Columns]·Wᵀ</c>, i.e. <c>Y[i, j] = Σ_k X[i, k]·W[j, k]</c>, int8 × int8 with
    /// exact int32 results: X row-major m×Columns (activations), W sparse (weights).
    /// </summary>
    /// <remarks>
    /// On the GPU and CPU-accelerator backends the matrix is uploaded on first use and the upload is
    /// kept for later calls with the same <see cref="SparseMatrix"/> object (matrices are immutable); it
    /// is freed at the first sparse call after the matrix was garbage-collected, or with the session.
    /// On cpu-simd the host arrays are used directly.
    /// </remarks>
    /// <exception cref="ArgumentException">m &lt; 1, w.Columns &gt; 131071, or the length of x is not m·Columns.</exception>
    public int[] SparseInt8Gemm(SparseMatrix w, ReadOnlySpan<sbyte> x, int m)
    {
        ValidateSparseHost(w, x.Length, m, int8: true);
        var result = new int[Check.ArrayLength((long)m * w.Rows, "m·Rows")];
        lock (_sync)
        {
            ThrowIfDisposed();
            if (Backend == Backend.CpuSimd)
            {
                unsafe
                {
                    fixed (sbyte* xp = x)
                    fixed (int* yp = result)
                    {
                        SparseSimd.Int8(w.SimdPlan(CpuSimd.Effective), xp, m, SimdEpilogue.Int32(yp, 0), SparseSimdOverrides);
                    }
                }
                GC.KeepAlive(w);
                return result;
            }
            ArrayView<sbyte> xv = Stage(ref _stageA, x, nameof(x));
            ArrayView<int> yv = Scratch(ref _stageC, result.Length, "y");
            RunSparseInt8(Uploaded(w), xv, m, new Int32Epilogue { C = yv, Ldc = w.Rows });
            HostCopy.ToHost(Stream, yv, result);
        }
        return result;
    }

    /// <summary>
    /// The sparse int8 product with the dense GEMM's fused dequantizing epilogue:
    /// <c>Y[i, j] = C[i, j]·xScale[i]·wScale[j] + bias[j]</c> in float32 (bit for bit what
    /// <see cref="Int8GemmDequant(ReadOnlySpan{sbyte}, ReadOnlySpan{sbyte}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, int)"/>
    /// gives on the dense matrix). Pass an empty bias for none. Caching as in <see cref="SparseInt8Gemm(SparseMatrix, ReadOnlySpan{sbyte}, int)"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Sizes or lengths do not match, or a scale or bias is not finite.</exception>
    public float[] SparseInt8GemmDequant(
        SparseMatrix w, ReadOnlySpan<sbyte> x, ReadOnlySpan<float> xScale, ReadOnlySpan<float> wScale, ReadOnlySpan<float> bias, int m)
    {
        ValidateSparseHost(w, x.Length, m, int8: true);
        int n = w.Rows;
        Check.ExactLength(xScale.Length, m, nameof(xScale), "m");
        Check.ExactLength(wScale.Length, n, nameof(wScale), "w.Rows");
        if (!bias.IsEmpty)
            Check.ExactLength(bias.Length, n, nameof(bias), "w.Rows (or 0 for no bias)");
        Check.Finite(xScale, nameof(xScale));
        Check.Finite(wScale, nameof(wScale));
        Check.Finite(bias, nameof(bias));
        var result = new float[Check.ArrayLength((long)m * n, "m·Rows")];
        lock (_sync)
        {
            ThrowIfDisposed();
            if (Backend == Backend.CpuSimd)
            {
                unsafe
                {
                    fixed (sbyte* xp = x)
                    fixed (float* yp = result, xsp = xScale, wsp = wScale, bp = bias)
                    {
                        SparseSimd.Int8(w.SimdPlan(CpuSimd.Effective), xp, m,
                            SimdEpilogue.Dequant(yp, 0, xsp, 0, wsp, bias.IsEmpty ? null : bp, 0), SparseSimdOverrides);
                    }
                }
                GC.KeepAlive(w);
                return result;
            }
            ArrayView<sbyte> xv = Stage(ref _stageA, x, nameof(x));
            ArrayView<float> scales = Scratch(ref _stageScales, (long)m + 2L * n, "scales");
            ArrayView<float> xsv = scales.SubView(0, m), wsv = scales.SubView(m, n), biasv = scales.SubView((long)m + n, n);
            CopyIn(xsv, xScale);
            CopyIn(wsv, wScale);
            CopyIn(biasv, bias);
            ArrayView<float> yv = Scratch(ref _stageY, result.Length, "y");
            RunSparseInt8(Uploaded(w), xv, m, Dequant(yv, xsv, wsv, bias.IsEmpty ? null : biasv, n));
            HostCopy.ToHost(Stream, yv, result);
        }
        return result;
    }

    /// <summary>
    /// The sparse float32 product <c>Y[m, w.Rows] = X·Wᵀ (+ bias)</c> (bias per output channel; empty for none).
    /// Summation order: see <see cref="SparseKernels"/> (ILGPU backends) and <c>SparseSimd</c> (cpu-simd);
    /// results agree with a float64 reference within float32 rounding. Caching as in
    /// <see cref="SparseInt8Gemm(SparseMatrix, ReadOnlySpan{sbyte}, int)"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Sizes or lengths do not match, or the bias is not finite.</exception>
    public float[] SparseGemm(SparseMatrixF32 w, ReadOnlySpan<float> x, int m, ReadOnlySpan<float> bias = default)
    {
        ValidateSparseHost(w, x.Length, m, int8: false);
        int n = w.Rows;
        if (!bias.IsEmpty)
            Check.ExactLength(bias.Length, n, nameof(bias), "w.Rows (or 0 for no bias)");
        Check.Finite(bias, nameof(bias));
        var result = new float[Check.ArrayLength((long)m * n, "m·Rows")];
        lock (_sync)
        {
            ThrowIfDisposed();
            if (Backend == Backend.CpuSimd)
            {
                unsafe
                {
                    fixed (float* xp = x, yp = result, bp = bias)
                    {
                        SparseSimd.Float32(w.SimdPlan(CpuSimd.Effective), xp, m, yp, bias.IsEmpty ? null : bp, SparseSimdOverrides);
                    }
                }
                GC.KeepAlive(w);
                return result;
            }
            ArrayView<float> xv = Stage(ref _stageSparseX, x, nameof(x));
            ArrayView<float> biasv = Scratch(ref _stageScales, n, "bias");
            CopyIn(biasv, bias);
            ArrayView<float> yv = Scratch(ref _stageY, result.Length, "y");
            RunSparseFloat32(Uploaded(w), xv, m, FloatOutput(yv, bias.IsEmpty ? null : biasv, n));
            HostCopy.ToHost(Stream, yv, result);
        }
        return result;
    }

    // ---------------------------------------------------------------- device-resident API

    /// <summary>Uploads an int8 sparse matrix to the device (once; keep it for the calls that use it, dispose it when done).</summary>
    public DeviceSparseMatrix<sbyte> Upload(SparseMatrix w)
    {
        ArgumentNullException.ThrowIfNull(w);
        return new DeviceSparseMatrix<sbyte>(this, w.Parts, w.NonZeros);
    }

    /// <summary>Uploads a float32 sparse matrix to the device.</summary>
    public DeviceSparseMatrix<float> Upload(SparseMatrixF32 w)
    {
        ArgumentNullException.ThrowIfNull(w);
        return new DeviceSparseMatrix<float>(this, w.Parts, w.NonZeros);
    }

    /// <summary>
    /// Enqueues <c>Y = X·Wᵀ</c> (int32, exact) on device buffers: X m×w.Columns, Y m×w.Rows, row-major;
    /// buffers may be longer than needed. Returns at once (cpu-simd: after the product ran).
    /// </summary>
    public void SparseInt8Gemm(DeviceSparseMatrix<sbyte> w, DeviceBuffer<sbyte> x, DeviceBuffer<int> y, int m)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            ValidateSparseDevice(w, x, m, int8: true);
            Check.Buffer(y, this, nameof(y));
            Check.MinLength(y.Length, (long)m * w.Rows, nameof(y), "m·w.Rows");
            RunSparseInt8(w, x.View, m, new Int32Epilogue { C = y.View, Ldc = w.Rows });
        }
    }

    /// <summary>
    /// Enqueues the sparse product with the dequantizing epilogue on device buffers:
    /// <c>Y = C·xScale[m]·wScale[n] + bias[n]</c> (<paramref name="bias"/> may be null). Scales on the device
    /// are not re-read for validation.
    /// </summary>
    public void SparseInt8GemmDequant(
        DeviceSparseMatrix<sbyte> w, DeviceBuffer<sbyte> x, DeviceBuffer<float> xScale, DeviceBuffer<float> wScale,
        DeviceBuffer<float>? bias, DeviceBuffer<float> y, int m)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            ValidateSparseDevice(w, x, m, int8: true);
            int n = w.Rows;
            Check.Buffer(xScale, this, nameof(xScale));
            Check.Buffer(wScale, this, nameof(wScale));
            Check.MinLength(xScale.Length, m, nameof(xScale), "m");
            Check.MinLength(wScale.Length, n, nameof(wScale), "w.Rows");
            if (bias is not null)
            {
                Check.Buffer(bias, this, nameof(bias));
                Check.MinLength(bias.Length, n, nameof(bias), "w.Rows");
            }
            Check.Buffer(y, this, nameof(y));
            Check.MinLength(y.Length, (long)m * n, nameof(y), "m·w.Rows");
            RunSparseInt8(w, x.View, m, Dequant(y.View, xScale.View, wScale.View, bias?.View, n));
        }
    }

    /// <summary>Enqueues the sparse float32 product <c>Y = X·Wᵀ (+ bias)</c> on device buffers (<paramref name="bias"/> may be null).</summary>
    public void SparseGemm(DeviceSparseMatrix<float> w, DeviceBuffer<float> x, DeviceBuffer<float>? bias, DeviceBuffer<float> y, int m)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            ValidateSparseDevice(w, x, m, int8: false);
            if (bias is not null)
            {
                Check.Buffer(bias, this, nameof(bias));
                Check.MinLength(bias.Length, w.Rows, nameof(bias), "w.Rows");
            }
            Check.Buffer(y, this, nameof(y));
            Check.MinLength(y.Length, (long)m * w.Rows, nameof(y), "m·w.Rows");
            RunSparseFloat32(w, x.View, m, FloatOutput(y.View, bias?.View, w.Rows));
        }
    }

    /// <summary>Number of sparse matrices the convenience calls hold uploaded (for tests).</summary>
    internal int CachedSparseUploads
    {
        get
        {
            lock (_sync)
                return _sparseUploadList.Count;
        }
    }

    // ---------------------------------------------------------------- validation

    private static void ValidateSparseShape(int columns, int m, bool int8)
    {
        Check.Positive(m, nameof(m));
        if (int8 && columns > Check.MaxK)
#pragma warning disable CA2208 // Named after the public API's argument, whose Columns this helper receives.
            throw new ArgumentException(
                $"w: expected Columns ≤ {Check.MaxK} so that int32 accumulation of int8 products (|x·w| ≤ 16384) cannot overflow, got {columns}.", "w");
#pragma warning restore CA2208
    }

    private static void ValidateSparseHost<T>(SparseMatrix<T> w, int xLength, int m, bool int8)
        where T : unmanaged, System.Numerics.INumberBase<T>
    {
        ArgumentNullException.ThrowIfNull(w);
        ValidateSparseShape(w.Columns, m, int8);
        Check.ExactLength(xLength, (long)m * w.Columns, "x", $"m·w.Columns = {m}·{w.Columns}");
    }

    private void ValidateSparseDevice<T>(DeviceSparseMatrix<T> w, DeviceBuffer<T> x, int m, bool int8)
        where T : unmanaged
    {
        if (w is null)
            throw new ArgumentNullException(nameof(w), "w: expected a device sparse matrix, got null.");
        if (w.IsDisposed)
            throw new ArgumentException("w: expected a live device sparse matrix, got one that was disposed.", nameof(w));
        if (!ReferenceEquals(w.Session, this))
            throw new ArgumentException($"w: expected a matrix of this session ({DeviceName}), got one of another session.", nameof(w));
        ValidateSparseShape(w.Columns, m, int8);
        Check.Buffer(x, this, nameof(x));
        Check.MinLength(x.Length, (long)m * w.Columns, nameof(x), "m·w.Columns");
    }

    // ---------------------------------------------------------------- dispatch

    private DequantEpilogue Dequant(ArrayView<float> y, ArrayView<float> xScale, ArrayView<float> wScale, ArrayView<float>? bias, int n) => new()
    {
        Y = y,
        AScale = xScale,
        BScale = wScale,
        Bias = bias ?? _dummy.View,
        HasBias = bias is null ? 0 : 1,
        Ldy = n,
    };

    private Float32Product FloatOutput(ArrayView<float> y, ArrayView<float>? bias, int n) => new()
    {
        Y = y,
        Bias = bias ?? _dummy.View,
        HasBias = bias is null ? 0 : 1,
        Ldy = n,
    };

    /// <summary>The device copy of a matrix for the convenience calls, uploaded once per matrix object (the caller holds the lock).</summary>
    private DeviceSparseMatrix<T> Uploaded<T>(SparseMatrix<T> w)
        where T : unmanaged, System.Numerics.INumberBase<T>
    {
        // Free the uploads of matrices that were collected.
        for (int i = _sparseUploadList.Count - 1; i >= 0; i--)
        {
            if (!_sparseUploadList[i].Matrix.TryGetTarget(out _))
            {
                _sparseUploadList[i].Uploaded.Dispose();
                _sparseUploadList.RemoveAt(i);
            }
        }
        if (_sparseUploads.TryGetValue(w, out object? cached))
            return (DeviceSparseMatrix<T>)cached;
        var uploaded = new DeviceSparseMatrix<T>(this, w.Parts, w.NonZeros);
        _sparseUploads.Add(w, uploaded);
        _sparseUploadList.Add((new WeakReference<object>(w), uploaded));
        return uploaded;
    }

    /// <summary>
    /// The one choice of kernel for an int8 sparse product of <paramref name="w"/> with m tokens in this
    /// session: the run path and <see cref="SparseAdvisor"/>'s description both ask here. On CUDA it
    /// loads the sparse tensor-core module at the first 2:4 matrix (a load failure selects the ILGPU
    /// kernels and is reported by <see cref="SparseTensorCoreUnsupported"/>). Call with the session's lock held.
    /// </summary>
    internal SparseInt8Path SelectSparseInt8(DeviceSparseMatrix<sbyte> w, int m)
    {
        if (Backend == Backend.CpuSimd)
            return SparseInt8Path.Simd;
        if (Backend == Backend.Cuda && w.TensorCorePacked is not null && EnsureSparseTensorCore())
            return SparseInt8Path.TensorCore;
        if (m > SparseKernels.SmallM && SparseInt8Kernel != SparseInt8Kernel.General && w.Tiles is not null)
            return SparseInt8Path.Tiled;
        return m <= SparseKernels.SmallM ? SparseInt8Path.SmallM : SparseInt8Path.General;
    }

    /// <summary><see cref="SelectSparseInt8"/> under the session's lock (for descriptions outside a call).</summary>
    internal SparseInt8Path SparseInt8PathFor(DeviceSparseMatrix<sbyte> w, int m)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            return SelectSparseInt8(w, m);
        }
    }

    private void RunSparseInt8<TEpilogue>(DeviceSparseMatrix<sbyte> w, ArrayView<sbyte> x, int m, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        switch (SelectSparseInt8(w, m))
        {
            case SparseInt8Path.Simd:
                Stream.Synchronize();
                unsafe
                {
                    SparseSimd.Int8(w.SimdPlan(CpuSimd.Effective), (sbyte*)x.LoadEffectiveAddressAsPtr(), m, SimdEpilogue.Of(epilogue), SparseSimdOverrides);
                }
                break;
            case SparseInt8Path.TensorCore:
                RunSparseTensorCore(w, x, m, epilogue);
                break;
            case SparseInt8Path.Tiled:
                LaunchTiledInt8(w, w.Tiles!.Value, x, m, epilogue);
                break;
            default: // SmallM or General: LaunchSparse picks between the two by m, as the selector did
                LaunchSparse<sbyte, int, Int8Product<TEpilogue>>(w, x, m, new Int8Product<TEpilogue> { Epilogue = epilogue });
                break;
        }
    }

    /// <summary>The tiled int8 kernel: X packed into token words (k×⌈m/4⌉ in session scratch), then one group per 64 rows × 128 tokens.</summary>
    private void LaunchTiledInt8<TEpilogue>(
        DeviceSparseMatrix<sbyte> w, (DeviceBuffer<int> Pointers, DeviceBuffer<long> Groups) tiles,
        ArrayView<sbyte> x, int m, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        int n = w.Rows, k = w.Columns;
        CheckSparseGrid(m, n, k);
        int m4 = (m + 3) / 4;
        ArrayView<int> xt4 = Scratch(ref _sparseXt4, (long)m4 * k * sizeof(int), "x packed in token words").Cast<int>();
        var pack = Kernel("sparse/tiled/pack", acc =>
            acc.LoadAutoGroupedKernel<Index2D, ArrayView<sbyte>, ArrayView<int>, int, int, int>(SparseKernels.PackTokenWords));
        pack(Stream, new Index2D(m4, k), x, xt4, m, m4, k);
        var tiled = Kernel($"sparse/tiled/{typeof(TEpilogue).Name}", acc =>
            GroupedKernels.Load<ArrayView<int>, ArrayView<long>, ArrayView<int>, int, int, int, int, int, TEpilogue>(acc,
                SparseKernels.TiledInt8<TEpilogue>));
        var config = new KernelConfig(
            new Index2D((m4 + SparseKernels.TileWords - 1) / SparseKernels.TileWords, (n + SparseKernels.TileRows - 1) / SparseKernels.TileRows),
            new Index2D(SparseKernels.TileWords, SparseKernels.TileWarps));
        tiled(Stream, config, tiles.Pointers.View, tiles.Groups.View, xt4, m, m4, n, k, w.TileChunks, epilogue);
    }

    /// <summary>Whether int8 2:4 uploads get a copy packed for the sparse tensor cores (CUDA, compute capability ≥ 8.0).</summary>
    internal bool PacksForSparseTensorCores => Backend == Backend.Cuda && TensorCoreCapabilityGap is null;

    /// <summary>
    /// Why int8 2:4 products do not run on the sparse tensor cores (<c>mma.sp</c>) in this session — not
    /// CUDA, compute capability below 8.0, or the driver rejected the generated PTX (the message holds
    /// the JIT log) — or null when they do (as far as is known: the module is loaded at the first 2:4
    /// product). When not null, the portable sparse kernels run instead.
    /// </summary>
    public string? SparseTensorCoreUnsupported
    {
        get
        {
            lock (_sync)
                return TensorCoreCapabilityGap ?? _sparseTensorCoreLoadFailure;
        }
    }

    /// <summary>
    /// Whether the loaded sparse tensor-core module uses <c>mma.sp::ordered_metadata</c> (PTX ISA 8.5,
    /// tried first on compute capability ≥ 9.0), and why not when the driver refused it; null before the
    /// module is loaded.
    /// </summary>
    internal (bool Ordered, string? OrderedFailure)? SparseTensorCoreForm =>
        _sparseTensorCore is null ? null : (_sparseTensorCore.OrderedMetadata, _sparseTensorCore.OrderedFailure);

    /// <summary>Loads the sparse tensor-core module once; a rejected module is remembered and the portable kernels run from then on.</summary>
    private bool EnsureSparseTensorCore()
    {
        if (_sparseTensorCore is not null)
            return true;
        if (_sparseTensorCoreLoadFailure is not null)
            return false;
        try
        {
            _sparseTensorCore = SparseTensorCoreGemm.Load(_accelerator);
            return true;
        }
        catch (InvalidOperationException ex)
        {
            _sparseTensorCoreLoadFailure = ex.Message;
            return false;
        }
    }

    /// <summary>
    /// The 2:4 product on the sparse tensor cores: X is read in place when its rows are 16-byte aligned
    /// (k % 16 = 0 and an aligned address), else copied into zero-padded rows first.
    /// </summary>
    private void RunSparseTensorCore<TEpilogue>(DeviceSparseMatrix<sbyte> w, ArrayView<sbyte> x, int m, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        SparseTensorCoreGemm gemm = _sparseTensorCore ?? throw new InvalidOperationException("The sparse tensor-core module is not loaded.");
        (DeviceBuffer<byte> values, DeviceBuffer<uint> meta) = w.TensorCorePacked ?? throw new InvalidOperationException("The matrix has no packed copy.");
        int k = w.Columns, n = w.Rows;
        int ldx = (k + 15) / 16 * 16;
        long xAddress = DeviceAddress(x);
        if (!TensorCoreGemm.RowsUsableInPlace(k, xAddress, 0))
            (xAddress, _) = PaddedRows(x, m, k, ldx, 1, 0, ref _packA, "x");
        PtxOutput o = PtxOutputOf(epilogue);
        var operands = new SparseTensorCoreOperands(DeviceAddress(values.View), DeviceAddress(meta.View), xAddress,
            o.Output, o.AScale, o.BScale, o.Bias, ldx, ldx, o.Ld, o.HasBias);
        SparseTensorCorePlan plan = SparseTensorCoreGemm.Plan(m, n);
        gemm.Launch(plan, o.Kind, Stream, SparseTensorCoreGemm.Arguments(m, n, w.TensorCoreKSteps, operands));
    }

    private void RunSparseFloat32(DeviceSparseMatrix<float> w, ArrayView<float> x, int m, Float32Product output)
    {
        if (Backend == Backend.CpuSimd)
        {
            Stream.Synchronize();
            unsafe
            {
                SparseSimd.Float32(w.SimdPlan(CpuSimd.Effective), (float*)x.LoadEffectiveAddressAsPtr(), m, (float*)output.Y.LoadEffectiveAddressAsPtr(),
                    output.HasBias != 0 ? (float*)output.Bias.LoadEffectiveAddressAsPtr() : null, SparseSimdOverrides);
            }
            return;
        }
        LaunchSparse<float, float, Float32Product>(w, x, m, output);
    }

    private void CheckSparseGrid(int m, int n, int k)
    {
        if (m > SparseKernels.SmallM && ((long)m * n > int.MaxValue || (long)m * k > int.MaxValue))
            throw new ArgumentException(
                $"m: the {Backend.ToName()} sparse kernel handles at most {int.MaxValue} elements of X and of Y per call, got m·Columns = {(long)m * k} and m·Rows = {(long)m * n}; split the call.", nameof(m));
    }

    /// <summary>Enqueues the sparse product on an ILGPU accelerator: the small-m kernel, or the transpose and the general kernel.</summary>
    private void LaunchSparse<TValue, TAcc, TProduct>(DeviceSparseMatrix<TValue> w, ArrayView<TValue> x, int m, TProduct product)
        where TValue : unmanaged
        where TAcc : unmanaged
        where TProduct : struct, ISparseProduct<TValue, TAcc>
    {
        CheckSparseGrid(m, w.Rows, w.Columns);
        var launch = new SparseLaunch<TValue, TAcc, TProduct>(this, x, m, w.Rows, w.Columns, product);
        w.Dispatch(ref launch);
    }

    private readonly struct SparseLaunch<TValue, TAcc, TProduct>(KernelSession session, ArrayView<TValue> x, int m, int n, int k, TProduct product)
        : ISparseLaunch<TValue>
        where TValue : unmanaged
        where TAcc : unmanaged
        where TProduct : struct, ISparseProduct<TValue, TAcc>
    {
        public void Launch<TRows>(TRows rows)
            where TRows : struct, ISparseRows<TValue>
        {
            // The product type's name and its epilogue's (Int8Product`1 of Int32Epilogue or DequantEpilogue).
            string productName = typeof(TProduct).Name + string.Concat(typeof(TProduct).GenericTypeArguments.Select(t => "/" + t.Name));
            string key = $"sparse/{typeof(TValue).Name}/{typeof(TRows).Name}/{productName}";
            if (m <= SparseKernels.SmallM)
            {
                var small = session.Kernel($"{key}/small", acc =>
                    GroupedKernels.Load<TRows, ArrayView<TValue>, int, TProduct>(acc, SparseKernels.Small<TValue, TAcc, TRows, TProduct>));
                small(session.Stream, new KernelConfig(new Index2D(n, m), new Index2D(SparseKernels.Lanes, 1)), rows, x, k, product);
                return;
            }

            // Xᵀ (k×m) in session scratch, so that the threads of a group read consecutive tokens.
            ArrayView<TValue> xt = session.Scratch(ref session._sparseXt, (long)m * k * Unsafe.SizeOf<TValue>(), "transposed x").Cast<TValue>();
            var transpose = session.Kernel($"sparse/transpose/{typeof(TValue).Name}", acc =>
                acc.LoadAutoGroupedKernel<Index2D, ArrayView<TValue>, ArrayView<TValue>, int, int>(SparseKernels.Transpose));
            transpose(session.Stream, new Index2D(m, k), x, xt, m, k);
            var general = session.Kernel($"{key}/general", acc =>
                acc.LoadAutoGroupedKernel<Index2D, TRows, ArrayView<TValue>, int, TProduct>(SparseKernels.General<TValue, TAcc, TRows, TProduct>));
            general(session.Stream, new Index2D(m, n), rows, xt, m, product);
        }
    }
}
