namespace Kernels.Energy;

/// <summary>A decoder-only transformer's shape: what its per-layer int8 GEMMs are.</summary>
/// <param name="Name">Preset id.</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="Hidden">Hidden size.</param>
/// <param name="Heads">Attention (query) heads.</param>
/// <param name="KvHeads">Key/value heads (grouped-query attention).</param>
/// <param name="FfnHidden">FFN intermediate size (SwiGLU: gate and up projections of this size, then down).</param>
/// <param name="Source">Where the shape comes from.</param>
public sealed record TransformerShape(string Name, int Layers, int Hidden, int Heads, int KvHeads, int FfnHidden, string Source)
{
    /// <summary>Hidden ÷ heads.</summary>
    public int HeadDim => Hidden / Heads;

    /// <summary>
    /// The GEMMs of one layer for <paramref name="rows"/> token rows (n = output features, k = input features):
    /// QKV projection, attention output projection, FFN gate+up (fused), FFN down. Attention itself (QKᵀ, softmax,
    /// ·V) is not a weight GEMM and is not included: the library has no attention kernel yet.
    /// </summary>
    public IReadOnlyList<LayerGemm> LayerGemms(int rows) =>
    [
        new("qkv", rows, (Heads + 2 * KvHeads) * HeadDim, Hidden),
        new("attn_out", rows, Hidden, Heads * HeadDim),
        new("ffn_gate_up", rows, 2 * FfnHidden, Hidden),
        new("ffn_down", rows, Hidden, FfnHidden),
    ];

    /// <summary>int8 multiply-adds per token across all layers (weight GEMMs only).</summary>
    public long MacsPerToken => LayerGemms(1).Sum(g => (long)g.N * g.K) * Layers;
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
        new("llama-3.1-8b", 32, 4096, 32, 8, 14336, "meta-llama/Llama-3.1-8B config.json"),
        new("llama-3.1-70b", 80, 8192, 64, 8, 28672, "meta-llama/Llama-3.1-70B config.json"),
        new("mistral-7b", 32, 4096, 32, 8, 14336, "mistralai/Mistral-7B-v0.1 config.json"),
        new("qwen2.5-7b", 28, 3584, 28, 4, 18944, "Qwen/Qwen2.5-7B config.json"),
        new("qwen2.5-72b", 80, 8192, 64, 8, 29568, "Qwen/Qwen2.5-72B config.json"),
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

/// <summary>A model-level estimate for one phase: weight GEMMs measured, attention explicitly not measured.</summary>
/// <param name="Shape">The model.</param>
/// <param name="Phase">Prefill or decode.</param>
/// <param name="Batch">Sequences.</param>
/// <param name="Context">Context length (prompt tokens per sequence).</param>
/// <param name="Gemms">Each layer GEMM's energy.</param>
public sealed record ModelPhaseEnergy(TransformerShape Shape, InferencePhase Phase, int Batch, int Context, IReadOnlyList<GemmEnergy> Gemms)
{
    /// <summary>Token rows of one pass (prefill: batch × context; decode: batch).</summary>
    public int Rows => Phase == InferencePhase.Prefill ? Batch * Context : Batch;

    /// <summary>Weight-GEMM joules per token over all layers.</summary>
    public double JoulesPerToken => Gemms.Sum(g => g.Joules) * Shape.Layers / Rows;

    /// <summary>Weight-GEMM tokens per second (GEMM time only).</summary>
    public double TokensPerSecond => Rows / (Gemms.Sum(g => g.Seconds) * Shape.Layers);

    /// <summary>Relative uncertainty: the largest of the parts'.</summary>
    public double RelativeUncertainty => Gemms.Max(g => g.Measurement.RelativeUncertainty);

    /// <summary>True when any part was extrapolated from a smaller GEMM.</summary>
    public bool Extrapolated => Gemms.Any(g => g.Extrapolated);

    /// <summary>Always "not measured": the library has no attention kernel, so its energy is not included, nor invented.</summary>
    public static string Attention => "not measured (no attention kernel in the library yet; not included)";
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
        {
            LayerGemm run = Fit(gemm, maxMacsPerGemm);
            var a = new sbyte[(long)run.M * run.K];
            var b = new sbyte[(long)run.N * run.K];
            random.NextBytes((byte[])(Array)a);
            random.NextBytes((byte[])(Array)b);
            using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
            using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
            using DeviceBuffer<int> dc = session.Allocate<int>((long)run.M * run.N);
            EnergyMeasurement m = meter.Measure(() => session.Int8Gemm(da, db, dc, run.M, run.N, run.K, kernel), run.M);
            double scale = (double)gemm.Macs / run.Macs;
            parts.Add(new GemmEnergy(gemm, run, m, m.Joules * scale, m.Seconds * scale));
        }
        return new ModelPhaseEnergy(shape, phase, batch, context, parts);
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
