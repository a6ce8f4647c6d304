using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Kernels.Peers;

/// <summary>
/// ONNX Runtime's int8 GEMM with weights prepared once, in the library's layout:
/// <c>C[m,n] = Σ_k A[m,k]·B[n,k]</c>, int8 A [m, k] and B [n, k] row-major, int32 C [m, n] (as
/// <c>KernelSession.Int8Gemm</c> and oneDNN's <c>dnnl_gemm_s8s8s32</c> with B transposed).
/// <para>
/// The model is <c>MatMulInteger</c> with B (transposed to ONNX's [K, N]) as a constant initializer, which ORT
/// prepacks once when the session is created; one session serves every m. It runs u8s8: the activations
/// are shifted to uint8 (A + 128, a bit flip) in each call and a constant a_zero_point of 128 undoes the
/// shift exactly (C = (A+128)·B − 128·colsum(B), the column sums taken at packing time). Int8 × int8
/// (s8s8) would need AVX-VNNI-INT8 in MLAS and falls back to a portable kernel 10–70× slower on CPUs
/// without it. Not thread-safe: one call at a time.
/// </para>
/// </summary>
public sealed class OrtInt8Gemm : IDisposable
{
    private static readonly string[] InputNames = ["A"];
    private static readonly string[] OutputNames = ["Y"];

    private readonly InferenceSession _session;
    private readonly SessionOptions _options;
    private readonly RunOptions _run;
    private byte[] _shifted = [];

    /// <summary>Builds the session for weights <paramref name="b"/> [n, k] (row-major int8); packs them once.</summary>
    public OrtInt8Gemm(ReadOnlySpan<sbyte> b, int n, int k, int threads = 0)
        : this(b, n, k, threads, checkAvailability: true)
    {
    }

    internal OrtInt8Gemm(ReadOnlySpan<sbyte> b, int n, int k, int threads, bool checkAvailability)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(threads);
        if (b.Length < (long)n * k)
            throw new ArgumentException($"b: expected at least n·k = {(long)n * k} elements, got {b.Length}.", nameof(b));
        if (checkAvailability)
            OnnxRuntimePeer.Require();
        N = n;
        K = k;
        var transposed = new sbyte[(long)n * k];
        for (int j = 0; j < n; j++)
        {
            ReadOnlySpan<sbyte> row = b.Slice(j * k, k);
            for (int x = 0; x < k; x++)
                transposed[(long)x * n + j] = row[x];
        }
        Threads = threads == 0 ? Environment.ProcessorCount : threads;
        (_session, _options) = OnnxRuntimePeer.Open(OnnxModels.MatMulIntegerU8S8(transposed, n, k), Threads);
        _run = new RunOptions();
    }

    /// <summary>Output features (rows of B).</summary>
    public int N { get; }

    /// <summary>Reduction length.</summary>
    public int K { get; }

    /// <summary>ORT's intra-op threads.</summary>
    public int Threads { get; }

    /// <summary><c>C = A·Bᵀ</c> for <paramref name="m"/> rows of <paramref name="a"/> [m, k] into <paramref name="c"/> [m, n].</summary>
    public unsafe void Run(ReadOnlySpan<sbyte> a, Span<int> c, int m)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(m, 1);
        long aLength = (long)m * K, cLength = (long)m * N;
        if (a.Length < aLength)
            throw new ArgumentException($"a: expected at least m·k = {aLength} elements, got {a.Length}.", nameof(a));
        if (c.Length < cLength)
            throw new ArgumentException($"c: expected at least m·n = {cLength} elements, got {c.Length}.", nameof(c));
        if (_shifted.LongLength < aLength)
            _shifted = GC.AllocateUninitializedArray<byte>(checked((int)aLength), pinned: true);
        Shift(MemoryMarshal.AsBytes(a[..(int)aLength]), _shifted);

        fixed (byte* pa = _shifted)
        fixed (int* pc = c)
        {
            using OrtValue input = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.UInt8, [m, K], (IntPtr)pa, aLength);
            using OrtValue output = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int32, [m, N], (IntPtr)pc, cLength * sizeof(int));
            _session.Run(_run, InputNames, [input], OutputNames, [output]);
        }
    }

    /// <summary>int8 → uint8 by adding 128: flipping the sign bit.</summary>
    private static void Shift(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int i = 0;
        var flip = new Vector<byte>(0x80);
        for (; i <= source.Length - Vector<byte>.Count; i += Vector<byte>.Count)
            (new Vector<byte>(source[i..]) ^ flip).CopyTo(destination[i..]);
        for (; i < source.Length; i++)
            destination[i] = (byte)(source[i] ^ 0x80);
    }

    private bool _disposed;

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
