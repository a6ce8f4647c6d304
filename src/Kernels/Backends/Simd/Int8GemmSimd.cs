using Kernels.Backends.Simd.Jit;
using Kernels.Simd;

namespace Kernels.Backends.Simd;

/// <summary>
/// The CPU int8 GEMM core: <c>C[m,n] = Σ_k A[m,k]·B[n,k]</c> (A m×k row-major activations, B n×k
/// row-major weights, exact int32 result) for strided batches, with an int32 or a fused dequantizing
/// output (<see cref="SimdEpilogue"/>).
/// </summary>
/// <remarks>
/// B is packed into panels of <see cref="NR"/> columns and A into micro-panels of <see cref="MR"/> rows,
/// k grouped by four bytes (AVX-VNNI, A stored as A+128 in u8, corrected by 128·Σ_k B[n,k]) or by two
/// int16 (AVX2, exact s8→s16 widening and <c>vpmaddwd</c>), zero-padded in k. A register-blocked
/// 6×16 micro-kernel computes each tile (at <see cref="SimdLevel.Avx512Vnni"/>: a generated
/// <c>vpdpbusd zmm</c> kernel of up to 6×64, four panels at once, <see cref="VnniJit"/>); ragged edges in
/// m and n are cut at the store. Work is split
/// over (batch, row block, column block) tiles on up to <see cref="Environment.ProcessorCount"/>
/// threads; packing memory is pooled.
/// </remarks>
internal static unsafe class Int8GemmSimd
{
    /// <summary>Rows of the micro-tile.</summary>
    internal const int MR = 6;

    /// <summary>Columns of the micro-tile (two 256-bit vectors of int32).</summary>
    internal const int NR = 16;

    private const int GroupBytesA = MR * 4;
    private const int GroupBytesB = NR * 4;
    private const int MaxMC = 96;
    private const long AABlockBudget = 256 * 1024;
    private const long PackedBBudget = 64L << 20;
    private const long SequentialOps = 1L << 21;

    [ThreadStatic]
    private static NativeBuffer? _threadA;

    private static Job? _cachedJob;


    /// <summary>
    /// Runs <paramref name="batchCount"/> GEMMs: GEMM <c>bt</c> reads A at <c>a + bt·strideA</c> and B at
    /// <c>b + bt·strideB</c> (0: shared weights) and writes through <paramref name="epilogue"/>.
    /// </summary>
    /// <param name="a">A of GEMM 0: m×k row-major int8.</param>
    /// <param name="b">B of GEMM 0: n×k row-major int8.</param>
    /// <param name="m">Rows of A and C (≥ 1).</param>
    /// <param name="n">Rows of B, columns of C (≥ 1).</param>
    /// <param name="k">The reduction length (1..131071).</param>
    /// <param name="batchCount">Number of GEMMs (≥ 1).</param>
    /// <param name="strideA">Elements of A between consecutive GEMMs (0: shared activations).</param>
    /// <param name="strideB">Elements of B between consecutive GEMMs (0: shared weights).</param>
    /// <param name="epilogue">The output: int32 C or the dequantized float32 Y, with their batch strides.</param>
    /// <param name="level">The highest instruction-set level to use; the call runs at
    /// <see cref="CpuSimd.Resolve"/>(level), i.e. never above what the processor, the runtime and
    /// <c>KERNELS_SIMD_MAX</c> allow.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(sbyte* a, sbyte* b, int m, int n, int k, int batchCount, long strideA, long strideB,
        in SimdEpilogue epilogue, SimdLevel level)
    {
        Validate(a, b, m, n, k, batchCount, strideA, strideB, epilogue);
        SimdLevel run = CpuSimd.Resolve(level);
        Job job = Interlocked.Exchange(ref _cachedJob, null) ?? new Job();
        try
        {
            job.Setup(a, b, m, n, k, batchCount, strideA, strideB, epilogue, run);
            job.Run();
        }
        finally
        {
            job.Clear();
            Interlocked.Exchange(ref _cachedJob, job);
        }
    }

    /// <summary>
    /// Packs B once for reuse by <see cref="Gemm(sbyte*, PackedWeights, int, int, long, in SimdEpilogue)"/>:
    /// GEMM <c>bt</c>'s weights are the n×k row-major int8 at <c>b + bt·strideB</c> (strideB = 0 or
    /// batchCount = 1: one B shared by every GEMM of any later batch). The layout is for
    /// <see cref="CpuSimd.Resolve"/>(level). The caller owns (and disposes) the result.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static PackedWeights PackWeights(sbyte* b, int n, int k, int batchCount, long strideB, SimdLevel level)
    {
        if (b == null)
            throw new ArgumentNullException(nameof(b), "b: expected a pointer to B, got null.");
        Check.GemmShape(1, n, k);
        Check.Positive(batchCount, nameof(batchCount));
        Check.NonNegative(strideB, nameof(strideB));
        SimdLevel run = CpuSimd.Resolve(level);
        bool shared = strideB == 0 || batchCount == 1;
        int slots = shared ? 1 : batchCount;
        PackedWeights packed;
        if (run == SimdLevel.Scalar)
        {
            long bytes = (long)n * k;
            packed = new PackedWeights(n, k, batchCount, shared, run, 0, 0, 0, bytes, slots * bytes);
            for (int s = 0; s < slots; s++)
                Buffer.MemoryCopy(b + s * strideB, packed.Data + s * bytes, bytes, bytes);
            return packed;
        }
        bool vnni = run >= SimdLevel.AvxVnni;
        int groups = vnni ? (k + 3) / 4 : (k + 1) / 2;
        long panelBytes = (long)groups * GroupBytesB;
        int panelsN = (n + NR - 1) / NR;
        long perSlot = panelsN * panelBytes;
        packed = new PackedWeights(n, k, batchCount, shared, run, groups, panelsN, panelBytes, perSlot,
            slots * (perSlot + (long)panelsN * NR * sizeof(int)));
        try
        {
            Job job = Interlocked.Exchange(ref _cachedJob, null) ?? new Job();
            try
            {
                job.Pack(b, strideB, packed);
            }
            finally
            {
                job.Clear();
                Interlocked.Exchange(ref _cachedJob, job);
            }
        }
        catch
        {
            packed.Dispose();
            throw;
        }
        return packed;
    }

    /// <summary>
    /// Runs <paramref name="batchCount"/> GEMMs against pre-packed weights (n and k are
    /// <paramref name="b"/>'s) at the level they were packed for; otherwise as
    /// <see cref="Gemm(sbyte*, sbyte*, int, int, int, int, long, long, in SimdEpilogue, SimdLevel)"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Per-GEMM weights packed for another batch count, or a layout
    /// this process can no longer run.</exception>
    public static void Gemm(sbyte* a, PackedWeights b, int m, int batchCount, long strideA, in SimdEpilogue epilogue) =>
        Gemm(a, b, m, batchCount, strideA, epilogue, b?.Level ?? SimdLevel.Scalar);

    /// <summary>As the overload without <paramref name="level"/>, and checks that <see cref="CpuSimd.Resolve"/>(level)
    /// is the level <paramref name="b"/> was packed for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(sbyte* a, PackedWeights b, int m, int batchCount, long strideA, in SimdEpilogue epilogue,
        SimdLevel level)
    {
        ArgumentNullException.ThrowIfNull(b);
        SimdLevel run = CpuSimd.Resolve(level);
        if (run != b.Level)
            throw new ArgumentException(
                $"b: packed for {b.Level.ToName()}, but the call runs at {run.ToName()} (requested {level.ToName()}); pack the weights again.",
                nameof(b));
        if (CpuSimd.Resolve(b.Level) != b.Level)
            throw new ArgumentException($"b: packed for {b.Level.ToName()}, which this process no longer runs.", nameof(b));
        if (!b.Shared && batchCount != b.BatchCount)
            throw new ArgumentException(
                $"batchCount: the weights hold {b.BatchCount} per-GEMM matrices, got a batch of {batchCount}.",
                nameof(batchCount));
        b.AddRef();
        try
        {
            // Validate with a stand-in B pointer: B's own checks were done at packing.
            Validate(a, (sbyte*)b.Data, m, b.N, b.K, batchCount, strideA, 0, epilogue);
            Job job = Interlocked.Exchange(ref _cachedJob, null) ?? new Job();
            try
            {
                if (b.Level == SimdLevel.Scalar)
                    job.Setup(a, (sbyte*)b.Data, m, b.N, b.K, batchCount, strideA, b.Shared ? 0 : b.BytesPerSlot, epilogue, b.Level);
                else
                    job.Setup(a, b, m, batchCount, strideA, epilogue);
                job.Run();
            }
            finally
            {
                job.Clear();
                Interlocked.Exchange(ref _cachedJob, job);
            }
        }
        finally
        {
            b.Release();
        }
    }

    /// <summary>Span convenience for int32 output against pre-packed weights (tests).</summary>
    public static void Gemm(ReadOnlySpan<sbyte> a, PackedWeights b, Span<int> c, int m, int batchCount, long strideA,
        long strideC)
    {
        ArgumentNullException.ThrowIfNull(b);
        Check.Positive(batchCount, nameof(batchCount));
        int last = batchCount - 1;
        Check.MinLength(a.Length, (Int128)last * strideA + (long)m * b.K, nameof(a), "(batchCount−1)·strideA + m·k");
        Check.MinLength(c.Length, (Int128)last * strideC + (long)m * b.N, nameof(c), "(batchCount−1)·strideC + m·n");
        fixed (sbyte* pa = a)
        fixed (int* pc = c)
        {
            var epilogue = SimdEpilogue.Int32(pc, strideC);
            Gemm(pa, b, m, batchCount, strideA, epilogue);
        }
    }

    /// <summary>Span convenience for int32 output (tests): lengths are checked against the strides.</summary>
    public static void Gemm(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<int> c, int m, int n, int k,
        int batchCount, long strideA, long strideB, long strideC, SimdLevel level)
    {
        Check.GemmShape(m, n, k);
        Check.Positive(batchCount, nameof(batchCount));
        int last = batchCount - 1;
        Check.MinLength(a.Length, (Int128)last * strideA + (long)m * k, nameof(a), "(batchCount−1)·strideA + m·k");
        Check.MinLength(b.Length, (Int128)last * strideB + (long)n * k, nameof(b), "(batchCount−1)·strideB + n·k");
        Check.MinLength(c.Length, (Int128)last * strideC + (long)m * n, nameof(c), "(batchCount−1)·strideC + m·n");
        fixed (sbyte* pa = a)
        fixed (sbyte* pb = b)
        fixed (int* pc = c)
        {
            var epilogue = SimdEpilogue.Int32(pc, strideC);
            Gemm(pa, pb, m, n, k, batchCount, strideA, strideB, epilogue, level);
        }
    }

    /// <summary>Span convenience for the dequantizing output (tests); an empty <paramref name="bias"/> means none.</summary>
    public static void GemmDequant(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, ReadOnlySpan<float> aScale,
        ReadOnlySpan<float> bScale, ReadOnlySpan<float> bias, Span<float> y, int m, int n, int k, int batchCount,
        long strideA, long strideB, long strideAScale, long strideBScale, long strideY, SimdLevel level)
    {
        Check.GemmShape(m, n, k);
        Check.Positive(batchCount, nameof(batchCount));
        int last = batchCount - 1;
        Check.MinLength(a.Length, (Int128)last * strideA + (long)m * k, nameof(a), "(batchCount−1)·strideA + m·k");
        Check.MinLength(b.Length, (Int128)last * strideB + (long)n * k, nameof(b), "(batchCount−1)·strideB + n·k");
        Check.MinLength(aScale.Length, (Int128)last * strideAScale + m, nameof(aScale), "(batchCount−1)·strideAScale + m");
        Check.MinLength(bScale.Length, (Int128)last * strideBScale + n, nameof(bScale), "(batchCount−1)·strideBScale + n");
        if (!bias.IsEmpty)
            Check.MinLength(bias.Length, (Int128)last * strideBScale + n, nameof(bias), "(batchCount−1)·strideBScale + n");
        Check.MinLength(y.Length, (Int128)last * strideY + (long)m * n, nameof(y), "(batchCount−1)·strideY + m·n");
        fixed (sbyte* pa = a)
        fixed (sbyte* pb = b)
        fixed (float* pas = aScale)
        fixed (float* pbs = bScale)
        fixed (float* pbias = bias)
        fixed (float* py = y)
        {
            var epilogue = SimdEpilogue.Dequant(py, strideY, pas, strideAScale, pbs, bias.IsEmpty ? null : pbias, strideBScale);
            Gemm(pa, pb, m, n, k, batchCount, strideA, strideB, epilogue, level);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Validate(sbyte* a, sbyte* b, int m, int n, int k, int batchCount, long strideA, long strideB,
        in SimdEpilogue epilogue)
    {
        if (a == null)
            throw new ArgumentNullException(nameof(a), "a: expected a pointer to A, got null.");
        if (b == null)
            throw new ArgumentNullException(nameof(b), "b: expected a pointer to B, got null.");
        Check.GemmShape(m, n, k);
        Check.Positive(batchCount, nameof(batchCount));
        Check.NonNegative(strideA, nameof(strideA));
        Check.NonNegative(strideB, nameof(strideB));
        long outStride;
        if (epilogue.IsDequant)
        {
            if (epilogue.AScale == null || epilogue.BScale == null)
                throw new ArgumentException("epilogue: the dequantizing output needs AScale and BScale, got null.", nameof(epilogue));
            Check.NonNegative(epilogue.StrideAScale, "epilogue.StrideAScale");
            Check.NonNegative(epilogue.StrideBScale, "epilogue.StrideBScale");
            outStride = epilogue.StrideY;
        }
        else
        {
            if (epilogue.C == null)
                throw new ArgumentException("epilogue: expected an int32 output C or a float output Y, got neither.", nameof(epilogue));
            outStride = epilogue.StrideC;
        }
        if (batchCount > 1 && outStride < (long)m * n)
            throw new ArgumentException(
                $"epilogue: the output stride must be ≥ m·n = {(long)m * n} so that the GEMMs of a batch do not overlap, got {outStride}.",
                nameof(epilogue));
    }

    /// <summary>One call's state; pooled (with its delegates) so that steady-state calls allocate no buffers.</summary>
    private sealed class Job
    {
        private readonly Action<int> _packBody;
        private readonly Action<int> _computeBody;
        private readonly Action<int> _scalarBody;

        private sbyte* _a;
        private sbyte* _b;
        private int _m;
        private int _n;
        private int _k;
        private int _batch;
        private long _strideA;
        private long _strideB;
        private SimdEpilogue _ep;
        private SimdLevel _level;
        private bool _vnni;
        private VnniJit.KernelSet? _jit;

        private int _groups;
        private long _panelBytes;
        private int _panelsN;
        private int _ncPanels;
        private int _nBlocks;
        private int _mPanels;
        private int _mBlocks;
        private int _threads;

        private byte* _packedB;
        private int* _corr;
        private long _packedBytesPerBatch;
        private int _batchBegin;
        private int _batchesInChunk;
        private bool _sharedB;
        private PackedWeights? _pre;

        public Job()
        {
            _packBody = PackTask;
            _computeBody = ComputeTask;
            _scalarBody = ScalarTask;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Setup(sbyte* a, sbyte* b, int m, int n, int k, int batch, long strideA, long strideB,
            in SimdEpilogue ep, SimdLevel level)
        {
            _a = a;
            _b = b;
            _m = m;
            _n = n;
            _k = k;
            _batch = batch;
            _strideA = strideA;
            _strideB = strideB;
            _ep = ep;
            _level = level;
            _vnni = level >= SimdLevel.AvxVnni;
            // The generated kernels read the same packing as AVX-VNNI; should they be unavailable, the
            // intrinsics kernel runs instead (same results).
            _jit = level >= SimdLevel.Avx512Vnni ? VnniJit.TryGet(out _) : null;
            _sharedB = strideB == 0 || batch == 1;
            _pre = null;
            long ops = (long)m * n * k * batch;
            _threads = ops < SequentialOps ? 1 : Math.Max(1, Environment.ProcessorCount);
        }

        /// <summary>A call against pre-packed weights (AVX2 or AVX-VNNI layout).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Setup(sbyte* a, PackedWeights pre, int m, int batch, long strideA, in SimdEpilogue ep)
        {
            Setup(a, null, m, pre.N, pre.K, batch, strideA, 0, ep, pre.Level);
            _sharedB = pre.Shared;
            _pre = pre;
        }

        /// <summary>Packs every slot of <paramref name="pre"/> from B.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Pack(sbyte* b, long strideB, PackedWeights pre)
        {
            _b = b;
            _n = pre.N;
            _k = pre.K;
            _strideB = strideB;
            _level = pre.Level;
            _vnni = pre.Level >= SimdLevel.AvxVnni;
            _sharedB = pre.Shared;
            SetupB();
            _packedB = pre.Data;
            _corr = pre.Corr;
            _batchBegin = 0;
            long work = (long)pre.Slots * pre.N * pre.K;
            _threads = work < (1L << 16) ? 1 : Math.Max(1, Environment.ProcessorCount);
            For(pre.Slots * _panelsN, _packBody);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void SetupB()
        {
            _groups = _vnni ? (_k + 3) / 4 : (_k + 1) / 2;
            _panelBytes = (long)_groups * GroupBytesB;
            _panelsN = (_n + NR - 1) / NR;
            _packedBytesPerBatch = _panelsN * _panelBytes;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Clear()
        {
            _a = null;
            _b = null;
            _ep = default;
            _packedB = null;
            _corr = null;
            _pre = null;
            _jit = null;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run()
        {
            if (_level == SimdLevel.Scalar)
            {
                For(_batch * _m, _scalarBody);
                return;
            }

            SetupB();

            // Row blocks: whole micro-panels, at most MaxMC rows (the packed A block stays in L2 while
            // B panels stream through L1), spread evenly and in a multiple of the thread count.
            _mPanels = (_m + MR - 1) / MR;
            long aBlockPanels = Math.Clamp(AABlockBudget / ((long)_groups * GroupBytesA), 1, MaxMC / MR);
            int mBlocks = (int)Math.Min(_mPanels, (_mPanels + aBlockPanels - 1) / aBlockPanels);
            // Fewer row blocks than threads (a small m: decode, a short batch) are not split further: the column
            // blocks below occupy the threads, and every B panel is still read once per call, not once per row block.
            if (_threads > 1 && mBlocks >= _threads)
                mBlocks = Math.Min(_mPanels, (mBlocks + _threads - 1) / _threads * _threads);
            _mBlocks = mBlocks;
            // Column blocks only when there are too few row blocks to occupy the threads.
            _nBlocks = 1;
            if (_threads > 1 && (long)_batch * _mBlocks < 2 * _threads)
                _nBlocks = Math.Min(_panelsN, (2 * _threads + _batch * _mBlocks - 1) / (_batch * _mBlocks));
            _ncPanels = (_panelsN + _nBlocks - 1) / _nBlocks;
            if (_jit != null)
                _ncPanels = (_ncPanels + VnniKernelGenerator.MaxPanels - 1) / VnniKernelGenerator.MaxPanels * VnniKernelGenerator.MaxPanels;
            _nBlocks = (_panelsN + _ncPanels - 1) / _ncPanels;

            if (_pre != null)
            {
                _packedB = _pre.Data;
                _corr = _pre.Corr;
                _batchBegin = 0;
                _batchesInChunk = _batch;
                For(_batch * _mBlocks * _nBlocks, _computeBody);
                return;
            }

            long bytesPerBatch = _packedBytesPerBatch + (long)_panelsN * NR * sizeof(int);
            int chunk = _sharedB ? _batch : (int)Math.Clamp(PackedBBudget / bytesPerBatch, 1, _batch);
            int slots = _sharedB ? 1 : chunk;

            NativeBuffer buffer = NativeBufferPool.Rent();
            try
            {
                byte* mem = buffer.Ensure(slots * bytesPerBatch);
                _packedB = mem;
                _corr = (int*)(mem + slots * _packedBytesPerBatch);
                for (int begin = 0; begin < _batch; begin += chunk)
                {
                    _batchBegin = begin;
                    _batchesInChunk = Math.Min(chunk, _batch - begin);
                    if (!_sharedB || begin == 0)
                        For((_sharedB ? 1 : _batchesInChunk) * _panelsN, _packBody);
                    For(_batchesInChunk * _mBlocks * _nBlocks, _computeBody);
                }
            }
            finally
            {
                NativeBufferPool.Return(buffer);
            }
        }

        private void For(int count, Action<int> body) => SimdParallel.For(count, _threads, body);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackTask(int index)
        {
            int slot = index / _panelsN;
            int panel = index - slot * _panelsN;
            int bt = _batchBegin + slot;
            sbyte* b = _b + bt * _strideB;
            byte* dst = _packedB + slot * _packedBytesPerBatch + panel * _panelBytes;
            int* corr = _corr + ((long)slot * _panelsN + panel) * NR;
            if (_vnni)
                Packing.PackBVnni(b, _n, _k, _groups, panel * NR, dst, corr);
            else
                Packing.PackBAvx2(b, _n, _k, _groups, panel * NR, dst, corr);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ComputeTask(int index)
        {
            int perBatch = _mBlocks * _nBlocks;
            int slot = index / perBatch;
            int rest = index - slot * perBatch;
            int mb = rest / _nBlocks;
            int nb = rest - mb * _nBlocks;
            int bt = _batchBegin + slot;
            int bSlot = _sharedB ? 0 : slot;
            byte* bp = _packedB + bSlot * _packedBytesPerBatch;
            int* corr = _corr + (long)bSlot * _panelsN * NR;

            int ip0 = (int)((long)mb * _mPanels / _mBlocks);
            int ip1 = (int)((long)(mb + 1) * _mPanels / _mBlocks);
            int i0 = ip0 * MR;
            int rows = Math.Min((ip1 - ip0) * MR, _m - i0);
            int mPanels = ip1 - ip0;
            long aPanelBytes = (long)_groups * GroupBytesA;
            NativeBuffer aBuffer = _threadA ??= new NativeBuffer();
            byte* ap = aBuffer.Ensure(mPanels * aPanelBytes);
            sbyte* a = _a + bt * _strideA + (long)i0 * _k;
            if (_vnni)
                Packing.PackAVnni(a, rows, _k, _groups, ap, _level >= SimdLevel.Avx512Vnni);
            else
                Packing.PackAAvx2(a, rows, _k, _groups, ap);

            int p0 = nb * _ncPanels;
            int p1 = Math.Min(_panelsN, p0 + _ncPanels);
            if (_jit != null)
            {
                ComputeGenerated(_jit, ap, aPanelBytes, mPanels, i0, bp, p0, p1, bt, corr);
                return;
            }
            int* tile = stackalloc int[MR * NR];
            for (int p = p0; p < p1; p++)
            {
                byte* panel = bp + p * _panelBytes;
                int col0 = p * NR;
                int cols = Math.Min(NR, _n - col0);
                for (int ip = 0; ip < mPanels; ip++)
                {
                    int row0 = i0 + ip * MR;
                    int tileRows = Math.Min(MR, _m - row0);
                    PrefetchOutput(bt, row0, tileRows, col0, cols);
                    if (_vnni)
                        MicroKernels.Vnni(ap + ip * aPanelBytes, panel, _groups, tile);
                    else
                        MicroKernels.Avx2(ap + ip * aPanelBytes, panel, _groups, tile);
                    Store(tile, bt, row0, tileRows, col0, cols, corr + col0);
                }
            }
        }

        /// <summary>
        /// Panels p0..p1 against the block's A micro-panels with the generated kernels: up to four panels
        /// (64 columns) per call, the tile cut to the rows left and, in its last panel, to the columns left; each
        /// kernel prefetches its output lines and writes the output itself (<see cref="VnniOutput"/>), with the
        /// arithmetic of <see cref="Store"/>.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ComputeGenerated(VnniJit.KernelSet jit, byte* ap, long aPanelBytes, int mPanels, int i0, byte* bp,
            int p0, int p1, int bt, int* corr)
        {
            const int Panels = VnniKernelGenerator.MaxPanels;
            VnniOutput kind = !_ep.IsDequant ? VnniOutput.Int32 : _ep.Bias == null ? VnniOutput.Dequant : VnniOutput.DequantBias;
            long n = _n;
            byte* outBase = Output(bt);
            float* aScale = _ep.IsDequant ? _ep.AScale + bt * _ep.StrideAScale : null;
            float* bScale = _ep.IsDequant ? _ep.BScale + bt * _ep.StrideBScale : null;
            float* bias = _ep.Bias == null ? null : _ep.Bias + bt * _ep.StrideBScale;
            TileOutput tile;
            tile.RowBytes = n * sizeof(int);
            for (int p = p0; p < p1; p += Panels)
            {
                int panels = Math.Min(Panels, p1 - p);
                byte* panel = bp + p * _panelBytes;
                int col0 = p * NR;
                int lastColumns = Math.Min(NR, _n - (p + panels - 1) * NR);
                tile.LastMask = (1L << lastColumns) - 1;
                tile.Corr = corr + col0;
                tile.BScale = bScale == null ? null : bScale + col0;
                tile.Bias = bias == null ? null : bias + col0;
                for (int ip = 0; ip < mPanels; ip++)
                {
                    int row0 = i0 + ip * MR;
                    int rows = Math.Min(MR, _m - row0);
                    tile.Out = outBase + (row0 * n + col0) * sizeof(int);
                    tile.AScale = aScale == null ? null : aScale + row0;
                    jit.Get(kind, rows, panels)(ap + ip * aPanelBytes, panel, _groups, _panelBytes, &tile);
                }
            }
        }

        /// <summary>GEMM bt's output, C (int32) or Y (float32): 4-byte elements either way.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private byte* Output(int bt) =>
            _ep.IsDequant ? (byte*)(_ep.Y + bt * _ep.StrideY) : (byte*)(_ep.C + bt * _ep.StrideC);

        /// <summary>
        /// Asks for the output lines of a tile (rows × cols from (row0, col0) of GEMM bt) before its intrinsics kernel
        /// runs (the generated kernels do the same themselves): they are stored only after the whole k loop, and a line
        /// not in cache then costs a read for ownership in the middle of the stores. Measured on the Xeon in one process
        /// against the same code without it: generated kernels 1024³ 6–9 % and 2048³ 7 % less time; the AVX2 kernels at
        /// 1024³ and decode (m = 1, 8; n = k = 4096) within 1 %.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void PrefetchOutput(int bt, int row0, int rows, int col0, int cols)
        {
            byte* o = Output(bt) + ((long)row0 * _n + col0) * sizeof(int);
            long rowBytes = (long)_n * sizeof(int);
            int last = cols * sizeof(int) - 1;
            for (int r = 0; r < rows; r++, o += rowBytes)
            {
                for (int at = 0; at < last; at += 64)
                    Sse.Prefetch0(o + at);
                Sse.Prefetch0(o + last);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Store(int* tile, int bt, int row0, int rows, int col0, int cols, int* corr)
        {
            int n = _n;
            if (!_ep.IsDequant)
            {
                int* c = _ep.C + bt * _ep.StrideC + (long)row0 * n + col0;
                if (cols == NR)
                {
                    Vector256<int> k0 = Avx.LoadVector256(corr);
                    Vector256<int> k1 = Avx.LoadVector256(corr + 8);
                    for (int r = 0; r < rows; r++, c += n)
                    {
                        int* t = tile + r * NR;
                        Avx.Store(c, Avx2.Subtract(Avx.LoadVector256(t), k0));
                        Avx.Store(c + 8, Avx2.Subtract(Avx.LoadVector256(t + 8), k1));
                    }
                }
                else
                {
                    for (int r = 0; r < rows; r++, c += n)
                    {
                        int* t = tile + r * NR;
                        for (int j = 0; j < cols; j++)
                            c[j] = t[j] - corr[j];
                    }
                }
                return;
            }

            float* y = _ep.Y + bt * _ep.StrideY + (long)row0 * n + col0;
            float* aScale = _ep.AScale + bt * _ep.StrideAScale + row0;
            float* bScale = _ep.BScale + bt * _ep.StrideBScale + col0;
            float* bias = _ep.Bias == null ? null : _ep.Bias + bt * _ep.StrideBScale + col0;
            if (cols == NR)
            {
                Vector256<int> k0 = Avx.LoadVector256(corr);
                Vector256<int> k1 = Avx.LoadVector256(corr + 8);
                Vector256<float> s0 = Avx.LoadVector256(bScale);
                Vector256<float> s1 = Avx.LoadVector256(bScale + 8);
                for (int r = 0; r < rows; r++, y += n)
                {
                    int* t = tile + r * NR;
                    Vector256<float> sa = Vector256.Create(aScale[r]);
                    // (float)acc · aScale · bScale (+ bias), each step rounded to float32: no FMA.
                    Vector256<float> v0 = Avx.Multiply(Avx.Multiply(Avx.ConvertToVector256Single(Avx2.Subtract(Avx.LoadVector256(t), k0)), sa), s0);
                    Vector256<float> v1 = Avx.Multiply(Avx.Multiply(Avx.ConvertToVector256Single(Avx2.Subtract(Avx.LoadVector256(t + 8), k1)), sa), s1);
                    if (bias != null)
                    {
                        v0 = Avx.Add(v0, Avx.LoadVector256(bias));
                        v1 = Avx.Add(v1, Avx.LoadVector256(bias + 8));
                    }
                    Avx.Store(y, v0);
                    Avx.Store(y + 8, v1);
                }
            }
            else
            {
                for (int r = 0; r < rows; r++, y += n)
                {
                    int* t = tile + r * NR;
                    float sa = aScale[r];
                    for (int j = 0; j < cols; j++)
                        y[j] = Dequant(t[j] - corr[j], sa, bScale[j], bias == null ? 0f : bias[j], bias != null);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ScalarTask(int index)
        {
            int bt = index / _m;
            int row = index - bt * _m;
            int k = _k;
            int n = _n;
            sbyte* a = _a + bt * _strideA + (long)row * k;
            sbyte* b = _b + bt * _strideB;
            if (!_ep.IsDequant)
            {
                int* c = _ep.C + bt * _ep.StrideC + (long)row * n;
                for (int j = 0; j < n; j++)
                    c[j] = ScalarDot(a, b + (long)j * k, k);
                return;
            }
            float* y = _ep.Y + bt * _ep.StrideY + (long)row * n;
            float sa = _ep.AScale[bt * _ep.StrideAScale + row];
            float* bScale = _ep.BScale + bt * _ep.StrideBScale;
            float* bias = _ep.Bias == null ? null : _ep.Bias + bt * _ep.StrideBScale;
            for (int j = 0; j < n; j++)
                y[j] = Dequant(ScalarDot(a, b + (long)j * k, k), sa, bScale[j], bias == null ? 0f : bias[j], bias != null);
        }
    }

    /// <summary>The epilogue's arithmetic for one element, in float32, in the stated order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dequant(int acc, float aScale, float bScale, float bias, bool hasBias)
    {
        float v = acc * aScale * bScale;
        if (hasBias)
            v += bias;
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int ScalarDot(sbyte* a, sbyte* b, int k)
    {
        int s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int i = 0;
        for (; i + 4 <= k; i += 4)
        {
            s0 += a[i] * b[i];
            s1 += a[i + 1] * b[i + 1];
            s2 += a[i + 2] * b[i + 2];
            s3 += a[i + 3] * b[i + 3];
        }
        for (; i < k; i++)
            s0 += a[i] * b[i];
        return s0 + s1 + s2 + s3;
    }
}
