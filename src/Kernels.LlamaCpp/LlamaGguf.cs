using System.Globalization;
using Kernels.Decoder;

namespace Kernels.LlamaCpp;

/// <summary>
/// Writes <see cref="SyntheticWeights"/> as a GGUF file that llama.cpp loads as <c>LLM_ARCH_LLAMA</c>: Q8_0 projections,
/// embedding and output head (exact: one fp16 scale per row), F32 norms, the llama hyper-parameters, and a synthetic
/// SentencePiece ("llama") vocabulary of <see cref="LlamaConfig.Vocab"/> tokens that exists only so the model loads
/// (token ids are fed directly).
/// </summary>
public static class LlamaGguf
{
    /// <summary>The id of the unknown token in the synthetic vocabulary.</summary>
    public const int UnknownToken = 0;

    /// <summary>The id of the beginning-of-sequence token in the synthetic vocabulary.</summary>
    public const int BosToken = 1;

    /// <summary>The id of the end-of-sequence token in the synthetic vocabulary.</summary>
    public const int EosToken = 2;

    /// <summary>llama.cpp's <c>LLAMA_FTYPE_MOSTLY_Q8_0</c>.</summary>
    public const uint FileTypeQ8_0 = 7;

    /// <summary>
    /// Writes <paramref name="weights"/> to <paramref name="path"/>, one tensor at a time.
    /// <paramref name="contextLength"/> becomes <c>llama.context_length</c> (the training context; it caps nothing
    /// without RoPE scaling).
    /// </summary>
    /// <exception cref="ArgumentException">A weight's columns (Hidden, Heads·HeadDim or FfnHidden) are not a multiple of 32, or Vocab &lt; 3.</exception>
    public static void Write(string path, SyntheticWeights weights, int contextLength = 8192)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        CreateWriter(weights, contextLength).WriteTo(path);
    }

    /// <summary>The writer <see cref="Write"/> uses, with every metadata entry and tensor declared (nothing generated yet).</summary>
    public static GgufWriter CreateWriter(SyntheticWeights weights, int contextLength = 8192)
    {
        ArgumentNullException.ThrowIfNull(weights);
        LlamaConfig c = weights.Config;
        c.Validate();
        foreach ((string what, int columns) in new[] { ("Hidden", c.Hidden), ("Heads·HeadDim", c.QueryFeatures), ("FfnHidden", c.FfnHidden) })
        {
            if (columns % GgufWriter.Q8_0BlockSize != 0)
                throw new ArgumentException(
                    $"weights: Q8_0 stores blocks of {GgufWriter.Q8_0BlockSize} along a row, so {what} must be a multiple of {GgufWriter.Q8_0BlockSize}; model {c.Name} has {columns}.",
                    nameof(weights));
        }
        if (c.Vocab < 3)
            throw new ArgumentException($"weights: the synthetic vocabulary needs ≥ 3 tokens (unk, bos, eos), model {c.Name} has {c.Vocab}.", nameof(weights));

        var g = new GgufWriter();
        const string a = "llama";
        g.AddString("general.architecture", a);
        g.AddString("general.name", $"synthetic {c.Name} seed {weights.Seed.ToString(CultureInfo.InvariantCulture)}");
        g.AddUInt32("general.file_type", FileTypeQ8_0);
        g.AddUInt32("general.quantization_version", 2);
        g.AddUInt32($"{a}.context_length", (uint)contextLength);
        g.AddUInt32($"{a}.embedding_length", (uint)c.Hidden);
        g.AddUInt32($"{a}.block_count", (uint)c.Layers);
        g.AddUInt32($"{a}.feed_forward_length", (uint)c.FfnHidden);
        g.AddUInt32($"{a}.attention.head_count", (uint)c.Heads);
        g.AddUInt32($"{a}.attention.head_count_kv", (uint)c.KvHeads);
        g.AddUInt32($"{a}.attention.key_length", (uint)c.HeadDim);
        g.AddUInt32($"{a}.attention.value_length", (uint)c.HeadDim);
        g.AddFloat32($"{a}.rope.freq_base", (float)c.RopeTheta);
        g.AddUInt32($"{a}.rope.dimension_count", (uint)c.HeadDim);
        g.AddFloat32($"{a}.attention.layer_norm_rms_epsilon", c.NormEps);
        g.AddUInt32($"{a}.vocab_size", (uint)c.Vocab);
        AddTokenizer(g, c.Vocab);

        g.AddQ8_0("token_embd.weight", c.Vocab, c.Hidden, weights.Embedding);
        // One layer's weights are generated when its first tensor is written and dropped at the next layer, so at most
        // one layer (plus one embedding-sized matrix) is in memory while the file streams out.
        var cache = new LayerCache(weights);
        for (int l = 0; l < c.Layers; l++)
        {
            int layer = l;
            string p = $"blk.{l}.";
            g.AddF32(p + "attn_norm.weight", c.Hidden, () => cache.Get(layer).AttnNorm);
            g.AddQ8_0(p + "attn_q.weight", c.QueryFeatures, c.Hidden, () => cache.Get(layer).Q);
            g.AddQ8_0(p + "attn_k.weight", c.KvFeatures, c.Hidden, () => cache.Get(layer).K);
            g.AddQ8_0(p + "attn_v.weight", c.KvFeatures, c.Hidden, () => cache.Get(layer).V);
            g.AddQ8_0(p + "attn_output.weight", c.Hidden, c.QueryFeatures, () => cache.Get(layer).O);
            g.AddF32(p + "ffn_norm.weight", c.Hidden, () => cache.Get(layer).FfnNorm);
            g.AddQ8_0(p + "ffn_gate.weight", c.FfnHidden, c.Hidden, () => cache.Get(layer).Gate);
            g.AddQ8_0(p + "ffn_up.weight", c.FfnHidden, c.Hidden, () => cache.Get(layer).Up);
            g.AddQ8_0(p + "ffn_down.weight", c.Hidden, c.FfnHidden, () => cache.Get(layer).Down);
        }
        g.AddF32("output_norm.weight", c.Hidden, weights.OutputNorm);
        g.AddQ8_0("output.weight", c.Vocab, c.Hidden, weights.Output);
        return g;
    }

    private sealed class LayerCache(SyntheticWeights weights)
    {
        private int _index = -1;
        private LayerWeights? _layer;

        public LayerWeights Get(int layer)
        {
            if (_index != layer)
            {
                _layer = null; // let the previous layer go before generating the next
                _layer = weights.Layer(layer);
                _index = layer;
            }
            return _layer!;
        }
    }

    /// <summary>
    /// A SentencePiece-type vocabulary: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, then (when there is room) the 256 byte tokens
    /// &lt;0x00&gt;…&lt;0xFF&gt; llama.cpp looks up for the newline, then <c>tok{id}</c> placeholders.
    /// </summary>
    private static void AddTokenizer(GgufWriter g, int vocab)
    {
        const int normal = 1, unknown = 2, control = 3, bytes = 6; // llama.cpp's llama_token_type
        var tokens = new string[vocab];
        var types = new int[vocab];
        var scores = new float[vocab];
        tokens[UnknownToken] = "<unk>";
        types[UnknownToken] = unknown;
        tokens[BosToken] = "<s>";
        types[BosToken] = control;
        tokens[EosToken] = "</s>";
        types[EosToken] = control;
        int next = 3;
        if (vocab >= 3 + 256)
        {
            for (int b = 0; b < 256; b++, next++)
            {
                tokens[next] = $"<0x{b:X2}>";
                types[next] = bytes;
            }
        }
        for (; next < vocab; next++)
        {
            tokens[next] = $"tok{next.ToString(CultureInfo.InvariantCulture)}";
            types[next] = normal;
            scores[next] = -next;
        }
        g.AddString("tokenizer.ggml.model", "llama");
        g.AddStringArray("tokenizer.ggml.tokens", tokens);
        g.AddFloat32Array("tokenizer.ggml.scores", scores);
        g.AddInt32Array("tokenizer.ggml.token_type", types);
        g.AddUInt32("tokenizer.ggml.bos_token_id", BosToken);
        g.AddUInt32("tokenizer.ggml.eos_token_id", EosToken);
        g.AddUInt32("tokenizer.ggml.unknown_token_id", UnknownToken);
        g.AddBool("tokenizer.ggml.add_bos_token", false);
        g.AddBool("tokenizer.ggml.add_eos_token", false);
    }
}
