namespace Kernels.Decoder;

/// <summary>
/// A symmetric int8 weight matrix with one scale per output row: <c>W[r, c] = Values[r·Columns + c] · RowScales[r]</c>.
/// Rows are output features, columns input features (the layout <see cref="KernelSession.Int8GemmDequant(DeviceBuffer{sbyte}, DeviceBuffer{sbyte}, DeviceBuffer{float}, DeviceBuffer{float}, DeviceBuffer{float}?, DeviceBuffer{float}, int, int, int, GemmKernel)"/> takes as B).
/// </summary>
/// <param name="Values">Rows×Columns values in [−127, 127], row-major.</param>
/// <param name="RowScales">One scale per row; every scale is exactly representable as an IEEE half (GGUF Q8_0 stores its scales so).</param>
/// <param name="Rows">Output features.</param>
/// <param name="Columns">Input features.</param>
public sealed record Int8Weight(sbyte[] Values, float[] RowScales, int Rows, int Columns)
{
    /// <summary>Rows stacked: the fused projections (QKV, gate+up) are their parts' rows one after another.</summary>
    public static Int8Weight Stack(params Int8Weight[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        int columns = parts[0].Columns;
        if (parts.Any(p => p.Columns != columns))
            throw new ArgumentException($"parts: expected the same column count ({columns}) in every part, got {string.Join(", ", parts.Select(p => p.Columns))}.", nameof(parts));
        return new Int8Weight(
            parts.SelectMany(p => p.Values).ToArray(), parts.SelectMany(p => p.RowScales).ToArray(), parts.Sum(p => p.Rows), columns);
    }
}

/// <summary>One layer's weights, by the names GGUF gives them (<c>blk.N.attn_q.weight</c> …).</summary>
public sealed record LayerWeights(
    float[] AttnNorm, Int8Weight Q, Int8Weight K, Int8Weight V, Int8Weight O,
    float[] FfnNorm, Int8Weight Gate, Int8Weight Up, Int8Weight Down);

/// <summary>
/// Deterministic synthetic weights at a real model's shape: every value is a pure function of
/// (seed, tensor name, row), so the decoder, its float64 reference and the GGUF file written for llama.cpp
/// see the same numbers without storing them. int8 values are uniform in [−127, 127]; each row's scale is
/// <c>gain / (73·√columns) · (0.75 … 1.25)</c> rounded to half precision (73 ≈ the standard deviation of the
/// values, so a projection keeps its input's magnitude); norm weights are 1 ± 0.1.
/// </summary>
/// <param name="config">The model's shape.</param>
/// <param name="seed">Selects one model of that shape.</param>
public sealed class SyntheticWeights(LlamaConfig config, ulong seed = 1)
{
    /// <summary>The model's shape.</summary>
    public LlamaConfig Config { get; } = config ?? throw new ArgumentNullException(nameof(config));

    /// <summary>The seed.</summary>
    public ulong Seed { get; } = seed;

    /// <summary>The token embedding table <c>token_embd.weight</c> [Vocab, Hidden] (values of magnitude ≈ 1).</summary>
    public Int8Weight Embedding() => Matrix("token_embd.weight", Config.Vocab, Config.Hidden, gain: Math.Sqrt(Config.Hidden));

    /// <summary>The final norm <c>output_norm.weight</c> [Hidden].</summary>
    public float[] OutputNorm() => Norm("output_norm.weight", Config.Hidden);

    /// <summary>The output head <c>output.weight</c> [Vocab, Hidden].</summary>
    public Int8Weight Output() => Matrix("output.weight", Config.Vocab, Config.Hidden, gain: 4);

    /// <summary>Layer <paramref name="layer"/>'s weights.</summary>
    public LayerWeights Layer(int layer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, Config.Layers);
        LlamaConfig c = Config;
        string p = $"blk.{layer}.";
        return new LayerWeights(
            Norm(p + "attn_norm.weight", c.Hidden),
            Matrix(p + "attn_q.weight", c.QueryFeatures, c.Hidden),
            Matrix(p + "attn_k.weight", c.KvFeatures, c.Hidden),
            Matrix(p + "attn_v.weight", c.KvFeatures, c.Hidden),
            Matrix(p + "attn_output.weight", c.Hidden, c.QueryFeatures, gain: 0.5),
            Norm(p + "ffn_norm.weight", c.Hidden),
            Matrix(p + "ffn_gate.weight", c.FfnHidden, c.Hidden, gain: 2),
            Matrix(p + "ffn_up.weight", c.FfnHidden, c.Hidden),
            Matrix(p + "ffn_down.weight", c.Hidden, c.FfnHidden, gain: 0.5));
    }

    /// <summary>The int8 matrix named <paramref name="name"/> (rows in parallel; each row is its own random stream).</summary>
    public Int8Weight Matrix(string name, int rows, int columns, double gain = 1)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if ((long)rows * columns > Array.MaxLength)
            throw new ArgumentException($"rows·columns: expected ≤ {Array.MaxLength}, got {(long)rows * columns} for {name}.", nameof(rows));
        var values = new sbyte[(long)rows * columns];
        var scales = new float[rows];
        ulong tensor = Hash(name);
        double baseScale = gain / (73.0 * Math.Sqrt(columns));
        Parallel.For(0, rows, r =>
        {
            ulong state = Mix(tensor ^ Mix((ulong)r + 1));
            scales[r] = (float)(Half)(baseScale * (0.75 + 0.5 * Unit(ref state)));
            Span<sbyte> row = values.AsSpan(r * columns, columns);
            int c = 0;
            while (c < columns)
            {
                ulong bits = Next(ref state);
                for (int b = 0; b < 8 && c < columns; b++, c++, bits >>= 8)
                    row[c] = (sbyte)((int)((bits & 0xFF) * 255 >> 8) - 127);
            }
        });
        return new Int8Weight(values, scales, rows, columns);
    }

    /// <summary>A norm weight vector named <paramref name="name"/>: 1 ± 0.1.</summary>
    public float[] Norm(string name, int length)
    {
        ArgumentNullException.ThrowIfNull(name);
        ulong state = Hash(name);
        var w = new float[length];
        for (int i = 0; i < w.Length; i++)
            w[i] = (float)(0.9 + 0.2 * Unit(ref state));
        return w;
    }

    private ulong Hash(string name)
    {
        // FNV-1a over the name, then mixed with the seed.
        ulong h = 14695981039346656037UL;
        foreach (char ch in name)
        {
            h ^= ch;
            h *= 1099511628211UL;
        }
        return Mix(h ^ Mix(Seed));
    }

    /// <summary>SplitMix64's finalizer.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Next(ref ulong state) => Mix(state += 0x9E3779B97F4A7C15UL);

    private static double Unit(ref ulong state) => (Next(ref state) >> 11) * (1.0 / (1UL << 53));
}
