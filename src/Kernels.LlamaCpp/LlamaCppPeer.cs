using System.Diagnostics;
using System.Runtime.InteropServices;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Kernels.LlamaCpp;

/// <summary>One prefill and decode run of <see cref="LlamaCppPeer"/>.</summary>
/// <param name="PrefillTokens">Tokens in the prefill batch.</param>
/// <param name="PrefillSeconds">Wall time of the prefill: one <c>llama_decode</c> of the whole prompt (logits for the last token only), synchronized, logits copied.</param>
/// <param name="PrefillLogits">The last prompt token's logits (Vocab values).</param>
/// <param name="DecodeSeconds">Wall time of each decode step: one <c>llama_decode</c> of one token, synchronized, logits copied.</param>
/// <param name="DecodeTokens">The tokens fed to the decode steps, in order: the given ones, or the argmax of the previous logits.</param>
/// <param name="LastLogits">The logits after the last step (the prefill's when there are no decode steps).</param>
public sealed record LlamaCppRun(
    int PrefillTokens, double PrefillSeconds, float[] PrefillLogits,
    double[] DecodeSeconds, int[] DecodeTokens, float[] LastLogits)
{
    /// <summary>Prefill throughput: prompt tokens per second.</summary>
    public double PrefillTokensPerSecond => PrefillTokens / PrefillSeconds;

    /// <summary>Mean decode time per token in seconds (NaN without decode steps).</summary>
    public double DecodeSecondsPerToken => DecodeSeconds.Length == 0 ? double.NaN : DecodeSeconds.Average();

    /// <summary>Decode throughput: tokens per second over all steps (NaN without decode steps).</summary>
    public double DecodeTokensPerSecond => DecodeSeconds.Length == 0 ? double.NaN : DecodeSeconds.Length / DecodeSeconds.Sum();
}

/// <summary>
/// llama.cpp (through LLamaSharp's low-level API: <see cref="LLamaWeights"/>, <see cref="LLamaContext"/>,
/// <see cref="LLamaBatch"/>, <c>Decode</c>, <c>GetLogitsIth</c>) running a GGUF written by <see cref="LlamaGguf"/>, for
/// speed and accuracy comparisons with Kernels.Decoder. One sequence; the KV cache is cleared at the start of every
/// <see cref="Run"/>, so runs can be repeated and interleaved with other work.
/// </summary>
public sealed class LlamaCppPeer : IDisposable
{
    private static readonly object Gate = new();
    private static readonly List<string> Log = [];
    private static bool _configured;

    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly LLamaBatch _batch = new();
    private bool _disposed;
    private float[]? _promptLogits;
    private int _promptLength;

    /// <summary>
    /// Loads <paramref name="modelPath"/> (memory-mapped) and creates a context of <paramref name="contextLength"/>
    /// tokens whose batch holds a whole context, running on <paramref name="threads"/> threads for both prefill and decode.
    /// </summary>
    /// <param name="modelPath">A GGUF file.</param>
    /// <param name="threads">CPU threads (prefill and decode).</param>
    /// <param name="contextLength">KV cache length in tokens (prompt + decode steps must fit).</param>
    /// <param name="kvCacheType">The K and V cache type: <see cref="GGMLType.GGML_TYPE_F32"/> (the default) or <see cref="GGMLType.GGML_TYPE_F16"/> (llama.cpp's own default).</param>
    /// <param name="flashAttention">Whether llama.cpp uses its fused attention; null leaves llama.cpp's default (auto).</param>
    public LlamaCppPeer(string modelPath, int threads, int contextLength,
        GGMLType kvCacheType = GGMLType.GGML_TYPE_F32, bool? flashAttention = null)
    {
        ArgumentNullException.ThrowIfNull(modelPath);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 1);
        if (!File.Exists(modelPath))
            throw new FileNotFoundException($"modelPath: no file {modelPath}.", modelPath);
        EnsureNativeLibrary();
        var p = new ModelParams(modelPath)
        {
            ContextSize = (uint)contextLength,
            BatchSize = (uint)contextLength,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
            TypeK = kvCacheType,
            TypeV = kvCacheType,
            FlashAttention = flashAttention,
            LoadMode = LLamaLoadMode.MemoryMap,
        };
        Threads = threads;
        ContextLength = contextLength;
        KvCacheType = kvCacheType;
        _weights = LLamaWeights.LoadFromFile(p);
        try
        {
            _context = _weights.CreateContext(p);
        }
        catch
        {
            _weights.Dispose();
            throw;
        }
        Vocab = _context.Vocab.Count;
    }

    /// <summary>Threads used for prefill and decode.</summary>
    public int Threads { get; }

    /// <summary>The context (KV cache) length in tokens.</summary>
    public int ContextLength { get; }

    /// <summary>The KV cache element type.</summary>
    public GGMLType KvCacheType { get; }

    /// <summary>The model's vocabulary size (logits per token).</summary>
    public int Vocab { get; }

    /// <summary>
    /// Which native llama.cpp LLamaSharp loaded: the library's path (its folder names the CPU variant, e.g.
    /// <c>runtimes/linux-x64/native/avx512/libllama.so</c>) and LLamaSharp's description of it.
    /// </summary>
    public static string NativeLibrary
    {
        get
        {
            EnsureNativeLibrary();
            lock (Gate)
            {
                string? path = Log.LastOrDefault(l => l.Contains("Successfully loaded", StringComparison.Ordinal) && l.Contains("libllama", StringComparison.Ordinal));
                string? metadata = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama)?.Metadata?.ToString();
                return $"{path?.Trim() ?? "(path not logged)"}; {metadata ?? "(no metadata)"}";
            }
        }
    }

    /// <summary>llama.cpp's <c>llama_print_system_info()</c>: the CPU features its build uses (AVX512, AVX512_VNNI …).</summary>
    public static string SystemInfo
    {
        get
        {
            EnsureNativeLibrary();
            return Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info()) ?? "";
        }
    }

    /// <summary>The log lines llama.cpp and LLamaSharp's loader produced so far (most recent last, at most 2000).</summary>
    public static IReadOnlyList<string> LogLines
    {
        get
        {
            lock (Gate)
                return [.. Log];
        }
    }

    /// <summary>
    /// Clears the KV cache, runs <paramref name="prompt"/> as one batch (logits for its last token only), then
    /// <paramref name="decodeSteps"/> single-token steps, each fed <paramref name="forcedTokens"/>[i] when given, else the
    /// argmax of the previous logits (greedy).
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty, a token is outside the vocabulary, or the run does not fit the context.</exception>
    public LlamaCppRun Run(IReadOnlyList<int> prompt, int decodeSteps, IReadOnlyList<int>? forcedTokens = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentOutOfRangeException.ThrowIfNegative(decodeSteps);
        if (prompt.Count == 0)
            throw new ArgumentException("prompt: expected at least one token.", nameof(prompt));
        if (prompt.Count + decodeSteps > ContextLength)
            throw new ArgumentException($"prompt + decodeSteps: expected ≤ the context length {ContextLength}, got {prompt.Count} + {decodeSteps}.", nameof(decodeSteps));
        if (forcedTokens is not null && forcedTokens.Count < decodeSteps)
            throw new ArgumentException($"forcedTokens: expected ≥ {decodeSteps} tokens, got {forcedTokens.Count}.", nameof(forcedTokens));
        CheckTokens(prompt, nameof(prompt));
        if (forcedTokens is not null)
            CheckTokens(forcedTokens.Take(decodeSteps).ToList(), nameof(forcedTokens));

        long t0 = Stopwatch.GetTimestamp();
        float[] prefillLogits = PrefillChecked(prompt);
        double prefillSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        var decodeSeconds = new double[decodeSteps];
        var tokens = new int[decodeSteps];
        float[] logits = prefillLogits;
        for (int s = 0; s < decodeSteps; s++)
        {
            tokens[s] = forcedTokens?[s] ?? ArgMax(logits);
            long t = Stopwatch.GetTimestamp();
            logits = Step(tokens[s], prompt.Count + s);
            decodeSeconds[s] = Stopwatch.GetElapsedTime(t).TotalSeconds;
        }
        return new LlamaCppRun(prompt.Count, prefillSeconds, prefillLogits, decodeSeconds, tokens, logits);
    }

    /// <summary>Clears the KV cache and runs <paramref name="prompt"/> as one batch; returns its last token's logits (kept for <see cref="DecodeFrom"/>).</summary>
    /// <exception cref="ArgumentException">The prompt is empty, longer than the context, or holds a token outside the vocabulary.</exception>
    public float[] Prefill(IReadOnlyList<int> prompt)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0 || prompt.Count > ContextLength)
            throw new ArgumentException($"prompt: expected 1..{ContextLength} tokens, got {prompt.Count}.", nameof(prompt));
        CheckTokens(prompt, nameof(prompt));
        return PrefillChecked(prompt);
    }

    /// <summary>
    /// Drops the cache after the prompt of the last <see cref="Prefill"/> and decodes <paramref name="steps"/> tokens
    /// greedily from its logits (as an engine re-generating from the same prompt does); returns the tokens.
    /// </summary>
    /// <exception cref="InvalidOperationException">No prefill ran yet.</exception>
    /// <exception cref="ArgumentException">The steps do not fit the context.</exception>
    public int[] DecodeFrom(int steps)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        if (_promptLogits is null)
            throw new InvalidOperationException("DecodeFrom: expected a Prefill first, got none.");
        if (_promptLength + steps > ContextLength)
            throw new ArgumentException($"steps: expected ≤ {ContextLength - _promptLength} (the context after the prompt), got {steps}.", nameof(steps));
        _context.NativeHandle.MemorySequenceRemove(LLamaSeqId.Zero, (LLamaPos)_promptLength, (LLamaPos)(-1));
        var tokens = new int[steps];
        float[] logits = _promptLogits;
        for (int s = 0; s < steps; s++)
        {
            tokens[s] = ArgMax(logits);
            logits = Step(tokens[s], _promptLength + s);
        }
        return tokens;
    }

    private float[] PrefillChecked(IReadOnlyList<int> prompt)
    {
        SafeLLamaContextHandle ctx = _context.NativeHandle;
        ctx.MemoryClear(true);
        _batch.Clear();
        for (int i = 0; i < prompt.Count; i++)
            _batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Count - 1);
        Decode(ctx);
        _promptLogits = ctx.GetLogitsIth(_batch.TokenCount - 1).ToArray();
        _promptLength = prompt.Count;
        return _promptLogits;
    }

    /// <summary>One single-token step at <paramref name="position"/>: decoded, synchronized, logits copied.</summary>
    private float[] Step(int token, int position)
    {
        SafeLLamaContextHandle ctx = _context.NativeHandle;
        _batch.Clear();
        _batch.Add(token, position, LLamaSeqId.Zero, true);
        Decode(ctx);
        return ctx.GetLogitsIth(0).ToArray();
    }

    /// <summary>The index of the largest value (the first on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty)
            throw new ArgumentException("values: expected at least one value.", nameof(values));
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }

    /// <summary>Frees the context and the model.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _context.Dispose();
        _weights.Dispose();
    }

    private void Decode(SafeLLamaContextHandle ctx)
    {
        DecodeResult r = ctx.Decode(_batch);
        if (r != DecodeResult.Ok)
            throw new InvalidOperationException($"llama_decode of {_batch.TokenCount} tokens returned {r}.");
        ctx.Synchronize();
    }

    private void CheckTokens(IReadOnlyList<int> tokens, string name)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            if ((uint)tokens[i] >= (uint)Vocab)
                throw new ArgumentException($"{name}[{i}]: expected a token id in [0, {Vocab}), got {tokens[i]}.", name);
        }
    }

    /// <summary>Configures LLamaSharp's loader once (log capture; CUDA and Vulkan off) and loads the native library.</summary>
    private static void EnsureNativeLibrary()
    {
        lock (Gate)
        {
            if (_configured)
                return;
            NativeLibraryConfig.All
                .WithCuda(false)
                .WithVulkan(false)
                .WithLogCallback((level, message) =>
                {
                    lock (Gate)
                    {
                        if (Log.Count >= 2000)
                            Log.RemoveAt(0);
                        Log.Add($"[{level}] {message.TrimEnd()}");
                    }
                });
            NativeApi.llama_empty_call(); // loads the library now, so a failure surfaces here with its reason
            _configured = true;
        }
    }
}
