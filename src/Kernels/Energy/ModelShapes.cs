namespace Kernels.Energy;

/// <summary>A decoder-only transformer's shape: what its per-layer int8 GEMMs are.</summary>
/// <param name="Name">Preset id.</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="Hidden">Hidden size.</param>
/// <param name="Heads">Attention (query) heads.</param>
/// <param name="KvHeads">Key/value heads (grouped-query attention).</param>
/// <param name="FfnHidden">FFN intermediate size (SwiGLU: gate and up projections of this size, then down).</param>
/// <param name="Source">Where the shape comes from.</param>
/// <param name="Vocab">Vocabulary size: the output head is a [Vocab × Hidden] GEMM per generated token (0: not counted).</param>
public sealed record TransformerShape(string Name, int Layers, int Hidden, int Heads, int KvHeads, int FfnHidden, string Source, int Vocab = 0)
{
    /// <summary>Hidden ÷ heads.</summary>
    public int HeadDim => Hidden / Heads;

    /// <summary>
    /// The GEMMs of one layer for <paramref name="rows"/> token rows (n = output features, k = input features):
    /// QKV projection, attention output projection, FFN gate+up (fused), FFN down. Attention itself (QKᵀ, softmax,
    /// ·V) is not a weight GEMM: see <see cref="AttentionShapeFor"/>.
    /// </summary>
    public IReadOnlyList<LayerGemm> LayerGemms(int rows) =>
    [
        new("qkv", rows, (Heads + 2 * KvHeads) * HeadDim, Hidden),
        new("attn_out", rows, Hidden, Heads * HeadDim),
        new("ffn_gate_up", rows, 2 * FfnHidden, Hidden),
        new("ffn_down", rows, Hidden, FfnHidden),
    ];

    /// <summary>
    /// The attention of one layer: causal, float32, the model's heads and kv heads. Prefill: batch × context
    /// queries against context keys; decode: one query per sequence against a cache of context keys.
    /// </summary>
    public AttentionShape AttentionShapeFor(InferencePhase phase, int batch, int context) =>
        new(batch, Heads, KvHeads, phase == InferencePhase.Prefill ? context : 1, context, HeadDim, Causal: true);

    /// <summary>int8 multiply-adds per token across all layers (weight GEMMs only, not the output head).</summary>
    public long MacsPerToken => LayerGemms(1).Sum(g => (long)g.N * g.K) * Layers;

    /// <summary>The output head for <paramref name="sequences"/> last tokens (logits are computed for the last token of each sequence only), or null when <see cref="Vocab"/> is 0.</summary>
    public LayerGemm? OutputHead(int sequences) => Vocab > 0 ? new("output_head", sequences, Vocab, Hidden) : null;
}

/// <summary>One GEMM of a layer: C[m×n] = A[m×k]·B[n×k]ᵀ.</summary>
public sealed record LayerGemm(string Name, int M, int N, int K)
{
    /// <summary>m·n·k.</summary>
    public long Macs => (long)M * N * K;
}

/// <summary>Shapes of well-known open models (from their published config.json).</summary>
public static class ModelShapes
{
    /// <summary>The presets.</summary>
    public static IReadOnlyList<TransformerShape> All { get; } =
    [
        new("llama-3.2-1b", 16, 2048, 32, 8, 8192, "meta-llama/Llama-3.2-1B config.json", 128256),
        new("llama-3.1-8b", 32, 4096, 32, 8, 14336, "meta-llama/Llama-3.1-8B config.json", 128256),
        new("llama-3.1-70b", 80, 8192, 64, 8, 28672, "meta-llama/Llama-3.1-70B config.json", 128256),
        new("mistral-7b", 32, 4096, 32, 8, 14336, "mistralai/Mistral-7B-v0.1 config.json", 32000),
        new("qwen2.5-7b", 28, 3584, 28, 4, 18944, "Qwen/Qwen2.5-7B config.json", 152064),
        new("qwen2.5-72b", 80, 8192, 64, 8, 29568, "Qwen/Qwen2.5-72B config.json", 152064),
    ];

    /// <summary>The preset named <paramref name="model"/>, or an error listing them.</summary>
    public static TransformerShape Get(string model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return All.FirstOrDefault(s => string.Equals(s.Name, model.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"model: expected one of {string.Join(", ", All.Select(s => s.Name))}, got '{model}'.", nameof(model));
    }
}

/// <summary>Which phase of inference a model estimate covers.</summary>
public enum InferencePhase
{
    /// <summary>The prompt: batch × context token rows in one pass.</summary>
    Prefill,

    /// <summary>One generated token per sequence: batch token rows per step.</summary>
    Decode,
}

/// <summary>The energy of one GEMM of a layer: as run, and scaled to the real shape when a smaller proxy was run.</summary>
/// <param name="Gemm">The real GEMM.</param>
/// <param name="Measured">The GEMM actually run (equal to <paramref name="Gemm"/> unless scaled down).</param>
/// <param name="Measurement">The measurement of <paramref name="Measured"/>.</param>
/// <param name="Joules">Energy of one call of the real GEMM (scaled by m·n·k when a proxy was run).</param>
/// <param name="Seconds">Time of one call of the real GEMM (scaled likewise).</param>
public sealed record GemmEnergy(LayerGemm Gemm, LayerGemm Measured, EnergyMeasurement Measurement, double Joules, double Seconds)
{
    /// <summary>True when a smaller GEMM was run and its joules per multiply-add applied to the real shape.</summary>
    public bool Extrapolated => Measured != Gemm;
}

/// <summary>The energy of one layer's attention: as run, and scaled by FLOPs when a shorter context was run.</summary>
/// <param name="Shape">The real attention.</param>
/// <param name="Measured">The attention actually run (equal to <paramref name="Shape"/> unless scaled down).</param>
/// <param name="Measurement">The measurement of <paramref name="Measured"/>.</param>
/// <param name="Joules">Energy of one call of the real attention.</param>
/// <param name="Seconds">Time of one call of the real attention.</param>
public sealed record AttentionEnergy(AttentionShape Shape, AttentionShape Measured, EnergyMeasurement Measurement, double Joules, double Seconds)
{
    /// <summary>True when a shorter context was run and its joules per FLOP applied to the real shape.</summary>
    public bool Extrapolated => Measured != Shape;

    /// <summary>Multiply-adds of an attention call (QKᵀ and P·V; half of them for a causal square).</summary>
    public static double Macs(AttentionShape s) =>
        2.0 * s.Batch * s.Heads * s.QueryLength * s.KeyLength * s.HeadDim * (s.Causal && s.QueryLength == s.KeyLength ? 0.5 : 1.0);
}

/// <summary>A model-level estimate for one phase: the weight GEMMs and the attention of each layer, measured.</summary>
/// <param name="Shape">The model.</param>
/// <param name="Phase">Prefill or decode.</param>
/// <param name="Batch">Sequences.</param>
/// <param name="Context">Context length (prompt tokens per sequence).</param>
/// <param name="Gemms">Each layer GEMM's energy.</param>
/// <param name="AttentionPart">The layer's attention energy (null when it was not measured).</param>
/// <param name="HeadPart">The output head's energy for one pass (once per pass, not per layer; null when the shape has no vocabulary).</param>
public sealed record ModelPhaseEnergy(
    TransformerShape Shape, InferencePhase Phase, int Batch, int Context, IReadOnlyList<GemmEnergy> Gemms,
    AttentionEnergy? AttentionPart = null, GemmEnergy? HeadPart = null)
{
    /// <summary>Token rows of one pass (prefill: batch × context; decode: batch).</summary>
    public int Rows => Phase == InferencePhase.Prefill ? Batch * Context : Batch;

    /// <summary>Joules per token over all layers: weight GEMMs plus attention when measured.</summary>
    public double JoulesPerToken => ((Gemms.Sum(g => g.Joules) + (AttentionPart?.Joules ?? 0)) * Shape.Layers + (HeadPart?.Joules ?? 0)) / Rows;

    /// <summary>Tokens per second (kernel time only: GEMMs plus attention when measured, plus the output head).</summary>
    public double TokensPerSecond => Rows / ((Gemms.Sum(g => g.Seconds) + (AttentionPart?.Seconds ?? 0)) * Shape.Layers + (HeadPart?.Seconds ?? 0));

    /// <summary>Relative uncertainty: the largest of the parts'.</summary>
    public double RelativeUncertainty =>
        Math.Max(Math.Max(Gemms.Max(g => g.Measurement.RelativeUncertainty), AttentionPart?.Measurement.RelativeUncertainty ?? 0),
            HeadPart?.Measurement.RelativeUncertainty ?? 0);

    /// <summary>True when any part was extrapolated from a smaller problem.</summary>
    public bool Extrapolated => Gemms.Any(g => g.Extrapolated) || AttentionPart?.Extrapolated == true || HeadPart?.Extrapolated == true;

    /// <summary>What the attention part is: measured (and on which shape) or not.</summary>
    public string Attention => AttentionPart is not { } a
        ? "not measured (not included)"
        : $"measured: causal float32 attention B{a.Shape.Batch} H{a.Shape.Heads}/{a.Shape.KvHeads} Sq{a.Shape.QueryLength} Sk{a.Shape.KeyLength} D{a.Shape.HeadDim} per layer"
          + (a.Extrapolated ? $", extrapolated by FLOPs from Sq{a.Measured.QueryLength} Sk{a.Measured.KeyLength}" : "")
          + $", {a.Joules / Rows * Shape.Layers:G3} J/token of the total";
}

/// <summary>Runs a model's per-layer int8 GEMMs on a session and composes joules per token.</summary>
public static class ModelEnergy
{
    /// <summary>
    /// Measures the four GEMMs of one layer for <paramref name="phase"/> (all layers have the same shapes, so one
    /// layer × layers). A GEMM above <paramref name="maxMacsPerGemm"/> multiply-adds is replaced by a proxy with m,
    /// n and k halved (largest first) until it fits, and its joules per multiply-add are applied to the real shape:
    /// such parts are marked <see cref="GemmEnergy.Extrapolated"/>.
    /// </summary>
    public static ModelPhaseEnergy Measure(KernelSession session, EnergyMeter meter, TransformerShape shape, InferencePhase phase,
        int batch, int context, GemmKernel kernel = GemmKernel.Auto, long maxMacsPerGemm = long.MaxValue, int seed = 1234)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(meter);
        ArgumentNullException.ThrowIfNull(shape);
        Check.Positive(batch, nameof(batch));
        Check.Positive(context, nameof(context));
        if (maxMacsPerGemm < 1)
            throw new ArgumentOutOfRangeException(nameof(maxMacsPerGemm), maxMacsPerGemm, $"maxMacsPerGemm: expected ≥ 1, got {maxMacsPerGemm}.");
        long rows = phase == InferencePhase.Prefill ? (long)batch * context : batch;
        if (rows > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(context), context, $"context: batch × context must fit an int, got {batch} × {context}.");

        var random = new Random(seed);
        var parts = new List<GemmEnergy>();
        foreach (LayerGemm gemm in shape.LayerGemms((int)rows))
            parts.Add(MeasureGemm(session, meter, gemm, kernel, maxMacsPerGemm, random));
        AttentionEnergy attention = MeasureAttention(session, meter, shape, phase, batch, context, maxMacsPerGemm, random);
        GemmEnergy? head = shape.OutputHead(batch) is { } h ? MeasureGemm(session, meter, h, kernel, maxMacsPerGemm, random) : null;
        return new ModelPhaseEnergy(shape, phase, batch, context, parts, attention, head);
    }

    private static GemmEnergy MeasureGemm(KernelSession session, EnergyMeter meter, LayerGemm gemm, GemmKernel kernel, long maxMacs, Random random)
    {
        LayerGemm run = Fit(gemm, maxMacs);
        var a = new sbyte[(long)run.M * run.K];
        var b = new sbyte[(long)run.N * run.K];
        random.NextBytes((byte[])(Array)a);
        random.NextBytes((byte[])(Array)b);
        using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
        using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
        using DeviceBuffer<int> dc = session.Allocate<int>((long)run.M * run.N);
        EnergyMeasurement m = meter.Measure(() => session.Int8Gemm(da, db, dc, run.M, run.N, run.K, kernel), run.M);
        double scale = (double)gemm.Macs / run.Macs;
        return new GemmEnergy(gemm, run, m, m.Joules * scale, m.Seconds * scale);
    }

    /// <summary>
    /// Measures one layer's attention; above <paramref name="maxMacs"/> multiply-adds the context is halved (and
    /// the joules per FLOP applied to the real shape), as for the GEMMs.
    /// </summary>
    private static AttentionEnergy MeasureAttention(KernelSession session, EnergyMeter meter, TransformerShape shape,
        InferencePhase phase, int batch, int context, long maxMacs, Random random)
    {
        AttentionShape real = shape.AttentionShapeFor(phase, batch, context);
        int runContext = context;
        while (runContext > 1 && AttentionEnergy.Macs(shape.AttentionShapeFor(phase, batch, runContext)) > maxMacs)
            runContext = (runContext + 1) / 2;
        AttentionShape run = shape.AttentionShapeFor(phase, batch, runContext);
        float[] q = RandomFloats(random, run.QueryElements);
        float[] k = RandomFloats(random, run.KeyElements);
        float[] v = RandomFloats(random, run.KeyElements);
        EnergyMeasurement m = meter.Measure(() => session.Attention(q, k, v, run), (long)run.Batch * run.QueryLength);
        double scale = AttentionEnergy.Macs(real) / AttentionEnergy.Macs(run);
        return new AttentionEnergy(real, run, m, m.Joules * scale, m.Seconds * scale);
    }

    private static float[] RandomFloats(Random random, long length)
    {
        var data = new float[length];
        for (long i = 0; i < length; i++)
            data[i] = (float)(random.NextDouble() * 2 - 1);
        return data;
    }

    internal static LayerGemm Fit(LayerGemm gemm, long maxMacs)
    {
        int m = gemm.M, n = gemm.N, k = gemm.K;
        while ((long)m * n * k > maxMacs && (m > 1 || n > 1 || k > 1))
        {
            if (k >= n && k >= m && k > 1)
                k = (k + 1) / 2;
            else if (n >= m && n > 1)
                n = (n + 1) / 2;
            else
                m = (m + 1) / 2;
        }
        return gemm with { M = m, N = n, K = k };
    }
}
