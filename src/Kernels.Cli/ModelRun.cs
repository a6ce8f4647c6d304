using Kernels.Decoder;
using Kernels.Energy;

namespace Kernels.Cli;

/// <summary>A decoder whose prefill and decode can be timed the same way (ours, or a peer on the same model).</summary>
internal interface IRunnableDecoder : IDisposable
{
    /// <summary>Who runs it (for reports).</summary>
    string Name { get; }

    /// <summary>Starts a new sequence and runs the prompt (logits for its last token).</summary>
    void Prefill(int[] prompt);

    /// <summary>Goes back to the end of the prompt and generates <paramref name="steps"/> tokens greedily, one at a time.</summary>
    void Decode(int promptLength, int steps);
}

/// <summary>Ours: <see cref="LlamaDecoder"/> on a session.</summary>
internal sealed class KernelsDecoder(LlamaDecoder decoder, string backend) : IRunnableDecoder
{
    private float[] _lastPromptLogits = [];

    public string Name => $"kernels ({backend})";

    public void Prefill(int[] prompt)
    {
        decoder.Reset();
        _lastPromptLogits = decoder.Prefill(prompt);
    }

    public void Decode(int promptLength, int steps)
    {
        decoder.Rewind(promptLength);
        float[] logits = _lastPromptLogits;
        for (int i = 0; i < steps; i++)
            logits = decoder.Decode(LlamaDecoder.ArgMax(logits));
    }

    public void Dispose() => decoder.Dispose();
}

/// <summary>One phase measured end to end: medians over the blocks.</summary>
internal sealed record PhaseRun(string Who, InferencePhase Phase, int Tokens, List<EnergyMeasurement> Blocks)
{
    public EnergyMeasurement Median => Blocks.OrderBy(m => m.JoulesPerToken).ElementAt(Blocks.Count / 2);

    public double MedianTokensPerSecond => Blocks.Select(m => m.TokensPerSecond).Order().ElementAt(Blocks.Count / 2);
}

/// <summary>
/// <c>kernels cost --model NAME --run</c>: the reference decoder end to end (prefill of the context, then
/// greedy decode steps), its energy windows, the per-op estimate of the same shape, and a peer on the same
/// weights, alternating in blocks.
/// </summary>
internal static class ModelRun
{
    public static List<PhaseRun> Measure(EnergyMeter meter, IReadOnlyList<IRunnableDecoder> decoders, int[] prompt, int decodeSteps, int blocks)
    {
        var runs = new List<PhaseRun>();
        foreach (IRunnableDecoder d in decoders)
        {
            runs.Add(new PhaseRun(d.Name, InferencePhase.Prefill, prompt.Length, []));
            runs.Add(new PhaseRun(d.Name, InferencePhase.Decode, decodeSteps, []));
        }
        for (int block = 0; block < blocks; block++)
        {
            foreach (IRunnableDecoder d in decoders)
            {
                PhaseRun prefill = runs.First(r => r.Who == d.Name && r.Phase == InferencePhase.Prefill);
                PhaseRun decode = runs.First(r => r.Who == d.Name && r.Phase == InferencePhase.Decode);
                prefill.Blocks.Add(CliProgress.Step($"block {block + 1}/{blocks}: {d.Name} prefill of {prompt.Length} tokens",
                    () => meter.Measure(() => d.Prefill(prompt), prompt.Length)));
                decode.Blocks.Add(CliProgress.Step($"block {block + 1}/{blocks}: {d.Name} {decodeSteps} decode steps",
                    () => meter.Measure(() => d.Decode(prompt.Length, decodeSteps), decodeSteps)));
                // Let the other side's threads go idle before it runs (as the GEMM bench does).
                Thread.Sleep(Alternation.Pause);
            }
        }
        return runs;
    }

    /// <summary>Runs <paramref name="spec"/>: ours and the peer end to end, then the per-op estimate; one variant per (who, phase).</summary>
    public static List<CostCommand.Variant> Variants(KernelSession session, EnergyMeter meter, RunSpec spec)
    {
        LlamaConfig c = spec.Model;
        string backend = session.Backend.ToName();
        var weights = new SyntheticWeights(c);
        int[] prompt = Prompt(spec.Context, c.Vocab, seed: 1234);
        var decoders = new List<IRunnableDecoder>();
        string? peerNote = null;
        try
        {
            LlamaDecoder ours = CliProgress.Step($"uploading {c.Name} ({c.Layers} layers, synthetic int8 weights) to {backend}",
                () => new LlamaDecoder(session, weights, spec.Context + spec.DecodeSteps));
            decoders.Add(new KernelsDecoder(ours, backend));
            if (spec.Peer)
            {
                IRunnableDecoder? peer = Peers.TryLlamaCpp(weights, spec.Context + spec.DecodeSteps, out peerNote);
                if (peer is not null)
                    decoders.Add(peer);
            }
            List<PhaseRun> runs = Measure(meter, decoders, prompt, spec.DecodeSteps, spec.Blocks);

            var variants = new List<CostCommand.Variant>();
            string label = $"{c.Name} ×{c.Layers}L ctx{spec.Context}";
            foreach (PhaseRun r in runs)
            {
                EnergyMeasurement e = r.Median;
                string phase = r.Phase.ToString().ToLowerInvariant();
                variants.Add(new CostCommand.Variant($"{label} {phase} end-to-end {r.Who}", backend, session.DeviceName,
                    e.JoulesPerToken, e.RelativeUncertainty, r.MedianTokensPerSecond, EnergySource.NameOf(e.Source), e.Boundary.ToString(),
                    $"{e.SourceDescription}; median of {r.Blocks.Count} blocks, {string.Join(" ", r.Blocks.Select(b => $"{b.TokensPerSecond:G3}"))} tokens/s"
                        + (r.Who.StartsWith("kernels", StringComparison.Ordinal) || peerNote is null ? "" : $"; {peerNote}"),
                    CostCommand.FlagNames(r.Blocks.Aggregate(EnergyIssues.None, (acc, b) => acc | b.Flags)), phase,
                    Shape: $"{c.Name} layers={c.Layers} hidden={c.Hidden} heads={c.Heads}/{c.KvHeads} ffn={c.FfnHidden} vocab={c.Vocab} prompt={spec.Context} decode_steps={spec.DecodeSteps}"));
            }
            foreach (InferencePhase phase in new[] { InferencePhase.Prefill, InferencePhase.Decode })
            {
                string name = phase.ToString().ToLowerInvariant();
                ModelPhaseEnergy e = CliProgress.Step($"per-op estimate of {c.Name} {name}",
                    () => ModelEnergy.Measure(session, meter, ShapeOf(c), phase, 1, spec.Context, GemmKernel.Auto, spec.MaxMacs));
                EnergyMeasurement first = e.Gemms[0].Measurement;
                variants.Add(new CostCommand.Variant($"{label} {name} per-op estimate", backend, session.DeviceName,
                    e.JoulesPerToken, e.RelativeUncertainty, e.TokensPerSecond, EnergySource.NameOf(first.Source), first.Boundary.ToString(),
                    $"{first.SourceDescription}; the int8 weight GEMMs, attention and the output head timed alone and added (no norms, RoPE, SwiGLU, quantization, residuals, embedding, logits copy)"
                        + (e.Extrapolated ? "; parts extrapolated from smaller proxies" : ""),
                    CostCommand.FlagNames(e.Gemms.Aggregate(EnergyIssues.None, (acc, g) => acc | g.Measurement.Flags)), name, e.Attention, e.Extrapolated));
            }
            if (spec.Peer && peerNote is not null && decoders.Count == 1)
                Console.Error.WriteLine($"peer: {peerNote}");
            return variants;
        }
        finally
        {
            foreach (IRunnableDecoder d in decoders)
                d.Dispose();
        }
    }

    /// <summary>
    /// The comparisons a run is for: ours end to end against the peer (tokens/s and J/token, peer ÷ ours for
    /// time, ours ÷ peer for speed), and end to end against the per-op estimate (J/token, measured ÷ estimated).
    /// </summary>
    public static List<string> Summary(IReadOnlyList<CostCommand.Variant> variants)
    {
        var lines = new List<string>();
        foreach (string phase in new[] { "prefill", "decode" })
        {
            CostCommand.Variant? ours = variants.FirstOrDefault(v => v.Phase == phase && v.Name.Contains("end-to-end kernels", StringComparison.Ordinal));
            CostCommand.Variant? peer = variants.FirstOrDefault(v => v.Phase == phase && v.Name.Contains("end-to-end", StringComparison.Ordinal) && v != ours);
            CostCommand.Variant? perOp = variants.FirstOrDefault(v => v.Phase == phase && v.Name.EndsWith("per-op estimate", StringComparison.Ordinal));
            if (ours is null)
                continue;
            if (peer is not null)
            {
                lines.Add($"{phase}: {ours.TokensPerSecond:G4} tokens/s vs {peer.TokensPerSecond:G4} for {peer.Name[(peer.Name.IndexOf("end-to-end ", StringComparison.Ordinal) + 11)..]}: "
                    + $"{ours.TokensPerSecond / peer.TokensPerSecond:0.00}× its speed; J/token {ours.JoulesPerToken:G3} vs {peer.JoulesPerToken:G3} ({ours.JoulesPerToken / peer.JoulesPerToken:0.00}×)");
            }
            if (perOp is not null)
            {
                lines.Add($"{phase}: measured end to end {ours.JoulesPerToken:G3} J/token vs per-op estimate {perOp.JoulesPerToken:G3} "
                    + $"(measured ÷ estimate = {ours.JoulesPerToken / perOp.JoulesPerToken:0.00}); {ours.TokensPerSecond:G4} vs {perOp.TokensPerSecond:G4} tokens/s");
            }
        }
        return lines;
    }

    /// <summary>A deterministic prompt of token ids (no tokenizer: the ids are the input).</summary>
    public static int[] Prompt(int length, int vocab, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => random.Next(vocab)).ToArray();
    }

    /// <summary>The per-op estimate's view of a decoder config.</summary>
    public static TransformerShape ShapeOf(LlamaConfig c) =>
        new(c.Name, c.Layers, c.Hidden, c.Heads, c.KvHeads, c.FfnHidden, c.Source, c.Vocab);
}

/// <summary>What <c>cost --model NAME --run</c> runs, validated before anything does.</summary>
internal sealed record RunSpec
{
    public RunSpec(LlamaConfig model, int? layers, int context, int decodeSteps, int blocks, string peer, long maxMacs)
    {
        if (layers is < 1)
            throw CostCommand.Bad("--layers", $"--layers: expected ≥ 1, got {layers}.");
        if (context < 1)
            throw CostCommand.Bad("--context", $"--context: expected ≥ 1, got {context}.");
        if (decodeSteps < 1)
            throw CostCommand.Bad("--decode-steps", $"--decode-steps: expected ≥ 1, got {decodeSteps}.");
        if ((long)context + decodeSteps > 1 << 20)
            throw CostCommand.Bad("--context", $"--context + --decode-steps: expected ≤ {1 << 20} tokens, got {(long)context + decodeSteps}.");
        if (blocks < 1)
            throw CostCommand.Bad("--blocks", $"--blocks: expected ≥ 1, got {blocks}.");
        string p = peer.Trim().ToLowerInvariant();
        if (p is not ("llama.cpp" or "llamacpp" or "none"))
            throw CostCommand.Bad("--peer", $"--peer: expected llama.cpp or none, got '{peer}'.");
        Model = layers is int l ? model.WithLayers(l) : model;
        Context = context;
        DecodeSteps = decodeSteps;
        Blocks = blocks;
        Peer = p != "none";
        MaxMacs = maxMacs;
    }

    public LlamaConfig Model { get; }
    public int Context { get; }
    public int DecodeSteps { get; }
    public int Blocks { get; }
    public bool Peer { get; }
    public long MaxMacs { get; }
}
