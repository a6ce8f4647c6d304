using ILGPU;
using Half = System.Half;

namespace Kernels;

/// <summary>One validated attention call, as every attention backend receives it.</summary>
/// <param name="Shape">The shape (validated).</param>
/// <param name="Scale">Factor applied to q·k (the option's, or 1/√D).</param>
/// <param name="Window">Sliding window, 0 for none (see <see cref="Kernels.DeviceCode.AttentionMask"/>).</param>
/// <param name="Splits">Key splits, ≥ 1 (1 for prefill).</param>
internal readonly record struct AttentionProblem(AttentionShape Shape, float Scale, int Window, int Splits)
{
    public static AttentionProblem Of(AttentionShape shape, AttentionOptions options, int splits) =>
        new(shape, options.Scale ?? 1f / MathF.Sqrt(shape.HeadDim), options.Window, splits);
}

/// <summary>
/// Attention on one backend. <see cref="KernelSession"/> picks its implementation once, when it is
/// created (<see cref="Backends.Simd.SimdAttentionBackend"/> on cpu-simd, <see cref="Backends.Ilgpu.IlgpuAttentionBackend"/> on
/// CUDA, OpenCL and the CPU accelerator); its attention methods only validate, build the
/// <see cref="AttentionProblem"/> and call here, with the session's lock held. Host-array calls come as
/// spans (a backend that computes in host memory uses them in place; one with device memory stages
/// them in its own scratch), device-API calls as views of session buffers. Key lengths are empty
/// (host) or not <c>ragged</c> (views) for prefill.
/// </summary>
internal interface IAttentionBackend
{
    /// <summary>Independent work units the device runs at once (sizes the automatic decode splits).</summary>
    int Parallelism { get; }

    /// <summary>float32 Q, K, V and output on host arrays.</summary>
    void Float(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> keyLengths,
        Span<float> output, in AttentionProblem problem);

    /// <summary>Half-precision storage on host arrays (float32 arithmetic, the output rounded once).</summary>
    void Half(ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, ReadOnlySpan<int> keyLengths,
        Span<Half> output, in AttentionProblem problem);

    /// <summary>Decode over an int8 KV cache with per-token scales, on host arrays.</summary>
    void Int8Kv(ReadOnlySpan<float> q, ReadOnlySpan<sbyte> k, ReadOnlySpan<float> kScale, ReadOnlySpan<sbyte> v,
        ReadOnlySpan<float> vScale, ReadOnlySpan<int> keyLengths, Span<float> output, in AttentionProblem problem);

    /// <summary>float32 on session buffers (the device API): enqueued on the session's stream.</summary>
    void Float(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyLengths, bool ragged,
        ArrayView<float> output, in AttentionProblem problem);
}
