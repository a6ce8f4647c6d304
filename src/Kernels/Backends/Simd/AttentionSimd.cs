using System.Buffers;
using Kernels.DeviceCode;

namespace Kernels.Backends.Simd;

/// <summary>
/// SIMD CPU fused attention (flash-style online softmax). Work items are (sequence, key/value head,
/// block of query rows, key split); the query rows of one block may come from several query heads
/// that share the key/value head (GQA/MQA), so their K/V tiles are loaded once. Keys are processed in
/// tiles of <see cref="Tile"/>; only a per-tile score buffer exists. Scores are kept in base-2 units
/// (Q is pre-scaled by scale·log₂e) so the softmax uses a vectorized 2^x.
/// </summary>
/// <remarks>
/// Two paths. The lanes path (≥ <see cref="LanesThreshold"/> query rows per key/value head, AVX2 or AVX-512)
/// keeps the rows of a block in vector lanes: Q is transposed into the block's scratch, each key of K is a
/// broadcast from its row (no packing), the scores are stored transposed ([key][row]) and the online softmax
/// runs down the keys lane by lane (no horizontal reductions; the rescale factors of 16 rows are one vector
/// 2^x). The direct path (decode, and the scalar width) computes each score as a vectorized dot product and
/// the softmax row by row. On both, P·V is a register-blocked micro-kernel over several rows on tiles every
/// row sees whole, and a per-row kernel on tiles where some row sees only part of the keys (causal diagonal,
/// windows, split edges), so a key a row cannot see never reaches it (a NaN or ∞ in an invisible V row does
/// not leak). Visible keys of a row form one interval [lo, hi), computed from the reference's rules.
/// </remarks>
internal static unsafe class AttentionSimd
{
    /// <summary>Keys per tile.</summary>
    internal const int Tile = 64;

    /// <summary>Query rows per block: three AVX-512 vectors of lanes, eight blocks of six rows for P·V.</summary>
    internal const int BlockRows = 48;

    /// <summary>Below this many query rows per key/value head, the direct path (row by row) runs.</summary>
    internal const int LanesThreshold = 8;

    private const float Log2E = 1.4426950408889634f;

    /// <summary>The widest vector width (floats) this machine runs: 16 (AVX-512), 8 (AVX2+FMA) or 1 (scalar).</summary>
    internal static int DetectedWidth { get; } =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 16 :
        Vector256.IsHardwareAccelerated && Fma.IsSupported ? 8 : 1;

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <summary>
    /// Fused attention on host memory with the semantics of <see cref="HostReference.Attention"/>:
    /// q [B, H, Sq, D], k and v [B, KvH, Sk, D], output [B, H, Sq, D]; keyLengths: null, or B lengths
    /// (ragged decode). splits ≥ 1: key splits combined exactly (results equal within float rounding).
    /// Arguments are validated by the caller.
    /// </summary>
    public static void Forward(float* q, float* k, float* v, float* output, int* keyLengths,
        AttentionShape shape, float scale, int window, int splits) =>
        Forward(q, k, v, output, keyLengths, shape, scale, window, splits, DetectedWidth, parallel: true);

    /// <summary>
    /// <see cref="Forward(float*, float*, float*, float*, int*, AttentionShape, float, int, int)"/> at a
    /// given vector width (16, 8 or 1; capped by the machine), for tests of every code path.
    /// </summary>
    internal static void Forward(float* q, float* k, float* v, float* output, int* keyLengths,
        AttentionShape shape, float scale, int window, int splits, int width, bool parallel)
    {
        width = Math.Min(width, DetectedWidth);
        if (width is not (16 or 8))
            width = 1;
        splits = Math.Clamp(splits, 1, shape.KeyLength);
        var plan = new Plan(q, k, v, output, keyLengths, shape, scale * Log2E, window, splits, width);
        float[]? partial = null;
        try
        {
            if (splits > 1)
                partial = ArrayPool<float>.Shared.Rent(checked((int)(shape.QueryElements / shape.HeadDim * splits * (shape.HeadDim + 2))));
            fixed (float* pp = partial)
            {
                plan.Partial = pp;
                double flops = 4.0 * shape.Batch * shape.Heads * shape.QueryLength * shape.KeyLength * shape.HeadDim;
                int threads = parallel && flops >= 4e6 ? Environment.ProcessorCount : 1;
                int kvCount = shape.Batch * shape.KvHeads;
                int items = kvCount * plan.BlocksPerKv * splits;
                Run(items, threads, i => Block(plan, i));
                if (splits > 1)
                {
                    int rows = (int)(shape.QueryElements / shape.HeadDim);
                    int chunk = 256;
                    Run((rows + chunk - 1) / chunk, threads, c => Combine(plan, c * chunk, Math.Min(rows, (c + 1) * chunk)));
                }
            }
        }
        finally
        {
            if (partial is not null)
                ArrayPool<float>.Shared.Return(partial);
        }
    }

    private static void Run(int count, int threads, Action<int> body) => SimdParallel.For(count, threads, body);

    /// <summary>Everything a work item needs (a class: captured by the parallel lambdas).</summary>
    private sealed class Plan
    {
        public readonly float* Q, K, V, Output;
        public readonly int* Lengths;
        public readonly int B, H, KvH, Sq, Sk, D, Group, Window, Splits, Width;
        public readonly bool Causal, Lanes;
        public readonly float Scale2;
        public readonly int BlocksPerKv, QueryBlocks, HeadsPerBlock;
        public float* Partial;

        public Plan(float* q, float* k, float* v, float* output, int* lengths, AttentionShape s,
            float scale2, int window, int splits, int width)
        {
            Q = q; K = k; V = v; Output = output; Lengths = lengths;
            B = s.Batch; H = s.Heads; KvH = s.KvHeads; Sq = s.QueryLength; Sk = s.KeyLength; D = s.HeadDim;
            Group = H / KvH; Causal = s.Causal; Window = window; Splits = splits; Width = width; Scale2 = scale2;
            Lanes = width >= 8 && (long)Group * Sq >= LanesThreshold;
            if (Sq >= BlockRows)
            {
                HeadsPerBlock = 1;
                QueryBlocks = (Sq + BlockRows - 1) / BlockRows;
                BlocksPerKv = Group * QueryBlocks;
            }
            else
            {
                HeadsPerBlock = Math.Max(1, BlockRows / Sq);
                QueryBlocks = 1;
                BlocksPerKv = (Group + HeadsPerBlock - 1) / HeadsPerBlock;
            }
        }

        public int Length(int b) => Lengths is null ? Sk : Lengths[b];
    }

    /// <summary>
    /// Per-thread scratch, sized for the largest head dimension, every part 64-byte aligned (a vector load
    /// that crosses a cache line costs two). One pinned array that never moves, so the pointers stay valid.
    /// </summary>
    private sealed class Scratch
    {
        private readonly float[] _memory = GC.AllocateArray<float>(
            2 * BlockRows * AttentionShape.MaxHeadDim + BlockRows * Tile + 6 * BlockRows + 16, pinned: true);

        /// <summary>Q of the block, scaled (direct path: [row][d]; lanes path: [d][BlockRows]).</summary>
        public readonly float* Q;

        /// <summary>The output accumulators, [row][d].</summary>
        public readonly float* O;

        /// <summary>The scores, then the weights, of one tile (direct path: [row][Tile]; lanes path: [Tile][BlockRows]).</summary>
        public readonly float* S;

        /// <summary>Per row: the running maximum and sum, and the current tile's rescale factor.</summary>
        public readonly float* M, L, Alpha;

        /// <summary>Per row: 0, or all bits set once the row met a NaN score (a lane mask on the lanes path).</summary>
        public readonly float* Dead;

        /// <summary>Per row, the keys it sees within the current tile, [Ja, Jb) (lanes path).</summary>
        public readonly float* Ja, Jb;

        /// <summary>Per row, the keys it sees in the sequence, [Lo, Hi).</summary>
        public readonly int[] Lo = new int[BlockRows];
        public readonly int[] Hi = new int[BlockRows];

        public Scratch()
        {
            Q = (float*)(((nint)Unsafe.AsPointer(ref _memory[0]) + 63) & ~(nint)63);
            O = Q + BlockRows * AttentionShape.MaxHeadDim;
            S = O + BlockRows * AttentionShape.MaxHeadDim;
            M = S + BlockRows * Tile;
            L = M + BlockRows;
            Alpha = L + BlockRows;
            Dead = Alpha + BlockRows;
            Ja = Dead + BlockRows;
            Jb = Ja + BlockRows;
        }
    }

    /// <summary>One work item: a block of query rows of one (sequence, kv head) over one key split.</summary>
    private static void Block(Plan p, int item)
    {
        Scratch sc = t_scratch ??= new Scratch();
        int split = item % p.Splits;
        int rest = item / p.Splits;
        int blockIndex = rest % p.BlocksPerKv;
        int kvIndex = rest / p.BlocksPerKv;
        int b = kvIndex / p.KvH, kvh = kvIndex % p.KvH;
        int g0, ng, i0, ni;
        if (p.HeadsPerBlock == 1 && p.Sq >= BlockRows)
        {
            g0 = blockIndex / p.QueryBlocks;
            ng = 1;
            i0 = blockIndex % p.QueryBlocks * BlockRows;
            ni = Math.Min(BlockRows, p.Sq - i0);
        }
        else
        {
            g0 = blockIndex * p.HeadsPerBlock;
            ng = Math.Min(p.HeadsPerBlock, p.Group - g0);
            i0 = 0;
            ni = p.Sq;
        }
        int rows = ng * ni;
        // The lanes path keeps the rows of a block in vector lanes (all BlockRows of them; Q transposed,
        // qs[x·BlockRows + r]); the direct path keeps each row apart (qs[r·d + x]), padded to a multiple of 4.
        int rowsPad = p.Lanes ? BlockRows : (rows + 3) & ~3;
        int qRow = p.Lanes ? 1 : p.D, qColumn = p.Lanes ? BlockRows : 1;
        int d = p.D;
        int len = p.Length(b);
        int s0 = (int)((long)len * split / p.Splits), s1 = (int)((long)len * (split + 1) / p.Splits);
        float* qs = sc.Q, os = sc.O, ss = sc.S;

        // [kLo, kHi): the keys some row sees; [allLo, allHi): the keys every row sees (a tile inside it is whole).
        int kLo = int.MaxValue, kHi = int.MinValue, allLo = int.MinValue, allHi = int.MaxValue;
        for (int r = 0; r < rowsPad; r++)
        {
            float* qr = qs + r * qRow;
            sc.M[r] = float.NegativeInfinity;
            sc.L[r] = 0;
            sc.Dead[r] = 0;
            new Span<float>(os + r * d, d).Clear();
            if (r >= rows)
            {
                for (int x = 0; x < d; x++)
                    qr[x * qColumn] = 0;
                sc.Lo[r] = 0;
                sc.Hi[r] = 0;
                continue;
            }
            int h = kvh * p.Group + g0 + r / ni, i = i0 + r % ni;
            float* src = p.Q + (((long)b * p.H + h) * p.Sq + i) * d;
            for (int x = 0; x < d; x++)
                qr[x * qColumn] = src[x] * p.Scale2;
            int pos = i + len - p.Sq;
            int lo = Math.Max(s0, AttentionMask.First(pos, p.Window));
            int hi = Math.Min(s1, AttentionMask.End(pos, p.Causal, p.Window));
            if (lo >= hi)
                lo = hi = 0;
            else
            {
                kLo = Math.Min(kLo, lo);
                kHi = Math.Max(kHi, hi);
            }
            sc.Lo[r] = lo;
            sc.Hi[r] = hi;
            allLo = Math.Max(allLo, lo);
            allHi = Math.Min(allHi, hi);
        }

        long kvBase = (long)kvIndex * p.Sk * d;
        if (kLo < kHi)
        {
            if (p.Lanes)
            {
                if (p.Width == 16)
                    LaneTiles<Vector512<float>, Float512>(p, sc, p.K + kvBase, p.V + kvBase, rows, kLo, kHi, allLo, allHi, len);
                else
                    LaneTiles<Vector256<float>, Float256>(p, sc, p.K + kvBase, p.V + kvBase, rows, kLo, kHi, allLo, allHi, len);
            }
            else
                DirectTiles(p, sc, p.K + kvBase, p.V + kvBase, rows, rowsPad, kLo, kHi, allLo, allHi, len);
        }

        // Write the block: the final rows, or this split's partial (m, l, acc).
        for (int r = 0; r < rows; r++)
        {
            int h = kvh * p.Group + g0 + r / ni, i = i0 + r % ni;
            long row = ((long)b * p.H + h) * p.Sq + i;
            float* orow = os + r * d;
            bool dead = IsDead(sc.Dead[r]);
            if (p.Splits > 1)
            {
                float* part = p.Partial + (row * p.Splits + split) * (d + 2);
                part[0] = sc.M[r];
                part[1] = dead ? float.NaN : sc.L[r];
                new Span<float>(orow, d).CopyTo(new Span<float>(part + 2, d));
                continue;
            }
            float* dst = p.Output + row * d;
            if (dead)
                new Span<float>(dst, d).Fill(float.NaN);
            else if (sc.M[r] == float.NegativeInfinity)
                new Span<float>(dst, d).Clear();
            else
            {
                float inv = 1f / sc.L[r];
                for (int x = 0; x < d; x++)
                    dst[x] = orow[x] * inv;
            }
        }
    }

    /// <summary>Whether a row met a NaN score (its flag: 0, or all bits set, a lane mask).</summary>
    private static bool IsDead(float flag) => BitConverter.SingleToInt32Bits(flag) != 0;

    /// <summary>All bits set: the flag of a row that met a NaN score.</summary>
    private static readonly float DeadFlag = BitConverter.Int32BitsToSingle(-1);

    /// <summary>
    /// The direct path's tiles (decode, and the scalar width): each score a dot product of a Q row and a K
    /// row, S row-major ([row][Tile]), the online softmax row by row over the keys each row sees.
    /// </summary>
    private static void DirectTiles(Plan p, Scratch sc, float* k, float* v, int rows, int rowsPad, int kLo, int kHi,
        int allLo, int allHi, int len)
    {
        int d = p.D;
        float* qs = sc.Q, os = sc.O, ss = sc.S;
        for (int t0 = kLo / Tile * Tile; t0 < kHi; t0 += Tile)
        {
            int n = Math.Min(Tile, len - t0);
            bool full = t0 >= allLo && t0 + n <= allHi;
            // Scores.
            for (int r = 0; r < rows; r++)
            {
                int ja = Math.Max(sc.Lo[r], t0) - t0, jb = Math.Min(sc.Hi[r], t0 + n) - t0;
                for (int c = ja; c < jb; c++)
                    ss[r * Tile + c] = Dot(qs + r * d, k + (long)(t0 + c) * d, d, p.Width);
            }
            // Online softmax per row.
            for (int r = 0; r < rowsPad; r++)
            {
                int ja = Math.Max(sc.Lo[r], t0) - t0, jb = Math.Min(sc.Hi[r], t0 + n) - t0;
                float* sr = ss + r * Tile;
                if (ja >= jb || IsDead(sc.Dead[r]))
                {
                    sc.Alpha[r] = 1;
                    if (full)
                        new Span<float>(sr, Tile).Clear();
                    continue;
                }
                float mt = RowMax(sr + ja, jb - ja, p.Width, out bool nan);
                if (nan)
                {
                    sc.Dead[r] = DeadFlag;
                    sc.Alpha[r] = 1;
                    if (full)
                        new Span<float>(sr, Tile).Clear();
                    continue;
                }
                float mOld = sc.M[r];
                float mNew = Math.Max(mOld, mt);
                float alpha = mOld == float.NegativeInfinity ? 0 : Exp2(mOld - mNew);
                float sum = ExpSum(sr + ja, jb - ja, mNew, p.Width);
                sc.L[r] = sc.L[r] * alpha + sum;
                sc.M[r] = mNew;
                sc.Alpha[r] = alpha;
            }
            // O = O·α + P·V.
            float* vt = v + (long)t0 * d;
            if (full && rowsPad >= 4)
            {
                for (int r = 0; r < rowsPad; r += 4)
                    PvRows<Rows4>(os + r * d, d, ss + r * Tile, Tile, 1, vt, 0, n, sc.Alpha + r, p.Width);
            }
            else
            {
                for (int r = 0; r < rows; r++)
                {
                    int ja = Math.Max(sc.Lo[r], t0) - t0, jb = Math.Min(sc.Hi[r], t0 + n) - t0;
                    if (ja >= jb || IsDead(sc.Dead[r]))
                        continue;
                    Pv1(os + r * d, d, ss + r * Tile, 1, vt, ja, jb, sc.Alpha[r], p.Width);
                }
            }
        }
    }

    /// <summary>
    /// The lanes path's tiles: S is kept transposed, st[key·BlockRows + row], so the online softmax runs
    /// down the keys with one query row per lane — no horizontal reductions, and one vector 2^x gives the
    /// rescale factors of a vector of rows. A key a row cannot see is −∞ for its maximum and 0 for its
    /// weights, and never reaches its P·V: tiles every row sees whole take the blocked P·V, the others the
    /// per-row P·V over each row's interval.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LaneTiles<TVector, TWidth>(Plan p, Scratch sc, float* k, float* v, int rows, int kLo, int kHi,
        int allLo, int allHi, int len)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int d = p.D, w = TWidth.Count;
        float* qt = sc.Q, os = sc.O, st = sc.S;
        float* m = sc.M, l = sc.L, alpha = sc.Alpha, dead = sc.Dead, ja = sc.Ja, jb = sc.Jb;
        // AVX-512: P·V by 6 rows × 4 vectors (24 accumulators), Q·Kᵀ by 3 vectors of rows × 8 keys;
        // AVX2 (16 registers): 4 rows × 1 vector, and 2 vectors of rows × 4 keys.
        int pvRows = TWidth.Block4x4 ? 6 : 4;
        int rowsPadPv = (rows + pvRows - 1) / pvRows * pvRows;
        // Lanes computed: whole vectors covering the rows P·V reads (the padded rows are zero in Q).
        int vectors = (rowsPadPv + w - 1) / w;
        for (int t0 = kLo / Tile * Tile; t0 < kHi; t0 += Tile)
        {
            int n = Math.Min(Tile, len - t0);
            bool full = t0 >= allLo && t0 + n <= allHi;
            if (!full)
            {
                for (int r = 0; r < BlockRows; r++)
                {
                    ja[r] = Math.Clamp(sc.Lo[r] - t0, 0, n);
                    jb[r] = Math.Clamp(sc.Hi[r] - t0, 0, n);
                }
            }
            // Scores of keys [0, n) (a group that runs past n repeats key n − 1; those scores are never read).
            float* kr = k + (long)t0 * d;
            if (TWidth.Block4x4)
            {
                for (int c = 0; c < n; c += 8)
                {
                    if (vectors == 3)
                        QkLanes<TVector, TWidth, Vectors3, Keys8>(qt, d, kr + (long)c * d, n - c, st + c * BlockRows);
                    else if (vectors == 2)
                        QkLanes<TVector, TWidth, Vectors2, Keys8>(qt, d, kr + (long)c * d, n - c, st + c * BlockRows);
                    else
                        QkLanes<TVector, TWidth, Vectors1, Keys8>(qt, d, kr + (long)c * d, n - c, st + c * BlockRows);
                }
            }
            else
            {
                for (int r0 = 0; r0 < vectors * w; r0 += 2 * w)
                {
                    for (int c = 0; c < n; c += 4)
                        QkLanes<TVector, TWidth, Vectors2, Keys4>(qt + r0, d, kr + (long)c * d, n - c, st + c * BlockRows + r0);
                }
            }
            for (int r0 = 0; r0 < vectors * w; r0 += w)
            {
                if (full)
                    SoftmaxLanes<TVector, TWidth, Whole>(st + r0, n, m + r0, l + r0, alpha + r0, dead + r0, ja + r0, jb + r0);
                else
                    SoftmaxLanes<TVector, TWidth, Masked>(st + r0, n, m + r0, l + r0, alpha + r0, dead + r0, ja + r0, jb + r0);
            }
            // O = O·α + P·V.
            float* vt = v + (long)t0 * d;
            if (full)
            {
                for (int r = 0; r < rowsPadPv; r += pvRows)
                {
                    if (TWidth.Block4x4)
                        PvRows<Rows6>(os + r * d, d, st + r, 1, BlockRows, vt, 0, n, alpha + r, p.Width);
                    else
                        PvRows<Rows4>(os + r * d, d, st + r, 1, BlockRows, vt, 0, n, alpha + r, p.Width);
                }
            }
            else
            {
                for (int r = 0; r < rows; r++)
                {
                    int a = (int)ja[r], e = (int)jb[r];
                    if (a < e && !IsDead(dead[r]))
                        Pv1(os + r * d, d, st + r, BlockRows, vt, a, e, alpha[r], p.Width);
                }
            }
        }
    }

    /// <summary>Whether a tile's softmax masks keys per row (a JIT-time constant).</summary>
    private interface IMasking
    {
        static abstract bool On { get; }
    }

    private struct Whole : IMasking
    {
        public static bool On => false;
    }

    private struct Masked : IMasking
    {
        public static bool On => true;
    }

    /// <summary>
    /// One vector of rows (lanes) of a tile, keys [0, n), key c at s + c·BlockRows: the tile maximum, the new
    /// running maximum m, α = 2^(m_old − m_new) (0 before the first visible key; 1 for a row that met a NaN),
    /// s ← 2^(s − m) in place (0 for keys outside [ja, jb) when masked, and for rows that met a NaN), and
    /// l ← l·α + Σ s. A NaN among a row's visible scores marks it (dead ← all bits set).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SoftmaxLanes<TVector, TWidth, TMask>(float* s, int n, float* m, float* l, float* alpha, float* dead,
        float* ja, float* jb)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TMask : struct, IMasking
    {
        TVector negInf = TWidth.Create(float.NegativeInfinity);
        TVector lo = default, hi = default;
        if (TMask.On)
        {
            lo = TWidth.Load(ja);
            hi = TWidth.Load(jb);
        }
        // The maximum, and a sum that is NaN where a visible score is NaN (or where +∞ meets −∞: then the
        // scores are checked one by one).
        TVector mt0 = negInf, mt1 = negInf, sum0 = default, sum1 = default;
        int c = 0;
        for (; c + 2 <= n; c += 2)
        {
            TVector x0 = Score<TVector, TWidth, TMask>(s, c, lo, hi), x1 = Score<TVector, TWidth, TMask>(s, c + 1, lo, hi);
            mt0 = TWidth.MaxNative(mt0, x0);
            mt1 = TWidth.MaxNative(mt1, x1);
            sum0 = TWidth.Add(sum0, x0);
            sum1 = TWidth.Add(sum1, x1);
        }
        if (c < n)
        {
            TVector x0 = Score<TVector, TWidth, TMask>(s, c, lo, hi);
            mt0 = TWidth.MaxNative(mt0, x0);
            sum0 = TWidth.Add(sum0, x0);
        }
        TVector ok = TWidth.NotNaN(TWidth.Add(sum0, sum1));
        if (!TWidth.AllBitsSet(ok))
        {
            ok = TWidth.NotNaN(default);
            for (c = 0; c < n; c++)
                ok = TWidth.And(ok, TWidth.NotNaN(Score<TVector, TWidth, TMask>(s, c, lo, hi)));
        }
        TVector mOld = TWidth.Load(m);
        TVector mNew = TWidth.MaxNative(mOld, TWidth.MaxNative(mt0, mt1));
        TVector deadNow = TWidth.Select(ok, TWidth.Load(dead), TWidth.Create(DeadFlag));
        TVector a = Exp2<TVector, TWidth>(TWidth.Subtract(mOld, mNew));
        a = TWidth.Select(TWidth.LessThan(mOld, TWidth.Create(float.MinValue)), default, a);
        a = TWidth.Select(deadNow, TWidth.Create(1f), a);
        sum0 = default;
        sum1 = default;
        for (c = 0; c + 2 <= n; c += 2)
        {
            sum0 = TWidth.Add(sum0, Weight<TVector, TWidth, TMask>(s, c, lo, hi, mNew, deadNow));
            sum1 = TWidth.Add(sum1, Weight<TVector, TWidth, TMask>(s, c + 1, lo, hi, mNew, deadNow));
        }
        if (c < n)
            sum0 = TWidth.Add(sum0, Weight<TVector, TWidth, TMask>(s, c, lo, hi, mNew, deadNow));
        TWidth.Store(TWidth.Add(TWidth.Multiply(TWidth.Load(l), a), TWidth.Add(sum0, sum1)), l);
        TWidth.Store(mNew, m);
        TWidth.Store(a, alpha);
        TWidth.Store(deadNow, dead);
    }

    /// <summary>Key c's scores (at s + c·BlockRows), −∞ in the lanes that cannot see it when masked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Score<TVector, TWidth, TMask>(float* s, int c, TVector lo, TVector hi)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TMask : struct, IMasking
    {
        TVector x = TWidth.Load(s + c * BlockRows);
        return TMask.On ? TWidth.Select(Visible<TVector, TWidth>(c, lo, hi), x, TWidth.Create(float.NegativeInfinity)) : x;
    }

    /// <summary>
    /// Key c's weights 2^(score − max), stored over its scores and returned: 0 in the lanes that cannot see it
    /// (when masked) and in the lanes of rows that met a NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Weight<TVector, TWidth, TMask>(float* s, int c, TVector lo, TVector hi, TVector max, TVector dead)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TMask : struct, IMasking
    {
        float* p = s + c * BlockRows;
        TVector e = Exp2<TVector, TWidth>(TWidth.Subtract(TWidth.Load(p), max));
        if (TMask.On)
            e = TWidth.Select(Visible<TVector, TWidth>(c, lo, hi), e, default);
        e = TWidth.AndNot(e, dead);
        TWidth.Store(e, p);
        return e;
    }

    /// <summary>The lanes whose interval [lo, hi) holds key c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Visible<TVector, TWidth>(int c, TVector lo, TVector hi)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        TVector key = TWidth.Create(c);
        return TWidth.AndNot(TWidth.LessThan(key, hi), TWidth.LessThan(key, lo));
    }

    /// <summary>Combines the splits' partial results of rows [from, to) with log-sum-exp rescaling.</summary>
    private static void Combine(Plan p, int from, int to)
    {
        int d = p.D, splits = p.Splits;
        for (int row = from; row < to; row++)
            AttentionSplits.Combine<Base2Units>(p.Partial + (long)row * splits * (d + 2), splits, p.Output + (long)row * d, d);
    }

    /// <summary>Scores in base-2 units; the combine multiplies and adds separately (no FMA).</summary>
    private struct Base2Units : AttentionSplits.IUnits
    {
        public static float Exp(float x) => float.Exp2(x);

        public static void Axpy(float* o, float w, float* v, int d)
        {
            for (int x = 0; x < d; x++)
                o[x] += v[x] * w;
        }

        public static void Scale(float* o, float s, int d)
        {
            for (int x = 0; x < d; x++)
                o[x] *= s;
        }
    }

    // ---- Q·Kᵀ --------------------------------------------------------------------------------------

    /// <summary>
    /// TKeys.Count keys (K rows d apart from k; those at or past <paramref name="valid"/> repeat the last valid
    /// one) × TVectors.Count vectors of rows (qt[x·BlockRows + lane]): st[c·BlockRows + lane] = Σ_x K[c][x]·Q[lane][x].
    /// Each key is a broadcast, each vector of rows one load per x; AVX-512 holds 8 keys × up to 3 vectors
    /// (24 accumulators), AVX2 4 × 2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QkLanes<TVector, TWidth, TVectors, TKeys>(float* qt, int d, float* k, int valid, float* st)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TVectors : struct, ICount
        where TKeys : struct, ICount
    {
        int w = TWidth.Count, keys = TKeys.Count, last = valid - 1;
        float* k0 = k, k1 = k + Math.Min(1, last) * d, k2 = k + Math.Min(2, last) * d, k3 = k + Math.Min(3, last) * d;
        float* k4 = k, k5 = k, k6 = k, k7 = k;
        if (keys > 4)
        {
            k4 = k + Math.Min(4, last) * d;
            k5 = k + Math.Min(5, last) * d;
            k6 = k + Math.Min(6, last) * d;
            k7 = k + Math.Min(7, last) * d;
        }
        TVector a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        TVector a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        TVector a40 = default, a41 = default, a42 = default, a50 = default, a51 = default, a52 = default;
        TVector a60 = default, a61 = default, a62 = default, a70 = default, a71 = default, a72 = default;
        for (int x = 0; x < d; x++)
        {
            float* qx = qt + x * BlockRows;
            TVector q0 = TWidth.Load(qx);
            TVector q1 = TVectors.Count > 1 ? TWidth.Load(qx + w) : default;
            TVector q2 = TVectors.Count > 2 ? TWidth.Load(qx + 2 * w) : default;
            MultiplyAdd3<TVector, TWidth, TVectors>(ref a00, ref a01, ref a02, q0, q1, q2, k0[x]);
            MultiplyAdd3<TVector, TWidth, TVectors>(ref a10, ref a11, ref a12, q0, q1, q2, k1[x]);
            MultiplyAdd3<TVector, TWidth, TVectors>(ref a20, ref a21, ref a22, q0, q1, q2, k2[x]);
            MultiplyAdd3<TVector, TWidth, TVectors>(ref a30, ref a31, ref a32, q0, q1, q2, k3[x]);
            if (keys > 4)
            {
                MultiplyAdd3<TVector, TWidth, TVectors>(ref a40, ref a41, ref a42, q0, q1, q2, k4[x]);
                MultiplyAdd3<TVector, TWidth, TVectors>(ref a50, ref a51, ref a52, q0, q1, q2, k5[x]);
                MultiplyAdd3<TVector, TWidth, TVectors>(ref a60, ref a61, ref a62, q0, q1, q2, k6[x]);
                MultiplyAdd3<TVector, TWidth, TVectors>(ref a70, ref a71, ref a72, q0, q1, q2, k7[x]);
            }
        }
        Store3<TVector, TWidth, TVectors>(st, a00, a01, a02);
        Store3<TVector, TWidth, TVectors>(st + BlockRows, a10, a11, a12);
        Store3<TVector, TWidth, TVectors>(st + 2 * BlockRows, a20, a21, a22);
        Store3<TVector, TWidth, TVectors>(st + 3 * BlockRows, a30, a31, a32);
        if (keys > 4)
        {
            Store3<TVector, TWidth, TVectors>(st + 4 * BlockRows, a40, a41, a42);
            Store3<TVector, TWidth, TVectors>(st + 5 * BlockRows, a50, a51, a52);
            Store3<TVector, TWidth, TVectors>(st + 6 * BlockRows, a60, a61, a62);
            Store3<TVector, TWidth, TVectors>(st + 7 * BlockRows, a70, a71, a72);
        }
    }

    /// <summary>a_i = q_i·k + a_i (fused) for the first TVectors.Count of three.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyAdd3<TVector, TWidth, TVectors>(ref TVector a0, ref TVector a1, ref TVector a2,
        TVector q0, TVector q1, TVector q2, float k)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TVectors : struct, ICount
    {
        TVector b = TWidth.Create(k);
        a0 = TWidth.MultiplyAdd(q0, b, a0);
        if (TVectors.Count > 1)
            a1 = TWidth.MultiplyAdd(q1, b, a1);
        if (TVectors.Count > 2)
            a2 = TWidth.MultiplyAdd(q2, b, a2);
    }

    /// <summary>The first TVectors.Count of three vectors to consecutive places at p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store3<TVector, TWidth, TVectors>(float* p, TVector v0, TVector v1, TVector v2)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TVectors : struct, ICount
    {
        TWidth.Store(v0, p);
        if (TVectors.Count > 1)
            TWidth.Store(v1, p + TWidth.Count);
        if (TVectors.Count > 2)
            TWidth.Store(v2, p + 2 * TWidth.Count);
    }

    /// <summary>Four vectors to consecutive places at p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4<TVector, TWidth>(float* p, TVector v0, TVector v1, TVector v2, TVector v3)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = TWidth.Count;
        TWidth.Store(v0, p); TWidth.Store(v1, p + n); TWidth.Store(v2, p + 2 * n); TWidth.Store(v3, p + 3 * n);
    }

    /// <summary>Four consecutive vectors at p, times s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Load4<TVector, TWidth>(float* p, float s, out TVector v0, out TVector v1, out TVector v2, out TVector v3)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = TWidth.Count;
        v0 = TWidth.Multiply(TWidth.Load(p), s);
        v1 = TWidth.Multiply(TWidth.Load(p + n), s);
        v2 = TWidth.Multiply(TWidth.Load(p + 2 * n), s);
        v3 = TWidth.Multiply(TWidth.Load(p + 3 * n), s);
    }

    /// <summary>a_i = v_i·s + a_i (fused) for four accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyAdd4<TVector, TWidth>(ref TVector a0, ref TVector a1, ref TVector a2, ref TVector a3,
        TVector v0, TVector v1, TVector v2, TVector v3, float s)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        TVector b = TWidth.Create(s);
        a0 = TWidth.MultiplyAdd(v0, b, a0);
        a1 = TWidth.MultiplyAdd(v1, b, a1);
        a2 = TWidth.MultiplyAdd(v2, b, a2);
        a3 = TWidth.MultiplyAdd(v3, b, a3);
    }

    /// <summary>A register block's count of rows, vectors or keys (a JIT-time constant).</summary>
    private interface ICount
    {
        static abstract int Count { get; }
    }

    private struct Vectors1 : ICount
    {
        public static int Count => 1;
    }

    private struct Vectors2 : ICount
    {
        public static int Count => 2;
    }

    private struct Vectors3 : ICount
    {
        public static int Count => 3;
    }

    private struct Keys4 : ICount
    {
        public static int Count => 4;
    }

    private struct Keys8 : ICount
    {
        public static int Count => 8;
    }

    private struct Rows4 : ICount
    {
        public static int Count => 4;
    }

    private struct Rows6 : ICount
    {
        public static int Count => 6;
    }

    /// <summary>Σ_x a[x]·b[x] (direct path).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot(float* a, float* b, int d, int width)
    {
        int x = 0;
        float sum = 0;
        if (width == 16 && d >= 16)
            sum = Dot<Vector512<float>, Float512>(a, b, d, ref x);
        else if (width >= 8 && d >= 8)
            sum = Dot<Vector256<float>, Float256>(a, b, d, ref x);
        for (; x < d; x++)
            sum = MathF.FusedMultiplyAdd(a[x], b[x], sum);
        return sum;
    }

    /// <summary>The vector part of <see cref="Dot(float*, float*, int, int)"/>: whole vectors from x on; x is advanced.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TVector, TWidth>(float* a, float* b, int d, ref int x)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = TWidth.Count;
        TVector acc0 = default, acc1 = default;
        for (; x + 2 * n <= d; x += 2 * n)
        {
            acc0 = TWidth.MultiplyAdd(TWidth.Load(a + x), TWidth.Load(b + x), acc0);
            acc1 = TWidth.MultiplyAdd(TWidth.Load(a + x + n), TWidth.Load(b + x + n), acc1);
        }
        for (; x + n <= d; x += n)
            acc0 = TWidth.MultiplyAdd(TWidth.Load(a + x), TWidth.Load(b + x), acc0);
        return TWidth.Sum(TWidth.Add(acc0, acc1));
    }

    // ---- softmax -----------------------------------------------------------------------------------

    /// <summary>The maximum of s[0..n), and whether any is NaN (checked explicitly: vector max drops NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RowMax(float* s, int n, int width, out bool nan)
    {
        int c = 0;
        float max = float.NegativeInfinity;
        nan = false;
        if (width == 16 && n >= 16)
            max = RowMax<Vector512<float>, Float512>(s, n, ref c, out nan);
        else if (width == 8 && n >= 8)
            max = RowMax<Vector256<float>, Float256>(s, n, ref c, out nan);
        for (; c < n; c++)
        {
            nan |= float.IsNaN(s[c]);
            if (s[c] > max)
                max = s[c];
        }
        return max;
    }

    /// <summary>The vector part of <see cref="RowMax(float*, int, int, out bool)"/>: whole vectors from c on; c is advanced.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float RowMax<TVector, TWidth>(float* s, int n, ref int c, out bool nan)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int w = TWidth.Count;
        TVector m = TWidth.Create(float.NegativeInfinity);
        TVector ok = TWidth.NotNaN(default);
        for (; c + w <= n; c += w)
        {
            TVector x = TWidth.Load(s + c);
            m = TWidth.MaxNative(m, x);
            ok = TWidth.And(ok, TWidth.NotNaN(x));
        }
        nan = !TWidth.AllBitsSet(ok);
        return TWidth.MaxAcross(m);
    }

    /// <summary>s[c] = 2^(s[c] − max) in place for c in [0, n); returns the sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float ExpSum(float* s, int n, float max, int width)
    {
        int c = 0;
        float sum = 0;
        if (width == 16 && n >= 16)
            sum = ExpSum<Vector512<float>, Float512>(s, n, max, ref c);
        else if (width == 8 && n >= 8)
            sum = ExpSum<Vector256<float>, Float256>(s, n, max, ref c);
        for (; c < n; c++)
        {
            float e = Exp2(s[c] - max);
            s[c] = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>The vector part of <see cref="ExpSum(float*, int, float, int)"/>: whole vectors from c on; c is advanced.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ExpSum<TVector, TWidth>(float* s, int n, float max, ref int c)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int w = TWidth.Count;
        TVector mv = TWidth.Create(max), acc = default;
        for (; c + w <= n; c += w)
        {
            TVector e = Exp2<TVector, TWidth>(TWidth.Subtract(TWidth.Load(s + c), mv));
            TWidth.Store(e, s + c);
            acc = TWidth.Add(acc, e);
        }
        return TWidth.Sum(acc);
    }

    // 2^f on [−0.5, 0.5]: a degree-5 polynomial fitted for least maximum relative error (9e-8; evaluated in
    // float with FMA, 1.6e-7), the constant term 1 exactly.
    private const float C1 = 0.6931469775984493f, C2 = 0.24022242084906884f, C3 = 0.05550733744277297f,
        C4 = 0.009671512661125469f, C5 = 0.0013264726888936144f;

    /// <summary>
    /// 2^x, relative error below 2e-7, for x ≤ 127: x = n + f with n = round(x), |f| ≤ ½; 2^f by the polynomial,
    /// times 2^n (AVX-512: vscalefps). x &lt; −126 (including −∞) gives exactly 0 (never a subnormal, which would
    /// slow the FMAs that take it); NaN gives NaN.
    /// </summary>
    internal static Vector512<float> Exp2(Vector512<float> x) => Exp2<Vector512<float>, Float512>(x);

    /// <summary>The 256-bit form of <see cref="Exp2(Vector512{float})"/>.</summary>
    internal static Vector256<float> Exp2(Vector256<float> x) => Exp2<Vector256<float>, Float256>(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Exp2<TVector, TWidth>(TVector x)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        TVector under = TWidth.LessThan(x, TWidth.Create(-126f));
        TVector n = TWidth.Round(x);
        TVector f = TWidth.Subtract(x, n);
        TVector p = TWidth.MultiplyAdd(TWidth.Create(C5), f, TWidth.Create(C4));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C3));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C2));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C1));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(1f));
        // Below −126 (and for −∞, where f is NaN) the lane is masked to 0; otherwise n ∈ [−126, 127].
        return TWidth.AndNot(TWidth.ScaleByPow2(p, n), under);
    }

    /// <summary>The scalar form of <see cref="Exp2(Vector512{float})"/> (same polynomial).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Exp2(float x)
    {
        if (!(x >= -126f))
            return float.IsNaN(x) ? x : 0f;
        x = Math.Min(x, 127f);
        float n = MathF.Round(x);
        float f = x - n;
        float p = MathF.FusedMultiplyAdd(C5, f, C4);
        p = MathF.FusedMultiplyAdd(p, f, C3);
        p = MathF.FusedMultiplyAdd(p, f, C2);
        p = MathF.FusedMultiplyAdd(p, f, C1);
        p = MathF.FusedMultiplyAdd(p, f, 1f);
        return p * BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
    }

    // ---- P·V ---------------------------------------------------------------------------------------
    // P's element (row r, key j) is at pr[r·rs + j·cs]: rows apart (rs = Tile, cs = 1) on the direct
    // path, rows in lanes (rs = 1, cs = BlockRows) on the lanes path.

    /// <summary>
    /// Rows 0..TRows.Count−1 (O rows d apart, α per row at alpha[r]): O[r] = O[r]·α[r] + Σ_{j∈[ja,jb)} P[r][j]·V[j]
    /// (V rows d apart).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PvRows<TRows>(float* o, int d, float* pr, int rs, int cs, float* v, int ja, int jb, float* alpha, int width)
        where TRows : struct, ICount
    {
        int x = 0;
        if (width == 16)
            PvRows<Vector512<float>, Float512, TRows>(o, d, pr, rs, cs, v, ja, jb, alpha, ref x);
        else if (width == 8)
            PvRows<Vector256<float>, Float256, TRows>(o, d, pr, rs, cs, v, ja, jb, alpha, ref x);
        for (; x < d; x++)
        {
            for (int r = 0; r < TRows.Count; r++)
            {
                float a = o[r * d + x] * alpha[r];
                for (int j = ja; j < jb; j++)
                    a = MathF.FusedMultiplyAdd(v[(long)j * d + x], pr[r * rs + j * cs], a);
                o[r * d + x] = a;
            }
        }
    }

    /// <summary>
    /// The vector part of <see cref="PvRows{TRows}"/>: whole vectors of columns from x on (4-vector blocks
    /// where the registers hold them); x is advanced.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PvRows<TVector, TWidth, TRows>(float* o, int d, float* pr, int rs, int cs, float* v, int ja, int jb,
        float* alpha, ref int x)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TRows : struct, ICount
    {
        int n = TWidth.Count, rows = TRows.Count;
        if (TWidth.Block4x4)
        {
            for (; x + 4 * n <= d; x += 4 * n)
                PvBlock<TVector, TWidth, TRows>(o + x, d, pr, rs, cs, v + x, ja, jb, alpha);
        }
        for (; x + n <= d; x += n)
        {
            TVector a0 = TWidth.Multiply(TWidth.Load(o + x), alpha[0]), a1 = TWidth.Multiply(TWidth.Load(o + d + x), alpha[1]);
            TVector a2 = TWidth.Multiply(TWidth.Load(o + 2 * d + x), alpha[2]), a3 = TWidth.Multiply(TWidth.Load(o + 3 * d + x), alpha[3]);
            TVector a4 = rows > 4 ? TWidth.Multiply(TWidth.Load(o + 4 * d + x), alpha[4]) : default;
            TVector a5 = rows > 4 ? TWidth.Multiply(TWidth.Load(o + 5 * d + x), alpha[5]) : default;
            float* pj = pr + ja * cs;
            for (int j = ja; j < jb; j++, pj += cs)
            {
                TVector vv = TWidth.Load(v + (long)j * d + x);
                a0 = TWidth.MultiplyAdd(vv, TWidth.Create(pj[0]), a0);
                a1 = TWidth.MultiplyAdd(vv, TWidth.Create(pj[rs]), a1);
                a2 = TWidth.MultiplyAdd(vv, TWidth.Create(pj[2 * rs]), a2);
                a3 = TWidth.MultiplyAdd(vv, TWidth.Create(pj[3 * rs]), a3);
                if (rows > 4)
                {
                    a4 = TWidth.MultiplyAdd(vv, TWidth.Create(pj[4 * rs]), a4);
                    a5 = TWidth.MultiplyAdd(vv, TWidth.Create(pj[5 * rs]), a5);
                }
            }
            TWidth.Store(a0, o + x); TWidth.Store(a1, o + d + x); TWidth.Store(a2, o + 2 * d + x); TWidth.Store(a3, o + 3 * d + x);
            if (rows > 4)
            {
                TWidth.Store(a4, o + 4 * d + x);
                TWidth.Store(a5, o + 5 * d + x);
            }
        }
    }

    /// <summary>TRows.Count rows × four vectors of columns of <see cref="PvRows{TRows}"/> (AVX-512: up to 24 accumulators).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PvBlock<TVector, TWidth, TRows>(float* o, int d, float* pr, int rs, int cs, float* v, int ja, int jb, float* alpha)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TRows : struct, ICount
    {
        int n = TWidth.Count, rows = TRows.Count;
        Load4<TVector, TWidth>(o, alpha[0], out TVector a00, out TVector a01, out TVector a02, out TVector a03);
        Load4<TVector, TWidth>(o + d, alpha[1], out TVector a10, out TVector a11, out TVector a12, out TVector a13);
        Load4<TVector, TWidth>(o + 2 * d, alpha[2], out TVector a20, out TVector a21, out TVector a22, out TVector a23);
        Load4<TVector, TWidth>(o + 3 * d, alpha[3], out TVector a30, out TVector a31, out TVector a32, out TVector a33);
        TVector a40 = default, a41 = default, a42 = default, a43 = default, a50 = default, a51 = default, a52 = default, a53 = default;
        if (rows > 4)
        {
            Load4<TVector, TWidth>(o + 4 * d, alpha[4], out a40, out a41, out a42, out a43);
            Load4<TVector, TWidth>(o + 5 * d, alpha[5], out a50, out a51, out a52, out a53);
        }
        float* pj = pr + ja * cs;
        float* vr = v + (long)ja * d;
        for (int j = ja; j < jb; j++, pj += cs, vr += d)
        {
            TVector v0 = TWidth.Load(vr), v1 = TWidth.Load(vr + n), v2 = TWidth.Load(vr + 2 * n), v3 = TWidth.Load(vr + 3 * n);
            MultiplyAdd4<TVector, TWidth>(ref a00, ref a01, ref a02, ref a03, v0, v1, v2, v3, pj[0]);
            MultiplyAdd4<TVector, TWidth>(ref a10, ref a11, ref a12, ref a13, v0, v1, v2, v3, pj[rs]);
            MultiplyAdd4<TVector, TWidth>(ref a20, ref a21, ref a22, ref a23, v0, v1, v2, v3, pj[2 * rs]);
            MultiplyAdd4<TVector, TWidth>(ref a30, ref a31, ref a32, ref a33, v0, v1, v2, v3, pj[3 * rs]);
            if (rows > 4)
            {
                MultiplyAdd4<TVector, TWidth>(ref a40, ref a41, ref a42, ref a43, v0, v1, v2, v3, pj[4 * rs]);
                MultiplyAdd4<TVector, TWidth>(ref a50, ref a51, ref a52, ref a53, v0, v1, v2, v3, pj[5 * rs]);
            }
        }
        Store4<TVector, TWidth>(o, a00, a01, a02, a03);
        Store4<TVector, TWidth>(o + d, a10, a11, a12, a13);
        Store4<TVector, TWidth>(o + 2 * d, a20, a21, a22, a23);
        Store4<TVector, TWidth>(o + 3 * d, a30, a31, a32, a33);
        if (rows > 4)
        {
            Store4<TVector, TWidth>(o + 4 * d, a40, a41, a42, a43);
            Store4<TVector, TWidth>(o + 5 * d, a50, a51, a52, a53);
        }
    }

    /// <summary>One row: O = O·α + Σ_{j∈[ja,jb)} P[j]·V[j], P[j] at pr[j·cs].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pv1(float* o, int d, float* pr, int cs, float* v, int ja, int jb, float alpha, int width)
    {
        int x = 0;
        if (width == 16)
            Pv1<Vector512<float>, Float512>(o, d, pr, cs, v, ja, jb, alpha, ref x);
        else if (width == 8)
            Pv1<Vector256<float>, Float256>(o, d, pr, cs, v, ja, jb, alpha, ref x);
        for (; x < d; x++)
        {
            float a = o[x] * alpha;
            for (int j = ja; j < jb; j++)
                a = MathF.FusedMultiplyAdd(v[(long)j * d + x], pr[j * cs], a);
            o[x] = a;
        }
    }

    /// <summary>The vector part of <see cref="Pv1(float*, int, float*, int, float*, int, int, float, int)"/>: whole vectors from x on; x is advanced.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pv1<TVector, TWidth>(float* o, int d, float* pr, int cs, float* v, int ja, int jb, float alpha, ref int x)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = TWidth.Count;
        for (; x + 4 * n <= d; x += 4 * n)
        {
            Load4<TVector, TWidth>(o + x, alpha, out TVector a0, out TVector a1, out TVector a2, out TVector a3);
            for (int j = ja; j < jb; j++)
            {
                float* vr = v + (long)j * d + x;
                MultiplyAdd4<TVector, TWidth>(ref a0, ref a1, ref a2, ref a3,
                    TWidth.Load(vr), TWidth.Load(vr + n), TWidth.Load(vr + 2 * n), TWidth.Load(vr + 3 * n), pr[j * cs]);
            }
            Store4<TVector, TWidth>(o + x, a0, a1, a2, a3);
        }
        for (; x + n <= d; x += n)
        {
            TVector a0 = TWidth.Multiply(TWidth.Load(o + x), alpha);
            for (int j = ja; j < jb; j++)
                a0 = TWidth.MultiplyAdd(TWidth.Load(v + (long)j * d + x), TWidth.Create(pr[j * cs]), a0);
            TWidth.Store(a0, o + x);
        }
    }
}
