using ILGPU;
using Kernels.DeviceCode;

namespace Kernels;

public sealed partial class KernelSession
{
    // The decoder's small ops (float32 activations, row-major). Device-buffer calls validate everything
    // first, then enqueue one backend call; buffers may be longer than needed. The host-array overloads
    // validate the same way (exact lengths) and stage through the device calls.

    // -------------------------------------------------------------------------------------- RMSNorm

    /// <summary>
    /// RMSNorm per row: <c>y = x / √(mean(x²) + eps) · weight</c>, x and y [rows, n], weight [n]. The sum of
    /// squares is accumulated in float32 (as PyTorch and the CUDA kernels of llama.cpp do): a row whose sum
    /// overflows float32 (|x| ≳ 1.8e19/√n) normalizes to zeros.
    /// </summary>
    /// <exception cref="ArgumentException">A buffer is null, disposed, of another session or too short; y is an input; rows or n &lt; 1; eps not finite and &gt; 0.</exception>
    public void RmsNorm(DeviceBuffer<float> x, DeviceBuffer<float> weight, DeviceBuffer<float> y, int rows, int n, float eps)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffers<float>(this, (x, nameof(x)), (weight, nameof(weight)), (y, nameof(y)));
            Check.NotAliased(y, nameof(y), x, nameof(x));
            Check.NotAliased(y, nameof(y), weight, nameof(weight));
            ValidateRmsNorm(x.Length, weight.Length, rows, n, eps, exact: false);
            Check.MinLength(y.Length, (Int128)rows * n, nameof(y), "rows·n");
            _layer.Rows(RmsInput(x, weight, n), FloatRows(y.View), rows, n, eps);
        }
    }

    /// <summary>
    /// RMSNorm fused with per-row int8 quantization (the rule of <see cref="Quantization"/>: scale = max|y|/127,
    /// q = clamp(round_half_even(y/scale), −127, 127), an all-zero row gives scale 0 and q 0): q [rows, n],
    /// scale [rows], ready for <see cref="Int8GemmDequant(DeviceBuffer{sbyte}, DeviceBuffer{sbyte}, DeviceBuffer{float}, DeviceBuffer{float}, DeviceBuffer{float}?, DeviceBuffer{float}, int, int, int, GemmKernel)"/> as its aScale.
    /// </summary>
    /// <exception cref="ArgumentException">As <see cref="RmsNorm(DeviceBuffer{float}, DeviceBuffer{float}, DeviceBuffer{float}, int, int, float)"/>, for q and scale.</exception>
    public void RmsNormQuantize(DeviceBuffer<float> x, DeviceBuffer<float> weight, DeviceBuffer<sbyte> q, DeviceBuffer<float> scale, int rows, int n, float eps)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffers<float>(this, (x, nameof(x)), (weight, nameof(weight)), (scale, nameof(scale)));
            Check.Buffers<sbyte>(this, (q, nameof(q)));
            Check.NotAliased(scale, nameof(scale), x, nameof(x));
            Check.NotAliased(scale, nameof(scale), weight, nameof(weight));
            ValidateRmsNorm(x.Length, weight.Length, rows, n, eps, exact: false);
            ValidateQuantized(q.Length, scale.Length, rows, n, "rows·n", exact: false);
            _layer.Rows(RmsInput(x, weight, n), QuantizedRows(q, scale), rows, n, eps);
        }
    }

    /// <summary>RMSNorm on host arrays (see the device-buffer form); returns y [rows, n].</summary>
    /// <exception cref="ArgumentException">rows or n &lt; 1, eps not finite and &gt; 0, or a length that does not match.</exception>
    public float[] RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int rows, int n, float eps)
    {
        ValidateRmsNorm(x.Length, weight.Length, rows, n, eps, exact: true);
        using DeviceBuffer<float> dx = Upload(x), dw = Upload(weight), dy = Allocate<float>(OutputLength(rows, n));
        RmsNorm(dx, dw, dy, rows, n, eps);
        return dy.ToArray();
    }

    /// <summary>RMSNorm with int8 quantization on host arrays; returns q with its per-row scales.</summary>
    /// <exception cref="ArgumentException">rows or n &lt; 1, eps not finite and &gt; 0, or a length that does not match.</exception>
    public QuantizedMatrix RmsNormQuantize(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int rows, int n, float eps)
    {
        ValidateRmsNorm(x.Length, weight.Length, rows, n, eps, exact: true);
        using DeviceBuffer<float> dx = Upload(x), dw = Upload(weight);
        return QuantizedHost(rows, n, (q, s) => RmsNormQuantize(dx, dw, q, s, rows, n, eps));
    }

    // --------------------------------------------------------------------------------- quantization

    /// <summary>
    /// Per-row int8 quantization of x (the rule of <see cref="Quantization"/>). heads = 1: x is [rows, n].
    /// heads &gt; 1: x is head-major [heads, rows, n/heads] (an attention output [1, H, T, D]) and row t of q
    /// is the heads of token t concatenated (merge and quantize in one pass). q [rows, n], scale [rows].
    /// </summary>
    /// <exception cref="ArgumentException">A buffer is null, disposed, of another session or too short; scale is x; rows, n or heads &lt; 1; n not a multiple of heads.</exception>
    public void QuantizeRows(DeviceBuffer<float> x, DeviceBuffer<sbyte> q, DeviceBuffer<float> scale, int rows, int n, int heads = 1)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffers<float>(this, (x, nameof(x)), (scale, nameof(scale)));
            Check.Buffers<sbyte>(this, (q, nameof(q)));
            Check.NotAliased(scale, nameof(scale), x, nameof(x));
            ValidateQuantizeRows(x.Length, rows, n, heads, exact: false);
            ValidateQuantized(q.Length, scale.Length, rows, n, "rows·n", exact: false);
            _layer.Rows(new HeadsInput { X = x.View, Rows = rows, HeadDim = n / heads }, QuantizedRows(q, scale), rows, n, 0f);
        }
    }

    /// <summary>Per-row int8 quantization on host arrays (see the device-buffer form).</summary>
    /// <exception cref="ArgumentException">rows, n or heads &lt; 1, n not a multiple of heads, or a length that does not match.</exception>
    public QuantizedMatrix QuantizeRows(ReadOnlySpan<float> x, int rows, int n, int heads = 1)
    {
        ValidateQuantizeRows(x.Length, rows, n, heads, exact: true);
        using DeviceBuffer<float> dx = Upload(x);
        return QuantizedHost(rows, n, (q, s) => QuantizeRows(dx, q, s, rows, n, heads));
    }

    // --------------------------------------------------------------------------------------- SwiGLU

    /// <summary>
    /// SwiGLU: gateUp [rows, 2f] holds the gate in columns 0..f−1 and up in f..2f−1;
    /// <c>y[r, j] = silu(gate)·up</c> with <c>silu(g) = g / (1 + e^−g)</c>; y [rows, f].
    /// </summary>
    /// <exception cref="ArgumentException">A buffer is null, disposed, of another session or too short; y is gateUp; rows or f &lt; 1.</exception>
    public void SwiGlu(DeviceBuffer<float> gateUp, DeviceBuffer<float> y, int rows, int f)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffers<float>(this, (gateUp, nameof(gateUp)), (y, nameof(y)));
            Check.NotAliased(y, nameof(y), gateUp, nameof(gateUp));
            ValidateSwiGlu(gateUp.Length, rows, f, exact: false);
            Check.MinLength(y.Length, (Int128)rows * f, nameof(y), "rows·f");
            _layer.Rows(new SwiGluInput { GateUp = gateUp.View, F = f }, FloatRows(y.View), rows, f, 0f);
        }
    }

    /// <summary>SwiGLU fused with per-row int8 quantization: q [rows, f], scale [rows] (the rule of <see cref="Quantization"/>).</summary>
    /// <exception cref="ArgumentException">As <see cref="SwiGlu(DeviceBuffer{float}, DeviceBuffer{float}, int, int)"/>, for q and scale.</exception>
    public void SwiGluQuantize(DeviceBuffer<float> gateUp, DeviceBuffer<sbyte> q, DeviceBuffer<float> scale, int rows, int f)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffers<float>(this, (gateUp, nameof(gateUp)), (scale, nameof(scale)));
            Check.Buffers<sbyte>(this, (q, nameof(q)));
            Check.NotAliased(scale, nameof(scale), gateUp, nameof(gateUp));
            ValidateSwiGlu(gateUp.Length, rows, f, exact: false);
            ValidateQuantized(q.Length, scale.Length, rows, f, "rows·f", exact: false);
            _layer.Rows(new SwiGluInput { GateUp = gateUp.View, F = f }, QuantizedRows(q, scale), rows, f, 0f);
        }
    }

    /// <summary>SwiGLU on host arrays; returns y [rows, f].</summary>
    /// <exception cref="ArgumentException">rows or f &lt; 1, or a length that does not match.</exception>
    public float[] SwiGlu(ReadOnlySpan<float> gateUp, int rows, int f)
    {
        ValidateSwiGlu(gateUp.Length, rows, f, exact: true);
        using DeviceBuffer<float> dg = Upload(gateUp), dy = Allocate<float>(OutputLength(rows, f));
        SwiGlu(dg, dy, rows, f);
        return dy.ToArray();
    }

    /// <summary>SwiGLU with int8 quantization on host arrays.</summary>
    /// <exception cref="ArgumentException">rows or f &lt; 1, or a length that does not match.</exception>
    public QuantizedMatrix SwiGluQuantize(ReadOnlySpan<float> gateUp, int rows, int f)
    {
        ValidateSwiGlu(gateUp.Length, rows, f, exact: true);
        using DeviceBuffer<float> dg = Upload(gateUp);
        return QuantizedHost(rows, f, (q, s) => SwiGluQuantize(dg, q, s, rows, f));
    }

    // ------------------------------------------------------------------------------------------ add

    /// <summary>Residual add in place: <c>x[i] += y[i]</c>, i &lt; count.</summary>
    /// <exception cref="ArgumentException">A buffer is null, disposed, of another session or shorter than count; y is x; count &lt; 1.</exception>
    public void Add(DeviceBuffer<float> x, DeviceBuffer<float> y, long count)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffers<float>(this, (x, nameof(x)), (y, nameof(y)));
            Check.NotAliased(x, nameof(x), y, nameof(y));
            Check.Positive(count, nameof(count));
            Check.MinLength(x.Length, count, nameof(x), "count");
            Check.MinLength(y.Length, count, nameof(y), "count");
            _layer.Add(x.View, y.View, count);
        }
    }

    /// <summary>Residual add in place on host arrays: <c>x[i] += y[i]</c> over all of x (y as long as x).</summary>
    /// <exception cref="ArgumentException">x is empty or y's length differs.</exception>
    public void Add(Span<float> x, ReadOnlySpan<float> y)
    {
        Check.Positive((long)x.Length, nameof(x) + ".Length");
        Check.ExactLength(y.Length, x.Length, nameof(y), "x.Length");
        using DeviceBuffer<float> dx = Upload<float>(x), dy = Upload(y);
        Add(dx, dy, x.Length);
        dx.CopyTo(x);
    }

    // ------------------------------------------------------------------------------------ embedding

    /// <summary>
    /// Embedding lookup from an int8 table with per-row scales: <c>y[r, :] = table[tokens[r], :] · rowScale[tokens[r]]</c>;
    /// table [vocab, n], rowScale [vocab], y [tokens.Length, n]. The ids are host values, validated (0 ≤ id &lt; vocab).
    /// </summary>
    /// <exception cref="ArgumentException">A buffer is null, disposed, of another session or too short; y is rowScale; vocab or n &lt; 1; no tokens or an id out of range.</exception>
    public void EmbedInt8(DeviceBuffer<sbyte> table, DeviceBuffer<float> rowScale, ReadOnlySpan<int> tokens, DeviceBuffer<float> y, int vocab, int n)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Check.Buffers<sbyte>(this, (table, nameof(table)));
            Check.Buffers<float>(this, (rowScale, nameof(rowScale)), (y, nameof(y)));
            Check.NotAliased(y, nameof(y), rowScale, nameof(rowScale));
            ValidateEmbed(table.Length, rowScale.Length, tokens, vocab, n, exact: false);
            Check.MinLength(y.Length, (Int128)tokens.Length * n, nameof(y), "tokens.Length·n");
            _layer.Embed(table.View, rowScale.View, tokens, y.View, n);
        }
    }

    /// <summary>Embedding lookup on host arrays; returns y [tokens.Length, n].</summary>
    /// <exception cref="ArgumentException">vocab or n &lt; 1, no tokens, an id out of range, or a length that does not match.</exception>
    public float[] EmbedInt8(ReadOnlySpan<sbyte> table, ReadOnlySpan<float> rowScale, ReadOnlySpan<int> tokens, int vocab, int n)
    {
        ValidateEmbed(table.Length, rowScale.Length, tokens, vocab, n, exact: true);
        using DeviceBuffer<sbyte> dt = Upload(table);
        using DeviceBuffer<float> ds = Upload(rowScale), dy = Allocate<float>(OutputLength(tokens.Length, n));
        EmbedInt8(dt, ds, tokens, dy, vocab, n);
        return dy.ToArray();
    }

    // ----------------------------------------------------------------------------------------- RoPE

    /// <summary>
    /// Creates the RoPE table for positions 0 .. maxPositions − 1 of heads of <paramref name="headDim"/> features
    /// with base <paramref name="theta"/> (see <see cref="RopeTable"/>).
    /// </summary>
    /// <exception cref="ArgumentException">maxPositions &lt; 1, headDim not even in 2..256, or theta not finite and &gt; 0.</exception>
    public RopeTable CreateRopeTable(int maxPositions, int headDim, double theta)
    {
        float[] values = RopeTable.Compute(maxPositions, headDim, theta);
        return new RopeTable(Upload<float>(values), maxPositions, headDim, theta);
    }

    /// <summary>
    /// Rotary position embedding fused with the KV-cache write. qkv [Batch, Tokens, (Heads + 2·KvHeads)·HeadDim]
    /// token-major (the q heads, then the k heads, then the v heads); q [Batch, Heads, Tokens, HeadDim] receives the
    /// rotated queries; kCache and vCache [Batch, KvHeads, Capacity, HeadDim] receive the rotated keys and the values at
    /// positions Start .. Start + Tokens − 1, and nothing else in them is written. Each adjacent pair (2i, 2i + 1) of a
    /// head at position p turns by p·θ^(−2i/HeadDim): <c>(a, b) → (a·cos − b·sin, a·sin + b·cos)</c> (llama.cpp's
    /// LLAMA_ROPE_TYPE_NORM, Meta's reference Llama), with cos and sin from <paramref name="ropeTable"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A buffer is null, disposed, of another session or too short; an output is an input or another output;
    /// a size &lt; 1; Heads not a multiple of KvHeads; HeadDim not the table's or not even in 2..256; Start &lt; 0; Start + Tokens beyond Capacity or the table.</exception>
    public void RopeKvCache(DeviceBuffer<float> qkv, RopeTable ropeTable, DeviceBuffer<float> q, DeviceBuffer<float> kCache, DeviceBuffer<float> vCache, RopeShape shape)
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            ArgumentNullException.ThrowIfNull(ropeTable);
            Check.Buffers<float>(this, (qkv, nameof(qkv)), (ropeTable.Buffer, nameof(ropeTable)), (q, nameof(q)), (kCache, nameof(kCache)), (vCache, nameof(vCache)));
            Check.NotAliased(q, nameof(q), qkv, nameof(qkv));
            Check.NotAliased(q, nameof(q), ropeTable.Buffer, nameof(ropeTable));
            Check.NotAliased(kCache, nameof(kCache), qkv, nameof(qkv));
            Check.NotAliased(kCache, nameof(kCache), ropeTable.Buffer, nameof(ropeTable));
            Check.NotAliased(vCache, nameof(vCache), qkv, nameof(qkv));
            Check.NotAliased(vCache, nameof(vCache), ropeTable.Buffer, nameof(ropeTable));
            Check.NotAliased(kCache, nameof(kCache), q, nameof(q));
            Check.NotAliased(vCache, nameof(vCache), q, nameof(q));
            Check.NotAliased(vCache, nameof(vCache), kCache, nameof(kCache));
            ValidateRope(shape, ropeTable, qkv.Length, q.Length, kCache.Length, vCache.Length, exact: false);
            var p = new RopeParams(shape.Batch, shape.Tokens, shape.Heads, shape.KvHeads, shape.HeadDim, shape.Capacity, shape.Start);
            _layer.Rope(new RopeIo { Qkv = qkv.View, Table = ropeTable.Buffer.View, Q = q.View, KCache = kCache.View, VCache = vCache.View }, p);
        }
    }

    /// <summary>RoPE with the KV-cache write on host arrays: returns q; the caches are updated in place (positions Start .. Start + Tokens − 1 only).</summary>
    /// <exception cref="ArgumentException">As the device-buffer form, with exact lengths.</exception>
    public float[] RopeKvCache(ReadOnlySpan<float> qkv, RopeTable ropeTable, Span<float> kCache, Span<float> vCache, RopeShape shape)
    {
        ArgumentNullException.ThrowIfNull(ropeTable);
        ValidateRope(shape, ropeTable, qkv.Length, shape.QueryElements, kCache.Length, vCache.Length, exact: true);
        using DeviceBuffer<float> dqkv = Upload(qkv), dk = Upload<float>(kCache), dv = Upload<float>(vCache);
        using DeviceBuffer<float> dq = Allocate<float>((long)Check.ArrayLength(shape.QueryElements, "Batch·Heads·Tokens·HeadDim"));
        RopeKvCache(dqkv, ropeTable, dq, dk, dv, shape);
        dk.CopyTo(kCache);
        dv.CopyTo(vCache);
        return dq.ToArray();
    }

    // ----------------------------------------------------------------------------------- validation

    private static void ValidateRmsNorm(long xLength, long weightLength, int rows, int n, float eps, bool exact)
    {
        Check.Positive(rows, nameof(rows));
        Check.Positive(n, nameof(n));
        Check.Epsilon(eps, nameof(eps));
        Check.Length(xLength, (Int128)rows * n, "x", "rows·n", exact);
        Check.Length(weightLength, n, "weight", "n", exact);
    }

    private static void ValidateQuantizeRows(long xLength, int rows, int n, int heads, bool exact)
    {
        Check.Positive(rows, nameof(rows));
        Check.Positive(n, nameof(n));
        Check.Positive(heads, nameof(heads));
        if (n % heads != 0)
            throw new ArgumentException($"heads: expected a divisor of n = {n}, got {heads}.", nameof(heads));
        Check.Length(xLength, (Int128)rows * n, "x", heads == 1 ? "rows·n" : "heads·rows·(n/heads)", exact);
    }

    private static void ValidateSwiGlu(long gateUpLength, int rows, int f, bool exact)
    {
        Check.Positive(rows, nameof(rows));
        Check.Positive(f, nameof(f));
        Check.Length(gateUpLength, (Int128)rows * 2 * f, "gateUp", "rows·2f", exact);
    }

    private static void ValidateQuantized(long qLength, long scaleLength, int rows, int n, string qFormula, bool exact)
    {
        Check.Length(qLength, (Int128)rows * n, "q", qFormula, exact);
        Check.Length(scaleLength, rows, "scale", "rows", exact);
    }

    private static void ValidateEmbed(long tableLength, long scaleLength, ReadOnlySpan<int> tokens, int vocab, int n, bool exact)
    {
        Check.Positive(vocab, nameof(vocab));
        Check.Positive(n, nameof(n));
        Check.Positive(tokens.Length, "tokens.Length");
        Check.Length(tableLength, (Int128)vocab * n, "table", "vocab·n", exact);
        Check.Length(scaleLength, vocab, "rowScale", "vocab", exact);
        for (int r = 0; r < tokens.Length; r++)
        {
            if ((uint)tokens[r] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[r], $"tokens: expected ids in 0..{vocab - 1} (vocab = {vocab}), got {tokens[r]} at index {r}.");
        }
    }

    private static void ValidateRope(RopeShape shape, RopeTable ropeTable, long qkvLength, Int128 qLength, long kLength, long vLength, bool exact)
    {
        Check.Positive(shape.Batch, "shape.Batch");
        Check.Positive(shape.Tokens, "shape.Tokens");
        Check.Positive(shape.Heads, "shape.Heads");
        Check.Positive(shape.KvHeads, "shape.KvHeads");
        Check.HeadDim(shape.HeadDim, "shape.HeadDim");
        Check.Positive(shape.Capacity, "shape.Capacity");
        Check.NonNegative(shape.Start, "shape.Start");
        if (shape.Heads % shape.KvHeads != 0)
            throw new ArgumentException($"shape: expected Heads to be a multiple of KvHeads, got Heads = {shape.Heads}, KvHeads = {shape.KvHeads}.", nameof(shape));
        if ((long)shape.Start + shape.Tokens > shape.Capacity)
            throw new ArgumentException($"shape: expected Start + Tokens ≤ Capacity = {shape.Capacity}, got {shape.Start} + {shape.Tokens} = {(long)shape.Start + shape.Tokens}.", nameof(shape));
        if (shape.HeadDim != ropeTable.HeadDim)
            throw new ArgumentException($"ropeTable: expected a table for shape.HeadDim = {shape.HeadDim}, got one for {ropeTable.HeadDim}.", nameof(ropeTable));
        if ((long)shape.Start + shape.Tokens > ropeTable.MaxPositions)
            throw new ArgumentException($"ropeTable: expected positions up to Start + Tokens − 1 = {(long)shape.Start + shape.Tokens - 1}, got a table of {ropeTable.MaxPositions} positions.", nameof(ropeTable));
        if (shape.QkvElements > long.MaxValue || shape.QueryElements > long.MaxValue || shape.CacheElements > long.MaxValue)
            throw new ArgumentException($"shape: expected element counts below 2⁶³, got qkv {shape.QkvElements}, q {shape.QueryElements}, caches {shape.CacheElements}.", nameof(shape));
        Check.Length(qkvLength, shape.QkvElements, "qkv", "Batch·Tokens·(Heads + 2·KvHeads)·HeadDim", exact);
        Check.Length((long)qLength, shape.QueryElements, "q", "Batch·Heads·Tokens·HeadDim", exact);
        Check.Length(kLength, shape.CacheElements, "kCache", "Batch·KvHeads·Capacity·HeadDim", exact);
        Check.Length(vLength, shape.CacheElements, "vCache", "Batch·KvHeads·Capacity·HeadDim", exact);
    }

    // -------------------------------------------------------------------------------------- helpers

    private static RmsNormInput RmsInput(DeviceBuffer<float> x, DeviceBuffer<float> weight, int n) =>
        new() { X = x.View, Weight = weight.View, N = n };

    /// <summary>Float rows into y (the int8 views point at a dummy and are not written).</summary>
    private RowOutput FloatRows(ArrayView<float> y) => new() { Y = y, Q = Dummy.Cast<sbyte>(), Scale = Dummy, Quantize = 0 };

    private RowOutput QuantizedRows(DeviceBuffer<sbyte> q, DeviceBuffer<float> scale) =>
        new() { Y = Dummy, Q = q.View, Scale = scale.View, Quantize = 1 };

    private static long OutputLength(int rows, int n) => Check.ArrayLength((Int128)rows * n, "rows·n");

    /// <summary>Runs a quantizing device call into fresh buffers and returns the result as a per-row <see cref="QuantizedMatrix"/>.</summary>
    private QuantizedMatrix QuantizedHost(int rows, int n, Action<DeviceBuffer<sbyte>, DeviceBuffer<float>> call)
    {
        using DeviceBuffer<sbyte> q = Allocate<sbyte>(OutputLength(rows, n));
        using DeviceBuffer<float> scale = Allocate<float>(rows);
        call(q, scale);
        return new QuantizedMatrix(q.ToArray(), scale.ToArray(), rows, n, QuantizationGranularity.PerRow);
    }
}
