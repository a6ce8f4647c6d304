namespace Kernels.Tests;

/// <summary>
/// The aliasing rule: an output buffer may not also be an input. Every device-API call that could be
/// given one buffer for both is rejected before anything runs, naming both arguments, output untouched.
/// </summary>
public class AliasingTests
{
    public static TheoryData<Backend> Backends => new(Backend.Cpu, Backend.CpuSimd);

    private static void Rejected<T>(DeviceBuffer<T> output, string outputName, string inputName, Action call)
        where T : unmanaged
    {
        T[] before = output.ToArray();
        var ex = Assert.ThrowsAny<ArgumentException>(call);
        Assert.Equal(outputName, ex.ParamName);
        Assert.Contains(inputName, ex.Message, StringComparison.Ordinal);
        Assert.Contains("not also an input", ex.Message, StringComparison.Ordinal);
        Assert.Equal(before, output.ToArray());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void DequantGemmOutputThatIsAScaleOrTheBias(Backend backend)
    {
        KernelSession s = Sessions.Get(backend);
        using var a = s.Upload<sbyte>([1, 2, 3, 4, 5, 6, 7, 8]);
        using var b = s.Upload<sbyte>([1, 1, 1, 1, 2, 2, 2, 2]);
        using var scales = s.Upload<float>([0.5f, 0.25f, 1, 2]);
        using var other = s.Upload<float>([1, 1, 1, 1]);
        Rejected(scales, "y", "aScale", () => s.Int8GemmDequant(a, b, scales, other, null, scales, 2, 2, 4));
        Rejected(scales, "y", "bScale", () => s.Int8GemmDequant(a, b, other, scales, null, scales, 2, 2, 4));
        Rejected(scales, "y", "bias", () => s.Int8GemmDequant(a, b, other, other, scales, scales, 2, 2, 4));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void SparseOutputThatIsAnInput(Backend backend)
    {
        KernelSession s = Sessions.Get(backend);
        using DeviceSparseMatrix<sbyte> w = s.Upload(SparseMatrix.FromDense(new sbyte[] { 1, 0, 0, 2, 0, 3, 0, 0 }, 2, 4, SparseFormat.Csr));
        using var x = s.Upload<sbyte>([1, 2, 3, 4, 5, 6, 7, 8]);
        using var f = s.Upload<float>([1, 2, 3, 4, 5, 6, 7, 8]);
        using var ones = s.Upload<float>([1, 1, 1, 1]);
        Rejected(f, "y", "xScale", () => s.SparseInt8GemmDequant(w, x, f, ones, null, f, 2));
        Rejected(f, "y", "wScale", () => s.SparseInt8GemmDequant(w, x, ones, f, null, f, 2));
        Rejected(f, "y", "bias", () => s.SparseInt8GemmDequant(w, x, ones, ones, f, f, 2));

        using DeviceSparseMatrix<float> wf = s.Upload(SparseMatrixF32.FromDense(new float[] { 1, 0, 0, 2, 0, 3, 0, 0 }, 2, 4, SparseFormat.Csr));
        Rejected(f, "y", "x", () => s.SparseGemm(wf, f, null, f, 2));
        Rejected(f, "y", "bias", () => s.SparseGemm(wf, ones, f, f, 1));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void AttentionOutputThatIsQKOrV(Backend backend)
    {
        KernelSession s = Sessions.Get(backend);
        var shape = new AttentionShape(1, 1, 1, 2, 2, 4, false);
        using var q = s.Upload<float>([.. Enumerable.Range(0, 8).Select(i => i / 8f)]);
        using var k = s.Upload<float>([.. Enumerable.Range(0, 8).Select(i => -i / 8f)]);
        using var v = s.Upload<float>([.. Enumerable.Range(0, 8).Select(i => i / 4f)]);
        Rejected(q, "output", "q", () => s.Attention(q, k, v, q, shape));
        Rejected(k, "output", "k", () => s.Attention(q, k, v, k, shape));
        Rejected(v, "output", "v", () => s.Attention(q, k, v, v, shape));
        using var lengths = s.Upload<int>([2]);
        Rejected(k, "output", "kCache", () => s.AttentionDecode(q, k, v, lengths, k, shape));
    }

    [Fact]
    public void HostAttentionOutputThatOverlapsQKOrV()
    {
        KernelSession s = Sessions.Get(Backend.CpuSimd);
        var shape = new AttentionShape(1, 1, 1, 2, 2, 4, false);
        float[] all = [.. Enumerable.Range(0, 32).Select(i => i / 8f)];
        var q = new ReadOnlyMemory<float>(all, 0, 8);
        var k = new ReadOnlyMemory<float>(all, 8, 8);
        var v = new ReadOnlyMemory<float>(all, 16, 8);
        foreach (var (start, input) in new[] { (0, "q"), (4, "q"), (12, "k"), (16, "v"), (20, "v") })
        {
            float[] before = (float[])all.Clone();
            var ex = Assert.ThrowsAny<ArgumentException>(() => s.Attention(q.Span, k.Span, v.Span, new Span<float>(all, start, 8), shape));
            Assert.Equal("output", ex.ParamName);
            Assert.Contains($"overlaps {input}", ex.Message, StringComparison.Ordinal);
            Assert.Equal(before, all);
        }
        // Apart: runs, and equals the allocating form.
        s.Attention(q.Span, k.Span, v.Span, new Span<float>(all, 24, 8), shape);
        Assert.Equal(s.Attention(q.Span, k.Span, v.Span, shape), all[24..]);
    }
}
