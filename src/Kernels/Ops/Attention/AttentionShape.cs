namespace Kernels;

/// <summary>
/// The shape of a fused attention call. Q is [Batch, Heads, QueryLength, HeadDim]; K and V are
/// [Batch, KvHeads, KeyLength, HeadDim]; the output is shaped like Q. All contiguous, row-major.
/// Heads must be a multiple of KvHeads (grouped-query; KvHeads = 1 is multi-query): query head h
/// reads key/value head h / (Heads / KvHeads).
/// </summary>
/// <param name="Batch">Sequences.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads.</param>
/// <param name="QueryLength">Query positions per sequence.</param>
/// <param name="KeyLength">Key positions per sequence (for decode: the cache capacity).</param>
/// <param name="HeadDim">Features per head (1..256).</param>
/// <param name="Causal">
/// Causal mask, aligned bottom-right as FlashAttention 2.1+: query i sits at position
/// i + (keyLength − QueryLength) and sees keys at positions ≤ its own.
/// </param>
public readonly record struct AttentionShape(
    int Batch, int Heads, int KvHeads, int QueryLength, int KeyLength, int HeadDim, bool Causal)
{
    /// <summary>The largest head dimension the kernels accept.</summary>
    public const int MaxHeadDim = 256;

    /// <summary>Elements of Q (and of the output).</summary>
    public long QueryElements => (long)Batch * Heads * QueryLength * HeadDim;

    /// <summary>Elements of K (and of V).</summary>
    public long KeyElements => (long)Batch * KvHeads * KeyLength * HeadDim;
}

/// <summary>Options of an attention call.</summary>
/// <param name="Scale">Factor applied to Q·Kᵀ before the softmax; null: 1/√HeadDim.</param>
/// <param name="Window">
/// Sliding window, 0 for none. With it, query position p sees key j only when p − Window &lt; j
/// (and j ≤ p when causal; j &lt; p + Window when not causal).
/// </param>
public sealed record AttentionOptions(float? Scale = null, int Window = 0)
{
    /// <summary>No window, the default scale.</summary>
    public static AttentionOptions Default { get; } = new();
}
