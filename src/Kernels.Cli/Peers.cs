using Kernels.Decoder;
using Kernels.LlamaCpp;

namespace Kernels.Cli;

/// <summary>The peers a model run compares against.</summary>
internal static class Peers
{
    /// <summary>
    /// llama.cpp (LLamaSharp 0.30.0, CPU backend) on a GGUF file holding the same weights as Q8_0 (written to a
    /// temporary file, deleted with the peer), on as many threads as the CPU backends use; or null with the reason.
    /// </summary>
    public static IRunnableDecoder? TryLlamaCpp(SyntheticWeights weights, int contextLength, out string note)
    {
        ArgumentNullException.ThrowIfNull(weights);
        string path = Path.Combine(Path.GetTempPath(), $"kernels-{weights.Config.Name}-{weights.Config.Layers}L-{Guid.NewGuid():N}.gguf");
        try
        {
            CliProgress.Step($"writing {weights.Config.Name} as GGUF (Q8_0, same values) for llama.cpp", () =>
            {
                LlamaGguf.Write(path, weights, contextLength);
                return path;
            });
            LlamaCppPeer peer = CliProgress.Step("loading it in llama.cpp",
                () => new LlamaCppPeer(path, Environment.ProcessorCount, contextLength));
            note = $"llama.cpp via LLamaSharp 0.30.0: {LlamaCppPeer.NativeLibrary}; {peer.Threads} threads, KV cache {peer.KvCacheType}, flash attention auto; system info: {LlamaCppPeer.SystemInfo.Trim()}";
            return new LlamaCppDecoder(peer, path);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            File.Delete(path);
            note = $"llama.cpp not available: {ex.GetType().Name}: {ex.Message}";
            return null;
        }
    }

    private sealed class LlamaCppDecoder(LlamaCppPeer peer, string path) : IRunnableDecoder
    {
        public string Name => "llama.cpp";

        public void Prefill(int[] prompt) => peer.Prefill(prompt);

        public void Decode(int promptLength, int steps) => peer.DecodeFrom(steps);

        public void Dispose()
        {
            peer.Dispose();
            File.Delete(path);
        }
    }
}
