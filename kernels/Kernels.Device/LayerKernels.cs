using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// The arithmetic rules of the decoder's small ops, written once and called by the device kernels, the
/// SIMD backend's scalar paths and (the quantization rule) its vector path's tail: the RMSNorm factor and
/// product order, silu, the RoPE rotation and per-row int8 quantization.
/// </summary>
public static class LayerMath
{
    /// <summary>The largest quantized magnitude (−128 is not used, so the range is symmetric).</summary>
    public const int MaxQuantized = 127;

    /// <summary>The RMSNorm row factor <c>1 / √(Σx² / n + eps)</c> from the float32 sum of squares.</summary>
    public static float RmsFactor(float sumOfSquares, int n, float eps) => 1f / MathF.Sqrt((sumOfSquares / n) + eps);

    /// <summary>One RMSNorm output, in this order: <c>(x · factor) · weight</c>.</summary>
    public static float RmsNorm(float x, float factor, float weight) => x * factor * weight;

    /// <summary>silu(g)·u with <c>silu(g) = g / (1 + e^−g)</c> (e^x: <see cref="AttentionKernels.Exp"/>; g &lt; −88 gives −0, g &gt; 87 gives g).</summary>
    public static float SwiGlu(float gate, float up) => gate / (1f + AttentionKernels.Exp(-gate)) * up;

    /// <summary>The first element of a rotated pair: <c>a·cos − b·sin</c>.</summary>
    public static float RotateFirst(float a, float b, float cos, float sin) => (a * cos) - (b * sin);

    /// <summary>The second element of a rotated pair: <c>a·sin + b·cos</c>.</summary>
    public static float RotateSecond(float a, float b, float cos, float sin) => (a * sin) + (b * cos);

    /// <summary>The per-row scale <c>max|y| / 127</c> (0 for an all-zero row), as <c>Kernels.Quantization</c> computes it.</summary>
    public static float QuantScale(float maxAbs) => maxAbs / MaxQuantized;

    /// <summary>
    /// <c>clamp(round_half_even(value / scale), −127, 127)</c> with the quotient in float32; 0 when scale is 0.
    /// </summary>
    /// <remarks>
    /// <c>Kernels.Quantization.QuantizeValue</c> divides in float64 instead. Rounding is monotonic and every
    /// k + ½ with |k| &lt; 128 is a float, so the two agree except when the float32 quotient is exactly a tie
    /// that the exact quotient is not: within half a float32 ulp (≤ 2⁻¹⁸) of k + ½. Clamping before rounding
    /// is the same as after (the bounds are integers); the clamp also keeps the truncation below in range.
    /// </remarks>
    public static sbyte Quantize(float value, float scale)
    {
        if (scale == 0)
            return 0;
        float c = value / scale;
        c = c > MaxQuantized ? MaxQuantized : c;
        c = c < -MaxQuantized ? -MaxQuantized : c;
        int t = (int)c; // toward zero; c − t is exact
        float f = c - t;
        if (f > 0.5f || (f == 0.5f && (t & 1) != 0))
            t++;
        else if (f < -0.5f || (f == -0.5f && (t & 1) != 0))
            t--;
        return (sbyte)t;
    }
}

/// <summary>Where a row kernel reads row r's value of column c (before the row factor) and how it finishes it.</summary>
public interface IRowInput
{
    /// <summary>Whether the row is RMS-normalized: its sum of squares is reduced first and passed to <see cref="Finish"/> as the factor.</summary>
    bool Normalized { get; }

    /// <summary>The value of row <paramref name="row"/>, column <paramref name="column"/>.</summary>
    float Load(int row, int column);

    /// <summary>The output value from the loaded value and the row factor (1 when not normalized).</summary>
    float Finish(float value, float factor, int column);
}

/// <summary>RMSNorm input: x [rows, n] and weight [n].</summary>
public struct RmsNormInput : IRowInput
{
    /// <summary>x [rows, n].</summary>
    public ArrayView<float> X;

    /// <summary>weight [n].</summary>
    public ArrayView<float> Weight;

    /// <summary>Columns.</summary>
    public int N;

    /// <inheritdoc/>
    public readonly bool Normalized => true;

    /// <inheritdoc/>
    public readonly float Load(int row, int column) => X[((long)row * N) + column];

    /// <inheritdoc/>
    public readonly float Finish(float value, float factor, int column) => LayerMath.RmsNorm(value, factor, Weight[column]);
}

/// <summary>SwiGLU input: gateUp [rows, 2f] (gate columns 0..f−1, up columns f..2f−1).</summary>
public struct SwiGluInput : IRowInput
{
    /// <summary>gateUp [rows, 2f].</summary>
    public ArrayView<float> GateUp;

    /// <summary>f, the output columns.</summary>
    public int F;

    /// <inheritdoc/>
    public readonly bool Normalized => false;

    /// <inheritdoc/>
    public readonly float Load(int row, int column)
    {
        long at = ((long)row * 2 * F) + column;
        return LayerMath.SwiGlu(GateUp[at], GateUp[at + F]);
    }

    /// <inheritdoc/>
    public readonly float Finish(float value, float factor, int column) => value;
}

/// <summary>
/// Head-major input x [heads, rows, n/heads] read as token-major rows of n (row t = the heads of token t
/// concatenated); heads = 1 is plain row-major [rows, n].
/// </summary>
public struct HeadsInput : IRowInput
{
    /// <summary>x [heads, rows, n/heads].</summary>
    public ArrayView<float> X;

    /// <summary>Rows (tokens).</summary>
    public int Rows;

    /// <summary>Features per head, n/heads.</summary>
    public int HeadDim;

    /// <inheritdoc/>
    public readonly bool Normalized => false;

    /// <inheritdoc/>
    public readonly float Load(int row, int column)
    {
        int head = column / HeadDim;
        return X[((((long)head * Rows) + row) * HeadDim) + (column - (head * HeadDim))];
    }

    /// <inheritdoc/>
    public readonly float Finish(float value, float factor, int column) => value;
}

/// <summary>Where a row kernel writes: float32 rows, or int8 rows with one scale per row.</summary>
public struct RowOutput
{
    /// <summary>y [rows, n] (float output).</summary>
    public ArrayView<float> Y;

    /// <summary>q [rows, n] (quantized output).</summary>
    public ArrayView<sbyte> Q;

    /// <summary>scale [rows] (quantized output).</summary>
    public ArrayView<float> Scale;

    /// <summary>1: write <see cref="Q"/> and <see cref="Scale"/>; 0: write <see cref="Y"/>.</summary>
    public int Quantize;
}

/// <summary>Positions and sizes of one RoPE + KV-cache write.</summary>
/// <param name="batch">Sequences.</param>
/// <param name="tokens">New tokens per sequence.</param>
/// <param name="heads">Query heads.</param>
/// <param name="kvHeads">Key/value heads.</param>
/// <param name="headDim">Features per head (even).</param>
/// <param name="capacity">Positions per sequence in the caches.</param>
/// <param name="start">Position of the first new token.</param>
public struct RopeParams(int batch, int tokens, int heads, int kvHeads, int headDim, int capacity, int start)
{
    /// <summary>Sequences.</summary>
    public int Batch = batch;

    /// <summary>New tokens per sequence.</summary>
    public int Tokens = tokens;

    /// <summary>Query heads.</summary>
    public int Heads = heads;

    /// <summary>Key/value heads.</summary>
    public int KvHeads = kvHeads;

    /// <summary>Features per head (even).</summary>
    public int HeadDim = headDim;

    /// <summary>Positions per sequence in the caches.</summary>
    public int Capacity = capacity;

    /// <summary>Position of the first new token.</summary>
    public int Start = start;

    /// <summary>Pairs to process: Batch·Tokens·(Heads + 2·KvHeads)·HeadDim/2.</summary>
    public long Pairs = (long)batch * tokens * (heads + (2L * kvHeads)) * (headDim / 2);
}

/// <summary>The buffers of one RoPE + KV-cache write.</summary>
public struct RopeIo
{
    /// <summary>qkv [Batch, Tokens, (Heads + 2·KvHeads)·HeadDim].</summary>
    public ArrayView<float> Qkv;

    /// <summary>(cos, sin) [positions, HeadDim/2, 2].</summary>
    public ArrayView<float> Table;

    /// <summary>q [Batch, Heads, Tokens, HeadDim].</summary>
    public ArrayView<float> Q;

    /// <summary>kCache [Batch, KvHeads, Capacity, HeadDim].</summary>
    public ArrayView<float> KCache;

    /// <summary>vCache [Batch, KvHeads, Capacity, HeadDim].</summary>
    public ArrayView<float> VCache;
}

/// <summary>
/// Device code of the decoder's small ops: one row kernel (RMSNorm, SwiGLU, head merge; float32 or
/// per-row int8 output) with shared-memory tree reductions, and element-wise kernels (add, embedding,
/// RoPE with the KV-cache write) that stride over 64-bit element counts.
/// </summary>
public static class LayerKernels
{
    /// <summary>Threads per group of <see cref="Rows{TInput}"/> (one group per row).</summary>
    public const int GroupSize = 256;

    /// <summary>
    /// One group of <see cref="GroupSize"/> threads per row (grid: rows, group: GroupSize). Thread t handles
    /// columns t, t + GroupSize, …; the row's sum of squares (normalized inputs) and max |y| (quantized
    /// output) are reduced in shared memory in a fixed tree, so results do not depend on the schedule.
    /// Values are recomputed in each pass by the same expression (identical results).
    /// </summary>
    /// <param name="input">Where the row is read.</param>
    /// <param name="output">Where it is written.</param>
    /// <param name="n">Columns.</param>
    /// <param name="eps">RMSNorm epsilon (normalized inputs).</param>
    public static void Rows<TInput>(TInput input, RowOutput output, int n, float eps)
        where TInput : struct, IRowInput
    {
        ArrayView<float> shared = SharedMemory.Allocate<float>(GroupSize);
        int tid = Group.IdxX;
        int row = Grid.IdxX;
        // The same trip count in every thread (columns past n are skipped inside): PoCL mis-compiled the
        // reduction after a loop whose trip count differs between work-items when its body branches (e^x),
        // leaving threads that ran no iteration out of the shared-memory store.
        int steps = (n + GroupSize - 1) / GroupSize;
        float factor = 1f;
        if (input.Normalized)
        {
            float sum = 0f;
            for (int k = 0; k < steps; k++)
            {
                int c = tid + (k * GroupSize);
                float v = c < n ? input.Load(row, c) : 0f;
                sum += v * v;
            }
            factor = LayerMath.RmsFactor(Reduce(shared, tid, sum, max: false), n, eps);
        }

        long offset = (long)row * n;
        if (output.Quantize == 0)
        {
            for (int k = 0; k < steps; k++)
            {
                int c = tid + (k * GroupSize);
                if (c < n)
                    output.Y[offset + c] = input.Finish(input.Load(row, c), factor, c);
            }
            return;
        }

        float maxAbs = 0f;
        for (int k = 0; k < steps; k++)
        {
            int c = tid + (k * GroupSize);
            float v = c < n ? input.Finish(input.Load(row, c), factor, c) : 0f;
            float a = v < 0 ? -v : v;
            maxAbs = a > maxAbs ? a : maxAbs;
        }
        float scale = LayerMath.QuantScale(Reduce(shared, tid, maxAbs, max: true));
        for (int k = 0; k < steps; k++)
        {
            int c = tid + (k * GroupSize);
            if (c < n)
                output.Q[offset + c] = LayerMath.Quantize(input.Finish(input.Load(row, c), factor, c), scale);
        }
        if (tid == 0)
            output.Scale[row] = scale;
    }

    /// <summary>
    /// The group's sum or max of <paramref name="value"/>: a tree over shared memory, a barrier after every
    /// level's writes; every thread returns the result, and a last barrier lets the array be reused.
    /// </summary>
    private static float Reduce(ArrayView<float> shared, int tid, float value, bool max)
    {
        shared[tid] = value;
        Group.Barrier();
        for (int s = GroupSize / 2; s > 0; s >>= 1)
        {
            if (tid < s)
            {
                float a = shared[tid];
                float b = shared[tid + s];
                shared[tid] = max ? (b > a ? b : a) : a + b;
            }
            Group.Barrier();
        }
        float result = shared[0];
        Group.Barrier();
        return result;
    }

    /// <summary>x[i] += y[i] for i &lt; count, striding by <paramref name="stride"/> (the launch extent).</summary>
    /// <param name="index">The thread.</param>
    /// <param name="x">Added to, in place.</param>
    /// <param name="y">Added.</param>
    /// <param name="count">Elements.</param>
    /// <param name="stride">The launch extent.</param>
    public static void Add(Index1D index, ArrayView<float> x, ArrayView<float> y, long count, long stride)
    {
        for (long i = index; i < count; i += stride)
            x[i] += y[i];
    }

    /// <summary>y[r, c] = table[tokens[r], c] · rowScale[tokens[r]] for r·n + c &lt; count (ids validated on the host).</summary>
    /// <param name="index">The thread.</param>
    /// <param name="table">[vocab, n] int8.</param>
    /// <param name="rowScale">[vocab].</param>
    /// <param name="tokens">Token ids.</param>
    /// <param name="y">[tokens, n].</param>
    /// <param name="n">Columns.</param>
    /// <param name="count">tokens·n.</param>
    /// <param name="stride">The launch extent.</param>
    public static void Embed(Index1D index, ArrayView<sbyte> table, ArrayView<float> rowScale, ArrayView<int> tokens,
        ArrayView<float> y, int n, long count, long stride)
    {
        for (long i = index; i < count; i += stride)
        {
            long r = i / n;
            long id = tokens[r];
            y[i] = table[(id * n) + (i - (r * n))] * rowScale[id];
        }
    }

    /// <summary>
    /// One adjacent pair (2i, 2i + 1) of one head of one token per step: q heads rotated into q, k heads
    /// rotated into the key cache at position Start + token, v heads copied into the value cache.
    /// </summary>
    /// <param name="index">The thread.</param>
    /// <param name="io">The buffers.</param>
    /// <param name="p">Sizes and positions.</param>
    /// <param name="stride">The launch extent.</param>
    public static void Rope(Index1D index, RopeIo io, RopeParams p, long stride)
    {
        int half = p.HeadDim / 2;
        int slots = p.Heads + (2 * p.KvHeads);
        for (long e = index; e < p.Pairs; e += stride)
        {
            long rest = e / half;
            int i = (int)(e - (rest * half));
            long token = rest / slots;
            int head = (int)(rest - (token * slots));
            int b = (int)(token / p.Tokens);
            int t = (int)(token - ((long)b * p.Tokens));
            long src = (rest * p.HeadDim) + (2 * i);
            float a = io.Qkv[src];
            float c = io.Qkv[src + 1];
            int position = p.Start + t;
            long cs = (((long)position * half) + i) * 2;
            float cos = io.Table[cs];
            float sin = io.Table[cs + 1];
            if (head < p.Heads)
            {
                long dst = ((((long)b * p.Heads) + head) * p.Tokens + t) * p.HeadDim + (2 * i);
                io.Q[dst] = LayerMath.RotateFirst(a, c, cos, sin);
                io.Q[dst + 1] = LayerMath.RotateSecond(a, c, cos, sin);
            }
            else if (head < p.Heads + p.KvHeads)
            {
                long dst = ((((long)b * p.KvHeads) + head - p.Heads) * p.Capacity + position) * p.HeadDim + (2 * i);
                io.KCache[dst] = LayerMath.RotateFirst(a, c, cos, sin);
                io.KCache[dst + 1] = LayerMath.RotateSecond(a, c, cos, sin);
            }
            else
            {
                long dst = ((((long)b * p.KvHeads) + head - p.Heads - p.KvHeads) * p.Capacity + position) * p.HeadDim + (2 * i);
                io.VCache[dst] = a;
                io.VCache[dst + 1] = c;
            }
        }
    }
}
