namespace Kernels.Decoder;

/// <summary>
/// The shape of a Llama-style decoder-only transformer (pre-norm, RMSNorm, RoPE on adjacent pairs,
/// grouped-query attention, SwiGLU MLP, untied output head).
/// </summary>
/// <param name="Name">Preset id (for reports).</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="Hidden">Hidden size.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads (grouped-query attention: Heads is a multiple of it).</param>
/// <param name="HeadDim">Features per head (even, ≤ 256).</param>
/// <param name="FfnHidden">MLP intermediate size (gate and up projections of this size, then down).</param>
/// <param name="Vocab">Vocabulary size (embedding rows and output-head rows).</param>
/// <param name="RopeTheta">RoPE base frequency.</param>
/// <param name="NormEps">RMSNorm epsilon.</param>
/// <param name="Source">Where the shape comes from.</param>
public sealed record LlamaConfig(
    string Name, int Layers, int Hidden, int Heads, int KvHeads, int HeadDim, int FfnHidden, int Vocab,
    double RopeTheta, float NormEps, string Source)
{
    /// <summary>Llama 3.2 1B (config.json of meta-llama/Llama-3.2-1B; its llama3 RoPE frequency scaling is not applied).</summary>
    public static LlamaConfig Llama32_1B { get; } =
        new("llama-3.2-1b", 16, 2048, 32, 8, 64, 8192, 128256, 500000, 1e-5f, "meta-llama/Llama-3.2-1B config.json");

    /// <summary>Llama 3.1 8B (config.json of meta-llama/Llama-3.1-8B; its llama3 RoPE frequency scaling is not applied).</summary>
    public static LlamaConfig Llama31_8B { get; } =
        new("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256, 500000, 1e-5f, "meta-llama/Llama-3.1-8B config.json");

    /// <summary>A tiny model for tests: every code path, small enough for a float64 reference.</summary>
    public static LlamaConfig Tiny { get; } =
        new("tiny", 2, 64, 4, 2, 16, 96, 97, 10000, 1e-5f, "test shape");

    /// <summary>A small model for tests: wide enough that one activation rounding the other way moves the logits little.</summary>
    public static LlamaConfig Small { get; } =
        new("small", 2, 256, 8, 2, 32, 384, 256, 10000, 1e-5f, "test shape");

    /// <summary>The presets, by name.</summary>
    public static IReadOnlyList<LlamaConfig> Presets { get; } = [Llama32_1B, Llama31_8B, Small, Tiny];

    /// <summary>The preset named <paramref name="name"/>, or an error listing them.</summary>
    public static LlamaConfig Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Presets.FirstOrDefault(p => string.Equals(p.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"model: expected one of {string.Join(", ", Presets.Select(p => p.Name))}, got '{name}'.", nameof(name));
    }

    /// <summary>The same shape with <paramref name="layers"/> layers.</summary>
    public LlamaConfig WithLayers(int layers) =>
        layers >= 1 ? this with { Layers = layers } : throw new ArgumentOutOfRangeException(nameof(layers), layers, $"layers: expected ≥ 1, got {layers}.");

    /// <summary>Query features: Heads·HeadDim.</summary>
    public int QueryFeatures => Heads * HeadDim;

    /// <summary>Key (and value) features: KvHeads·HeadDim.</summary>
    public int KvFeatures => KvHeads * HeadDim;

    /// <summary>Rows of the fused QKV projection: (Heads + 2·KvHeads)·HeadDim.</summary>
    public int QkvFeatures => QueryFeatures + 2 * KvFeatures;

    /// <summary>int8 weights per layer (the four projections).</summary>
    public long LayerWeights => (long)QkvFeatures * Hidden + (long)Hidden * QueryFeatures + 3L * FfnHidden * Hidden;

    /// <summary>int8 multiply-adds per token in the weight GEMMs (layers and output head).</summary>
    public long MacsPerToken => LayerWeights * Layers + (long)Vocab * Hidden;

    /// <summary>Throws unless the shape is one the decoder can run.</summary>
    public void Validate()
    {
        static void Positive(int value, string name)
        {
            if (value < 1)
                throw new ArgumentException($"{name}: expected ≥ 1, got {value}.", name);
        }

        Positive(Layers, nameof(Layers));
        Positive(Hidden, nameof(Hidden));
        Positive(Heads, nameof(Heads));
        Positive(KvHeads, nameof(KvHeads));
        Positive(HeadDim, nameof(HeadDim));
        Positive(FfnHidden, nameof(FfnHidden));
        Positive(Vocab, nameof(Vocab));
        if (Heads % KvHeads != 0)
            throw new ArgumentException($"{nameof(Heads)}: expected a multiple of KvHeads = {KvHeads}, got {Heads}.", nameof(Heads));
        if (HeadDim % 2 != 0 || HeadDim > 256)
            throw new ArgumentException($"{nameof(HeadDim)}: expected an even value ≤ 256, got {HeadDim}.", nameof(HeadDim));
        if (!double.IsFinite(RopeTheta) || RopeTheta <= 1)
            throw new ArgumentException($"{nameof(RopeTheta)}: expected a finite value > 1, got {RopeTheta}.", nameof(RopeTheta));
        if (!float.IsFinite(NormEps) || NormEps <= 0)
            throw new ArgumentException($"{nameof(NormEps)}: expected a finite value > 0, got {NormEps}.", nameof(NormEps));
    }
}
