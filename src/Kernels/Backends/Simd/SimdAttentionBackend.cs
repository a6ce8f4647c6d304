using System.Buffers;
using ILGPU;
using ILGPU.Runtime;
using Half = System.Half;

namespace Kernels.Backends.Simd;

/// <summary>
/// Attention on cpu-simd: <see cref="AttentionSimd"/> and <see cref="AttentionInt8KvSimd"/> on host memory.
/// Host arrays are used in place (no staging); session buffers are host memory already. Half storage
/// is converted to float (pooled buffers), run by the float kernel, and rounded back once.
/// </summary>
internal sealed unsafe class SimdAttentionBackend(KernelSession session) : IAttentionBackend
{
    public int Parallelism => Environment.ProcessorCount;

    public void Float(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> keyLengths,
        Span<float> output, in AttentionProblem problem)
    {
        session.Stream.Synchronize();
        fixed (float* qp = q, kp = k, vp = v, op = output)
        fixed (int* lp = keyLengths)
        {
            AttentionSimd.Forward(qp, kp, vp, op, keyLengths.IsEmpty ? null : lp, problem.Shape, problem.Scale, problem.Window, problem.Splits);
        }
    }

    public void Half(ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, ReadOnlySpan<int> keyLengths,
        Span<Half> output, in AttentionProblem problem)
    {
        float[] qf = ArrayPool<float>.Shared.Rent(q.Length);
        float[] kf = ArrayPool<float>.Shared.Rent(k.Length);
        float[] vf = ArrayPool<float>.Shared.Rent(v.Length);
        float[] of = ArrayPool<float>.Shared.Rent(output.Length);
        try
        {
            ToSingle(q, qf);
            ToSingle(k, kf);
            ToSingle(v, vf);
            Float(qf.AsSpan(0, q.Length), kf.AsSpan(0, k.Length), vf.AsSpan(0, v.Length), keyLengths, of.AsSpan(0, output.Length), problem);
            for (int i = 0; i < output.Length; i++)
                output[i] = (Half)of[i];
        }
        finally
        {
            ArrayPool<float>.Shared.Return(qf);
            ArrayPool<float>.Shared.Return(kf);
            ArrayPool<float>.Shared.Return(vf);
            ArrayPool<float>.Shared.Return(of);
        }
    }

    public void Int8Kv(ReadOnlySpan<float> q, ReadOnlySpan<sbyte> k, ReadOnlySpan<float> kScale, ReadOnlySpan<sbyte> v,
        ReadOnlySpan<float> vScale, ReadOnlySpan<int> keyLengths, Span<float> output, in AttentionProblem problem)
    {
        session.Stream.Synchronize();
        fixed (float* qp = q, ksp = kScale, vsp = vScale, op = output)
        fixed (sbyte* kp = k, vp = v)
        fixed (int* lp = keyLengths)
        {
            AttentionInt8KvSimd.Forward(qp, kp, ksp, vp, vsp, op, lp, problem.Shape, problem.Scale, problem.Window, problem.Splits);
        }
    }

    public void Float(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyLengths, bool ragged,
        ArrayView<float> output, in AttentionProblem problem)
    {
        session.Stream.Synchronize();
        AttentionSimd.Forward(
            (float*)q.LoadEffectiveAddressAsPtr(), (float*)k.LoadEffectiveAddressAsPtr(), (float*)v.LoadEffectiveAddressAsPtr(),
            (float*)output.LoadEffectiveAddressAsPtr(), ragged ? (int*)keyLengths.LoadEffectiveAddressAsPtr() : null,
            problem.Shape, problem.Scale, problem.Window, problem.Splits);
    }

    private static void ToSingle(ReadOnlySpan<Half> source, Span<float> destination)
    {
        for (int i = 0; i < source.Length; i++)
            destination[i] = (float)source[i];
    }
}
