using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels.Backends.Simd;

/// <summary>
/// The decoder's small ops on cpu-simd: <see cref="LayerSimd"/> on the session's buffers, which are host
/// memory (the stream is synchronized first). The row input structs are translated once per call into a
/// <see cref="RowJob"/>, as <see cref="SimdEpilogue.Of"/> translates GEMM epilogues.
/// </summary>
internal sealed unsafe class SimdLayerBackend(KernelSession session) : ILayerBackend
{
    /// <summary>The vector width the calls run at (16, 8 or 1): the widest the machine has (tests call <see cref="LayerSimd"/> at the others).</summary>
    private static int Width => LayerSimd.DetectedWidth;

    public void Rows<TInput>(TInput input, RowOutput output, int rows, int n, float eps)
        where TInput : struct, IRowInput
    {
        session.Stream.Synchronize();
        var job = new RowJob
        {
            Y = Pointer(output.Y),
            Q = (sbyte*)output.Q.LoadEffectiveAddressAsPtr(),
            Scale = Pointer(output.Scale),
            Rows = rows,
            N = n,
            Heads = 1,
            Eps = eps,
            Quantize = output.Quantize != 0,
        };
        if (typeof(TInput) == typeof(RmsNormInput))
        {
            RmsNormInput r = Unsafe.As<TInput, RmsNormInput>(ref input);
            job = job with { Kind = RowKind.RmsNorm, X = Pointer(r.X), Weight = Pointer(r.Weight) };
        }
        else if (typeof(TInput) == typeof(SwiGluInput))
        {
            job = job with { Kind = RowKind.SwiGlu, X = Pointer(Unsafe.As<TInput, SwiGluInput>(ref input).GateUp) };
        }
        else
        {
            HeadsInput h = Unsafe.As<TInput, HeadsInput>(ref input);
            job = job with { Kind = RowKind.Heads, X = Pointer(h.X), Heads = n / h.HeadDim };
        }
        LayerSimd.Rows(job, Width);
    }

    public void Add(ArrayView<float> x, ArrayView<float> y, long count)
    {
        session.Stream.Synchronize();
        LayerSimd.Add(Pointer(x), Pointer(y), count, Width);
    }

    public void Embed(ArrayView<sbyte> table, ArrayView<float> rowScale, ReadOnlySpan<int> tokens, ArrayView<float> y, int n)
    {
        session.Stream.Synchronize();
        fixed (int* ids = tokens)
            LayerSimd.Embed((sbyte*)table.LoadEffectiveAddressAsPtr(), Pointer(rowScale), ids, tokens.Length, Pointer(y), n, Width);
    }

    public void Rope(RopeIo io, RopeParams p)
    {
        session.Stream.Synchronize();
        LayerSimd.Rope(Pointer(io.Qkv), Pointer(io.Table), Pointer(io.Q), Pointer(io.KCache), Pointer(io.VCache), p, Width);
    }

    private static float* Pointer(ArrayView<float> view) => (float*)view.LoadEffectiveAddressAsPtr();
}
