namespace Kernels.Tests;

/// <summary>
/// Sizes, strides and counts whose products or strided extents do not fit in 64 bits are rejected with
/// an ArgumentException naming the argument, never wrapped into a small length that passes (issue 15).
/// </summary>
public class OverflowValidationTests
{
    public static TheoryData<Backend> Backends => new(Backend.Cpu, Backend.CpuSimd);

    private static void Throws(string argument, Action action) => Expect.Throws(argument, action);

    [Theory]
    [MemberData(nameof(Backends))]
    public void StridedBatchWhoseExtentOverflowsIsRejected(Backend backend)
    {
        KernelSession s = Sessions.Get(backend);
        using var a = s.Upload<sbyte>(new sbyte[64]);
        using var b = s.Upload<sbyte>(new sbyte[64]);
        using var c = s.Upload<int>(new int[64]);
        // (count − 1)·stride wraps to a negative 64-bit number: the buffers look long enough in 64-bit arithmetic.
        long huge = long.MaxValue / 2 + 1;
        Throws("a", () => s.Int8GemmBatched(a, b, c, 2, 2, 4, new StridedBatch(3, huge, 0, 4)));
        Throws("b", () => s.Int8GemmBatched(a, b, c, 2, 2, 4, new StridedBatch(3, 8, huge, 4)));
        Throws("c", () => s.Int8GemmBatched(a, b, c, 2, 2, 4, new StridedBatch(3, 8, 0, huge)));
        Assert.All(c.ToArray(), v => Assert.Equal(0, v));

        using var scales = s.Upload<float>(new float[64]);
        using var y = s.Upload<float>(new float[64]);
        Throws("aScale", () => s.Int8GemmDequantBatched(a, b, scales, scales, null, y, 2, 2, 4, new StridedBatch(3, 8, 0, 4), huge, 0));
        Throws("bScale", () => s.Int8GemmDequantBatched(a, b, scales, scales, null, y, 2, 2, 4, new StridedBatch(3, 8, 0, 4), 2, huge));
        Throws("y", () => s.Int8GemmDequantBatched(a, b, scales, scales, null, y, 2, 2, 4, new StridedBatch(3, 8, 0, huge), 2, 0));
        Assert.All(y.ToArray(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void AttentionShapeWhoseElementCountOverflowsIsRejected(Backend backend)
    {
        KernelSession s = Sessions.Get(backend);
        // 2^30·2^30·4·4 = 2^64 elements wraps to 0 in 64 bits: empty arrays would look exactly right.
        var shape = new AttentionShape(1 << 30, 1 << 30, 1 << 30, 4, 4, 4, false);
        Throws("shape", () => s.Attention(Array.Empty<float>(), [], [], shape));
        Throws("shape", () => s.AttentionDecode(Array.Empty<float>(), [], [], [0], shape));
    }
}
