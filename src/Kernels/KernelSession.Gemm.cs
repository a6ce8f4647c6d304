using ILGPU;
using ILGPU.Runtime;
using Kernels.Cuda;
using Kernels.DeviceCode;
using Kernels.DeviceCode.Ptx;
using Kernels.Simd;

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
    private MemoryBuffer1D<int, Stride1D.Dense>? _packA;
    private MemoryBuffer1D<int, Stride1D.Dense>? _packB;
    private MemoryBuffer1D<sbyte, Stride1D.Dense>? _stageA;
    private MemoryBuffer1D<sbyte, Stride1D.Dense>? _stageB;
    private MemoryBuffer1D<int, Stride1D.Dense>? _stageC;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageY;
    private MemoryBuffer1D<float, Stride1D.Dense>? _stageScales;
    private TensorCoreGemm? _tensorCore;
    private string? _tensorCoreUnsupported;
    private bool _tensorCoreChecked;
    private string? _tensorCoreLoadFailure;

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
        Check.ExactLength(a.Length, (long)batchCount * m * k, nameof(a), $"batchCount·m·k = {batchCount}·{m}·{k}");
        long bShared = (long)n * k;
        long strideB = b.Length == bShared ? 0 : bShared;
        if (strideB != 0)
            Check.ExactLength(b.Length, batchCount * bShared, nameof(b), $"n·k = {n}·{k} (shared) or batchCount·n·k = {batchCount}·{n}·{k}");
        int length = Check.ArrayLength((long)batchCount * m * n, "batchCount·m·n");
        var result = new int[length];

        lock (_sync)
        {
            ThrowIfDisposed();
            if (ResolveKernel(GemmKernel) == GemmKernel.Simd)
            {
                // Host memory already: the SIMD path reads and writes the arrays directly, no staging copies.
                unsafe
                {
                    fixed (sbyte* ap = a, bp = b)
                    fixed (int* cp = result)
                    {
                        Int8GemmSimd.Gemm(ap, bp, m, n, k, batchCount, (long)m * k, strideB,
                            SimdEpilogue.Int32(cp, (long)m * n), CpuSimd.Effective);
                    }
                }
                return result;
            }
            ArrayView<sbyte> av = Stage(ref _stageA, a, nameof(a));
            ArrayView<sbyte> bv = Stage(ref _stageB, b, nameof(b));
            ArrayView<int> cv = Scratch(ref _stageC, length, "c");
            var batch = new StridedBatch(batchCount, (long)m * k, strideB, (long)m * n);
            var epilogue = new Int32Epilogue { C = cv, BatchStride = batch.StrideC, Ldc = n };
            RunGemm(GemmKernel, av, bv, m, n, k, batch, epilogue);
            HostCopy.ToHost(Stream, cv, result);
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
        Check.ExactLength(aScale.Length, m, nameof(aScale), "m");
        Check.ExactLength(bScale.Length, n, nameof(bScale), "n");
        if (!bias.IsEmpty)
            Check.ExactLength(bias.Length, n, nameof(bias), "n (or 0 for no bias)");
        Check.Finite(aScale, nameof(aScale));
        Check.Finite(bScale, nameof(bScale));
        Check.Finite(bias, nameof(bias));
        int length = Check.ArrayLength((long)m * n, "m·n");
        var result = new float[length];

        lock (_sync)
        {
            ThrowIfDisposed();
            if (ResolveKernel(GemmKernel) == GemmKernel.Simd)
            {
                unsafe
                {
                    fixed (sbyte* ap = a, bp = b)
                    fixed (float* yp = result, asp = aScale, bsp = bScale, biasp = bias)
                    {
                        Int8GemmSimd.Gemm(ap, bp, m, n, k, 1, 0, 0,
                            SimdEpilogue.Dequant(yp, 0, asp, 0, bsp, bias.IsEmpty ? null : biasp, 0), CpuSimd.Effective);
                    }
                }
                return result;
            }
            ArrayView<sbyte> av = Stage(ref _stageA, a, nameof(a));
            ArrayView<sbyte> bv = Stage(ref _stageB, b, nameof(b));
            // One staging buffer for the scales and the bias: [aScale | bScale | bias].
            ArrayView<float> scales = Scratch(ref _stageScales, (long)m + 2L * n, "scales");
            ArrayView<float> asv = scales.SubView(0, m);
            ArrayView<float> bsv = scales.SubView(m, n);
            ArrayView<float> biasv = scales.SubView((long)m + n, n);
            CopyIn(asv, aScale);
            CopyIn(bsv, bScale);
            if (!bias.IsEmpty)
                CopyIn(biasv, bias);
            ArrayView<float> yv = Scratch(ref _stageY, length, "y");
            var epilogue = new DequantEpilogue
            {
                Y = yv,
                AScale = asv,
                BScale = bsv,
                Bias = bias.IsEmpty ? _dummy.View : biasv,
                HasBias = bias.IsEmpty ? 0 : 1,
                Ldy = n,
            };
            RunGemm(GemmKernel, av, bv, m, n, k, new StridedBatch(1, 0, 0, 0), epilogue);
            HostCopy.ToHost(Stream, yv, result);
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
            Check.MinLength(c.Length, (batch.Count - 1) * batch.StrideC + (long)m * n, nameof(c),
                "(batchCount−1)·strideC + m·n");
            var epilogue = new Int32Epilogue { C = c.View, BatchStride = batch.StrideC, Ldc = n };
            RunGemm(kernel, a.View, b.View, m, n, k, batch, epilogue, weights: b);
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
            int last = batch.Count - 1;
            Check.MinLength(aScale.Length, last * strideAScale + m, nameof(aScale), "(batchCount−1)·strideAScale + m");
            Check.MinLength(bScale.Length, last * strideBScale + n, nameof(bScale), "(batchCount−1)·strideBScale + n");
            if (bias is not null)
            {
                Check.Buffer(bias, this, nameof(bias));
                Check.MinLength(bias.Length, last * strideBScale + n, nameof(bias), "(batchCount−1)·strideBScale + n");
            }
            Check.MinLength(y.Length, last * batch.StrideC + (long)m * n, nameof(y), "(batchCount−1)·strideC + m·n");
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
            RunGemm(kernel, a.View, b.View, m, n, k, batch, epilogue, weights: b);
        }
    }

    // ---------------------------------------------------------------- dispatch

    /// <summary>The kernel <see cref="GemmKernel.Auto"/> resolves to on this session's backend.</summary>
    public GemmKernel ResolveKernel(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Auto => Backend switch
        {
            Backend.Cuda => TensorCoreUnsupported is null ? GemmKernel.TensorCore : GemmKernel.Dp4a,
            Backend.CpuSimd => GemmKernel.Simd,
            _ => GemmKernel.Tiled,
        },
        GemmKernel.Reference or GemmKernel.Tiled or GemmKernel.Dp4a => kernel,
        GemmKernel.Simd when Backend == Backend.CpuSimd => kernel,
        GemmKernel.Simd => throw new ArgumentException(
            $"kernel: expected a kernel of the {Backend.ToName()} backend, got simd (only the cpu-simd backend has it).", nameof(kernel)),
        // Compute capability below 8.0: the dp4a kernel instead (TensorCoreUnsupported says why).
        // An explicit request on a device that can run it but whose driver rejected the module throws (see EnsureTensorCore).
        GemmKernel.TensorCore when Backend == Backend.Cuda => TensorCoreCapabilityGap is null ? kernel : GemmKernel.Dp4a,
        GemmKernel.TensorCore => throw new ArgumentException(
            $"kernel: expected a kernel of the {Backend.ToName()} backend, got tensorcore (only the cuda backend has it).", nameof(kernel)),
        _ => throw new ArgumentOutOfRangeException(nameof(kernel), kernel, $"kernel: expected a GemmKernel value, got {(int)kernel}."),
    };

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
        Check.MinLength(a.Length, last * batch.StrideA + (long)m * k, nameof(a), "(batchCount−1)·strideA + m·k");
        Check.MinLength(b.Length, last * batch.StrideB + (long)n * k, nameof(b), "(batchCount−1)·strideB + n·k");
    }

    private void RunGemm<TEpilogue>(
        GemmKernel kernel, ArrayView<sbyte> a, ArrayView<sbyte> b, int m, int n, int k, StridedBatch batch, TEpilogue epilogue,
        DeviceBuffer<sbyte>? weights = null)
        where TEpilogue : struct, IGemmEpilogue
    {
        GemmKernel requested = kernel;
        kernel = ResolveKernel(kernel);
        if (kernel == GemmKernel.Simd)
        {
            RunSimd(a, b, m, n, k, batch, epilogue, weights);
            return;
        }
        if (kernel == GemmKernel.TensorCore)
        {
            if (EnsureTensorCore(explicitlyRequested: requested == GemmKernel.TensorCore))
            {
                RunTensorCore(a, b, m, n, k, batch, epilogue);
                return;
            }
            kernel = GemmKernel.Dp4a;
        }

        string epi = typeof(TEpilogue).Name;
        if (kernel == GemmKernel.Reference)
        {
            if ((long)m * n * batch.Count > int.MaxValue)
                throw new ArgumentException(
                    $"kernel: the reference kernel launches one thread per output and handles at most {int.MaxValue} outputs; got {(long)m * n * batch.Count}.", nameof(kernel));
            var reference = Kernel($"reference/{epi}", acc =>
                acc.LoadAutoGroupedKernel<Index3D, ArrayView<sbyte>, ArrayView<sbyte>, int, long, long, TEpilogue>(
                    Int8GemmKernels.Reference));
            reference(Stream, new Index3D(n, m, batch.Count), a, b, k, batch.StrideA, batch.StrideB, epilogue);
            return;
        }

        int kWords = (k + 3) / 4;
        (ArrayView<int> aw, long strideAw) = PackedRows(a, m, k, kWords, batch.Count, batch.StrideA, ref _packA, "a");
        (ArrayView<int> bw, long strideBw) = PackedRows(b, n, k, kWords, batch.Count, batch.StrideB, ref _packB, "b");
        var tiled = kernel == GemmKernel.Dp4a
            ? Kernel($"dp4a/{epi}", acc =>
                GroupedKernels.Load<ArrayView<int>, ArrayView<int>, int, int, int, long, long, TEpilogue>(acc,
                    Int8GemmKernels.Tiled<Dp4aDot4, TEpilogue>))
            : Kernel($"tiled/{epi}", acc =>
                GroupedKernels.Load<ArrayView<int>, ArrayView<int>, int, int, int, long, long, TEpilogue>(acc,
                    Int8GemmKernels.Tiled<PortableDot4, TEpilogue>));
        var config = new KernelConfig(
            new Index3D(
                (n + Int8GemmKernels.TileN - 1) / Int8GemmKernels.TileN,
                (m + Int8GemmKernels.TileM - 1) / Int8GemmKernels.TileM,
                batch.Count),
            new Index3D(Int8GemmKernels.GroupDim, Int8GemmKernels.GroupDim, 1));
        tiled(Stream, config, aw, bw, m, n, kWords, strideAw, strideBw, epilogue);
    }

    /// <summary>
    /// Why this session cannot run <see cref="GemmKernel.TensorCore"/> (not CUDA, compute capability
    /// below 8.0, or the driver rejected the generated PTX), or null when it can (as far as is known:
    /// the module is loaded on first use).
    /// </summary>
    public string? TensorCoreUnsupported => TensorCoreCapabilityGap ?? _tensorCoreLoadFailure;

    /// <summary>Why the device itself cannot run the tensor-core kernels (not CUDA, compute capability below 8.0), or null.</summary>
    private string? TensorCoreCapabilityGap
    {
        get
        {
            if (!_tensorCoreChecked)
            {
                _tensorCoreUnsupported = TensorCoreGemm.WhyUnsupported(_accelerator);
                _tensorCoreChecked = true;
            }
            return _tensorCoreUnsupported;
        }
    }

    /// <summary>
    /// Loads the tensor-core module once. When the driver rejects it (an old driver that does not know
    /// the PTX ISA version, say), <see cref="GemmKernel.Auto"/> falls back to dp4a from then on (the
    /// failure is kept in <see cref="TensorCoreUnsupported"/>) and an explicit request throws with the JIT log.
    /// </summary>
    private bool EnsureTensorCore(bool explicitlyRequested)
    {
        if (_tensorCore is not null)
            return true;
        if (_tensorCoreLoadFailure is null)
        {
            try
            {
                _tensorCore = TensorCoreGemm.Load(_accelerator);
                return true;
            }
            catch (InvalidOperationException ex)
            {
                _tensorCoreLoadFailure = ex.Message;
            }
        }
        return explicitlyRequested ? throw new InvalidOperationException(_tensorCoreLoadFailure) : false;
    }

    /// <summary>
    /// The tensor-core path: loads the generated module on first use, repacks A and B into 16-byte
    /// aligned, zero-padded rows when k % 16 ≠ 0 or an address or batch stride is not 16-byte aligned
    /// (cp.async and the 16-byte loads need aligned rows), and launches on the session's stream.
    /// </summary>
    private void RunTensorCore<TEpilogue>(
        ArrayView<sbyte> a, ArrayView<sbyte> b, int m, int n, int k, StridedBatch batch, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        TensorCoreGemm tensorCore = _tensorCore ?? throw new InvalidOperationException("The tensor-core module is not loaded.");
        int kPad = (k + 15) / 16 * 16;
        long aAddress = DeviceAddress(a), bAddress = DeviceAddress(b);
        long strideA = batch.StrideA, strideB = batch.StrideB;
        if (!TensorCoreGemm.RowsUsableInPlace(k, aAddress, strideA))
            (aAddress, strideA) = PaddedRows(a, m, k, kPad, batch.Count, strideA, ref _packA, "a");
        if (!TensorCoreGemm.RowsUsableInPlace(k, bAddress, strideB))
            (bAddress, strideB) = PaddedRows(b, n, k, kPad, batch.Count, strideB, ref _packB, "b");

        PtxOutput o = PtxOutputOf(epilogue);
        var operands = new TensorCoreOperands(aAddress, bAddress, o.Output, o.AScale, o.BScale, o.Bias, kPad, o.Ld, o.HasBias,
            strideA, strideB, o.OutputStride, o.AScaleStride, o.BScaleStride);
        TensorCorePlan plan = TensorCoreGemm.Plan(m, n, batch.Count, _accelerator.NumMultiprocessors);
        long[] arguments = TensorCoreGemm.Arguments(plan, m, n, k, operands);
        tensorCore.Launch(plan, o.Kind, Stream, arguments);
    }

    /// <summary>An epilogue as the generated PTX kernels take it: device addresses and strides.</summary>
    private readonly record struct PtxOutput(
        PtxEpilogue Kind, long Output, long AScale, long BScale, long Bias, int Ld, bool HasBias,
        long OutputStride, long AScaleStride, long BScaleStride);

    /// <summary>
    /// The one translation of a device epilogue into the PTX kernels' operands (unused pointers
    /// point at the session's dummy buffer, never at 0).
    /// </summary>
    private PtxOutput PtxOutputOf<TEpilogue>(TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        long dummy = DeviceAddress<float>(_dummy.View);
        return epilogue switch
        {
            Int32Epilogue c => new PtxOutput(PtxEpilogue.Raw, DeviceAddress(c.C), dummy, dummy, dummy, c.Ldc, false, c.BatchStride, 0, 0),
            DequantEpilogue d => new PtxOutput(PtxEpilogue.Dequant, DeviceAddress(d.Y), DeviceAddress(d.AScale), DeviceAddress(d.BScale),
                d.HasBias != 0 ? DeviceAddress(d.Bias) : dummy, d.Ldy, d.HasBias != 0, d.YBatchStride, d.AScaleBatchStride, d.BScaleBatchStride),
            _ => throw new NotSupportedException($"The PTX kernels have no epilogue {typeof(TEpilogue).Name}."),
        };
    }

    /// <summary>The device address of a view's first element (CUDA buffers).</summary>
    private static long DeviceAddress<T>(ArrayView<T> view)
        where T : unmanaged =>
        ((IArrayView)view).Buffer.NativePtr.ToInt64() + ((IContiguousArrayView)view).IndexInBytes;

    /// <summary>
    /// Rows of int8 values as zero-padded rows of <paramref name="kPad"/> bytes (a multiple of 16) in
    /// session scratch space: the device address and the batch stride in bytes.
    /// </summary>
    private (long Address, long Stride) PaddedRows(
        ArrayView<sbyte> source, int rows, int k, int kPad, int batchCount, long stride,
        ref MemoryBuffer1D<int, Stride1D.Dense>? scratch, string name)
    {
        int batches = stride == 0 ? 1 : batchCount;
        int kWords = kPad / 4;
        ArrayView<int> packed = Scratch(ref scratch, (long)batches * rows * kWords, $"padded {name}");
        var pack = Kernel("pack", acc =>
            acc.LoadAutoGroupedKernel<Index3D, ArrayView<sbyte>, ArrayView<int>, int, int, int, long>(
                Int8GemmKernels.PackRows));
        pack(Stream, new Index3D(kWords, rows, batches), source, packed, rows, k, kWords, stride);
        return (DeviceAddress(packed), stride == 0 ? 0 : (long)rows * kPad);
    }

    /// <summary>
    /// The SIMD CPU path on the session's buffers (host memory of ILGPU's CPU accelerator): waits for
    /// earlier work on the stream, then runs synchronously on the calling thread and the thread pool.
    /// </summary>
    private unsafe void RunSimd<TEpilogue>(
        ArrayView<sbyte> a, ArrayView<sbyte> b, int m, int n, int k, StridedBatch batch, TEpilogue epilogue,
        DeviceBuffer<sbyte>? weights)
        where TEpilogue : struct, IGemmEpilogue
    {
        Stream.Synchronize();
        SimdEpilogue output = SimdEpilogue.Of(epilogue);
        SimdLevel level = CpuSimd.Effective;
        var aPointer = (sbyte*)a.LoadEffectiveAddressAsPtr();
        var bPointer = (sbyte*)b.LoadEffectiveAddressAsPtr();
        if (weights is null || !ReuseSimdPackedWeights)
        {
            Int8GemmSimd.Gemm(aPointer, bPointer, m, n, k, batch.Count, batch.StrideA, batch.StrideB, output, level);
            return;
        }

        // Weights in a device buffer are packed once and reused until the buffer is written, resized
        // in use (another n, k or batch layout) or disposed.
        var key = new PackedKey(weights.Version, n, k, batch.Count, batch.StrideB, level);
        if (!_packedWeights.TryGetValue(weights, out PackedEntry? entry) || entry.Key != key)
        {
            ForgetPackedWeights(weights);
            PackedWeights packed = Int8GemmSimd.PackWeights(bPointer, n, k, batch.Count, batch.StrideB, level);
            entry = new PackedEntry(key, packed);
            _packedWeights[weights] = entry;
            Interlocked.Add(ref _allocatedBytes, packed.Bytes);
        }
        Int8GemmSimd.Gemm(aPointer, entry.Packed, m, batch.Count, batch.StrideA, output, level);
    }

    /// <summary>Whether the SIMD path reuses packed weight buffers (true); benchmarks turn it off to time per-call packing.</summary>
    internal bool ReuseSimdPackedWeights { get; set; } = true;

    private sealed record PackedKey(long Version, int N, int K, int BatchCount, long StrideB, SimdLevel Level);

    private sealed record PackedEntry(PackedKey Key, PackedWeights Packed);

    private readonly Dictionary<object, PackedEntry> _packedWeights = new(ReferenceEqualityComparer.Instance);

    /// <summary>Frees the packed copy of a weight buffer, if there is one (the caller holds the lock).</summary>
    private void ForgetPackedWeights(object weights)
    {
        if (_packedWeights.Remove(weights, out PackedEntry? entry))
        {
            Interlocked.Add(ref _allocatedBytes, -entry.Packed.Bytes);
            entry.Packed.Dispose();
        }
    }

    /// <summary>
    /// Rows of int8 values as whole 4-byte words for the tiled kernel: a reinterpretation when k and
    /// the batch stride are multiples of 4, else a packed, zero-padded copy in session scratch space.
    /// </summary>
    private (ArrayView<int> Words, long StrideWords) PackedRows(
        ArrayView<sbyte> source, int rows, int k, int kWords, int batchCount, long stride,
        ref MemoryBuffer1D<int, Stride1D.Dense>? scratch, string name)
    {
        int batches = stride == 0 ? 1 : batchCount;
        if (k % 4 == 0 && stride % 4 == 0)
        {
            long bytes = (batches - 1) * stride + (long)rows * k;
            return (source.SubView(0, bytes).Cast<int>(), stride / 4);
        }

        ArrayView<int> packed = Scratch(ref scratch, (long)batches * rows * kWords, $"packed {name}");
        var pack = Kernel("pack", acc =>
            acc.LoadAutoGroupedKernel<Index3D, ArrayView<sbyte>, ArrayView<int>, int, int, int, long>(
                Int8GemmKernels.PackRows));
        pack(Stream, new Index3D(kWords, rows, batches), source, packed, rows, k, kWords, stride);
        return (packed, stride == 0 ? 0 : (long)rows * kWords);
    }

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

    internal ArrayView<T> Stage<T>(ref MemoryBuffer1D<T, Stride1D.Dense>? buffer, ReadOnlySpan<T> data, string name)
        where T : unmanaged
    {
        ArrayView<T> view = Scratch(ref buffer, data.Length, name);
        CopyIn(view, data);
        return view;
    }

    private void CopyIn<T>(ArrayView<T> view, ReadOnlySpan<T> data)
        where T : unmanaged =>
        HostCopy.ToDevice(Stream, view, data);
}
