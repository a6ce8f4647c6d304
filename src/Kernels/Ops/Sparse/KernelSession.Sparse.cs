using ILGPU;
using Kernels.Backends.Simd;
using Kernels.DeviceCode;

namespace Kernels;

public sealed partial class KernelSession
{
    /// <summary>Which ILGPU kernel runs int8 sparse products for m &gt; 16 (Auto: the tiled one); for benchmarks.</summary>
    internal SparseInt8Kernel SparseInt8Kernel { get; set; }

    /// <summary>Choices of the cpu-simd sparse kernels forced for in-process A/B benchmarks (default: none).</summary>
    internal SparseSimdOverrides SparseSimdOverrides { get; set; }

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
            _sparse.Int8(w, x, m, result);
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
        Check.DequantScales(xScale, nameof(xScale), wScale, nameof(wScale), bias, m, n, "w.Rows");
        var result = new float[Check.ArrayLength((long)m * n, "m·Rows")];
        lock (_sync)
        {
            ThrowIfDisposed();
            _sparse.Int8Dequant(w, x, xScale, wScale, bias, m, result);
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
            _sparse.Float32(w, x, bias, m, result);
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
            _sparse.Int8(w, x.View, m, new Int32Epilogue { C = y.View, Ldc = w.Rows });
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
            Check.NotAliased(y, nameof(y), xScale, nameof(xScale));
            Check.NotAliased(y, nameof(y), wScale, nameof(wScale));
            Check.NotAliased(y, nameof(y), bias, nameof(bias));
            Check.MinLength(y.Length, (long)m * n, nameof(y), "m·w.Rows");
            _sparse.Int8(w, x.View, m, DequantOutput(y.View, xScale.View, wScale.View, bias?.View, n));
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
            Check.NotAliased(y, nameof(y), x, nameof(x));
            Check.NotAliased(y, nameof(y), bias, nameof(bias));
            Check.MinLength(y.Length, (long)m * w.Rows, nameof(y), "m·w.Rows");
            _sparse.Float32(w, x.View, m, FloatOutput(y.View, bias?.View, w.Rows));
        }
    }

    /// <summary>Number of sparse matrices the convenience calls hold uploaded (for tests).</summary>
    internal int CachedSparseUploads
    {
        get
        {
            lock (_sync)
                return _sparse.CachedUploads;
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

    /// <summary>The float32 sparse product's output: <paramref name="y"/> with n columns, an optional bias.</summary>
    internal Float32Product FloatOutput(ArrayView<float> y, ArrayView<float>? bias, int n) => new()
    {
        Y = y,
        Bias = bias ?? _dummy.View,
        HasBias = bias is null ? 0 : 1,
        Ldy = n,
    };

    /// <summary>
    /// The one choice of kernel for an int8 sparse product of <paramref name="w"/> with m tokens in this
    /// session, described (the selector of the session's sparse backend, under the session's lock): the
    /// run path and <see cref="SparseAdvisor"/>'s description both come from it.
    /// </summary>
    internal SparseKernelChoice DescribeSparseInt8(DeviceSparseMatrix<sbyte> w, int m)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            return _sparse.Describe(w, m);
        }
    }

    /// <summary>The kernel a float32 sparse product of <paramref name="w"/> with m tokens runs on, in words (the CLI's description).</summary>
    internal string DescribeSparseFloat32(DeviceSparseMatrix<float> w, int m)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            return _sparse.DescribeFloat32(w, m);
        }
    }

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
                return _ptx.SparseUnsupported;
        }
    }

    /// <summary>
    /// Whether the loaded sparse tensor-core module uses <c>mma.sp::ordered_metadata</c> (PTX ISA 8.5,
    /// tried first on compute capability ≥ 9.0), and why not when the driver refused it; null before the
    /// module is loaded.
    /// </summary>
    internal (bool Ordered, string? OrderedFailure)? SparseTensorCoreForm => _ptx.SparseForm;
}
