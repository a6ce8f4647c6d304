using System.Numerics;
using Kernels.Backends.Simd.Jit;
using Kernels.Simd;

namespace Kernels.Backends.Simd;

/// <summary>
/// A sparse weight matrix on host memory as raw pointers, in one of the <see cref="SparseFormat"/>s
/// (the layouts are described there). <c>Values</c> points at <c>sbyte</c> or <c>float</c> values.
/// </summary>
internal readonly unsafe struct SparseWeights
{
    public SparseFormat Format { get; init; }

    /// <summary>Rows of W (= n, output channels).</summary>
    public int Rows { get; init; }

    /// <summary>Columns of W (= k).</summary>
    public int Columns { get; init; }

    /// <summary>BSR block height (1 for the other formats).</summary>
    public int BlockRows { get; init; }

    /// <summary>BSR block width (1 for the other formats).</summary>
    public int BlockColumns { get; init; }

    /// <summary>CSR: Rows+1 entries; BSR: ceil(Rows/BlockRows)+1 entries; 2:4: null.</summary>
    public int* RowPointers { get; init; }

    /// <summary>CSR: column per value; BSR: block column per block; 2:4: null.</summary>
    public int* ColumnIndices { get; init; }

    /// <summary>CSR: nnz values; BSR: blocks·BlockRows·BlockColumns; 2:4: Rows·ceil(Columns/4)·2.</summary>
    public void* Values { get; init; }

    /// <summary>2:4 only: Rows·ceil(Columns/4) metadata bytes; null otherwise.</summary>
    public byte* Meta { get; init; }
}

/// <summary>
/// Sparse × dense products on the CPU for the <see cref="Backend.CpuSimd"/> backend:
/// <c>Y[m, n] = Σ_k X[m, k]·W[n, k]</c> with W sparse (<see cref="SparseWeights"/>) and X dense row-major m×k.
/// </summary>
/// <remarks>
/// The scalar level (<see cref="ScalarInt8"/>, <see cref="ScalarFloat32"/>) defines the semantics; the
/// AVX2 and AVX-VNNI levels (<see cref="SparseSimdKernels"/>) give bit-identical int8 results. Calls
/// without a <see cref="SparseSimdPlan"/> prepare one per call (free for CSR, a conversion for BSR and
/// 2:4); callers that multiply by the same matrix again should keep a plan. Work is split over rows of
/// W or over token panels (see FusedPanelsPerThread) on up to <see cref="Environment.ProcessorCount"/> threads; the transposed
/// activations live in pooled native memory.
/// </remarks>
internal static unsafe class SparseSimd
{
    /// <summary>Up to this many tokens, the int8 kernels use per-row gathered dot products (without AVX-512 VBMI).</summary>
    internal const int SmallMInt8 = 8;

    /// <summary>Up to this many tokens, the int8 kernels use per-row dot products on 8- or 16-token panels with <c>vpermb</c> (AVX-512 VBMI).</summary>
    internal const int SmallMInt8Vbmi = 16;

    /// <summary>The largest m of the small-m int8 kernels on this CPU (with <paramref name="overrides"/>).</summary>
    internal static int SmallMInt8Here(SparseSimdOverrides overrides = default) => SmallEight(overrides) ? SmallMInt8Vbmi : SmallMInt8;

    /// <summary>
    /// Whether the small-m int8 kernels serve m tokens of <paramref name="plan"/>: m ≤ <see cref="SmallMInt8Here"/>
    /// at any SIMD level. One token runs <see cref="SparseSimdKernels.DotOne"/> (AVX2 gathers); more run
    /// <c>vpdpbusd</c> where AVX-VNNI exists and its exact AVX2 form elsewhere (<see cref="Vnni256.DotAdd"/>). Without
    /// them the int16-pair kernel's token panels would pad m to <see cref="SparseSimdKernels.TB"/> (32): at n = k = 4096
    /// and 95 % zeros the small-m kernels took 0.29–0.48× its time for m = 1–8 on the 2-vCPU Xeon, at the avx2 level
    /// (docs/perf/cpu-sparse.md).
    /// </summary>
    internal static bool SmallInt8Serves(SparseSimdPlan plan, int m, SparseSimdOverrides overrides = default) =>
        m <= SmallMInt8Here(overrides) && plan.Level >= SimdLevel.Avx2;

    /// <summary>
    /// Tokens per panel of the small-m int8 kernels for m tokens: 1 (one token), else 4 (gathers, or <c>vpermb</c> on eight
    /// columns), 8 or 16 (<c>vpermb</c> panels, <paramref name="permute"/>). With the generated kernels, m = 2–4 take
    /// the 8-token panel too: at n = k = 4096, m = 4, 92 % zeros it took 0.30–0.46 ms against 0.65–0.70 for the
    /// four-token kernel in the AVX2 form of <c>vpdpbusd</c> (Xeon VM; docs/perf/cpu-sparse.md).
    /// </summary>
    internal static int SmallWidth(int m, bool permute, bool generated) =>
        m <= OneTokenM ? 1 : !permute || (m <= 4 && !generated) ? 4 : m > 8 ? 16 : 8;

    /// <summary>Up to this many tokens, the small-m int8 kernel runs one token at a time (<see cref="SparseSimdKernels.DotOne"/>).</summary>
    internal const int OneTokenM = 1;

    /// <summary>Up to this many tokens, the float kernels use per-row gathered dot products.</summary>
    internal const int SmallMFloat = 4;

    private const long SequentialMacs = 1L << 18;

    /// <summary>
    /// Row chunks per thread: one contiguous range of W rows (and output columns) per thread, for all
    /// token panels. With the 128-column store tiles this beat 2 and 4 chunks per thread on the 2-core
    /// machine (docs/perf/cpu-sparse.md); 4 was best while each 8-row group was stored on its own.
    /// </summary>
    private const int ChunksPerThread = 1;

    /// <summary>
    /// Row chunks per thread of the small-m int8 kernels: their rows take unequal times (row lengths, a core slowed by
    /// the host), and with one chunk per thread the other thread waited. n = k = 4096, 91.5 % zeros on the Xeon VM:
    /// m = 1 0.27–0.31 ms with 4 against 0.32–0.37 with 1 (16: 0.31–0.37); m = 8 about 10 % less time
    /// (docs/perf/cpu-sparse.md).
    /// </summary>
    private const int SmallChunksPerThread = 4;

    /// <summary>
    /// Token-panel tasks: with at least this many token panels per thread (or on one thread), each task
    /// packs one panel of X and multiplies it by all rows of W. One parallel round instead of two (pack,
    /// then compute), no barrier between them, the panel still in cache when it is used, its output rows
    /// contiguous, and work handed out in small pieces, which evens out a core slowed by other
    /// processes. 1024³ CSR 90 %, 2 threads: 0.97 against 1.5 ms for the row split (docs/perf/cpu-sparse.md).
    /// Fewer panels (short prompts) keep the row split, which needs no more panels than threads.
    /// </summary>
    private const int FusedPanelsPerThread = 2;

    private static Job? _cachedJob;

    /// <summary>How the work of one call is split over threads (tests and benchmarks force one; Auto otherwise).</summary>
    internal enum Split
    {
        Auto,
        Rows,
        Panels,
    }

    /// <summary>Whether the small-m int8 kernels regroup panel rows with <c>vpermb</c> (4-, 8- and 16-token panels; AVX-512 VBMI with VL).</summary>
    internal static bool SmallEight(SparseSimdOverrides overrides = default) =>
        Avx512Vbmi.IsSupported && Avx512Vbmi.VL.IsSupported && !overrides.SmallGathers;

    /// <summary>
    /// int8 × int8 → int32 (exact), written through <paramref name="output"/> (int32 or the dequantizing
    /// epilogue, batch index 0: C/Y row-major m×Rows).
    /// </summary>
    public static void Int8(in SparseWeights w, sbyte* x, int m, in SimdEpilogue output, SimdLevel level,
        SparseSimdOverrides overrides = default)
    {
        SimdLevel run = CpuSimd.Resolve(level);
        if (run == SimdLevel.Scalar)
        {
            Validate(w);
            ValidateInt8(x, m, output);
            ScalarInt8(w, x, m, output);
            return;
        }
        using SparseSimdPlan plan = SparseSimdPlan.PrepareForCall(w, run);
        Int8(plan, x, m, output, overrides);
    }

    /// <summary>float32: <c>Y = X·Wᵀ (+ bias[n])</c>, Y row-major m×Rows; <paramref name="bias"/> may be null.</summary>
    public static void Float32(in SparseWeights w, float* x, int m, float* y, float* bias, SimdLevel level,
        SparseSimdOverrides overrides = default)
    {
        SimdLevel run = CpuSimd.Resolve(level);
        if (run == SimdLevel.Scalar)
        {
            Validate(w);
            ValidateFloat(x, m, y);
            ScalarFloat32(w, x, m, y, bias);
            return;
        }
        using SparseSimdPlan plan = SparseSimdPlan.PrepareFloat32(w, run);
        Float32(plan, x, m, y, bias, overrides);
    }

    /// <summary>Which kernel <see cref="Int8(SparseSimdPlan, sbyte*, int, in SimdEpilogue, SparseSimdOverrides)"/> runs for <paramref name="m"/> tokens, in words (for benchmark reports).</summary>
    public static string DescribeInt8(SparseSimdPlan plan, int m, SparseSimdOverrides overrides = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        VnniJit.KernelSet? generated = Generated(plan);
        string kernel = plan.Level == SimdLevel.Scalar ? "scalar"
            : plan.Dense is not null ? "dense fallback (cost model: dense is faster here)"
            : SmallInt8Serves(plan, m, overrides) ? (m <= OneTokenM ? "small-m one-token gathers"
                : SmallEight(overrides) ? SmallWidth(m, true, generated != null) is var width && width > 4 && generated != null
                    ? $"small-m {width}-token panels (vpermb, generated vpdpbusd)"
                    : $"small-m {width}-token panels (vpermb)"
                : "small-m gathers")
            : LargeInt8(plan, generated) switch
            {
                Kind.QuadVnni => "aligned quads",
                Kind.Vnni => "interleave of four non-zeros" + (plan.Col16 != null ? ", 16-bit columns" : ""),
                _ => "int16 pairs",
            } + (generated != null ? " (generated vpdpbusd zmm)" : "");
        return $"cpu-simd {plan.Level.ToName()}: {kernel}";
    }

    /// <summary>As <see cref="Int8(in SparseWeights, sbyte*, int, in SimdEpilogue, SimdLevel, SparseSimdOverrides)"/>, with a prepared plan (at its level).</summary>
    public static void Int8(SparseSimdPlan plan, sbyte* x, int m, in SimdEpilogue output, SparseSimdOverrides overrides = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.IsFloat)
            throw new ArgumentException("plan: prepared for float32 values, called for int8.", nameof(plan));
        ValidateInt8(x, m, output);
        if (plan.Level == SimdLevel.Scalar)
        {
            ScalarInt8(plan.Weights, x, m, output);
            return;
        }
        if (plan.Dense is { } dense)
        {
            Int8GemmSimd.Gemm(x, dense, m, 1, 0, output, plan.Level);
            return;
        }
        VnniJit.KernelSet? generated = Generated(plan);
        Kind kind = SmallInt8Serves(plan, m, overrides) ? Kind.SmallInt8 : LargeInt8(plan, generated);
        Run(plan, kind, x, null, m, output, null, null, overrides, generated);
    }

    /// <summary>
    /// The generated kernels a call with <paramref name="plan"/> runs (asked once per call): the plan's set while
    /// generated code is still on (<see cref="CpuSimd.GeneratedCode"/>, <see cref="CpuSimd.JitVariable"/>), else null:
    /// the intrinsics, from the same plan, with the same bits.
    /// </summary>
    private static VnniJit.KernelSet? Generated(SparseSimdPlan plan) =>
        plan.Generated is { } set && CpuSimd.Resolve(SimdLevel.Avx512Vnni) == SimdLevel.Avx512Vnni ? set : null;

    /// <summary>
    /// The large-m int8 kernel of <paramref name="plan"/> for a call that runs <paramref name="generated"/>: the
    /// generated row kernels where there are any, otherwise the AVX-VNNI intrinsics where the CPU has them, else the
    /// AVX2 int16 pairs.
    /// </summary>
    private static Kind LargeInt8(SparseSimdPlan plan, VnniJit.KernelSet? generated) =>
        generated == null && !plan.Level.HasVnniIntrinsics() ? Kind.Avx2
            : plan.UseQuads ? Kind.QuadVnni
            : Kind.Vnni;

    /// <summary>As <see cref="Float32(in SparseWeights, float*, int, float*, float*, SimdLevel, SparseSimdOverrides)"/>, with a prepared plan.</summary>
    public static void Float32(SparseSimdPlan plan, float* x, int m, float* y, float* bias, SparseSimdOverrides overrides = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (!plan.IsFloat)
            throw new ArgumentException("plan: prepared for int8 values, called for float32.", nameof(plan));
        ValidateFloat(x, m, y);
        if (plan.Level == SimdLevel.Scalar)
        {
            ScalarFloat32(plan.Weights, x, m, y, bias);
            return;
        }
        Run(plan, m <= SmallMFloat ? Kind.SmallFloat : Kind.Float, null, x, m, default, y, bias, overrides);
    }

    private static void Run(SparseSimdPlan plan, Kind kind, sbyte* x8, float* xf, int m, in SimdEpilogue ep, float* y, float* bias,
        SparseSimdOverrides overrides, VnniJit.KernelSet? generated = null)
    {
        Job job = Interlocked.Exchange(ref _cachedJob, null) ?? new Job();
        NativeBuffer buffer = NativeBufferPool.Rent();
        try
        {
            job.Run(plan, kind, x8, xf, m, ep, y, bias, buffer, overrides, generated);
        }
        finally
        {
            job.Clear();
            NativeBufferPool.Return(buffer);
            Interlocked.Exchange(ref _cachedJob, job);
        }
    }

    internal static void Validate(in SparseWeights w)
    {
        Check.Positive(w.Rows, "w.Rows");
        Check.Positive(w.Columns, "w.Columns");
        if (w.Columns > Check.MaxK)
            throw new ArgumentOutOfRangeException(nameof(w), w.Columns, $"w.Columns: expected ≤ {Check.MaxK}, got {w.Columns}.");
        switch (w.Format)
        {
            case SparseFormat.Csr:
            case SparseFormat.Bsr:
                if (w.RowPointers == null)
                    throw new ArgumentException("w.RowPointers: expected a pointer, got null.", nameof(w));
                if (w.Format == SparseFormat.Bsr)
                {
                    Check.Positive(w.BlockRows, "w.BlockRows");
                    Check.Positive(w.BlockColumns, "w.BlockColumns");
                }
                break;
            case SparseFormat.TwoFour:
                if (w.Meta == null || w.Values == null)
                    throw new ArgumentException("w: 2:4 needs Values and Meta, got null.", nameof(w));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(w), w.Format, $"w.Format: expected a SparseFormat, got {(int)w.Format}.");
        }
    }

    private static void ValidateInt8(sbyte* x, int m, in SimdEpilogue output)
    {
        if (x == null)
            throw new ArgumentNullException(nameof(x), "x: expected a pointer to X, got null.");
        Check.Positive(m, nameof(m));
        if (output.IsDequant ? output.AScale == null || output.BScale == null : output.C == null)
            throw new ArgumentException("output: expected C, or Y with AScale and BScale.", nameof(output));
    }

    private static void ValidateFloat(float* x, int m, float* y)
    {
        if (x == null)
            throw new ArgumentNullException(nameof(x), "x: expected a pointer to X, got null.");
        if (y == null)
            throw new ArgumentNullException(nameof(y), "y: expected a pointer to Y, got null.");
        Check.Positive(m, nameof(m));
    }

    private enum Kind
    {
        Vnni,
        Avx2,
        QuadVnni,
        Float,
        SmallInt8,
        SmallFloat,
    }

    /// <summary>One call's state; pooled with its delegates.</summary>
    private sealed class Job
    {
        private readonly Action<int> _packBody;
        private readonly Action<int> _computeBody;

        private SparseSimdPlan? _plan;
        private Kind _kind;
        private sbyte* _x8;
        private float* _xf;
        private int _m;
        private int _n;
        private int _k;
        private SimdEpilogue _ep;
        private float* _y;
        private float* _bias;
        private byte* _panels;
        private long _panelBytes;
        private int _tbCount;
        private int _tbTokens;
        private int _groups;
        private int _rowChunks;
        private int _tbChunks;
        private int _threads;
        private bool _fused;
        private int _smallWidth;
        private bool _smallPermute;
        private VnniJit.KernelSet? _generated;

        public Job()
        {
            _packBody = PackTask;
            _computeBody = ComputeTask;
        }

        public void Clear()
        {
            _plan = null;
            _x8 = null;
            _xf = null;
            _ep = default;
            _y = null;
            _bias = null;
            _panels = null;
            _generated = null;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(SparseSimdPlan plan, Kind kind, sbyte* x8, float* xf, int m, in SimdEpilogue ep, float* y,
            float* bias, NativeBuffer buffer, SparseSimdOverrides overrides, VnniJit.KernelSet? generated)
        {
            _plan = plan;
            _kind = kind;
            _generated = generated;
            _x8 = x8;
            _xf = xf;
            _m = m;
            _n = plan.Rows;
            _k = plan.Columns;
            _ep = ep;
            _y = y;
            _bias = bias;
            long macs = (long)m * Math.Max(plan.Nnz, plan.Rows);
            _threads = macs < SequentialMacs ? 1 : Environment.ProcessorCount;
            _groups = (_n + SparseSimdKernels.GR - 1) / SparseSimdKernels.GR;
            int k = _k;
            switch (kind)
            {
                case Kind.SmallInt8:
                    // One token: k int16 in int32 lanes (gathers). Else token panels of 4 (gathers, or vpermb on
                    // eight columns), 8 or 16 (vpermb) bytes per k.
                    _smallPermute = SmallEight(overrides);
                    _smallWidth = SmallWidth(m, _smallPermute, generated != null);
                    _tbCount = (m + _smallWidth - 1) / _smallWidth;
                    _panelBytes = (((long)k * (_smallWidth == 1 ? sizeof(int) : _smallWidth)) + 63) & ~63L;
                    break;
                case Kind.SmallFloat:
                    _tbCount = 0;
                    _panelBytes = 0;
                    break;
                default:
                    _tbTokens = kind is Kind.Vnni or Kind.QuadVnni ? SparseSimdKernels.TBV : SparseSimdKernels.TB;
                    _tbCount = (m + _tbTokens - 1) / _tbTokens;
                    _panelBytes = kind switch
                    {
                        Kind.Vnni => (long)k * SparseSimdKernels.TBV,
                        Kind.Avx2 => (long)k * SparseSimdKernels.TB * sizeof(short),
                        Kind.QuadVnni => (long)((k + 3) / 4) * SparseSimdKernels.TBV * 4,
                        _ => (long)k * SparseSimdKernels.TB * sizeof(float),
                    };
                    _panelBytes = (_panelBytes + 63) & ~63L;
                    break;
            }
            _panels = _tbCount == 0 ? null : buffer.Ensure(_tbCount * _panelBytes);
            Split split = overrides.Split;
            _fused = kind is not (Kind.SmallInt8 or Kind.SmallFloat)
                && (split == Split.Panels || (split == Split.Auto && (_threads <= 1 || _tbCount >= FusedPanelsPerThread * _threads)));
            if (_fused)
            {
                // One task per token panel: pack it, then all rows of W by it.
                _rowChunks = 1;
                _tbChunks = _tbCount;
                For(_tbCount, _computeBody);
                return;
            }
            if (_tbCount > 0)
                For(_tbCount, _packBody);

            // Row chunks of whole 8-row groups, several per thread; token-block chunks only when the
            // rows alone cannot occupy the threads.
            int tbTotal = kind is Kind.SmallInt8 or Kind.SmallFloat ? 1 : _tbCount;
            int want = _threads > 1 ? (kind == Kind.SmallInt8 ? SmallChunksPerThread : ChunksPerThread) * _threads : 1;
            _rowChunks = Math.Min(_groups, want);
            _tbChunks = Math.Min(tbTotal, (want + _rowChunks - 1) / _rowChunks);
            For(_rowChunks * _tbChunks, _computeBody);
        }

        private void For(int count, Action<int> body) => SimdParallel.For(count, _threads, body);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackTask(int tb)
        {
            byte* dst = _panels + tb * _panelBytes;
            int t0 = tb * _tbTokens;
            switch (_kind)
            {
                case Kind.Vnni:
                    SparseSimdKernels.PackVnni(_x8, _m, _k, t0, dst);
                    break;
                case Kind.Avx2:
                    SparseSimdKernels.PackAvx2(_x8, _m, _k, t0, (short*)dst);
                    break;
                case Kind.QuadVnni:
                    SparseSimdKernels.PackQuads(_x8, _m, _k, t0, dst);
                    break;
                case Kind.Float:
                    SparseSimdKernels.PackFloat(_xf, _m, _k, t0, (float*)dst);
                    break;
                case Kind.SmallInt8 when _smallWidth == 1:
                    SparseSimdKernels.PackOne(_x8 + (long)tb * _k, _k, (int*)dst);
                    break;
                case Kind.SmallInt8 when _smallWidth > 4:
                    SparseSimdKernels.PackTokens(_x8, _m, _k, _smallWidth * tb, _smallWidth, dst);
                    break;
                case Kind.SmallInt8:
                    SparseSimdKernels.PackFour(_x8, _m, _k, 4 * tb, (uint*)dst);
                    break;
                default:
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ComputeTask(int index)
        {
            int rc = index / _tbChunks;
            int tc = index - rc * _tbChunks;
            int g0 = (int)((long)rc * _groups / _rowChunks);
            int g1 = (int)((long)(rc + 1) * _groups / _rowChunks);
            if (_kind == Kind.SmallInt8)
            {
                SmallInt8(g0, g1);
                return;
            }
            if (_kind == Kind.SmallFloat)
            {
                SmallFloat(g0, g1);
                return;
            }
            int tb0 = (int)((long)tc * _tbCount / _tbChunks);
            int tb1 = (int)((long)(tc + 1) * _tbCount / _tbChunks);
            if (_fused)
                PackTask(tb0);
            const int GR = SparseSimdKernels.GR;
            int TB = _tbTokens;
            // 64-byte aligned: the row kernels store whole vectors and the transposes load them.
            int sg = SparseSimdKernels.StoreGroups;
            byte* raw = stackalloc byte[sg * (GR * SparseSimdKernels.TBV + GR) * sizeof(int) + 64];
            int* tile = (int*)(((nint)raw + 63) & ~(nint)63);
            int* corr = tile + sg * GR * SparseSimdKernels.TBV;
            SparseSimdPlan plan = _plan!;
            int* rowPtr = plan.RowPtr;
            int* col = plan.Col;
            bool vnni = _kind is Kind.Vnni or Kind.QuadVnni;
            int* rowSum = vnni ? plan.RowSums() : null;
            SparseWeights w = plan.Weights;
            delegate* unmanaged<byte*, void*, void*, long, int*, void> generated = _generated == null ? null
                : _generated.Sparse(_kind == Kind.QuadVnni ? SparseRowKernel.Quads : plan.Col16 != null ? SparseRowKernel.Interleave16 : SparseRowKernel.Interleave32);
            for (int tb = tb0; tb < tb1; tb++)
            {
                byte* panel = _panels + tb * _panelBytes;
                int t0 = tb * TB;
                int tokens = Math.Min(TB, _m - t0);
                for (int g = g0; g < g1; g += sg)
                {
                    int r0 = g * GR;
                    int rows = Math.Min(Math.Min(sg, g1 - g) * GR, _n - r0);
                    for (int i = 0; i < sg * GR; i++)
                        corr[i] = vnni && i < rows ? 128 * rowSum[r0 + i] : 0;
                    for (int i = 0; i < rows; i++)
                    {
                        int r = r0 + i;
                        int* dst = tile + i * TB;
                        switch (_kind)
                        {
                            case Kind.Vnni when generated != null && plan.Col16 != null:
                                generated(panel, plan.Col16 + rowPtr[r], (sbyte*)plan.Val + rowPtr[r], rowPtr[r + 1] - rowPtr[r], dst);
                                break;
                            case Kind.Vnni when generated != null:
                                generated(panel, col + rowPtr[r], (sbyte*)plan.Val + rowPtr[r], rowPtr[r + 1] - rowPtr[r], dst);
                                break;
                            case Kind.QuadVnni when generated != null:
                                generated(panel, plan.QuadIndex + plan.QuadPtr[r], plan.QuadWeights + plan.QuadPtr[r], plan.QuadPtr[r + 1] - plan.QuadPtr[r], dst);
                                break;
                            case Kind.Vnni when Avx512BW.IsSupported && plan.Col16 != null:
                                SparseSimdKernels.RowVnni(panel, plan.Col16, (sbyte*)plan.Val, rowPtr[r], rowPtr[r + 1], dst);
                                break;
                            case Kind.Vnni when Avx512BW.IsSupported:
                                SparseSimdKernels.RowVnni(panel, col, (sbyte*)plan.Val, rowPtr[r], rowPtr[r + 1], dst);
                                break;
                            case Kind.Vnni:
                                SparseSimdKernels.RowVnni256(panel, col, (sbyte*)plan.Val, rowPtr[r], rowPtr[r + 1], dst);
                                break;
                            case Kind.Avx2:
                                SparseSimdKernels.RowAvx2((short*)panel, col, (sbyte*)plan.Val, rowPtr[r], rowPtr[r + 1], dst);
                                break;
                            case Kind.QuadVnni:
                                SparseSimdKernels.RowQuads(panel, plan.QuadIndex, plan.QuadWeights, plan.QuadPtr[r], plan.QuadPtr[r + 1], dst);
                                break;
                            default:
                                SparseSimdKernels.RowFloat((float*)panel, col, (float*)plan.Val, rowPtr[r], rowPtr[r + 1], (float*)dst, plan.Level >= SimdLevel.AvxVnni);
                                break;
                        }
                    }
                    if (_kind == Kind.Float)
                        SparseSimdKernels.StoreFloat((float*)tile, t0, tokens, r0, rows, _n, _y, _bias);
                    else
                        SparseSimdKernels.StoreInt8(tile, TB, corr, t0, tokens, r0, rows, _n, _ep);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void SmallInt8(int g0, int g1)
        {
            SparseSimdPlan plan = _plan!;
            int* rowPtr = plan.RowPtr;
            int* col = plan.Col;
            var val = (sbyte*)plan.Val;
            // Blocks of 16 rows, stored through the 8×8 transposing store (whole vectors, 16 consecutive
            // outputs per token). Element by element through Store, the stores took about as long as the
            // dot products at m = 8 (n = k = 4096, 10 %).
            const int BlockRows = 16;
            byte* raw = stackalloc byte[(BlockRows * 16 + BlockRows) * sizeof(int) + 64];
            int* tile = (int*)(((nint)raw + 63) & ~(nint)63);
            int* noCorrection = tile + BlockRows * 16;
            for (int i = 0; i < BlockRows; i++)
                noCorrection[i] = 0;
            int tokens = _smallWidth;
            // The generated forms of the 8- and 16-token kernels (vpermb panels: AVX-512 VBMI, as the intrinsics).
            delegate* unmanaged<byte*, void*, void*, long, int*, void> generated = _generated == null || !_smallPermute ? null
                : tokens == 16 ? _generated.Sparse(SparseRowKernel.Small16)
                : tokens == 8 ? _generated.Sparse(SparseRowKernel.Small8)
                : null;
            int rBegin = g0 * SparseSimdKernels.GR, r1 = Math.Min(_n, g1 * SparseSimdKernels.GR);
            for (int rb = rBegin; rb < r1; rb += BlockRows)
            {
                int rows = Math.Min(BlockRows, r1 - rb);
                for (int g = 0; g < _tbCount; g++)
                {
                    byte* panel = _panels + g * _panelBytes;
                    for (int i = 0; i < rows; i++)
                    {
                        int r = rb + i;
                        int* acc = tile + i * 16;
                        if (generated != null)
                            generated(panel, col + rowPtr[r], val + rowPtr[r], rowPtr[r + 1] - rowPtr[r], acc);
                        else if (tokens == 1)
                            acc[0] = plan.Col16 != null ? SparseSimdKernels.DotOne((int*)panel, plan.Col16, val, rowPtr[r], rowPtr[r + 1])
                                : SparseSimdKernels.DotOne((int*)panel, col, val, rowPtr[r], rowPtr[r + 1]);
                        else if (tokens == 16)
                            SparseSimdKernels.DotSixteen(panel, col, val, rowPtr[r], rowPtr[r + 1], acc);
                        else if (tokens == 8)
                            SparseSimdKernels.DotEight(panel, col, val, rowPtr[r], rowPtr[r + 1], acc);
                        else if (_smallPermute)
                            SparseSimdKernels.DotFourPermuted((uint*)panel, col, val, rowPtr[r], rowPtr[r + 1], acc);
                        else
                            SparseSimdKernels.DotFour((uint*)panel, col, val, rowPtr[r], rowPtr[r + 1], acc);
                    }
                    // The kernels subtracted the −128·Σw offset already.
                    SparseSimdKernels.StoreInt8(tile, 16, noCorrection, tokens * g, Math.Min(tokens, _m - tokens * g), rb, rows, _n, _ep);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void SmallFloat(int g0, int g1)
        {
            SparseSimdPlan plan = _plan!;
            int* rowPtr = plan.RowPtr;
            int* col = plan.Col;
            var val = (float*)plan.Val;
            int r1 = Math.Min(_n, g1 * SparseSimdKernels.GR);
            for (int r = g0 * SparseSimdKernels.GR; r < r1; r++)
            {
                float b = _bias == null ? 0f : _bias[r];
                for (int t = 0; t < _m; t++)
                {
                    float acc = SparseSimdKernels.DotFloat(_xf + (long)t * _k, col, val, rowPtr[r], rowPtr[r + 1]);
                    _y[(long)t * _n + r] = _bias == null ? acc : acc + b;
                }
            }
        }
    }

    /// <summary>The scalar semantics of <see cref="Int8(in SparseWeights, sbyte*, int, in SimdEpilogue, SimdLevel, SparseSimdOverrides)"/>.</summary>
    internal static void ScalarInt8(in SparseWeights w, sbyte* x, int m, in SimdEpilogue output) =>
        Scalar<sbyte, int, EpilogueRows>(w, x, m, new EpilogueRows(output));

    /// <summary>The scalar semantics of <see cref="Float32(in SparseWeights, float*, int, float*, float*, SimdLevel, SparseSimdOverrides)"/>.</summary>
    internal static void ScalarFloat32(in SparseWeights w, float* x, int m, float* y, float* bias) =>
        Scalar<float, float, FloatRows>(w, x, m, new FloatRows(y, bias));

    /// <summary>Each row of X against every row of W (<see cref="Accumulate"/>), written by <typeparamref name="TRows"/>.</summary>
    private static void Scalar<TValue, TAcc, TRows>(in SparseWeights w, TValue* x, int m, TRows rows)
        where TValue : unmanaged, INumberBase<TValue>
        where TAcc : unmanaged, INumberBase<TAcc>
        where TRows : struct, IScalarRows<TAcc>
    {
        var acc = new TAcc[w.Rows];
        for (int i = 0; i < m; i++)
        {
            Array.Clear(acc);
            Accumulate(w, x + (long)i * w.Columns, acc);
            rows.Write(i, acc);
        }
    }

    private interface IScalarRows<TAcc>
    {
        /// <summary>Writes output row <paramref name="row"/> from its accumulators.</summary>
        void Write(int row, TAcc[] acc);
    }

    /// <summary>int32 accumulators through the epilogue.</summary>
    private readonly struct EpilogueRows(SimdEpilogue output) : IScalarRows<int>
    {
        public void Write(int row, int[] acc)
        {
            for (int j = 0; j < acc.Length; j++)
                Store(output, row, j, acc.Length, acc[j]);
        }
    }

    /// <summary>float accumulators (+ bias) to y.</summary>
    private readonly struct FloatRows(float* y, float* bias) : IScalarRows<float>
    {
        public void Write(int row, float[] acc)
        {
            int n = acc.Length;
            for (int j = 0; j < n; j++)
                y[(long)row * n + j] = bias == null ? acc[j] : acc[j] + bias[j];
        }
    }

    internal static void Store(in SimdEpilogue output, int row, int col, int n, int acc)
    {
        long at = (long)row * n + col;
        if (!output.IsDequant)
        {
            output.C[at] = acc;
            return;
        }
        float v = acc * output.AScale[row] * output.BScale[col];
        if (output.Bias != null)
            v += output.Bias[col];
        output.Y[at] = v;
    }

    /// <summary>
    /// The scalar semantics of one row of X against every row of W: <c>acc[r] = Σ x[c]·W[r, c]</c> in the
    /// storage order of the format, with products and sums in <typeparamref name="TAcc"/> (int32 for
    /// int8 values: exact; float32 for float values).
    /// </summary>
    private static void Accumulate<TValue, TAcc>(in SparseWeights w, TValue* x, TAcc[] acc)
        where TValue : unmanaged, INumberBase<TValue>
        where TAcc : unmanaged, INumberBase<TAcc>
    {
        var values = (TValue*)w.Values;
        static TAcc Product(TValue a, TValue b) => TAcc.CreateTruncating(a) * TAcc.CreateTruncating(b);
        switch (w.Format)
        {
            case SparseFormat.Csr:
                for (int r = 0; r < w.Rows; r++)
                {
                    TAcc sum = TAcc.Zero;
                    for (int p = w.RowPointers[r]; p < w.RowPointers[r + 1]; p++)
                        sum += Product(x[w.ColumnIndices[p]], values[p]);
                    acc[r] = sum;
                }
                break;
            case SparseFormat.Bsr:
            {
                int br = w.BlockRows, bc = w.BlockColumns, blockRows = (w.Rows + br - 1) / br;
                for (int b = 0; b < blockRows; b++)
                {
                    for (int p = w.RowPointers[b]; p < w.RowPointers[b + 1]; p++)
                    {
                        int c0 = w.ColumnIndices[p] * bc;
                        TValue* block = values + (long)p * br * bc;
                        for (int i = 0; i < br && b * br + i < w.Rows; i++)
                        {
                            TAcc sum = TAcc.Zero;
                            for (int j = 0; j < bc && c0 + j < w.Columns; j++)
                                sum += Product(x[c0 + j], block[i * bc + j]);
                            acc[b * br + i] += sum;
                        }
                    }
                }
                break;
            }
            case SparseFormat.TwoFour:
            {
                int groups = (w.Columns + 3) / 4;
                for (int r = 0; r < w.Rows; r++)
                {
                    TAcc sum = TAcc.Zero;
                    for (int g = 0; g < groups; g++)
                    {
                        long at = (long)r * groups + g;
                        byte meta = w.Meta[at];
                        int c0 = g * 4 + (meta & 3), c1 = g * 4 + ((meta >> 2) & 3);
                        if (c0 < w.Columns)
                            sum += Product(x[c0], values[2 * at]);
                        if (c1 < w.Columns)
                            sum += Product(x[c1], values[2 * at + 1]);
                    }
                    acc[r] = sum;
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(w), w.Format, $"w.Format: expected a SparseFormat, got {(int)w.Format}.");
        }
    }
}

/// <summary>
/// Choices of <see cref="SparseSimd"/> forced for tests and in-process A/B benchmarks (the default is
/// the kernels' own choice): a parameter of each call, not a global or thread-static switch.
/// </summary>
/// <param name="Split">How the work is split over threads (Auto: the cost rule).</param>
/// <param name="SmallGathers">Small-m int8 kernels use the four-token gathers even where <c>vpermb</c> panels run.</param>
internal readonly record struct SparseSimdOverrides(SparseSimd.Split Split = SparseSimd.Split.Auto, bool SmallGathers = false);
