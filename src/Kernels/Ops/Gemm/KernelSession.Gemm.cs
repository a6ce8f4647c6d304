using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels;

/// <summary>Strides of a strided batch of independent GEMMs, in elements.</summary>
/// <param name="Count">Number of GEMMs (1..65535).</param>
/// <param name="StrideA">Elements of A between consecutive GEMMs (0: every GEMM reads the same A).</param>
/// <param name="StrideB">Elements of B between consecutive GEMMs (0: shared weights).</param>
/// <param name="StrideC">Elements of the output between consecutive GEMMs (≥ m·n when Count &gt; 1).</param>
public readonly record struct StridedBatch(int Count, long StrideA, long StrideB, long StrideC)
{
    /// <summary>A dense batch: A, B and C of each GEMM follow each other without gaps.</summary>
    public static StridedBatch Dense(int count, int m, int n, int k) =>
        new(count, (long)m * k, (long)n * k, (long)m * n);
}

public sealed partial class KernelSession
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _dummy;

    /// <summary>A one-element buffer for kernel arguments that are not read (no bias, no split partials).</summary>
    internal ArrayView<float> Dummy => _dummy.View;

    // ---------------------------------------------------------------- convenience layer (host arrays)

    /// <summary>
    /// <c>C[m,n] = Σ_k A[m,k]·B[n,k]</c>: A m×k row-major (activations), B n×k row-major (weights as a
    /// linear layer stores them), C m×n int32, exact.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, k &gt; 131071, or a length does not match.</exception>
    public int[] Int8Gemm(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, int m, int n, int k) =>
        Int8GemmBatched(a, b, 1, m, n, k);

    /// <summary>
    /// A strided batch of <paramref name="batchCount"/> independent GEMMs in one launch: A holds
    /// batchCount·m·k values; B holds either batchCount·n·k values or n·k (the same weights for every
    /// GEMM); the result holds batchCount·m·n values, GEMM after GEMM.
    /// </summary>
    public int[] Int8GemmBatched(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, int batchCount, int m, int n, int k)
    {
        Check.GemmShape(m, n, k);
        Check.Batch(batchCount);
        Check.ExactLength(a.Length, (Int128)batchCount * m * k, nameof(a), $"batchCount·m·k = {batchCount}·{m}·{k}");
        long bShared = (long)n * k;
        long strideB = b.Length == bShared ? 0 : bShared;
        if (strideB != 0)
            Check.ExactLength(b.Length, (Int128)batchCount * bShared, nameof(b), $"n·k = {n}·{k} (shared) or batchCount·n·k = {batchCount}·{n}·{k}");
        int length = Check.ArrayLength((Int128)batchCount * m * n, "batchCount·m·n");
        var result = new int[length];

        lock (_sync)
        {
            ThrowIfDisposed();
            var problem = new GemmProblem(m, n, k, new StridedBatch(batchCount, (long)m * k, strideB, (long)m * n));
            ThrowIfCannot(problem, GemmKernel);
            _gemm.Int32(a, b, result, problem, GemmKernel);
        }
        return result;
    }

    /// <summary>
    /// The GEMM with the fused dequantizing epilogue: <c>Y[m,n] = C[m,n]·aScale[m]·bScale[n] + bias[n]</c>
    /// in float32 (per-token activation scales, per-channel weight scales, optional bias: pass an empty span for none).
    /// </summary>
    /// <exception cref="ArgumentException">Shapes or lengths do not match, or a scale or bias is not finite.</exception>
    public float[] Int8GemmDequant(
        ReadOnlySpan<sbyte> a,
        ReadOnlySpan<sbyte> b,
        ReadOnlySpan<float> aScale,
        ReadOnlySpan<float> bScale,
        ReadOnlySpan<float> bias,
        int m,
        int n,
        int k)
    {
        Check.GemmShape(m, n, k);
        Check.ExactLength(a.Length, (long)m * k, nameof(a), $"m·k = {m}·{k}");
        Check.ExactLength(b.Length, (long)n * k, nameof(b), $"n·k = {n}·{k}");
        Check.DequantScales(aScale, nameof(aScale), bScale, nameof(bScale), bias, m, n, "n");
        int length = Check.ArrayLength((long)m * n, "m·n");
        var result = new float[length];

        lock (_sync)
        {
            ThrowIfDisposed();
            var problem = new GemmProblem(m, n, k, new StridedBatch(1, 0, 0, 0));
            ThrowIfCannot(problem, GemmKernel);
            _gemm.Dequant(a, b, aScale, bScale, bias, result, problem, GemmKernel);
        }
        return result;
    }

    // ---------------------------------------------------------------- device-resident API

    /// <summary>
    /// Enqueues <c>C = A·Bᵀ</c> on device buffers (see <see cref="Int8Gemm(ReadOnlySpan{sbyte}, ReadOnlySpan{sbyte}, int, int, int)"/>).
    /// Buffers may be longer than needed; only the first m·k, n·k and m·n elements are used. Returns at
    /// once; the result is ready after <see cref="Synchronize"/> or a copy back.
    /// </summary>
    public void Int8Gemm(
        DeviceBuffer<sbyte> a, DeviceBuffer<sbyte> b, DeviceBuffer<int> c, int m, int n, int k,
        GemmKernel kernel = GemmKernel.Auto) =>
        Int8GemmBatched(a, b, c, m, n, k, new StridedBatch(1, 0, 0, 0), kernel);

    /// <summary>Enqueues a strided batch of GEMMs on device buffers in one launch.</summary>
    public void Int8GemmBatched(
        DeviceBuffer<sbyte> a, DeviceBuffer<sbyte> b, DeviceBuffer<int> c, int m, int n, int k,
        StridedBatch batch, GemmKernel kernel = GemmKernel.Auto)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            ValidateDeviceGemm(a, b, m, n, k, batch);
            Check.Buffer(c, this, nameof(c));
            Check.MinLength(c.Length, (Int128)(batch.Count - 1) * batch.StrideC + (long)m * n, nameof(c),
                "(batchCount−1)·strideC + m·n");
            var epilogue = new Int32Epilogue { C = c.View, BatchStride = batch.StrideC, Ldc = n };
            RunGemm(a, b, new GemmProblem(m, n, k, batch), epilogue, kernel);
        }
    }

    /// <summary>
    /// Enqueues the GEMM with the fused dequantizing epilogue on device buffers:
    /// <c>Y = C·aScale[m]·bScale[n] + bias[n]</c> (<paramref name="bias"/> may be null). Scales on the
    /// device are not re-read for validation: check them when you upload them.
    /// </summary>
    public void Int8GemmDequant(
        DeviceBuffer<sbyte> a, DeviceBuffer<sbyte> b, DeviceBuffer<float> aScale, DeviceBuffer<float> bScale,
        DeviceBuffer<float>? bias, DeviceBuffer<float> y, int m, int n, int k, GemmKernel kernel = GemmKernel.Auto) =>
        Int8GemmDequantBatched(a, b, aScale, bScale, bias, y, m, n, k, new StridedBatch(1, 0, 0, 0), 0, 0, kernel);

    /// <summary>
    /// The batched dequantizing GEMM: GEMM i uses aScale[i·strideAScale ..], bScale and bias at
    /// i·strideBScale (0: shared per-channel scales) and writes Y at i·batch.StrideC.
    /// </summary>
    public void Int8GemmDequantBatched(
        DeviceBuffer<sbyte> a, DeviceBuffer<sbyte> b, DeviceBuffer<float> aScale, DeviceBuffer<float> bScale,
        DeviceBuffer<float>? bias, DeviceBuffer<float> y, int m, int n, int k, StridedBatch batch,
        long strideAScale, long strideBScale, GemmKernel kernel = GemmKernel.Auto)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            ValidateDeviceGemm(a, b, m, n, k, batch);
            Check.NonNegative(strideAScale, nameof(strideAScale));
            Check.NonNegative(strideBScale, nameof(strideBScale));
            Check.Buffer(aScale, this, nameof(aScale));
            Check.Buffer(bScale, this, nameof(bScale));
            Check.Buffer(y, this, nameof(y));
            Check.NotAliased(y, nameof(y), aScale, nameof(aScale));
            Check.NotAliased(y, nameof(y), bScale, nameof(bScale));
            Check.NotAliased(y, nameof(y), bias, nameof(bias));
            int last = batch.Count - 1;
            Check.MinLength(aScale.Length, (Int128)last * strideAScale + m, nameof(aScale), "(batchCount−1)·strideAScale + m");
            Check.MinLength(bScale.Length, (Int128)last * strideBScale + n, nameof(bScale), "(batchCount−1)·strideBScale + n");
            if (bias is not null)
            {
                Check.Buffer(bias, this, nameof(bias));
                Check.MinLength(bias.Length, (Int128)last * strideBScale + n, nameof(bias), "(batchCount−1)·strideBScale + n");
            }
            Check.MinLength(y.Length, (Int128)last * batch.StrideC + (long)m * n, nameof(y), "(batchCount−1)·strideC + m·n");
            var epilogue = new DequantEpilogue
            {
                Y = y.View,
                AScale = aScale.View,
                BScale = bScale.View,
                Bias = bias is null ? _dummy.View : bias.View,
                HasBias = bias is null ? 0 : 1,
                Ldy = n,
                YBatchStride = batch.StrideC,
                AScaleBatchStride = strideAScale,
                BScaleBatchStride = strideBScale,
            };
            RunGemm(a, b, new GemmProblem(m, n, k, batch), epilogue, kernel);
        }
    }

    // ---------------------------------------------------------------- dispatch

    /// <summary>The kernel <see cref="GemmKernel.Auto"/> resolves to on this session's backend.</summary>
    /// <exception cref="ArgumentException">The kernel belongs to another backend.</exception>
    public GemmKernel ResolveKernel(GemmKernel kernel) => _gemm.Select(kernel);

    private void ValidateDeviceGemm(DeviceBuffer<sbyte> a, DeviceBuffer<sbyte> b, int m, int n, int k, StridedBatch batch)
    {
        Check.GemmShape(m, n, k);
        Check.Batch(batch.Count);
        Check.NonNegative(batch.StrideA, "batch.StrideA");
        Check.NonNegative(batch.StrideB, "batch.StrideB");
        Check.NonNegative(batch.StrideC, "batch.StrideC");
        if (batch.Count > 1 && batch.StrideC < (long)m * n)
            throw new ArgumentException(
                $"batch.StrideC: expected ≥ m·n = {(long)m * n} so the outputs of a batch do not overlap, got {batch.StrideC}.", nameof(batch));
        Check.Buffer(a, this, nameof(a));
        Check.Buffer(b, this, nameof(b));
        int last = batch.Count - 1;
        Check.MinLength(a.Length, (Int128)last * batch.StrideA + (long)m * k, nameof(a), "(batchCount−1)·strideA + m·k");
        Check.MinLength(b.Length, (Int128)last * batch.StrideB + (long)n * k, nameof(b), "(batchCount−1)·strideB + n·k");
    }

    /// <summary>Hands a validated device-API GEMM to the backend (B's buffer is the weights it may keep prepared).</summary>
    private void RunGemm<TEpilogue>(DeviceBuffer<sbyte> a, DeviceBuffer<sbyte> b, in GemmProblem problem, TEpilogue epilogue, GemmKernel kernel)
        where TEpilogue : struct, IGemmEpilogue
    {
        ThrowIfCannot(problem, kernel);
        _gemm.Run(a.View, b.View, problem, epilogue, kernel, weights: b);
    }

    private void ThrowIfCannot(in GemmProblem problem, GemmKernel kernel)
    {
        if (_gemm.WhyNot(problem, kernel) is { } why)
            throw new ArgumentException(why, nameof(kernel));
    }

    /// <summary>
    /// Why this session cannot run <see cref="GemmKernel.TensorCore"/> (not CUDA, compute capability
    /// below 8.0, or the driver rejected the generated PTX), or null when it can (as far as is known:
    /// the module is loaded on first use).
    /// </summary>
    public string? TensorCoreUnsupported => _ptx.GemmUnsupported;

    /// <summary>The distinct GEMM kernels worth comparing on this session's backend (see <see cref="IGemmBackend.Compared"/>).</summary>
    internal IReadOnlyList<GemmKernel> ComparedGemmKernels => _gemm.Compared;

    /// <summary>Whether the SIMD path reuses packed weight buffers (true); benchmarks turn it off to time per-call packing.</summary>
    internal bool ReuseSimdPackedWeights { get; set; } = true;

    /// <summary>The dequantizing epilogue of one GEMM (no batch strides) writing <paramref name="y"/> with n columns.</summary>
    internal DequantEpilogue DequantOutput(ArrayView<float> y, ArrayView<float> aScale, ArrayView<float> bScale, ArrayView<float>? bias, int n) => new()
    {
        Y = y,
        AScale = aScale,
        BScale = bScale,
        Bias = bias ?? _dummy.View,
        HasBias = bias is null ? 0 : 1,
        Ldy = n,
    };

    /// <summary>A view of at least <paramref name="length"/> elements of a reusable scratch buffer (grown, never shrunk).</summary>
    internal ArrayView<T> Scratch<T>(ref MemoryBuffer1D<T, Stride1D.Dense>? buffer, long length, string name)
        where T : unmanaged
    {
        if (buffer is null || buffer.Length < length)
        {
            long capacity = Math.Max(length, (buffer?.Length ?? 0) * 2);
            if (buffer is not null)
            {
                Stream.Synchronize();
                Interlocked.Add(ref _allocatedBytes, -buffer.LengthInBytes);
                buffer.Dispose();
                buffer = null;
            }
            buffer = AllocateRaw<T>(capacity, name);
        }
        return buffer.View.SubView(0, length);
    }

    internal void CopyIn<T>(ArrayView<T> view, ReadOnlySpan<T> data)
        where T : unmanaged =>
        HostCopy.ToDevice(Stream, view, data);
}
