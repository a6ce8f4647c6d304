using System.Runtime.Intrinsics;
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
        RowsInParallel(job, threads, width);
    }

    // The parallel paths are methods of their own: a lambda's captures are allocated on entry to the
    // method that declares them, and the serial paths (decode) allocate nothing.
    private static void RowsInParallel(RowJob job, int threads, int width)
    {
        int chunk = (job.Rows + (threads * 4) - 1) / (threads * 4);
        SimdParallel.For((job.Rows + chunk - 1) / chunk, threads, c => RowRange(job, c * chunk, Math.Min(job.Rows, (c + 1) * chunk), width));
    }

    private static int ThreadsFor(long pieces, long elements) =>
        pieces >= 4 && elements >= ParallelElements ? Environment.ProcessorCount : 1;

    private static void RowRange(in RowJob job, int first, int end, int width)
    {
        var op = new RowsOp(job, first, end);
        OnWidth(ref op, width);
    }

    /// <summary>Runs <paramref name="op"/> at a width: 16 and 8 on vectors, anything else with the scalar rules.</summary>
    private static void OnWidth<TOp>(ref TOp op, int width)
        where TOp : struct, IWidthOp
    {
        if (width == 16)
            op.Run<Vector512<float>, Float512>(vector: true);
        else
            op.Run<Vector256<float>, Float256>(vector: width == 8);
    }

    /// <summary>An op run at the vector width chosen by <see cref="OnWidth"/> (its arguments are the struct's fields).</summary>
    private interface IWidthOp
    {
        void Run<TVector, TWidth>(bool vector)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector>;
    }

    private readonly struct RowsOp(RowJob job, int first, int end) : IWidthOp
    {
        public void Run<TVector, TWidth>(bool vector)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector> => RowRange<TVector, TWidth>(job, first, end, vector);
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
                float factor = LayerMath.RmsFactor(SumOfSquares(x, n, vector), n, job.Eps);
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

    /// <summary>
    /// Σx² of a row, summed in float64 and rounded to float32 once. A float32 square is exact in float64 and a float64
    /// sum of n of them is within n·2⁻⁵³ of Σx², so RMSNorm's result stays within a few float32 roundings of the float64
    /// reference for any row length (a float32 running sum over a row of n drifts by up to (n − 1)·2⁻²⁴: past the
    /// tolerance of 2⁻²⁰ at a few thousand elements, as the ILGPU kernel's 256 per-thread partial sums do not). The
    /// vector form widens eight floats at a time; the scalar form (width 1) and the tail add one square at a time.
    /// </summary>
    private static float SumOfSquares(float* x, int n, bool vector)
    {
        int c = 0;
        double sum = 0;
        if (vector)
        {
            Vector256<double> lower = Vector256<double>.Zero, upper = Vector256<double>.Zero;
            for (; c + Vector256<float>.Count <= n; c += Vector256<float>.Count)
            {
                Vector256<float> v = Vector256.Load(x + c);
                Vector256<double> a = Vector256.WidenLower(v), b = Vector256.WidenUpper(v);
                lower += a * a;
                upper += b * b;
            }
            sum = Vector256.Sum(lower + upper);
        }
        for (; c < n; c++)
            sum += (double)x[c] * x[c];
        return (float)sum;
    }

    /// <summary>max |y| of a row (0 for an empty or all-zero row): per-lane maxima, then the lanes, then the scalar tail.</summary>
    private static float MaxAbs<TVector, TWidth>(float* y, int n, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int c = 0;
        float result = 0f;
        if (vector)
        {
            TVector acc = TWidth.Create(0f);
            for (; c + TWidth.Count <= n; c += TWidth.Count)
                acc = TWidth.MaxNative(acc, TWidth.AndNot(TWidth.Load(y + c), TWidth.Create(-0f)));
            for (int i = 0; i < TWidth.Count; i++)
                result = Math.Max(result, TWidth.GetElement(acc, i));
        }
        for (; c < n; c++)
            result = Math.Max(result, Math.Abs(y[c]));
        return result;
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
        AddInParallel(x, y, count, (int)chunks, Chunk, width);
    }

    private static void AddInParallel(float* x, float* y, long count, int chunks, long chunk, int width) =>
        SimdParallel.For(chunks, Environment.ProcessorCount, c =>
            AddRange(x + (c * chunk), y + (c * chunk), Math.Min(chunk, count - (c * chunk)), width));

    private static void AddRange(float* x, float* y, long count, int width)
    {
        var op = new AddOp(x, y, count);
        OnWidth(ref op, width);
    }

    private readonly struct AddOp(float* x, float* y, long count) : IWidthOp
    {
        public void Run<TVector, TWidth>(bool vector)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector> => AddRange<TVector, TWidth>(x, y, count, vector);
    }

    private static void AddRange<TVector, TWidth>(float* x, float* y, long count, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector> =>
        Map<TVector, TWidth, AddMap>(x, y, x, count, vector);

    /// <summary>y = f(a, b) element-wise (or pair-wise): whole vectors, then the scalar form of f on the rest.</summary>
    private static void Map<TVector, TWidth, TMap>(float* a, float* b, float* y, long count, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
        where TMap : struct, IMap
    {
        long c = 0;
        if (vector)
        {
            for (; c + TWidth.Count <= count; c += TWidth.Count)
                TWidth.Store(TMap.Vector<TVector, TWidth>(TWidth.Load(a + c), TWidth.Load(b + c)), y + c);
        }
        for (; c < count; c += TMap.Step)
            TMap.Scalar(a + c, b + c, y + c);
    }

    /// <summary>A function of two float streams, as a vector form and a scalar form over <see cref="Step"/> elements.</summary>
    private interface IMap
    {
        static abstract int Step { get; }

        static abstract TVector Vector<TVector, TWidth>(TVector a, TVector b)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector>;

        static abstract void Scalar(float* a, float* b, float* y);
    }

    /// <summary>a + b.</summary>
    private readonly struct AddMap : IMap
    {
        public static int Step => 1;

        public static TVector Vector<TVector, TWidth>(TVector a, TVector b)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector> => TWidth.Add(a, b);

        public static void Scalar(float* a, float* b, float* y) => *y = *a + *b;
    }

    /// <summary>The RoPE rotation of the pairs of a by the (cos, sin) pairs of b (<see cref="LayerMath.RotateFirst"/>, <see cref="LayerMath.RotateSecond"/>).</summary>
    private readonly struct RotateMap : IMap
    {
        public static int Step => 2;

        public static TVector Vector<TVector, TWidth>(TVector a, TVector b)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector> => TWidth.RotatePairs(a, b);

        public static void Scalar(float* a, float* b, float* y)
        {
            y[0] = LayerMath.RotateFirst(a[0], a[1], b[0], b[1]);
            y[1] = LayerMath.RotateSecond(a[0], a[1], b[0], b[1]);
        }
    }

    /// <summary>y[r, :] = table[tokens[r], :] · rowScale[tokens[r]] (ids validated by the caller).</summary>
    public static void Embed(sbyte* table, float* rowScale, int* tokens, int count, float* y, int n, int width)
    {
        var op = new EmbedOp(table, rowScale, tokens, count, y, n);
        OnWidth(ref op, Math.Min(width, DetectedWidth));
    }

    private readonly struct EmbedOp(sbyte* table, float* rowScale, int* tokens, int count, float* y, int n) : IWidthOp
    {
        public void Run<TVector, TWidth>(bool vector)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector>
        {
            for (int r = 0; r < count; r++)
            {
                long id = tokens[r];
                ScaleRow<TVector, TWidth>(table + (id * n), rowScale[id], y + ((long)r * n), n, vector);
            }
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
        RopeInParallel(qkv, table, q, kCache, vCache, p, tokens, width);
    }

    private static void RopeInParallel(float* qkv, float* table, float* q, float* kCache, float* vCache, RopeParams p, int tokens, int width) =>
        SimdParallel.For(tokens, Environment.ProcessorCount, i => RopeToken(qkv, table, q, kCache, vCache, p, i, width));

    private static void RopeToken(float* qkv, float* table, float* q, float* kCache, float* vCache, in RopeParams p, int token, int width)
    {
        var op = new RopeTokenOp(qkv, table, q, kCache, vCache, p, token);
        OnWidth(ref op, width);
    }

    private readonly struct RopeTokenOp(float* qkv, float* table, float* q, float* kCache, float* vCache, RopeParams p, int token) : IWidthOp
    {
        public void Run<TVector, TWidth>(bool vector)
            where TVector : unmanaged
            where TWidth : struct, IFloatWidth<TVector> => RopeToken<TVector, TWidth>(qkv, table, q, kCache, vCache, p, token, vector);
    }

    private static void RopeToken<TVector, TWidth>(float* qkv, float* table, float* q, float* kCache, float* vCache, in RopeParams p, int token, bool vector)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int b = token / p.Tokens, t = token - (b * p.Tokens), d = p.HeadDim;
        int position = p.Start + t;
        float* cs = table + ((long)position * d);
        float* src = qkv + ((long)token * (p.Heads + (2 * p.KvHeads)) * d);
        for (int h = 0; h < p.Heads; h++)
            Map<TVector, TWidth, RotateMap>(src + ((long)h * d), cs, q + (((((long)b * p.Heads) + h) * p.Tokens + t) * d), d, vector);
        for (int h = 0; h < p.KvHeads; h++)
        {
            long cache = ((((long)b * p.KvHeads) + h) * p.Capacity + position) * d;
            Map<TVector, TWidth, RotateMap>(src + ((long)(p.Heads + h) * d), cs, kCache + cache, d, vector);
            new ReadOnlySpan<float>(src + ((long)(p.Heads + p.KvHeads + h) * d), d).CopyTo(new Span<float>(vCache + cache, d));
        }
    }
}
