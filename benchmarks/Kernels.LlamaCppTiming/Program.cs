// By-hand timing of llama.cpp on a synthetic model (not a test):
//   dotnet run -c Release --project benchmarks/Kernels.LlamaCppTiming -- [model=llama-3.2-1b] [layers=2] [prompt=128] [steps=32] [threads=ProcessorCount] [repeats=3]
// Writes the GGUF to a temp folder (deleted at the end), runs `repeats` prefill+decode runs after one warm-up run, prints each.
using System.Diagnostics;
using System.Globalization;
using Kernels.Decoder;
using Kernels.LlamaCpp;

string Arg(int i, string fallback) => args.Length > i ? args[i] : fallback;
int IntArg(int i, int fallback) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : fallback;

LlamaConfig config = LlamaConfig.Get(Arg(0, "llama-3.2-1b")).WithLayers(IntArg(1, 2));
int promptLength = IntArg(2, 128), steps = IntArg(3, 32), threads = IntArg(4, Environment.ProcessorCount), repeats = IntArg(5, 3);

DirectoryInfo dir = Directory.CreateTempSubdirectory("kernels-gguf-");
try
{
    string path = Path.Combine(dir.FullName, $"{config.Name}-{config.Layers}l.gguf");
    var write = Stopwatch.StartNew();
    LlamaGguf.Write(path, new SyntheticWeights(config), contextLength: Math.Max(4096, promptLength + steps));
    Console.WriteLine(FormattableString.Invariant($"wrote {path}: {new FileInfo(path).Length / 1e6:F1} MB in {write.Elapsed.TotalSeconds:F1} s"));

    // Prompt: deterministic token ids spread over the vocabulary.
    int[] prompt = [.. Enumerable.Range(0, promptLength).Select(i => (int)((i * 2654435761L + 12345) % config.Vocab))];
    using var peer = new LlamaCppPeer(path, threads, contextLength: promptLength + steps);
    Console.WriteLine($"native: {LlamaCppPeer.NativeLibrary}");
    Console.WriteLine($"system: {LlamaCppPeer.SystemInfo.Trim()}");
    foreach (string line in LlamaCppPeer.LogLines.Where(l => l.Contains("flash_attn", StringComparison.Ordinal) || l.Contains("n_ubatch", StringComparison.Ordinal)
        || l.Contains("llama_kv_cache", StringComparison.Ordinal) || l.Contains("repack", StringComparison.OrdinalIgnoreCase) || l.Contains("Flash Attention", StringComparison.OrdinalIgnoreCase)))
        Console.WriteLine($"llama.cpp: {line}");
    Console.WriteLine(FormattableString.Invariant($"model {config.Name} × {config.Layers} layers, {threads} threads, KV {peer.KvCacheType}, prompt {promptLength}, {steps} decode steps"));
    peer.Run(prompt, Math.Min(steps, 4)); // warm-up (page in the mapped weights, thread pool)
    var prefillRates = new List<double>();
    var decodeMs = new List<double>();
    for (int r = 0; r < repeats; r++)
    {
        LlamaCppRun run = peer.Run(prompt, steps);
        prefillRates.Add(run.PrefillTokensPerSecond);
        decodeMs.AddRange(run.DecodeSeconds.Select(s => s * 1e3));
        double[] sorted = [.. run.DecodeSeconds.Order()];
        Console.WriteLine(FormattableString.Invariant(
            $"run {r + 1}: prefill {run.PrefillSeconds * 1e3:F1} ms = {run.PrefillTokensPerSecond:F1} tok/s; decode mean {run.DecodeSecondsPerToken * 1e3:F2} ms/tok = {run.DecodeTokensPerSecond:F2} tok/s (median {sorted[sorted.Length / 2] * 1e3:F2} ms, min {sorted[0] * 1e3:F2} ms)"));
    }
    double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
    Console.WriteLine(FormattableString.Invariant(
        $"summary over {repeats} runs: prefill median {Median(prefillRates):F1} tok/s, best {prefillRates.Max():F1} tok/s; decode median {Median(decodeMs):F2} ms/tok = {1e3 / Median(decodeMs):F2} tok/s, best {decodeMs.Min():F2} ms/tok = {1e3 / decodeMs.Min():F2} tok/s"));
}
finally
{
    dir.Delete(recursive: true);
}
