using Kernels.DeviceCode;

namespace Kernels.Backends.Simd;

/// <summary>What a row job computes per row before the optional quantization.</summary>
internal enum RowKind
{
    /// <summary>RMSNorm of x with weight.</summary>
    RmsNorm,

    /// <summary>silu(gate)·up of gateUp.</summary>
    SwiGlu,

    /// <summary>The row as it is (heads = 1) or gathered from head-major x.</summary>
    Heads,
}

/// <summary>One row call on host memory (validated by the caller); a struct, so a serial call allocates nothing.</summary>
internal readonly unsafe struct RowJob
{
    public RowKind Kind { get; init; }

    /// <summary>x, or gateUp.</summary>
    public float* X { get; init; }

    public float* Weight { get; init; }

    public float* Y { get; init; }

    public sbyte* Q { get; init; }

    public float* Scale { get; init; }

    public int Rows { get; init; }

    /// <summary>Output columns (f for SwiGLU).</summary>
    public int N { get; init; }

    public int Heads { get; init; }

    public float Eps { get; init; }

    public bool Quantize { get; init; }
}

/// <summary>
/// The decoder's small ops on cpu-simd, one loop per op generic over the vector width
/// (<see cref="Float512"/>, <see cref="Float256"/>; width 1 runs the scalar rules of <see cref="LayerMath"/>).
/// Rows run in parallel when there are enough of them; a serial call allocates nothing (quantized rows
/// use a pinned per-thread row buffer, grown once).
/// </summary>
/// <remarks>
/// Per element the vector paths round exactly as the scalar rules (products without FMA, correctly rounded
/// division, round-half-even), so only RMSNorm's sum of squares (summed per lane) and SwiGLU's e^x (the
/// runtime's vectorized exp; the scalar rule's on width 1) differ from the device kernels, within float32 rounding.
/// </remarks>
internal static unsafe class LayerSimd
{
    /// <summary>Rows × columns below which a call stays on the calling thread.</summary>
    private const long ParallelElements = 1 << 15;

    [ThreadStatic]
    private static float[]? t_row;

    public static int DetectedWidth => AttentionSimd.DetectedWidth;

    // ------------------------------------------------------------------------------------------ rows

    public static void Rows(RowJob job, int width)
    {
        width = Math.Min(width, DetectedWidth);
        int threads = ThreadsFor(job.Rows, (long)job.Rows * job.N);
        if (threads == 1)
        {
            RowRange(job, 0, job.Rows, width);
            return;
        }
        int chunk = (job.Rows + (threads * 4) - 1) / (threads * 4);
        SimdParallel.For((job.Rows + chunk - 1) / chunk, threads, c => RowRange(job, c * chunk, Math.Min(job.Rows, (c + 1) * chunk), width));
    }

    private static int ThreadsFor(long pieces, long elements) =>
        pieces >= 4 && elements >= ParallelElements ? Environment.ProcessorCount : 1;

    private static void RowRange(in RowJob job, int first, int end, int width)
    {
        if (width == 16)
            RowRange<Vector512<float>, Float512>(job, first, end, vector: true);
        else
            RowRange<Vector256<float>, Float256>(job, first, end, vector: width == 8);
    }

    private static void RowRange<TVector, TWidth>(in RowJob job, int first, int end, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = job.N;
        float* buffer = job.Quantize ? RowBuffer(n) : null;
        for (int r = first; r < end; r++)
        {
            float* y = job.Quantize ? buffer : job.Y + ((long)r * n);
            float* values = Produce<TVector, TWidth>(job, r, y, vector);
            if (!job.Quantize)
                continue;
            float scale = LayerMath.QuantScale(MaxAbs<TVector, TWidth>(values, n, vector));
            QuantizeRow<TVector, TWidth>(values, n, scale, job.Q + ((long)r * n), vector);
            job.Scale[r] = scale;
        }
    }

    /// <summary>Row r's values into y, or (a plain row) a pointer to the row itself.</summary>
    private static float* Produce<TVector, TWidth>(in RowJob job, int r, float* y, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = job.N;
        switch (job.Kind)
        {
            case RowKind.RmsNorm:
                float* x = job.X + ((long)r * n);
                float factor = LayerMath.RmsFactor(SumOfSquares<TVector, TWidth>(x, n, vector), n, job.Eps);
                RmsNormRow<TVector, TWidth>(x, job.Weight, factor, y, n, vector);
                return y;
            case RowKind.SwiGlu:
                float* gate = job.X + ((long)r * 2 * n);
                SwiGluRow<TVector, TWidth>(gate, gate + n, y, n, vector);
                return y;
            default:
                if (job.Heads == 1)
                    return job.X + ((long)r * n);
                int d = n / job.Heads;
                for (int h = 0; h < job.Heads; h++)
                    new ReadOnlySpan<float>(job.X + ((((long)h * job.Rows) + r) * d), d).CopyTo(new Span<float>(y + ((long)h * d), d));
                return y;
        }
    }

    /// <summary>A pinned per-thread buffer of at least n floats (grown, never shrunk).</summary>
    private static float* RowBuffer(int n)
    {
        if (t_row is null || t_row.Length < n)
            t_row = GC.AllocateUninitializedArray<float>(Math.Max(n, 1024), pinned: true);
        return (float*)Unsafe.AsPointer(ref t_row[0]);
    }

    private static float SumOfSquares<TVector, TWidth>(float* x, int n, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int c = 0;
        float sum = 0f;
        if (vector)
        {
            TVector acc = TWidth.Create(0f);
            for (; c + TWidth.Count <= n; c += TWidth.Count)
            {
                TVector v = TWidth.Load(x + c);
                acc = TWidth.Add(acc, TWidth.Multiply(v, v));
            }
            sum = TWidth.Sum(acc);
        }
        for (; c < n; c++)
            sum += x[c] * x[c];
        return sum;
    }

    private static void RmsNormRow<TVector, TWidth>(float* x, float* weight, float factor, float* y, int n, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int c = 0;
        if (vector)
        {
            for (; c + TWidth.Count <= n; c += TWidth.Count)
                TWidth.Store(TWidth.Multiply(TWidth.Multiply(TWidth.Load(x + c), factor), TWidth.Load(weight + c)), y + c);
        }
        for (; c < n; c++)
            y[c] = LayerMath.RmsNorm(x[c], factor, weight[c]);
    }

    /// <summary>silu(gate)·up; the tail goes through one zero-padded vector so that every element uses the same e^x.</summary>
    private static void SwiGluRow<TVector, TWidth>(float* gate, float* up, float* y, int n, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        if (!vector)
        {
            for (int j = 0; j < n; j++)
                y[j] = LayerMath.SwiGlu(gate[j], up[j]);
            return;
        }
        int c = 0;
        for (; c + TWidth.Count <= n; c += TWidth.Count)
            TWidth.Store(SwiGlu<TVector, TWidth>(TWidth.Load(gate + c), TWidth.Load(up + c)), y + c);
        if (c == n)
            return;
        float* g = stackalloc float[16];
        float* u = stackalloc float[16];
        float* o = stackalloc float[16];
        new Span<float>(g, 16).Clear();
        new Span<float>(u, 16).Clear();
        new ReadOnlySpan<float>(gate + c, n - c).CopyTo(new Span<float>(g, 16));
        new ReadOnlySpan<float>(up + c, n - c).CopyTo(new Span<float>(u, 16));
        TWidth.Store(SwiGlu<TVector, TWidth>(TWidth.Load(g), TWidth.Load(u)), o);
        new ReadOnlySpan<float>(o, n - c).CopyTo(new Span<float>(y + c, n - c));
    }

    /// <summary>The vector form of <see cref="LayerMath.SwiGlu"/>: g / (1 + e^−g) · u.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector SwiGlu<TVector, TWidth>(TVector g, TVector u)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector> =>
        TWidth.Multiply(TWidth.Divide(g, TWidth.Add(TWidth.Create(1f), TWidth.Exp(TWidth.Subtract(TWidth.Create(0f), g)))), u);

    private static float MaxAbs<TVector, TWidth>(float* y, int n, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int c = 0;
        float max = 0f;
        if (vector)
        {
            TVector sign = TWidth.Create(-0f);
            TVector acc = TWidth.Create(0f);
            for (; c + TWidth.Count <= n; c += TWidth.Count)
                acc = TWidth.MaxNative(acc, TWidth.AndNot(TWidth.Load(y + c), sign));
            for (int i = 0; i < TWidth.Count; i++)
                max = Math.Max(max, TWidth.GetElement(acc, i));
        }
        for (; c < n; c++)
            max = Math.Max(max, Math.Abs(y[c]));
        return max;
    }

    /// <summary>The rule of <see cref="LayerMath.Quantize"/> per vector: correctly rounded division, round half to even, clamp.</summary>
    private static void QuantizeRow<TVector, TWidth>(float* y, int n, float scale, sbyte* q, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int c = 0;
        if (vector && scale != 0)
        {
            TVector s = TWidth.Create(scale);
            TVector hi = TWidth.Create(LayerMath.MaxQuantized);
            TVector lo = TWidth.Create(-LayerMath.MaxQuantized);
            for (; c + TWidth.Count <= n; c += TWidth.Count)
                TWidth.StoreInt8(TWidth.MinNative(TWidth.MaxNative(TWidth.Round(TWidth.Divide(TWidth.Load(y + c), s)), lo), hi), q + c);
        }
        for (; c < n; c++)
            q[c] = LayerMath.Quantize(y[c], scale);
    }

    // --------------------------------------------------------------------------------- element-wise

    /// <summary>x[i] += y[i], i &lt; count.</summary>
    public static void Add(float* x, float* y, long count, int width)
    {
        width = Math.Min(width, DetectedWidth);
        const long Chunk = 1 << 16;
        long chunks = (count + Chunk - 1) / Chunk;
        if (ThreadsFor(chunks, count) == 1)
        {
            AddRange(x, y, count, width);
            return;
        }
        SimdParallel.For((int)chunks, Environment.ProcessorCount, c =>
            AddRange(x + (c * Chunk), y + (c * Chunk), Math.Min(Chunk, count - (c * Chunk)), width));
    }

    private static void AddRange(float* x, float* y, long count, int width)
    {
        if (width == 16)
            AddRange<Vector512<float>, Float512>(x, y, count, vector: true);
        else
            AddRange<Vector256<float>, Float256>(x, y, count, vector: width == 8);
    }

    private static void AddRange<TVector, TWidth>(float* x, float* y, long count, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        long c = 0;
        if (vector)
        {
            for (; c + TWidth.Count <= count; c += TWidth.Count)
                TWidth.Store(TWidth.Add(TWidth.Load(x + c), TWidth.Load(y + c)), x + c);
        }
        for (; c < count; c++)
            x[c] += y[c];
    }

    /// <summary>y[r, :] = table[tokens[r], :] · rowScale[tokens[r]] (ids validated by the caller).</summary>
    public static void Embed(sbyte* table, float* rowScale, int* tokens, int count, float* y, int n, int width)
    {
        width = Math.Min(width, DetectedWidth);
        for (int r = 0; r < count; r++)
        {
            long id = tokens[r];
            if (width == 16)
                ScaleRow<Vector512<float>, Float512>(table + (id * n), rowScale[id], y + ((long)r * n), n, vector: true);
            else
                ScaleRow<Vector256<float>, Float256>(table + (id * n), rowScale[id], y + ((long)r * n), n, vector: width == 8);
        }
    }

    private static void ScaleRow<TVector, TWidth>(sbyte* q, float scale, float* y, int n, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int c = 0;
        if (vector)
        {
            for (; c + TWidth.Count <= n; c += TWidth.Count)
                TWidth.Store(TWidth.Multiply(TWidth.LoadInt8(q + c), scale), y + c);
        }
        for (; c < n; c++)
            y[c] = q[c] * scale;
    }

    // ------------------------------------------------------------------------------------------ RoPE

    /// <summary>RoPE with the KV-cache write (see <see cref="LayerKernels.Rope"/>), one token of one sequence per work item.</summary>
    public static void Rope(float* qkv, float* table, float* q, float* kCache, float* vCache, RopeParams p, int width)
    {
        width = Math.Min(width, DetectedWidth);
        int tokens = p.Batch * p.Tokens;
        if (ThreadsFor(tokens, p.Pairs * 2) == 1)
        {
            for (int i = 0; i < tokens; i++)
                RopeToken(qkv, table, q, kCache, vCache, p, i, width);
            return;
        }
        SimdParallel.For(tokens, Environment.ProcessorCount, i => RopeToken(qkv, table, q, kCache, vCache, p, i, width));
    }

    private static void RopeToken(float* qkv, float* table, float* q, float* kCache, float* vCache, in RopeParams p, int token, int width)
    {
        int b = token / p.Tokens, t = token - (b * p.Tokens), d = p.HeadDim;
        int position = p.Start + t;
        float* cs = table + ((long)position * d);
        float* src = qkv + ((long)token * (p.Heads + (2 * p.KvHeads)) * d);
        for (int h = 0; h < p.Heads; h++)
            Rotate(src + ((long)h * d), cs, q + (((((long)b * p.Heads) + h) * p.Tokens + t) * d), d, width);
        for (int h = 0; h < p.KvHeads; h++)
        {
            long cache = ((((long)b * p.KvHeads) + h) * p.Capacity + position) * d;
            Rotate(src + ((long)(p.Heads + h) * d), cs, kCache + cache, d, width);
            new ReadOnlySpan<float>(src + ((long)(p.Heads + p.KvHeads + h) * d), d).CopyTo(new Span<float>(vCache + cache, d));
        }
    }

    private static void Rotate(float* x, float* cs, float* y, int d, int width)
    {
        if (width == 16)
            Rotate<Vector512<float>, Float512>(x, cs, y, d, vector: true);
        else
            Rotate<Vector256<float>, Float256>(x, cs, y, d, vector: width == 8);
    }

    private static void Rotate<TVector, TWidth>(float* x, float* cs, float* y, int d, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int c = 0;
        if (vector)
        {
            for (; c + TWidth.Count <= d; c += TWidth.Count)
                TWidth.Store(TWidth.RotatePairs(TWidth.Load(x + c), TWidth.Load(cs + c)), y + c);
        }
        for (; c < d; c += 2)
        {
            y[c] = LayerMath.RotateFirst(x[c], x[c + 1], cs[c], cs[c + 1]);
            y[c + 1] = LayerMath.RotateSecond(x[c], x[c + 1], cs[c], cs[c + 1]);
        }
    }
}
