using System.Buffers;
using Kernels.DeviceCode;

namespace Kernels.Simd;

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
                        float alpha = mOld == float.NegativeInfinity ? 0 : float.Exp2(mOld - mNew);
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
        {
            float* dst = p.Output + (long)row * d;
            float* first = p.Partial + (long)row * splits * (d + 2);
            float max = float.NegativeInfinity;
            bool nan = false;
            for (int s = 0; s < splits; s++)
            {
                float* part = first + s * (d + 2);
                nan |= float.IsNaN(part[1]);
                if (part[0] > max)
                    max = part[0];
            }
            if (nan)
            {
                new Span<float>(dst, d).Fill(float.NaN);
                continue;
            }
            if (max == float.NegativeInfinity)
            {
                new Span<float>(dst, d).Clear();
                continue;
            }
            new Span<float>(dst, d).Clear();
            float sum = 0;
            for (int s = 0; s < splits; s++)
            {
                float* part = first + s * (d + 2);
                if (part[0] == float.NegativeInfinity)
                    continue;
                float w = float.Exp2(part[0] - max);
                sum += part[1] * w;
                for (int x = 0; x < d; x++)
                    dst[x] += part[2 + x] * w;
            }
            float inv = 1f / sum;
            for (int x = 0; x < d; x++)
                dst[x] *= inv;
        }
    }

    // ---- Q·Kᵀ --------------------------------------------------------------------------------------

    /// <summary>S[r][0..64) = Σ_x Q[r][x]·KT[x][0..64) for rows [0, rowsPad), rowsPad a multiple of 4.</summary>
    private static void QkPacked(float* q, int d, float* kt, float* s, int rowsPad, int width)
    {
        for (int r = 0; r < rowsPad; r += 4)
        {
            float* q0 = q + r * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
            float* s0 = s + r * Tile;
            if (width == 16)
                Qk4x64Avx512(q0, q1, q2, q3, d, kt, s0);
            else if (width == 8)
            {
                Qk4x32Avx2(q0, q1, q2, q3, d, kt, s0);
                Qk4x32Avx2(q0, q1, q2, q3, d, kt + 32, s0 + 32);
            }
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Qk4x64Avx512(float* q0, float* q1, float* q2, float* q3, int d, float* kt, float* s)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        for (int x = 0; x < d; x++)
        {
            float* kr = kt + x * Tile;
            Vector512<float> k0 = Vector512.Load(kr), k1 = Vector512.Load(kr + 16), k2 = Vector512.Load(kr + 32), k3 = Vector512.Load(kr + 48);
            Vector512<float> b = Vector512.Create(q0[x]);
            a00 = Vector512.FusedMultiplyAdd(k0, b, a00); a01 = Vector512.FusedMultiplyAdd(k1, b, a01);
            a02 = Vector512.FusedMultiplyAdd(k2, b, a02); a03 = Vector512.FusedMultiplyAdd(k3, b, a03);
            b = Vector512.Create(q1[x]);
            a10 = Vector512.FusedMultiplyAdd(k0, b, a10); a11 = Vector512.FusedMultiplyAdd(k1, b, a11);
            a12 = Vector512.FusedMultiplyAdd(k2, b, a12); a13 = Vector512.FusedMultiplyAdd(k3, b, a13);
            b = Vector512.Create(q2[x]);
            a20 = Vector512.FusedMultiplyAdd(k0, b, a20); a21 = Vector512.FusedMultiplyAdd(k1, b, a21);
            a22 = Vector512.FusedMultiplyAdd(k2, b, a22); a23 = Vector512.FusedMultiplyAdd(k3, b, a23);
            b = Vector512.Create(q3[x]);
            a30 = Vector512.FusedMultiplyAdd(k0, b, a30); a31 = Vector512.FusedMultiplyAdd(k1, b, a31);
            a32 = Vector512.FusedMultiplyAdd(k2, b, a32); a33 = Vector512.FusedMultiplyAdd(k3, b, a33);
        }
        a00.Store(s); a01.Store(s + 16); a02.Store(s + 32); a03.Store(s + 48);
        a10.Store(s + 64); a11.Store(s + 80); a12.Store(s + 96); a13.Store(s + 112);
        a20.Store(s + 128); a21.Store(s + 144); a22.Store(s + 160); a23.Store(s + 176);
        a30.Store(s + 192); a31.Store(s + 208); a32.Store(s + 224); a33.Store(s + 240);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Qk4x32Avx2(float* q0, float* q1, float* q2, float* q3, int d, float* kt, float* s)
    {
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
        for (int x = 0; x < d; x++)
        {
            float* kr = kt + x * Tile;
            Vector256<float> k0 = Vector256.Load(kr), k1 = Vector256.Load(kr + 8), k2 = Vector256.Load(kr + 16), k3 = Vector256.Load(kr + 24);
            Vector256<float> b = Vector256.Create(q0[x]);
            a00 = Vector256.FusedMultiplyAdd(k0, b, a00); a01 = Vector256.FusedMultiplyAdd(k1, b, a01);
            a02 = Vector256.FusedMultiplyAdd(k2, b, a02); a03 = Vector256.FusedMultiplyAdd(k3, b, a03);
            b = Vector256.Create(q1[x]);
            a10 = Vector256.FusedMultiplyAdd(k0, b, a10); a11 = Vector256.FusedMultiplyAdd(k1, b, a11);
            a12 = Vector256.FusedMultiplyAdd(k2, b, a12); a13 = Vector256.FusedMultiplyAdd(k3, b, a13);
            b = Vector256.Create(q2[x]);
            a20 = Vector256.FusedMultiplyAdd(k0, b, a20); a21 = Vector256.FusedMultiplyAdd(k1, b, a21);
            a22 = Vector256.FusedMultiplyAdd(k2, b, a22); a23 = Vector256.FusedMultiplyAdd(k3, b, a23);
        }
        a00.Store(s); a01.Store(s + 8); a02.Store(s + 16); a03.Store(s + 24);
        a10.Store(s + 64); a11.Store(s + 72); a12.Store(s + 80); a13.Store(s + 88);
        a20.Store(s + 128); a21.Store(s + 136); a22.Store(s + 144); a23.Store(s + 152);
        // Fourth row separately (16 ymm registers).
        Vector256<float> a30 = default, a31 = default, a32 = default, a33 = default;
        for (int x = 0; x < d; x++)
        {
            float* kr = kt + x * Tile;
            Vector256<float> b = Vector256.Create(q3[x]);
            a30 = Vector256.FusedMultiplyAdd(Vector256.Load(kr), b, a30);
            a31 = Vector256.FusedMultiplyAdd(Vector256.Load(kr + 8), b, a31);
            a32 = Vector256.FusedMultiplyAdd(Vector256.Load(kr + 16), b, a32);
            a33 = Vector256.FusedMultiplyAdd(Vector256.Load(kr + 24), b, a33);
        }
        a30.Store(s + 192); a31.Store(s + 200); a32.Store(s + 208); a33.Store(s + 216);
    }

    /// <summary>Σ_x a[x]·b[x] (direct path).</summary>
    private static float Dot(float* a, float* b, int d, int width)
    {
        int x = 0;
        float sum = 0;
        if (width == 16 && d >= 16)
        {
            Vector512<float> acc0 = default, acc1 = default;
            for (; x + 32 <= d; x += 32)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + x), Vector512.Load(b + x), acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + x + 16), Vector512.Load(b + x + 16), acc1);
            }
            for (; x + 16 <= d; x += 16)
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + x), Vector512.Load(b + x), acc0);
            sum = Vector512.Sum(acc0 + acc1);
        }
        else if (width >= 8 && d >= 8)
        {
            Vector256<float> acc0 = default, acc1 = default;
            for (; x + 16 <= d; x += 16)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + x), Vector256.Load(b + x), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + x + 8), Vector256.Load(b + x + 8), acc1);
            }
            for (; x + 8 <= d; x += 8)
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + x), Vector256.Load(b + x), acc0);
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; x < d; x++)
            sum = MathF.FusedMultiplyAdd(a[x], b[x], sum);
        return sum;
    }

    // ---- softmax -----------------------------------------------------------------------------------

    /// <summary>The maximum of s[0..n), and whether any is NaN (checked explicitly: vector max drops NaN).</summary>
    private static float RowMax(float* s, int n, int width, out bool nan)
    {
        int c = 0;
        float max = float.NegativeInfinity;
        nan = false;
        if (width == 16 && n >= 16)
        {
            Vector512<float> m = Vector512.Create(float.NegativeInfinity);
            Vector512<float> ok = Vector512<float>.AllBitsSet;
            for (; c + 16 <= n; c += 16)
            {
                Vector512<float> x = Vector512.Load(s + c);
                m = Vector512.MaxNative(m, x);
                ok &= Vector512.Equals(x, x);
            }
            nan = ok.AsUInt32() != Vector512<uint>.AllBitsSet; // as integers: AllBitsSet is a NaN as float
            for (int i = 0; i < 16; i++)
                max = Math.Max(max, m.GetElement(i));
        }
        else if (width == 8 && n >= 8)
        {
            Vector256<float> m = Vector256.Create(float.NegativeInfinity);
            Vector256<float> ok = Vector256<float>.AllBitsSet;
            for (; c + 8 <= n; c += 8)
            {
                Vector256<float> x = Vector256.Load(s + c);
                m = Vector256.MaxNative(m, x);
                ok &= Vector256.Equals(x, x);
            }
            nan = ok.AsUInt32() != Vector256<uint>.AllBitsSet;
            for (int i = 0; i < 8; i++)
                max = Math.Max(max, m.GetElement(i));
        }
        for (; c < n; c++)
        {
            nan |= float.IsNaN(s[c]);
            if (s[c] > max)
                max = s[c];
        }
        return max;
    }

    /// <summary>s[c] = 2^(s[c] − max) in place for c in [0, n); returns the sum.</summary>
    private static float ExpSum(float* s, int n, float max, int width)
    {
        int c = 0;
        float sum = 0;
        if (width == 16 && n >= 16)
        {
            Vector512<float> mv = Vector512.Create(max), acc = default;
            for (; c + 16 <= n; c += 16)
            {
                Vector512<float> e = Exp2(Vector512.Load(s + c) - mv);
                e.Store(s + c);
                acc += e;
            }
            sum = Vector512.Sum(acc);
        }
        else if (width == 8 && n >= 8)
        {
            Vector256<float> mv = Vector256.Create(max), acc = default;
            for (; c + 8 <= n; c += 8)
            {
                Vector256<float> e = Exp2(Vector256.Load(s + c) - mv);
                e.Store(s + c);
                acc += e;
            }
            sum = Vector256.Sum(acc);
        }
        for (; c < n; c++)
        {
            float e = Exp2(s[c] - max);
            s[c] = e;
            sum += e;
        }
        return sum;
    }

    // 2^f on [−0.5, 0.5]: Taylor series of e^(f·ln2) to degree 7 (truncation < 6e-9, so float rounding dominates).
    private const float C1 = 0.693147180559945f, C2 = 0.240226506959101f, C3 = 0.0555041086648216f,
        C4 = 0.00961812910762848f, C5 = 0.00133335581464284f, C6 = 0.000154035303933816f, C7 = 1.52527338040598e-05f;

    /// <summary>
    /// 2^x, relative error ~2e-7: x = n + f with n = round(x), |f| ≤ ½; 2^f by a degree-7 polynomial, 2^n
    /// by building the exponent bits. x &lt; −126 (including −∞) gives 0, so it is safe for x − max ≤ 0.
    /// </summary>
    internal static Vector512<float> Exp2(Vector512<float> x)
    {
        Vector512<float> under = Vector512.LessThan(x, Vector512.Create(-126f));
        x = Vector512.MinNative(Vector512.MaxNative(x, Vector512.Create(-126f)), Vector512.Create(127f));
        Vector512<float> n = Vector512.Round(x);
        Vector512<float> f = x - n;
        Vector512<float> p = Vector512.FusedMultiplyAdd(Vector512.Create(C7), f, Vector512.Create(C6));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C5));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C4));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C3));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C2));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C1));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(1f));
        Vector512<float> pow = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        return Vector512.AndNot(p * pow, under);
    }

    /// <summary>The 256-bit form of <see cref="Exp2(Vector512{float})"/>.</summary>
    internal static Vector256<float> Exp2(Vector256<float> x)
    {
        Vector256<float> under = Vector256.LessThan(x, Vector256.Create(-126f));
        x = Vector256.MinNative(Vector256.MaxNative(x, Vector256.Create(-126f)), Vector256.Create(127f));
        Vector256<float> n = Vector256.Round(x);
        Vector256<float> f = x - n;
        Vector256<float> p = Vector256.FusedMultiplyAdd(Vector256.Create(C7), f, Vector256.Create(C6));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C5));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C4));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C3));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(1f));
        Vector256<float> pow = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return Vector256.AndNot(p * pow, under);
    }

    /// <summary>The scalar form of <see cref="Exp2(Vector512{float})"/> (same polynomial).</summary>
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
    private static void Pv4(float* o, int d, float* pr, float* v, int ja, int jb, float[] alphaAll, int r0, int width)
    {
        float al0 = alphaAll[r0], al1 = alphaAll[r0 + 1], al2 = alphaAll[r0 + 2], al3 = alphaAll[r0 + 3];
        float* o0 = o, o1 = o + d, o2 = o1 + d, o3 = o2 + d;
        float* p0 = pr, p1 = pr + Tile, p2 = p1 + Tile, p3 = p2 + Tile;
        int x = 0;
        if (width == 16)
        {
            for (; x + 64 <= d; x += 64)
                Pv4x64Avx512(o0 + x, o1 + x, o2 + x, o3 + x, p0, p1, p2, p3, v + x, d, ja, jb, al0, al1, al2, al3);
            for (; x + 16 <= d; x += 16)
            {
                Vector512<float> a0 = Vector512.Load(o0 + x) * al0, a1 = Vector512.Load(o1 + x) * al1;
                Vector512<float> a2 = Vector512.Load(o2 + x) * al2, a3 = Vector512.Load(o3 + x) * al3;
                for (int j = ja; j < jb; j++)
                {
                    Vector512<float> vv = Vector512.Load(v + (long)j * d + x);
                    a0 = Vector512.FusedMultiplyAdd(vv, Vector512.Create(p0[j]), a0);
                    a1 = Vector512.FusedMultiplyAdd(vv, Vector512.Create(p1[j]), a1);
                    a2 = Vector512.FusedMultiplyAdd(vv, Vector512.Create(p2[j]), a2);
                    a3 = Vector512.FusedMultiplyAdd(vv, Vector512.Create(p3[j]), a3);
                }
                a0.Store(o0 + x); a1.Store(o1 + x); a2.Store(o2 + x); a3.Store(o3 + x);
            }
        }
        else if (width == 8)
        {
            for (; x + 8 <= d; x += 8)
            {
                Vector256<float> a0 = Vector256.Load(o0 + x) * al0, a1 = Vector256.Load(o1 + x) * al1;
                Vector256<float> a2 = Vector256.Load(o2 + x) * al2, a3 = Vector256.Load(o3 + x) * al3;
                for (int j = ja; j < jb; j++)
                {
                    Vector256<float> vv = Vector256.Load(v + (long)j * d + x);
                    a0 = Vector256.FusedMultiplyAdd(vv, Vector256.Create(p0[j]), a0);
                    a1 = Vector256.FusedMultiplyAdd(vv, Vector256.Create(p1[j]), a1);
                    a2 = Vector256.FusedMultiplyAdd(vv, Vector256.Create(p2[j]), a2);
                    a3 = Vector256.FusedMultiplyAdd(vv, Vector256.Create(p3[j]), a3);
                }
                a0.Store(o0 + x); a1.Store(o1 + x); a2.Store(o2 + x); a3.Store(o3 + x);
            }
        }
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pv4x64Avx512(float* o0, float* o1, float* o2, float* o3, float* p0, float* p1, float* p2, float* p3,
        float* v, int d, int ja, int jb, float al0, float al1, float al2, float al3)
    {
        Vector512<float> a00 = Vector512.Load(o0) * al0, a01 = Vector512.Load(o0 + 16) * al0, a02 = Vector512.Load(o0 + 32) * al0, a03 = Vector512.Load(o0 + 48) * al0;
        Vector512<float> a10 = Vector512.Load(o1) * al1, a11 = Vector512.Load(o1 + 16) * al1, a12 = Vector512.Load(o1 + 32) * al1, a13 = Vector512.Load(o1 + 48) * al1;
        Vector512<float> a20 = Vector512.Load(o2) * al2, a21 = Vector512.Load(o2 + 16) * al2, a22 = Vector512.Load(o2 + 32) * al2, a23 = Vector512.Load(o2 + 48) * al2;
        Vector512<float> a30 = Vector512.Load(o3) * al3, a31 = Vector512.Load(o3 + 16) * al3, a32 = Vector512.Load(o3 + 32) * al3, a33 = Vector512.Load(o3 + 48) * al3;
        for (int j = ja; j < jb; j++)
        {
            float* vr = v + (long)j * d;
            Vector512<float> v0 = Vector512.Load(vr), v1 = Vector512.Load(vr + 16), v2 = Vector512.Load(vr + 32), v3 = Vector512.Load(vr + 48);
            Vector512<float> b = Vector512.Create(p0[j]);
            a00 = Vector512.FusedMultiplyAdd(v0, b, a00); a01 = Vector512.FusedMultiplyAdd(v1, b, a01);
            a02 = Vector512.FusedMultiplyAdd(v2, b, a02); a03 = Vector512.FusedMultiplyAdd(v3, b, a03);
            b = Vector512.Create(p1[j]);
            a10 = Vector512.FusedMultiplyAdd(v0, b, a10); a11 = Vector512.FusedMultiplyAdd(v1, b, a11);
            a12 = Vector512.FusedMultiplyAdd(v2, b, a12); a13 = Vector512.FusedMultiplyAdd(v3, b, a13);
            b = Vector512.Create(p2[j]);
            a20 = Vector512.FusedMultiplyAdd(v0, b, a20); a21 = Vector512.FusedMultiplyAdd(v1, b, a21);
            a22 = Vector512.FusedMultiplyAdd(v2, b, a22); a23 = Vector512.FusedMultiplyAdd(v3, b, a23);
            b = Vector512.Create(p3[j]);
            a30 = Vector512.FusedMultiplyAdd(v0, b, a30); a31 = Vector512.FusedMultiplyAdd(v1, b, a31);
            a32 = Vector512.FusedMultiplyAdd(v2, b, a32); a33 = Vector512.FusedMultiplyAdd(v3, b, a33);
        }
        a00.Store(o0); a01.Store(o0 + 16); a02.Store(o0 + 32); a03.Store(o0 + 48);
        a10.Store(o1); a11.Store(o1 + 16); a12.Store(o1 + 32); a13.Store(o1 + 48);
        a20.Store(o2); a21.Store(o2 + 16); a22.Store(o2 + 32); a23.Store(o2 + 48);
        a30.Store(o3); a31.Store(o3 + 16); a32.Store(o3 + 32); a33.Store(o3 + 48);
    }

    /// <summary>One row: O = O·α + Σ_{j∈[ja,jb)} P[j]·V[j].</summary>
    private static void Pv1(float* o, int d, float* pr, float* v, int ja, int jb, float alpha, int width)
    {
        int x = 0;
        if (width == 16)
        {
            for (; x + 64 <= d; x += 64)
            {
                Vector512<float> a0 = Vector512.Load(o + x) * alpha, a1 = Vector512.Load(o + x + 16) * alpha;
                Vector512<float> a2 = Vector512.Load(o + x + 32) * alpha, a3 = Vector512.Load(o + x + 48) * alpha;
                for (int j = ja; j < jb; j++)
                {
                    float* vr = v + (long)j * d + x;
                    Vector512<float> b = Vector512.Create(pr[j]);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(vr), b, a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.Load(vr + 16), b, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Load(vr + 32), b, a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.Load(vr + 48), b, a3);
                }
                a0.Store(o + x); a1.Store(o + x + 16); a2.Store(o + x + 32); a3.Store(o + x + 48);
            }
            for (; x + 16 <= d; x += 16)
            {
                Vector512<float> a0 = Vector512.Load(o + x) * alpha;
                for (int j = ja; j < jb; j++)
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(v + (long)j * d + x), Vector512.Create(pr[j]), a0);
                a0.Store(o + x);
            }
        }
        else if (width == 8)
        {
            for (; x + 32 <= d; x += 32)
            {
                Vector256<float> a0 = Vector256.Load(o + x) * alpha, a1 = Vector256.Load(o + x + 8) * alpha;
                Vector256<float> a2 = Vector256.Load(o + x + 16) * alpha, a3 = Vector256.Load(o + x + 24) * alpha;
                for (int j = ja; j < jb; j++)
                {
                    float* vr = v + (long)j * d + x;
                    Vector256<float> b = Vector256.Create(pr[j]);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Load(vr), b, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Load(vr + 8), b, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Load(vr + 16), b, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Load(vr + 24), b, a3);
                }
                a0.Store(o + x); a1.Store(o + x + 8); a2.Store(o + x + 16); a3.Store(o + x + 24);
            }
            for (; x + 8 <= d; x += 8)
            {
                Vector256<float> a0 = Vector256.Load(o + x) * alpha;
                for (int j = ja; j < jb; j++)
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Load(v + (long)j * d + x), Vector256.Create(pr[j]), a0);
                a0.Store(o + x);
            }
        }
        for (; x < d; x++)
        {
            float a = o[x] * alpha;
            for (int j = ja; j < jb; j++)
                a = MathF.FusedMultiplyAdd(v[(long)j * d + x], pr[j], a);
            o[x] = a;
        }
    }
}
