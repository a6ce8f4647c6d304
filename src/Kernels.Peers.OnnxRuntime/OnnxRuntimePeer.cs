using Microsoft.ML.OnnxRuntime;

namespace Kernels.Peers;

/// <summary>
/// ONNX Runtime (NuGet <c>Microsoft.ML.OnnxRuntime</c>, CPU execution provider, MLAS kernels) as a CPU peer:
/// whether its native library loads, and the session options every peer model here uses.
/// </summary>
public static class OnnxRuntimePeer
{
    private static readonly Lazy<(string? Version, string? Reason)> Loaded = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Whether the ONNX Runtime native library loads and runs a model; otherwise the reason.</summary>
    public static bool IsAvailable(out string reason)
    {
        reason = Loaded.Value.Reason ?? string.Empty;
        return Loaded.Value.Reason is null;
    }

    /// <summary>The loaded ONNX Runtime version (for reports), or null when it is unavailable.</summary>
    public static string? Version => Loaded.Value.Version;

    /// <summary>Throws <see cref="InvalidOperationException"/> with the reason when ONNX Runtime does not load.</summary>
    public static void Require()
    {
        if (!IsAvailable(out string reason))
            throw new InvalidOperationException($"ONNX Runtime is not available: {reason}");
    }

    /// <summary>
    /// One intra-op thread per logical processor (as the library's CPU backends use), no inter-op pool,
    /// every graph optimization (constant weights are prepacked once when the session is created).
    /// ORT's worker threads spin for a while after a call (its default): a benchmark should not time
    /// another library right after it without a pause.
    /// </summary>
    internal static SessionOptions CreateOptions(int threads)
    {
        var options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        return options;
    }

    /// <summary>A session on <paramref name="model"/> with <see cref="CreateOptions"/>; the options are disposed if it fails.</summary>
    internal static (InferenceSession Session, SessionOptions Options) Open(byte[] model, int threads)
    {
        SessionOptions options = CreateOptions(threads);
        try
        {
            return (new InferenceSession(model, options), options);
        }
        catch
        {
            options.Dispose();
            throw;
        }
    }

    private static (string?, string?) Load()
    {
        try
        {
            string version = OrtEnv.Instance().GetVersionString();
            // A 1×1 product proves that a session can be created and run, not only that the library loads.
            using var gemm = new OrtInt8Gemm([3], n: 1, k: 1, threads: 1, checkAvailability: false);
            var c = new int[1];
            gemm.Run([-2], c, m: 1);
            return c[0] == -6
                ? (version, null)
                : (version, $"ONNX Runtime {version} computed 1×1 MatMulInteger as {c[0]}, expected -6");
        }
        catch (Exception ex) when (ex is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException
            or BadImageFormatException or OnnxRuntimeException or InvalidOperationException)
        {
            Exception inner = ex is TypeInitializationException { InnerException: { } i } ? i : ex;
            return (null, $"{inner.GetType().Name}: {inner.Message}");
        }
    }
}
