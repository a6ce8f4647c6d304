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
/// Two Q·Kᵀ paths: with ≥ 8 query rows per key/value head, K is packed once per call into transposed
/// tiles [tile][d][64] and a 4-row × 64-key register-blocked micro-kernel broadcasts Q (no horizontal
/// sums, any head dimension); with fewer rows (decode) each score is a direct vectorized dot product.
/// P·V is a 4-row × 64-column micro-kernel on full tiles and a per-row kernel on tiles where some row
/// sees only part of the keys (causal diagonal, windows, split edges), so a key a row cannot see never
/// reaches it (a NaN or ∞ in an invisible V row does not leak). Visible keys of a row form one
/// interval [lo, hi), computed from the reference's rules.
/// </remarks>
internal static unsafe class AttentionSimd
{
    /// <summary>Keys per tile.</summary>
    internal const int Tile = 64;

    /// <summary>Query rows per block on the packed path.</summary>
    internal const int BlockRows = 32;

    /// <summary>Below this many query rows per key/value head, Q·Kᵀ uses direct dot products (no K packing).</summary>
    internal const int PackThreshold = 8;

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
        float[]? packed = null;
        float[]? partial = null;
        try
        {
            if (plan.Packed)
            {
                long size = (long)shape.Batch * shape.KvHeads * plan.TilesPerSequence * Tile * shape.HeadDim;
                packed = ArrayPool<float>.Shared.Rent(checked((int)size));
            }
            if (splits > 1)
                partial = ArrayPool<float>.Shared.Rent(checked((int)(shape.QueryElements / shape.HeadDim * splits * (shape.HeadDim + 2))));
            fixed (float* pk = packed)
            fixed (float* pp = partial)
            {
                plan.PackedK = pk;
                plan.Partial = pp;
                double flops = 4.0 * shape.Batch * shape.Heads * shape.QueryLength * shape.KeyLength * shape.HeadDim;
                int threads = parallel && flops >= 4e6 ? Environment.ProcessorCount : 1;
                int kvCount = shape.Batch * shape.KvHeads;
                if (plan.Packed)
                    Run(kvCount, threads, i => PackK(plan, i));
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
            if (packed is not null)
                ArrayPool<float>.Shared.Return(packed);
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
        public readonly bool Causal, Packed;
        public readonly float Scale2;
        public readonly int TilesPerSequence, BlocksPerKv, QueryBlocks, HeadsPerBlock;
        public float* PackedK;
        public float* Partial;

        public Plan(float* q, float* k, float* v, float* output, int* lengths, AttentionShape s,
            float scale2, int window, int splits, int width)
        {
            Q = q; K = k; V = v; Output = output; Lengths = lengths;
            B = s.Batch; H = s.Heads; KvH = s.KvHeads; Sq = s.QueryLength; Sk = s.KeyLength; D = s.HeadDim;
            Group = H / KvH; Causal = s.Causal; Window = window; Splits = splits; Width = width; Scale2 = scale2;
            TilesPerSequence = (Sk + Tile - 1) / Tile;
            // Packed K needs one array of B·KvH·tiles·64·D floats; beyond an array's reach, use the direct path.
            Packed = (long)Group * Sq >= PackThreshold && (long)B * KvH * TilesPerSequence * Tile * D <= Array.MaxLength;
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

    /// <summary>Per-thread scratch, sized for the largest head dimension.</summary>
    private sealed class Scratch
    {
        public readonly float[] Q = GC.AllocateArray<float>(BlockRows * AttentionShape.MaxHeadDim + 64, pinned: true);
        public readonly float[] O = GC.AllocateArray<float>(BlockRows * AttentionShape.MaxHeadDim + 64, pinned: true);
        public readonly float[] S = GC.AllocateArray<float>(BlockRows * Tile + 64, pinned: true);
        public readonly float[] M = new float[BlockRows];
        public readonly float[] L = new float[BlockRows];
        public readonly float[] Alpha = new float[BlockRows];
        public readonly int[] Lo = new int[BlockRows];
        public readonly int[] Hi = new int[BlockRows];
        public readonly bool[] Nan = new bool[BlockRows];
    }

    /// <summary>Packs K of one (sequence, kv head) into transposed, zero-padded tiles [tile][d][64].</summary>
    private static void PackK(Plan p, int kvIndex)
    {
        int d = p.D;
        int len = p.Length(kvIndex / p.KvH);
        float* src = p.K + (long)kvIndex * p.Sk * d;
        float* dst = p.PackedK + (long)kvIndex * p.TilesPerSequence * Tile * d;
        int tiles = (len + Tile - 1) / Tile;
        for (int t = 0; t < tiles; t++)
        {
            float* tile = dst + (long)t * Tile * d;
            int n = Math.Min(Tile, len - t * Tile);
            for (int c = 0; c < n; c++)
            {
                float* row = src + (long)(t * Tile + c) * d;
                for (int x = 0; x < d; x++)
                    tile[x * Tile + c] = row[x];
            }
            for (int x = 0; x < d; x++)
            {
                for (int c = n; c < Tile; c++)
                    tile[x * Tile + c] = 0;
            }
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
        int rowsPad = (rows + 3) & ~3;
        int d = p.D;
        int len = p.Length(b);
        int s0 = (int)((long)len * split / p.Splits), s1 = (int)((long)len * (split + 1) / p.Splits);

        fixed (float* qs = sc.Q)
        fixed (float* os = sc.O)
        fixed (float* ss = sc.S)
        {
            int kLo = int.MaxValue, kHi = int.MinValue;
            for (int r = 0; r < rowsPad; r++)
            {
                float* qr = qs + r * d;
                sc.M[r] = float.NegativeInfinity;
                sc.L[r] = 0;
                sc.Nan[r] = false;
                new Span<float>(os + r * d, d).Clear();
                if (r >= rows)
                {
                    new Span<float>(qr, d).Clear();
                    sc.Lo[r] = 0;
                    sc.Hi[r] = 0;
                    continue;
                }
                int h = kvh * p.Group + g0 + r / ni, i = i0 + r % ni;
                float* src = p.Q + (((long)b * p.H + h) * p.Sq + i) * d;
                for (int x = 0; x < d; x++)
                    qr[x] = src[x] * p.Scale2;
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
            }

            long kvBase = (long)kvIndex * p.Sk * d;
            float* packedBase = p.Packed ? p.PackedK + (long)kvIndex * p.TilesPerSequence * Tile * d : null;
            if (kLo < kHi)
            {
                for (int t0 = kLo / Tile * Tile; t0 < kHi; t0 += Tile)
                {
                    int n = Math.Min(Tile, len - t0);
                    bool full = true;
                    for (int r = 0; r < rows; r++)
                    {
                        if (sc.Lo[r] > t0 || sc.Hi[r] < t0 + n)
                        {
                            full = false;
                            break;
                        }
                    }
                    // Scores.
                    if (p.Packed)
                        QkPacked(qs, d, packedBase + (long)(t0 / Tile) * Tile * d, ss, rowsPad, p.Width);
                    else
                    {
                        for (int r = 0; r < rows; r++)
                        {
                            int ja = Math.Max(sc.Lo[r], t0) - t0, jb = Math.Min(sc.Hi[r], t0 + n) - t0;
                            for (int c = ja; c < jb; c++)
                                ss[r * Tile + c] = Dot(qs + r * d, p.K + kvBase + (long)(t0 + c) * d, d, p.Width);
                        }
                    }
                    // Online softmax per row.
                    for (int r = 0; r < rowsPad; r++)
                    {
                        int ja = Math.Max(sc.Lo[r], t0) - t0, jb = Math.Min(sc.Hi[r], t0 + n) - t0;
                        float* sr = ss + r * Tile;
                        if (ja >= jb || sc.Nan[r])
                        {
                            sc.Alpha[r] = 1;
                            if (full)
                                new Span<float>(sr, Tile).Clear();
                            continue;
                        }
                        float mt = RowMax(sr + ja, jb - ja, p.Width, out bool nan);
                        if (nan)
                        {
                            sc.Nan[r] = true;
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
                    float* vt = p.V + kvBase + (long)t0 * d;
                    if (full && rowsPad >= 4)
                    {
                        for (int r = 0; r < rowsPad; r += 4)
                            Pv4(os + r * d, d, ss + r * Tile, vt, 0, n, sc.Alpha, r, p.Width);
                    }
                    else
                    {
                        for (int r = 0; r < rows; r++)
                        {
                            int ja = Math.Max(sc.Lo[r], t0) - t0, jb = Math.Min(sc.Hi[r], t0 + n) - t0;
                            if (ja >= jb || sc.Nan[r])
                                continue;
                            Pv1(os + r * d, d, ss + r * Tile, vt, ja, jb, sc.Alpha[r], p.Width);
                        }
                    }
                }
            }

            // Write the block: the final rows, or this split's partial (m, l, acc).
            for (int r = 0; r < rows; r++)
            {
                int h = kvh * p.Group + g0 + r / ni, i = i0 + r % ni;
                long row = ((long)b * p.H + h) * p.Sq + i;
                float* orow = os + r * d;
                if (p.Splits > 1)
                {
                    float* part = p.Partial + (row * p.Splits + split) * (d + 2);
                    part[0] = sc.M[r];
                    part[1] = sc.Nan[r] ? float.NaN : sc.L[r];
                    new Span<float>(orow, d).CopyTo(new Span<float>(part + 2, d));
                    continue;
                }
                float* dst = p.Output + row * d;
                if (sc.Nan[r])
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

    /// <summary>S[r][0..64) = Σ_x Q[r][x]·KT[x][0..64) for rows [0, rowsPad), rowsPad a multiple of 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QkPacked(float* q, int d, float* kt, float* s, int rowsPad, int width)
    {
        for (int r = 0; r < rowsPad; r += 4)
        {
            float* q0 = q + r * d;
            float* s0 = s + r * Tile;
            if (width == 16)
                Qk4<Vector512<float>, Float512>(q0, d, kt, s0);
            else if (width == 8)
                Qk4<Vector256<float>, Float256>(q0, d, kt, s0);
            else
            {
                for (int rr = 0; rr < 4; rr++)
                {
                    float* qr = q0 + rr * d;
                    float* sr = s0 + rr * Tile;
                    for (int c = 0; c < Tile; c++)
                        sr[c] = 0;
                    for (int x = 0; x < d; x++)
                    {
                        float a = qr[x];
                        float* kr = kt + x * Tile;
                        for (int c = 0; c < Tile; c++)
                            sr[c] = MathF.FusedMultiplyAdd(a, kr[c], sr[c]);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Four rows (d apart) × the 64 keys of a tile: with 32 registers one 4-row × 4-vector block per
    /// 4·Count keys; with 16 (AVX2), a 3-row block and the fourth row on its own.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Qk4<TVector, TWidth>(float* q, int d, float* kt, float* s)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        for (int c = 0; c < Tile; c += 4 * TWidth.Count)
        {
            if (TWidth.Block4x4)
                QkRows<TVector, TWidth, Rows4>(q, d, kt + c, s + c);
            else
            {
                QkRows<TVector, TWidth, Rows3>(q, d, kt + c, s + c);
                QkRows<TVector, TWidth, Rows1>(q + 3 * d, d, kt + c, s + 3 * Tile + c);
            }
        }
    }

    /// <summary>Rows.Count rows of Q (d apart) × 4 vectors of keys: S[r][c] = Σ_x Q[r][x]·KT[x][c].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QkRows<TVector, TWidth, TRows>(float* q, int d, float* kt, float* s)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TRows : struct, IRowCount
    {
        int n = TWidth.Count, rows = TRows.Count;
        float* q1 = q + d, q2 = q1 + d, q3 = q2 + d;
        TVector a00 = default, a01 = default, a02 = default, a03 = default;
        TVector a10 = default, a11 = default, a12 = default, a13 = default;
        TVector a20 = default, a21 = default, a22 = default, a23 = default;
        TVector a30 = default, a31 = default, a32 = default, a33 = default;
        for (int x = 0; x < d; x++)
        {
            float* kr = kt + x * Tile;
            TVector k0 = TWidth.Load(kr), k1 = TWidth.Load(kr + n), k2 = TWidth.Load(kr + 2 * n), k3 = TWidth.Load(kr + 3 * n);
            MultiplyAdd4<TVector, TWidth>(ref a00, ref a01, ref a02, ref a03, k0, k1, k2, k3, q[x]);
            if (rows > 1)
                MultiplyAdd4<TVector, TWidth>(ref a10, ref a11, ref a12, ref a13, k0, k1, k2, k3, q1[x]);
            if (rows > 2)
                MultiplyAdd4<TVector, TWidth>(ref a20, ref a21, ref a22, ref a23, k0, k1, k2, k3, q2[x]);
            if (rows > 3)
                MultiplyAdd4<TVector, TWidth>(ref a30, ref a31, ref a32, ref a33, k0, k1, k2, k3, q3[x]);
        }
        Store4<TVector, TWidth>(s, a00, a01, a02, a03);
        if (rows > 1)
            Store4<TVector, TWidth>(s + Tile, a10, a11, a12, a13);
        if (rows > 2)
            Store4<TVector, TWidth>(s + 2 * Tile, a20, a21, a22, a23);
        if (rows > 3)
            Store4<TVector, TWidth>(s + 3 * Tile, a30, a31, a32, a33);
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

    /// <summary>How many rows a register block has (a JIT-time constant).</summary>
    private interface IRowCount
    {
        static abstract int Count { get; }
    }

    private struct Rows1 : IRowCount
    {
        public static int Count => 1;
    }

    private struct Rows3 : IRowCount
    {
        public static int Count => 3;
    }

    private struct Rows4 : IRowCount
    {
        public static int Count => 4;
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

    // 2^f on [−0.5, 0.5]: Taylor series of e^(f·ln2) to degree 7 (truncation < 6e-9, so float rounding dominates).
    private const float C1 = 0.693147180559945f, C2 = 0.240226506959101f, C3 = 0.0555041086648216f,
        C4 = 0.00961812910762848f, C5 = 0.00133335581464284f, C6 = 0.000154035303933816f, C7 = 1.52527338040598e-05f;

    /// <summary>
    /// 2^x, relative error ~2e-7: x = n + f with n = round(x), |f| ≤ ½; 2^f by a degree-7 polynomial, 2^n
    /// by building the exponent bits. x &lt; −126 (including −∞) gives 0, so it is safe for x − max ≤ 0.
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
        x = TWidth.MinNative(TWidth.MaxNative(x, TWidth.Create(-126f)), TWidth.Create(127f));
        TVector n = TWidth.Round(x);
        TVector f = TWidth.Subtract(x, n);
        TVector p = TWidth.MultiplyAdd(TWidth.Create(C7), f, TWidth.Create(C6));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C5));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C4));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C3));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C2));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(C1));
        p = TWidth.MultiplyAdd(p, f, TWidth.Create(1f));
        return TWidth.AndNot(TWidth.Multiply(p, TWidth.Pow2(n)), under);
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
        float p = MathF.FusedMultiplyAdd(C7, f, C6);
        p = MathF.FusedMultiplyAdd(p, f, C5);
        p = MathF.FusedMultiplyAdd(p, f, C4);
        p = MathF.FusedMultiplyAdd(p, f, C3);
        p = MathF.FusedMultiplyAdd(p, f, C2);
        p = MathF.FusedMultiplyAdd(p, f, C1);
        p = MathF.FusedMultiplyAdd(p, f, 1f);
        return p * BitConverter.Int32BitsToSingle(((int)n + 127) << 23);
    }

    // ---- P·V ---------------------------------------------------------------------------------------

    /// <summary>
    /// Rows r0..r0+3: O[r] = O[r]·α[r] + Σ_{j∈[ja,jb)} P[r][j]·V[j] (P rows 64 apart, O and V rows d apart).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pv4(float* o, int d, float* pr, float* v, int ja, int jb, float[] alphaAll, int r0, int width)
    {
        float al0 = alphaAll[r0], al1 = alphaAll[r0 + 1], al2 = alphaAll[r0 + 2], al3 = alphaAll[r0 + 3];
        float* o0 = o, o1 = o + d, o2 = o1 + d, o3 = o2 + d;
        float* p0 = pr, p1 = pr + Tile, p2 = p1 + Tile, p3 = p2 + Tile;
        int x = 0;
        if (width == 16)
            Pv4<Vector512<float>, Float512>(o, d, pr, v, ja, jb, al0, al1, al2, al3, ref x);
        else if (width == 8)
            Pv4<Vector256<float>, Float256>(o, d, pr, v, ja, jb, al0, al1, al2, al3, ref x);
        for (; x < d; x++)
        {
            float a0 = o0[x] * al0, a1 = o1[x] * al1, a2 = o2[x] * al2, a3 = o3[x] * al3;
            for (int j = ja; j < jb; j++)
            {
                float vv = v[(long)j * d + x];
                a0 = MathF.FusedMultiplyAdd(vv, p0[j], a0);
                a1 = MathF.FusedMultiplyAdd(vv, p1[j], a1);
                a2 = MathF.FusedMultiplyAdd(vv, p2[j], a2);
                a3 = MathF.FusedMultiplyAdd(vv, p3[j], a3);
            }
            o0[x] = a0; o1[x] = a1; o2[x] = a2; o3[x] = a3;
        }
    }

    /// <summary>
    /// The vector part of <see cref="Pv4(float*, int, float*, float*, int, int, float[], int, int)"/>: whole
    /// vectors of columns from x on (4-vector blocks where the registers hold them); x is advanced.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pv4<TVector, TWidth>(float* o, int d, float* pr, float* v, int ja, int jb,
        float al0, float al1, float al2, float al3, ref int x)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = TWidth.Count;
        float* o0 = o, o1 = o + d, o2 = o1 + d, o3 = o2 + d;
        float* p0 = pr, p1 = pr + Tile, p2 = p1 + Tile, p3 = p2 + Tile;
        if (TWidth.Block4x4)
        {
            for (; x + 4 * n <= d; x += 4 * n)
                Pv4x4<TVector, TWidth>(o0 + x, o1 + x, o2 + x, o3 + x, p0, p1, p2, p3, v + x, d, ja, jb, al0, al1, al2, al3);
        }
        for (; x + n <= d; x += n)
        {
            TVector a0 = TWidth.Multiply(TWidth.Load(o0 + x), al0), a1 = TWidth.Multiply(TWidth.Load(o1 + x), al1);
            TVector a2 = TWidth.Multiply(TWidth.Load(o2 + x), al2), a3 = TWidth.Multiply(TWidth.Load(o3 + x), al3);
            for (int j = ja; j < jb; j++)
            {
                TVector vv = TWidth.Load(v + (long)j * d + x);
                a0 = TWidth.MultiplyAdd(vv, TWidth.Create(p0[j]), a0);
                a1 = TWidth.MultiplyAdd(vv, TWidth.Create(p1[j]), a1);
                a2 = TWidth.MultiplyAdd(vv, TWidth.Create(p2[j]), a2);
                a3 = TWidth.MultiplyAdd(vv, TWidth.Create(p3[j]), a3);
            }
            TWidth.Store(a0, o0 + x); TWidth.Store(a1, o1 + x); TWidth.Store(a2, o2 + x); TWidth.Store(a3, o3 + x);
        }
    }

    /// <summary>Four rows × four vectors of columns of <see cref="Pv4(float*, int, float*, float*, int, int, float[], int, int)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pv4x4<TVector, TWidth>(float* o0, float* o1, float* o2, float* o3, float* p0, float* p1, float* p2, float* p3,
        float* v, int d, int ja, int jb, float al0, float al1, float al2, float al3)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = TWidth.Count;
        Load4<TVector, TWidth>(o0, al0, out TVector a00, out TVector a01, out TVector a02, out TVector a03);
        Load4<TVector, TWidth>(o1, al1, out TVector a10, out TVector a11, out TVector a12, out TVector a13);
        Load4<TVector, TWidth>(o2, al2, out TVector a20, out TVector a21, out TVector a22, out TVector a23);
        Load4<TVector, TWidth>(o3, al3, out TVector a30, out TVector a31, out TVector a32, out TVector a33);
        for (int j = ja; j < jb; j++)
        {
            float* vr = v + (long)j * d;
            TVector v0 = TWidth.Load(vr), v1 = TWidth.Load(vr + n), v2 = TWidth.Load(vr + 2 * n), v3 = TWidth.Load(vr + 3 * n);
            MultiplyAdd4<TVector, TWidth>(ref a00, ref a01, ref a02, ref a03, v0, v1, v2, v3, p0[j]);
            MultiplyAdd4<TVector, TWidth>(ref a10, ref a11, ref a12, ref a13, v0, v1, v2, v3, p1[j]);
            MultiplyAdd4<TVector, TWidth>(ref a20, ref a21, ref a22, ref a23, v0, v1, v2, v3, p2[j]);
            MultiplyAdd4<TVector, TWidth>(ref a30, ref a31, ref a32, ref a33, v0, v1, v2, v3, p3[j]);
        }
        Store4<TVector, TWidth>(o0, a00, a01, a02, a03);
        Store4<TVector, TWidth>(o1, a10, a11, a12, a13);
        Store4<TVector, TWidth>(o2, a20, a21, a22, a23);
        Store4<TVector, TWidth>(o3, a30, a31, a32, a33);
    }

    /// <summary>One row: O = O·α + Σ_{j∈[ja,jb)} P[j]·V[j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pv1(float* o, int d, float* pr, float* v, int ja, int jb, float alpha, int width)
    {
        int x = 0;
        if (width == 16)
            Pv1<Vector512<float>, Float512>(o, d, pr, v, ja, jb, alpha, ref x);
        else if (width == 8)
            Pv1<Vector256<float>, Float256>(o, d, pr, v, ja, jb, alpha, ref x);
        for (; x < d; x++)
        {
            float a = o[x] * alpha;
            for (int j = ja; j < jb; j++)
                a = MathF.FusedMultiplyAdd(v[(long)j * d + x], pr[j], a);
            o[x] = a;
        }
    }

    /// <summary>The vector part of <see cref="Pv1(float*, int, float*, float*, int, int, float, int)"/>: whole vectors from x on; x is advanced.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pv1<TVector, TWidth>(float* o, int d, float* pr, float* v, int ja, int jb, float alpha, ref int x)
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
                    TWidth.Load(vr), TWidth.Load(vr + n), TWidth.Load(vr + 2 * n), TWidth.Load(vr + 3 * n), pr[j]);
            }
            Store4<TVector, TWidth>(o + x, a0, a1, a2, a3);
        }
        for (; x + n <= d; x += n)
        {
            TVector a0 = TWidth.Multiply(TWidth.Load(o + x), alpha);
            for (int j = ja; j < jb; j++)
                a0 = TWidth.MultiplyAdd(TWidth.Load(v + (long)j * d + x), TWidth.Create(pr[j]), a0);
            TWidth.Store(a0, o + x);
        }
    }
}
