using System.Buffers;
using Kernels.DeviceCode;

namespace Kernels.Backends.Simd;

/// <summary>
/// Decode attention over an int8 KV cache on the CPU: K and V are sbyte [B, KvH, capacity, D] with float
/// scales per (sequence, kv head, token). Key tiles of <see cref="Tile"/> tokens are dequantized on the fly
/// (sign-extending converts × scale) into per-thread float tiles inside the online-softmax loop; scores,
/// the running max/sum and the P·V accumulation are float32, vectorized (AVX2 + FMA, scalar otherwise).
/// Semantics: <see cref="HostReference.Attention"/> applied to the dequantized cache.
/// </summary>
internal static unsafe class AttentionInt8KvSimd
{
    /// <summary>Tokens dequantized per tile.</summary>
    internal const int Tile = 64;

    private static bool Vectorized => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Arguments are validated by the caller; splits is clamped to 1..capacity.</summary>
    public static void Forward(float* q, sbyte* k, float* kScale, sbyte* v, float* vScale, float* output, int* keyLengths,
        AttentionShape shape, float scale, int window, int splits)
    {
        splits = Math.Clamp(splits, 1, shape.KeyLength);
        int kvCount = shape.Batch * shape.KvHeads;
        int rows = (int)(shape.QueryElements / shape.HeadDim);
        float[]? partial = splits > 1 ? ArrayPool<float>.Shared.Rent(checked(rows * splits * (shape.HeadDim + 2))) : null;
        try
        {
            fixed (float* pp = partial)
            {
                var plan = new Plan
                {
                    Q = q, K = k, KScale = kScale, V = v, VScale = vScale, Output = output, Lengths = keyLengths,
                    Shape = shape, Scale = scale, Window = window, Splits = splits, Partial = pp,
                };
                double flops = 4.0 * shape.Batch * shape.Heads * shape.QueryLength * shape.KeyLength * shape.HeadDim;
                int threads = flops >= 4e6 ? Environment.ProcessorCount : 1;
                Run(kvCount * splits, threads, i => Block(plan, i));
                if (splits > 1)
                    Run(rows, threads, r => Combine(plan, r));
            }
        }
        finally
        {
            if (partial is not null)
                ArrayPool<float>.Shared.Return(partial);
        }
    }

    private static void Run(int count, int threads, Action<int> body) => SimdParallel.For(count, threads, body);

    private sealed class Plan
    {
        public float* Q, KScale, VScale, Output, Partial;
        public sbyte* K, V;
        public int* Lengths;
        public AttentionShape Shape;
        public float Scale;
        public int Window, Splits;
    }

    /// <summary>One (sequence, kv head, split): every query row of the heads sharing that kv head.</summary>
    private static void Block(Plan p, int item)
    {
        AttentionShape s = p.Shape;
        int d = s.HeadDim, sq = s.QueryLength, group = s.Heads / s.KvHeads;
        int split = item % p.Splits, kvIndex = item / p.Splits;
        int b = kvIndex / s.KvHeads, kvh = kvIndex % s.KvHeads;
        int len = p.Lengths is null ? s.KeyLength : p.Lengths[b];
        int s0 = (int)((long)len * split / p.Splits), s1 = (int)((long)len * (split + 1) / p.Splits);
        int rows = group * sq;
        float[] buffer = ArrayPool<float>.Shared.Rent(2 * Tile * d + rows * (d + 3) + Tile);
        try
        {
            fixed (float* scratch = buffer)
            {
                float* kt = scratch, vt = kt + Tile * d, acc = vt + Tile * d, m = acc + rows * d, l = m + rows;
                float* nan = l + rows, sc = nan + rows;
                int[] bounds = new int[2 * rows];
                for (int r = 0; r < rows; r++)
                {
                    int i = r % sq;
                    int pos = i + len - sq;
                    int a = Math.Max(s0, AttentionMask.First(pos, p.Window));
                    int e = Math.Min(s1, AttentionMask.End(pos, s.Causal, p.Window));
                    bounds[2 * r] = a;
                    bounds[2 * r + 1] = e;
                    m[r] = float.NegativeInfinity;
                    l[r] = 0;
                    nan[r] = 0;
                    new Span<float>(acc + (long)r * d, d).Clear();
                }
                long tokenBase = (long)kvIndex * s.KeyLength;
                for (int t0 = s0; t0 < s1; t0 += Tile)
                {
                    int t1 = Math.Min(s1, t0 + Tile);
                    // Which tokens of this tile any row sees; dequantize only those.
                    int need0 = int.MaxValue, need1 = int.MinValue;
                    for (int r = 0; r < rows; r++)
                    {
                        int a = Math.Max(t0, bounds[2 * r]), e = Math.Min(t1, bounds[2 * r + 1]);
                        if (a < e)
                        {
                            need0 = Math.Min(need0, a);
                            need1 = Math.Max(need1, e);
                        }
                    }
                    if (need0 >= need1)
                        continue;
                    for (int j = need0; j < need1; j++)
                    {
                        long token = tokenBase + j;
                        Dequantize(p.K + token * d, p.KScale[token], kt + (j - t0) * d, d);
                        Dequantize(p.V + token * d, p.VScale[token], vt + (j - t0) * d, d);
                    }
                    for (int r = 0; r < rows; r++)
                    {
                        int a = Math.Max(t0, bounds[2 * r]), e = Math.Min(t1, bounds[2 * r + 1]);
                        if (a >= e)
                            continue;
                        int g = r / sq, i = r % sq;
                        float* qr = p.Q + (((long)b * s.Heads + kvh * group + g) * sq + i) * d;
                        float max = m[r];
                        for (int j = a; j < e; j++)
                        {
                            float score = Dot(qr, kt + (j - t0) * d, d) * p.Scale;
                            if (float.IsNaN(score))
                                nan[r] = 1;
                            sc[j - a] = score;
                            if (score > max)
                                max = score;
                        }
                        if (nan[r] != 0)
                            continue;
                        float* o = acc + (long)r * d;
                        float alpha = m[r] == float.NegativeInfinity ? 0 : MathF.Exp(m[r] - max);
                        if (alpha != 1)
                            ScaleRow(o, alpha, d);
                        float sum = l[r] * alpha;
                        for (int j = a; j < e; j++)
                        {
                            float w = MathF.Exp(sc[j - a] - max);
                            sum += w;
                            Axpy(o, w, vt + (j - t0) * d, d);
                        }
                        m[r] = max;
                        l[r] = sum;
                    }
                }
                for (int r = 0; r < rows; r++)
                {
                    int g = r / sq, i = r % sq;
                    long row = ((long)b * s.Heads + kvh * group + g) * sq + i;
                    float* o = acc + (long)r * d;
                    if (p.Splits > 1)
                    {
                        float* part = p.Partial + (row * p.Splits + split) * (d + 2);
                        part[0] = m[r];
                        part[1] = nan[r] != 0 ? float.NaN : l[r];
                        new Span<float>(o, d).CopyTo(new Span<float>(part + 2, d));
                        continue;
                    }
                    float* dst = p.Output + row * d;
                    if (nan[r] != 0)
                        new Span<float>(dst, d).Fill(float.NaN);
                    else if (l[r] == 0)
                        new Span<float>(dst, d).Clear();
                    else
                    {
                        float inv = 1f / l[r];
                        for (int x = 0; x < d; x++)
                            dst[x] = o[x] * inv;
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    private static void Combine(Plan p, int row)
    {
        int d = p.Shape.HeadDim, splits = p.Splits;
        AttentionSplits.Combine<NaturalUnits>(p.Partial + (long)row * splits * (d + 2), splits, p.Output + (long)row * d, d);
    }

    /// <summary>Scores in natural units; the vectorized <see cref="Axpy"/> and <see cref="ScaleRow"/>.</summary>
    private struct NaturalUnits : AttentionSplits.IUnits
    {
        public static float Exp(float x) => MathF.Exp(x);

        public static void Axpy(float* o, float w, float* v, int d) => AttentionInt8KvSimd.Axpy(o, w, v, d);

        public static void Scale(float* o, float s, int d) => ScaleRow(o, s, d);
    }

    /// <summary>dst[0..d) = src[x]·scale (sign-extending int8 → int32 → float converts, 8 at a time).</summary>
    internal static void Dequantize(sbyte* src, float scale, float* dst, int d)
    {
        int x = 0;
        if (Vectorized)
        {
            Vector256<float> sv = Vector256.Create(scale);
            for (; x + 8 <= d; x += 8)
                Avx.Store(dst + x, Avx.Multiply(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(src + x)), sv));
        }
        for (; x < d; x++)
            dst[x] = src[x] * scale;
    }

    private static float Dot(float* a, float* b, int d)
    {
        int x = 0;
        float sum = 0;
        if (Vectorized && d >= 8)
        {
            Vector256<float> acc = Vector256<float>.Zero;
            for (; x + 8 <= d; x += 8)
                acc = Fma.MultiplyAdd(Avx.LoadVector256(a + x), Avx.LoadVector256(b + x), acc);
            sum = Vector256.Sum(acc);
        }
        for (; x < d; x++)
            sum += a[x] * b[x];
        return sum;
    }

    private static void Axpy(float* o, float w, float* v, int d)
    {
        int x = 0;
        if (Vectorized)
        {
            Vector256<float> wv = Vector256.Create(w);
            for (; x + 8 <= d; x += 8)
                Avx.Store(o + x, Fma.MultiplyAdd(wv, Avx.LoadVector256(v + x), Avx.LoadVector256(o + x)));
        }
        for (; x < d; x++)
            o[x] += w * v[x];
    }

    private static void ScaleRow(float* o, float alpha, int d)
    {
        int x = 0;
        if (Vectorized)
        {
            Vector256<float> av = Vector256.Create(alpha);
            for (; x + 8 <= d; x += 8)
                Avx.Store(o + x, Avx.Multiply(Avx.LoadVector256(o + x), av));
        }
        for (; x < d; x++)
            o[x] *= alpha;
    }
}
