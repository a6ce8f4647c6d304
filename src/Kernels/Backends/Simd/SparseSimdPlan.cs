using System.Runtime.InteropServices;
using Kernels.Backends.Simd.Jit;
using Kernels.Simd;

namespace Kernels.Backends.Simd;

/// <summary>
/// A sparse weight matrix in the form the vectorized kernels of <see cref="SparseSimd"/> read, prepared
/// once per matrix (and per element type) so that a caller can cache it: a CSR view (rows of (column,
/// value)) of any <see cref="SparseFormat"/>, the per-row weight sums that undo the +128 offset of the
/// AVX-VNNI path, and, for BSR with a block width that is a multiple of 4, the original blocks for the
/// aligned-quad kernel.
/// </summary>
/// <remarks>
/// For CSR the view borrows the caller's arrays (nothing is copied); BSR and 2:4 are converted (int8:
/// stored zeros dropped, since they add nothing to an exact sum). A plan refers to the memory of the
/// <see cref="SparseWeights"/> it was prepared from (CSR, aligned BSR): that memory must stay valid and
/// unchanged while the plan is used. Not thread-affine: one plan may serve concurrent calls.
/// </remarks>
internal sealed unsafe class SparseSimdPlan : IDisposable
{
    private readonly Lock _sync = new();
    private void* _owned;
    private void* _ownedQuads;
    private void* _ownedCol16;
    private nint _sumsHandle;

    private SparseSimdPlan(in SparseWeights w, SimdLevel level, bool isFloat)
    {
        Weights = w;
        Level = level;
        IsFloat = isFloat;
    }

    /// <summary>The weights the plan was prepared from.</summary>
    public SparseWeights Weights { get; }

    /// <summary>The level the plan was prepared for (resolved).</summary>
    public SimdLevel Level { get; }

    /// <summary>True for a plan of float32 values (<see cref="PrepareFloat32"/>).</summary>
    public bool IsFloat { get; }

    /// <summary>Rows of W (n).</summary>
    public int Rows => Weights.Rows;

    /// <summary>Columns of W (k).</summary>
    public int Columns => Weights.Columns;

    /// <summary>CSR view: Rows+1 offsets.</summary>
    internal int* RowPtr { get; private set; }

    /// <summary>CSR view: the column of each value (all &lt; Columns).</summary>
    internal int* Col { get; private set; }

    /// <summary>CSR view: the values (sbyte or float).</summary>
    internal void* Val { get; private set; }

    private void* _ownedSums => (void*)Volatile.Read(ref _sumsHandle);

    /// <summary>
    /// True when the AVX-VNNI large-m kernel reads the aligned-quad form (<see cref="QuadPtr"/>): chosen by
    /// the cost model when the non-zeros cluster in aligned groups of four columns (BSR with a width that is
    /// a multiple of 4).
    /// </summary>
    internal bool UseQuads { get; private set; }

    /// <summary>Aligned-quad form: Rows+1 offsets into <see cref="QuadIndex"/> / <see cref="QuadWeights"/>.</summary>
    internal int* QuadPtr { get; private set; }

    /// <summary>Aligned-quad form: the k-quad (column / 4) of each quad, increasing within a row.</summary>
    internal int* QuadIndex { get; private set; }

    /// <summary>Aligned-quad form: the four weights of each quad (byte j = column 4q + j; zero where none).</summary>
    internal int* QuadWeights { get; private set; }

    /// <summary>The CSR view's columns as 16 bits (k ≤ 65536, kept plans of the interleave kernel); null otherwise.</summary>
    internal ushort* Col16 { get; private set; }

    /// <summary>
    /// The dense fallback: W expanded and packed for <see cref="Int8GemmSimd"/> when the cost model says the
    /// dense GEMM is faster than both sparse kernels (dense-ish CSR, 2:4); null otherwise.
    /// </summary>
    internal PackedWeights? Dense { get; private set; }

    /// <summary>
    /// The generated AVX-512 VNNI row kernels (<see cref="SparseKernelGenerator"/>) the large-m int8 kernels run, for
    /// a plan prepared at <see cref="SimdLevel.Avx512Vnni"/> where generation works; null: the intrinsics.
    /// </summary>
    internal VnniJit.KernelSet? Generated { get; private set; }

    /// <summary>
    /// Measured costs of the int8 kernels of one form. Prefill (large m), in one unit per form: the interleave kernel
    /// per non-zero, the aligned-quad kernel per quad and the dense GEMM per weight element, each for 64 tokens. Decode:
    /// <paramref name="DecodeMaxDensity"/>, the density (non-zeros ÷ n·k) above which the one-token kernel loses to the
    /// dense GEMM. A plan serves every m, so it keeps the sparse kernels only where both win: decode steps are most of
    /// a generation's time.
    /// </summary>
    internal readonly record struct Costs(double PerNonZero, double PerQuad, double PerDenseElement, double DecodeMaxDensity);

    /// <summary>
    /// The AVX-VNNI intrinsics and the intrinsics dense GEMM, measured on the 2-core Zen 5: prefill crossover 66 % zeros,
    /// decode m = 1–4 tie with the dense GEMM at 10 % density, n = k = 4096 (docs/perf/cpu-sparse.md).
    /// </summary>
    internal static readonly Costs IntrinsicsCosts = new(0.95, 2.2, 0.32, 0.10);

    /// <summary>
    /// The generated kernels and the generated dense GEMM, measured on the 2-vCPU Xeon (family 6 model 207). Prefill,
    /// n = k = 1024, m = 1024: one non-zero of the interleave kernel costs about 0.4 ns per 64 tokens (two threads,
    /// wall), a touched quad 2.2 times that (four panel lines instead of one), a dense weight element 0.13 ns; the sparse
    /// call also packs X and stores through a tile (about 0.9 ms at 1024³, whatever the density), so the dense cost per
    /// element is the one at the measured crossover, 81 % zeros: 0.19. Decode, m = 1, n = k = 4096: the one-token
    /// gathers overtake the dense GEMM at about 91 % zeros (0.82–0.89× at 90 %, 1.2–1.45× at 92 %): 0.09
    /// (docs/perf/cpu-sparse.md).
    /// </summary>
    internal static readonly Costs GeneratedCosts = new(1.0, 2.2, 0.19, 0.09);

    /// <summary>Number of stored (column, value) pairs of the CSR view.</summary>
    internal long Nnz => RowPtr[Rows];

    /// <summary>Prepares an int8 matrix for <see cref="SparseSimd.Int8(SparseSimdPlan, sbyte*, int, in SimdEpilogue, SparseSimdOverrides)"/>.</summary>
    /// <param name="w">The weights (values are <c>sbyte</c>).</param>
    /// <param name="level">The highest level to use; the plan runs at <see cref="CpuSimd.Resolve"/>(level).</param>
    public static SparseSimdPlan Prepare(in SparseWeights w, SimdLevel level) => Create(w, level, isFloat: false, perCall: false);

    /// <summary>
    /// The plan a call without one makes: for CSR it borrows the arrays and skips the cost model (whose
    /// O(nnz) pass, and the dense fallback's packing, only pay off when the plan is kept).
    /// </summary>
    internal static SparseSimdPlan PrepareForCall(in SparseWeights w, SimdLevel level) => Create(w, level, isFloat: false, perCall: true);

    /// <summary>Prepares a float32 matrix for <see cref="SparseSimd.Float32(SparseSimdPlan, float*, int, float*, float*, SparseSimdOverrides)"/>.</summary>
    public static SparseSimdPlan PrepareFloat32(in SparseWeights w, SimdLevel level) => Create(w, level, isFloat: true, perCall: false);

    private static SparseSimdPlan Create(in SparseWeights w, SimdLevel level, bool isFloat, bool perCall)
    {
        SparseSimd.Validate(w);
        var plan = new SparseSimdPlan(w, CpuSimd.Resolve(level), isFloat);
        try
        {
            plan.Build(perCall);
        }
        catch
        {
            plan.Dispose();
            throw;
        }
        return plan;
    }

    private void Build(bool perCall)
    {
        SparseWeights w = Weights;
        int rows = w.Rows;
        if (w.Format == SparseFormat.Csr)
        {
            RowPtr = w.RowPointers;
            Col = w.ColumnIndices;
            Val = w.Values;
        }
        else
        {
            // Two passes: count each row's entries, then fill.
            long total = 0;
            var counts = new long[rows];
            for (int r = 0; r < rows; r++)
            {
                counts[r] = CountRow(w, r, isFloat: IsFloat);
                total += counts[r];
            }
            if (total > int.MaxValue)
                throw new InvalidOperationException($"w: {total} stored values after conversion, more than int32 offsets hold.");
            int valueSize = IsFloat ? sizeof(float) : sizeof(sbyte);
            long bytes = (rows + 1L) * sizeof(int) + total * sizeof(int) + total * valueSize + 64;
            _owned = NativeMemory.AlignedAlloc((nuint)bytes, 64);
            RowPtr = (int*)_owned;
            Col = RowPtr + rows + 1;
            Val = Col + total;
            int at = 0;
            for (int r = 0; r < rows; r++)
            {
                RowPtr[r] = at;
                at = FillRow(w, r, at);
            }
            RowPtr[rows] = at;
        }

        // The cost model runs for an int8 plan that is kept (a per-call CSR plan borrows the arrays and skips it).
        bool kept = !IsFloat && !(perCall && w.Format == SparseFormat.Csr);
        Generated = !IsFloat && Level == SimdLevel.Avx512Vnni ? VnniJit.TryGet(out _) : null;
        Costs? costs = Generated != null ? GeneratedCosts : Level.HasVnniIntrinsics() ? IntrinsicsCosts : null;
        // Without VNNI (the AVX2 int16 pairs) every kept matrix keeps the sparse kernel: at the avx2 level it wins
        // from about 56 % zeros (docs/perf/cpu-sparse.md).
        if (kept && costs is { } c)
        {
            ChooseForm(c);
            if (!UseQuads && Dense is null && Columns <= 65536 && Nnz > 0)
            {
                // 16-bit columns for the interleave kernel: 3 instead of 5 bytes per non-zero re-read for
                // every token block.
                _ownedCol16 = NativeMemory.AlignedAlloc((nuint)Nnz * sizeof(ushort), 64);
                Col16 = (ushort*)_ownedCol16;
                for (long p = 0; p < Nnz; p++)
                    Col16[p] = (ushort)Col[p];
            }
        }
    }

    /// <summary>
    /// Chooses the form of a kept int8 plan by <paramref name="costs"/>: the dense fallback where the dense GEMM is faster
    /// for prefill or for decode, else the aligned quads when they cost less than the interleave (then built here).
    /// </summary>
    private void ChooseForm(Costs costs)
    {
        int rows = Rows;
        long quads = 0;
        for (int r = 0; r < rows; r++)
            quads += CountQuads(r);
        long nnz = Nnz;
        double interleave = costs.PerNonZero * nnz, aligned = costs.PerQuad * quads;
        double dense = costs.PerDenseElement * rows * (double)Columns;
        if (dense < Math.Min(interleave, aligned) || nnz > costs.DecodeMaxDensity * rows * (double)Columns)
        {
            BuildDense();
            return;
        }
        if (nnz == 0 || aligned >= interleave || quads > int.MaxValue)
            return;
        long bytes = (rows + 1L) * sizeof(int) + quads * 2 * sizeof(int);
        _ownedQuads = NativeMemory.AlignedAlloc((nuint)bytes, 64);
        QuadPtr = (int*)_ownedQuads;
        QuadIndex = QuadPtr + rows + 1;
        QuadWeights = QuadIndex + quads;
        var values = (sbyte*)Val;
        int at = 0;
        for (int r = 0; r < rows; r++)
        {
            QuadPtr[r] = at;
            int last = -1;
            for (int p = RowPtr[r]; p < RowPtr[r + 1]; p++)
            {
                int q = Col[p] >> 2;
                if (q != last)
                {
                    // Columns increase within a row (CSR contract; the conversions emit them in order
                    // except across BSR blocks, which CountQuads handles the same way).
                    QuadIndex[at] = q;
                    QuadWeights[at] = 0;
                    at++;
                    last = q;
                }
                QuadWeights[at - 1] += (byte)values[p] << (8 * (Col[p] & 3));
            }
        }
        QuadPtr[rows] = at;
        UseQuads = true;
    }

    private void BuildDense()
    {
        long count = (long)Rows * Columns;
        var w = (sbyte*)NativeMemory.AllocZeroed((nuint)count);
        try
        {
            var values = (sbyte*)Val;
            for (int r = 0; r < Rows; r++)
            {
                sbyte* row = w + (long)r * Columns;
                for (int p = RowPtr[r]; p < RowPtr[r + 1]; p++)
                    row[Col[p]] = values[p];
            }
            Dense = Int8GemmSimd.PackWeights(w, Rows, Columns, 1, 0, Level);
        }
        finally
        {
            NativeMemory.Free(w);
        }
    }

    private int CountQuads(int r)
    {
        int count = 0, last = -1;
        for (int p = RowPtr[r]; p < RowPtr[r + 1]; p++)
        {
            int q = Col[p] >> 2;
            if (q != last)
            {
                count++;
                last = q;
            }
        }
        return count;
    }

    /// <summary>
    /// int8: Σ of each row's values (for the −128·Σw correction of the AVX-VNNI kernels), computed on
    /// first use (the AVX2 and small-m kernels do not need it, so a per-call CSR plan costs nothing there).
    /// </summary>
    internal int* RowSums()
    {
        if (_ownedSums != null)
            return (int*)_ownedSums;
        lock (_sync)
        {
            if (_ownedSums == null)
            {
                var sums = (int*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, Rows) * sizeof(int), 64);
                var values = (sbyte*)Val;
                for (int r = 0; r < Rows; r++)
                    sums[r] = Sum(values + RowPtr[r], RowPtr[r + 1] - RowPtr[r]);
                Volatile.Write(ref _sumsHandle, (nint)sums);
            }
        }
        return (int*)_ownedSums;
    }

    private static int Sum(sbyte* v, int count)
    {
        int i = 0;
        int sum = 0;
        if (Avx2.IsSupported && count >= 16)
        {
            Vector256<int> acc = Vector256<int>.Zero;
            for (; i + 16 <= count; i += 16)
                acc = Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(v + i), Vector256.Create((short)1)));
            sum = Vector256.Sum(acc);
        }
        for (; i < count; i++)
            sum += v[i];
        return sum;
    }

    private static long CountRow(in SparseWeights w, int r, bool isFloat)
    {
        var counter = new EntryCounter { Values = (sbyte*)w.Values, IsFloat = isFloat };
        ForEachEntry(w, r, ref counter);
        return counter.Count;
    }

    private int FillRow(in SparseWeights w, int r, int at)
    {
        var filler = new EntryFiller { Plan = this, Values = w.Values, At = at };
        ForEachEntry(w, r, ref filler);
        return filler.At;
    }

    /// <summary>Each stored entry of row r of a BSR or 2:4 matrix (value index, column), in column order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForEachEntry<TSink>(in SparseWeights w, int r, ref TSink sink)
        where TSink : struct, IEntrySink
    {
        if (w.Format == SparseFormat.Bsr)
        {
            int br = w.BlockRows, bc = w.BlockColumns;
            int b = r / br, i = r - b * br;
            for (int p = w.RowPointers[b]; p < w.RowPointers[b + 1]; p++)
            {
                int c0 = w.ColumnIndices[p] * bc;
                long block = (long)p * br * bc + (long)i * bc;
                for (int j = 0; j < bc && c0 + j < w.Columns; j++)
                    sink.Add(block + j, c0 + j);
            }
            return;
        }
        int groups = (w.Columns + 3) / 4;
        for (int g = 0; g < groups; g++)
        {
            long v = (long)r * groups + g;
            byte meta = w.Meta[v];
            int c0 = g * 4 + (meta & 3), c1 = g * 4 + ((meta >> 2) & 3);
            if (c0 < w.Columns)
                sink.Add(2 * v, c0);
            if (c1 < w.Columns)
                sink.Add(2 * v + 1, c1);
        }
    }

    private interface IEntrySink
    {
        void Add(long from, int column);
    }

    /// <summary>Counts the entries the plan keeps (float: all; int8: the non-zero ones).</summary>
    private struct EntryCounter : IEntrySink
    {
        public sbyte* Values;
        public bool IsFloat;
        public long Count;

        public void Add(long from, int column)
        {
            if (IsFloat || Values[from] != 0)
                Count++;
        }
    }

    /// <summary>Writes the entries the plan keeps from <see cref="At"/> on.</summary>
    private struct EntryFiller : IEntrySink
    {
        public SparseSimdPlan Plan;
        public void* Values;
        public int At;

        public void Add(long from, int column) => At = Plan.Put(Values, from, column, At);
    }

    private int Put(void* values, long from, int column, int at)
    {
        if (IsFloat)
        {
            Col[at] = column;
            ((float*)Val)[at] = ((float*)values)[from];
            return at + 1;
        }
        sbyte value = ((sbyte*)values)[from];
        if (value == 0)
            return at;
        Col[at] = column;
        ((sbyte*)Val)[at] = value;
        return at + 1;
    }

    /// <summary>Frees the converted arrays (the borrowed CSR arrays are the caller's).</summary>
    public void Dispose()
    {
        if (_owned != null)
            NativeMemory.AlignedFree(_owned);
        if (_ownedSums != null)
            NativeMemory.AlignedFree(_ownedSums);
        if (_ownedQuads != null)
            NativeMemory.AlignedFree(_ownedQuads);
        Dense?.Dispose();
        Dense = null;
        if (_ownedCol16 != null)
            NativeMemory.AlignedFree(_ownedCol16);
        _ownedCol16 = null;
        Col16 = null;
        _owned = null;
        _ownedQuads = null;
        QuadPtr = null;
        QuadIndex = null;
        QuadWeights = null;
        UseQuads = false;
        _sumsHandle = 0;
        RowPtr = null;
        Col = null;
        Val = null;
        GC.SuppressFinalize(this);
    }
}
