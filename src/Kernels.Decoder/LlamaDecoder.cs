namespace Kernels.Decoder;

/// <summary>
/// A Llama-style decoder-only transformer on the Kernels public API, every tensor resident on the session's
/// device. Per layer (pre-norm):
/// <code>
/// x ─ RmsNormQuantize ─ int8 QKV GEMM (dequant epilogue) ─ RopeKvCache ─ AttentionDecode (GQA, causal, KV cache)
///   ─ QuantizeRows (merge heads) ─ int8 O GEMM ─ Add (residual)
///   ─ RmsNormQuantize ─ int8 gate+up GEMM ─ SwiGluQuantize ─ int8 down GEMM ─ Add (residual)
/// </code>
/// then the final RMSNorm and the int8 output head on the last token. Activations are quantized to int8 per
/// token (one scale per row), weights per output channel; the GEMMs accumulate in int32 and dequantize in their
/// epilogue. The KV cache is float32, [KvHeads, capacity, HeadDim] per layer. Batch 1.
/// </summary>
public sealed class LlamaDecoder : IDisposable
{
    private readonly KernelSession _session;
    private readonly List<DecoderLayer> _layers = [];
    private readonly DeviceBuffer<sbyte> _embedding;
    private readonly DeviceBuffer<float> _embeddingScale;
    private readonly DeviceBuffer<float> _outputNorm;
    private readonly Projection _output;
    private readonly RopeTable _rope;
    private readonly DeviceBuffer<int> _cacheLength;

    // Activations for up to MaxChunk tokens: the residual stream, int8 rows and their scales, projections' outputs.
    private readonly DeviceBuffer<float> _x, _qkv, _q, _attention, _projected, _gateUp, _last, _logits;
    private readonly DeviceBuffer<sbyte> _xq;
    private readonly DeviceBuffer<float> _xScale;

    /// <summary>Uploads <paramref name="weights"/> (one layer at a time) and allocates the KV cache and activations.</summary>
    /// <param name="session">The device to run on.</param>
    /// <param name="weights">The model.</param>
    /// <param name="contextLength">KV-cache capacity: prompt plus generated tokens.</param>
    /// <param name="maxChunk">Most tokens per forward pass; longer prompts are prefilled in chunks of this size (0: <paramref name="contextLength"/>).</param>
    public LlamaDecoder(KernelSession session, SyntheticWeights weights, int contextLength, int maxChunk = 0)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(weights);
        LlamaConfig c = weights.Config;
        c.Validate();
        if (contextLength < 1)
            throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"contextLength: expected ≥ 1, got {contextLength}.");
        if (maxChunk < 0)
            throw new ArgumentOutOfRangeException(nameof(maxChunk), maxChunk, $"maxChunk: expected ≥ 0, got {maxChunk}.");
        _session = session;
        Config = c;
        ContextLength = contextLength;
        MaxChunk = maxChunk == 0 ? contextLength : Math.Min(maxChunk, contextLength);
        try
        {
            Int8Weight embedding = weights.Embedding();
            _embedding = session.Upload<sbyte>(embedding.Values);
            _embeddingScale = session.Upload<float>(embedding.RowScales);
            _outputNorm = session.Upload<float>(weights.OutputNorm());
            _output = new Projection(session, weights.Output());
            for (int i = 0; i < c.Layers; i++)
                _layers.Add(new DecoderLayer(session, weights.Layer(i), contextLength));
            _rope = session.CreateRopeTable(contextLength, c.HeadDim, c.RopeTheta);
            _cacheLength = session.Allocate<int>(1);

            long t = MaxChunk;
            _x = session.Allocate<float>(t * c.Hidden);
            _qkv = session.Allocate<float>(t * c.QkvFeatures);
            _q = session.Allocate<float>(t * c.QueryFeatures);
            _attention = session.Allocate<float>(t * c.QueryFeatures);
            _projected = session.Allocate<float>(t * c.Hidden);
            _gateUp = session.Allocate<float>(t * 2L * c.FfnHidden);
            _xq = session.Allocate<sbyte>(t * Math.Max(c.Hidden, Math.Max(c.QueryFeatures, c.FfnHidden)));
            _xScale = session.Allocate<float>(t);
            _last = session.Allocate<float>(c.Hidden);
            _logits = session.Allocate<float>(c.Vocab);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The model's shape.</summary>
    public LlamaConfig Config { get; }

    /// <summary>KV-cache capacity in tokens.</summary>
    public int ContextLength { get; }

    /// <summary>Most tokens in one forward pass.</summary>
    public int MaxChunk { get; }

    /// <summary>Tokens in the KV cache (the position of the next token).</summary>
    public int Position { get; private set; }

    /// <summary>Forgets the sequence (the cache is overwritten from position 0 on).</summary>
    public void Reset() => Position = 0;

    /// <summary>Drops the tokens after <paramref name="position"/> (e.g. to decode again from the end of a prompt).</summary>
    public void Rewind(int position)
    {
        if (position < 0 || position > Position)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"position: expected 0..{Position} (the tokens in the cache), got {position}.");
        Position = position;
    }

    /// <summary>Runs the prompt (in chunks of <see cref="MaxChunk"/>) after the tokens already cached and returns the last token's logits.</summary>
    /// <exception cref="ArgumentException">No tokens, more than the cache has room for, or an id outside the vocabulary (checked before anything runs).</exception>
    public float[] Prefill(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty)
            throw new ArgumentException("tokens: expected at least one token, got none.", nameof(tokens));
        if (tokens.Length > ContextLength - Position)
            throw new ArgumentException($"tokens: expected at most {ContextLength - Position} (the room left in a KV cache of {ContextLength} holding {Position}), got {tokens.Length}.", nameof(tokens));
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)Config.Vocab)
                throw new ArgumentException($"tokens: expected ids in [0, {Config.Vocab}), got {tokens[i]} at index {i}.", nameof(tokens));
        }
        for (int i = 0; i < tokens.Length; i += MaxChunk)
            Forward(tokens.Slice(i, Math.Min(MaxChunk, tokens.Length - i)), logits: i + MaxChunk >= tokens.Length);
        return _logits.ToArray();
    }

    /// <summary>Runs one token and returns its logits.</summary>
    public float[] Decode(int token)
    {
        Forward([token], logits: true);
        return _logits.ToArray();
    }

    /// <summary>Greedy generation: prefill <paramref name="prompt"/>, then <paramref name="steps"/> decode steps, each fed the argmax of the previous logits.</summary>
    public int[] Generate(ReadOnlySpan<int> prompt, int steps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        var generated = new int[steps];
        float[] logits = Prefill(prompt);
        for (int i = 0; i < steps; i++)
        {
            generated[i] = ArgMax(logits);
            if (i + 1 < steps)
                logits = Decode(generated[i]);
        }
        return generated;
    }

    /// <summary>The index of the largest value (the first one on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }

    /// <summary>One forward pass over <paramref name="tokens"/> at the current position; enqueued, not waited for.</summary>
    private void Forward(ReadOnlySpan<int> tokens, bool logits)
    {
        LlamaConfig c = Config;
        int t = tokens.Length;
        if (Position > ContextLength - t)
            throw new InvalidOperationException($"The KV cache holds {ContextLength} tokens: {Position} are used and {t} more do not fit (Reset, or a longer contextLength).");
        KernelSession s = _session;
        var rope = new RopeShape(Batch: 1, Tokens: t, c.Heads, c.KvHeads, c.HeadDim, Capacity: ContextLength, Start: Position);
        var attention = new AttentionShape(1, c.Heads, c.KvHeads, QueryLength: t, KeyLength: ContextLength, c.HeadDim, Causal: true);
        _cacheLength.CopyFrom([Position + t]);

        s.EmbedInt8(_embedding, _embeddingScale, tokens, _x, c.Vocab, c.Hidden);
        foreach (DecoderLayer layer in _layers)
        {
            s.RmsNormQuantize(_x, layer.AttnNorm, _xq, _xScale, t, c.Hidden, c.NormEps);
            layer.Qkv.Apply(s, _xq, _xScale, _qkv, t);
            s.RopeKvCache(_qkv, _rope, _q, layer.KCache, layer.VCache, rope);
            s.AttentionDecode(_q, layer.KCache, layer.VCache, _cacheLength, _attention, attention);
            s.QuantizeRows(_attention, _xq, _xScale, t, c.QueryFeatures, heads: c.Heads);
            layer.O.Apply(s, _xq, _xScale, _projected, t);
            s.Add(_x, _projected, (long)t * c.Hidden);

            s.RmsNormQuantize(_x, layer.FfnNorm, _xq, _xScale, t, c.Hidden, c.NormEps);
            layer.GateUp.Apply(s, _xq, _xScale, _gateUp, t);
            s.SwiGluQuantize(_gateUp, _xq, _xScale, t, c.FfnHidden);
            layer.Down.Apply(s, _xq, _xScale, _projected, t);
            s.Add(_x, _projected, (long)t * c.Hidden);
        }
        Position += t;
        if (!logits)
            return;
        _last.CopyFrom(_x, (long)(t - 1) * c.Hidden, 0, c.Hidden);
        s.RmsNormQuantize(_last, _outputNorm, _xq, _xScale, 1, c.Hidden, c.NormEps);
        _output.Apply(s, _xq, _xScale, _logits, 1);
    }

    /// <summary>Releases every device buffer.</summary>
    public void Dispose()
    {
        foreach (IDisposable? d in new IDisposable?[] { _embedding, _embeddingScale, _outputNorm, _output, _rope, _cacheLength,
            _x, _qkv, _q, _attention, _projected, _gateUp, _last, _logits, _xq, _xScale })
            d?.Dispose();
        foreach (DecoderLayer layer in _layers)
            layer.Dispose();
        _layers.Clear();
    }

    /// <summary>An int8 weight on the device with its per-row scales: <c>y = x·Wᵀ</c> through the dequantizing GEMM.</summary>
    private sealed class Projection : IDisposable
    {
        private readonly DeviceBuffer<sbyte> _w;
        private readonly DeviceBuffer<float> _scale;
        private readonly int _out, _in;

        public Projection(KernelSession session, Int8Weight w)
        {
            _w = session.Upload<sbyte>(w.Values);
            _scale = session.Upload<float>(w.RowScales);
            _out = w.Rows;
            _in = w.Columns;
        }

        public void Apply(KernelSession s, DeviceBuffer<sbyte> xq, DeviceBuffer<float> xScale, DeviceBuffer<float> y, int tokens) =>
            s.Int8GemmDequant(xq, _w, xScale, _scale, null, y, tokens, _out, _in);

        public void Dispose()
        {
            _w.Dispose();
            _scale.Dispose();
        }
    }

    /// <summary>One layer's weights (QKV and gate+up fused by stacking rows) and its KV cache.</summary>
    private sealed class DecoderLayer : IDisposable
    {
        public DecoderLayer(KernelSession session, LayerWeights w, int capacity)
        {
            AttnNorm = session.Upload<float>(w.AttnNorm);
            FfnNorm = session.Upload<float>(w.FfnNorm);
            Qkv = new Projection(session, Int8Weight.Stack(w.Q, w.K, w.V));
            O = new Projection(session, w.O);
            GateUp = new Projection(session, Int8Weight.Stack(w.Gate, w.Up));
            Down = new Projection(session, w.Down);
            long cache = (long)w.K.Rows * capacity; // KvHeads·HeadDim·capacity
            KCache = session.Allocate<float>(cache);
            VCache = session.Allocate<float>(cache);
        }

        public DeviceBuffer<float> AttnNorm { get; }
        public DeviceBuffer<float> FfnNorm { get; }
        public Projection Qkv { get; }
        public Projection O { get; }
        public Projection GateUp { get; }
        public Projection Down { get; }
        public DeviceBuffer<float> KCache { get; }
        public DeviceBuffer<float> VCache { get; }

        public void Dispose()
        {
            foreach (IDisposable d in new IDisposable[] { AttnNorm, FfnNorm, Qkv, O, GateUp, Down, KCache, VCache })
                d.Dispose();
        }
    }
}
