using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Kernels.Peers;

/// <summary>
/// ONNX Runtime's float32 attention: com.microsoft <c>MultiHeadAttention</c> on 3-D inputs, Q [B, S, H·D],
/// K and V [B, Sk, H·D], output [B, S, H·D] (sequence-major; the library's attention takes head-major
/// [B, H, S, D]: see <see cref="ToSequenceMajor"/> and <see cref="FromSequenceMajor"/>), scale 1/√D,
/// causal through the op's <c>unidirectional</c> attribute (which needs S = Sk here, so that its mask and
/// the library's bottom-right aligned one are the same). As many key/value heads as query heads.
/// Non-causal 3-D attention is MLAS's flash kernel; causal attention computes the full score matrix.
/// One session per shape. Not thread-safe: one call at a time.
/// </summary>
public sealed class OrtAttention : IDisposable
{
    private static readonly string[] InputNames = ["query", "key", "value"];
    private static readonly string[] OutputNames = ["output"];

    private readonly InferenceSession _session;
    private readonly SessionOptions _options;
    private readonly RunOptions _run;
    private readonly long[] _queryShape;
    private readonly long[] _keyShape;
    private bool _disposed;

    /// <summary>Builds the session for one shape.</summary>
    public OrtAttention(int batch, int heads, int seq, int kvSeq, int headDim, bool causal, int threads = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(heads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(seq, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvSeq, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        if (causal && seq != kvSeq)
            throw new ArgumentException($"causal: MultiHeadAttention's unidirectional mask matches the library's only for seq = kv seq, got {seq} and {kvSeq}.", nameof(causal));
        OnnxRuntimePeer.Require();
        (Batch, Heads, Seq, KvSeq, HeadDim, Causal) = (batch, heads, seq, kvSeq, headDim, causal);
        Threads = threads == 0 ? Environment.ProcessorCount : threads;
        _queryShape = [batch, seq, (long)heads * headDim];
        _keyShape = [batch, kvSeq, (long)heads * headDim];
        (_session, _options) = OnnxRuntimePeer.Open(OnnxModels.MultiHeadAttention(batch, heads, seq, kvSeq, headDim, causal), Threads);
        _run = new RunOptions();
    }

    /// <summary>Sequences.</summary>
    public int Batch { get; }

    /// <summary>Query (and key/value) heads.</summary>
    public int Heads { get; }

    /// <summary>Query length.</summary>
    public int Seq { get; }

    /// <summary>Key length.</summary>
    public int KvSeq { get; }

    /// <summary>Features per head.</summary>
    public int HeadDim { get; }

    /// <summary>Whether the causal (unidirectional) mask applies.</summary>
    public bool Causal { get; }

    /// <summary>ORT's intra-op threads.</summary>
    public int Threads { get; }

    /// <summary>Elements of Q and of the output.</summary>
    public long QueryElements => (long)Batch * Seq * Heads * HeadDim;

    /// <summary>Elements of K and of V.</summary>
    public long KeyElements => (long)Batch * KvSeq * Heads * HeadDim;

    /// <summary>Attention on sequence-major Q [B, S, H·D], K and V [B, Sk, H·D] into <paramref name="output"/> [B, S, H·D].</summary>
    public unsafe void Run(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Need(q.Length, QueryElements, nameof(q));
        Need(k.Length, KeyElements, nameof(k));
        Need(v.Length, KeyElements, nameof(v));
        Need(output.Length, QueryElements, nameof(output));
        fixed (float* pq = q)
        fixed (float* pk = k)
        fixed (float* pv = v)
        fixed (float* po = output)
        {
            using OrtValue query = Tensor(pq, _queryShape, QueryElements);
            using OrtValue key = Tensor(pk, _keyShape, KeyElements);
            using OrtValue value = Tensor(pv, _keyShape, KeyElements);
            using OrtValue result = Tensor(po, _queryShape, QueryElements);
            _session.Run(_run, InputNames, [query, key, value], OutputNames, [result]);
        }
    }

    /// <summary>[B, H, S, D] (the library's layout) → [B, S, H, D] (MultiHeadAttention's 3-D layout).</summary>
    public static float[] ToSequenceMajor(ReadOnlySpan<float> headMajor, int batch, int heads, int seq, int headDim)
    {
        Need(headMajor.Length, (long)batch * heads * seq * headDim, nameof(headMajor));
        var result = new float[(long)batch * heads * seq * headDim];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int s = 0; s < seq; s++)
                    headMajor.Slice((int)((((long)b * heads + h) * seq + s) * headDim), headDim)
                        .CopyTo(result.AsSpan((int)((((long)b * seq + s) * heads + h) * headDim), headDim));
        return result;
    }

    /// <summary>[B, S, H, D] → [B, H, S, D].</summary>
    public static float[] FromSequenceMajor(ReadOnlySpan<float> sequenceMajor, int batch, int heads, int seq, int headDim)
    {
        Need(sequenceMajor.Length, (long)batch * heads * seq * headDim, nameof(sequenceMajor));
        var result = new float[(long)batch * heads * seq * headDim];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int s = 0; s < seq; s++)
                    sequenceMajor.Slice((int)((((long)b * seq + s) * heads + h) * headDim), headDim)
                        .CopyTo(result.AsSpan((int)((((long)b * heads + h) * seq + s) * headDim), headDim));
        return result;
    }

    private static unsafe OrtValue Tensor(float* data, long[] shape, long elements) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, shape, (IntPtr)data, elements * sizeof(float));

    private static void Need(long length, long expected, string name)
    {
        if (length < expected)
            throw new ArgumentException($"{name}: expected at least {expected} elements, got {length}.", name);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _session.Dispose();
        _options.Dispose();
        _run.Dispose();
    }
}
