namespace Kernels.Tests;

/// <summary>Bad input gets an ArgumentException naming the argument, before anything runs.</summary>
public class ValidationTests
{
    private static KernelSession Cpu => Sessions.Get(Backend.Cpu);

    private static void Throws(string argument, Action action, params string[] fragments) => Expect.Throws(argument, action, fragments);

    [Theory]
    [InlineData(0, 1, 1, "m")]
    [InlineData(1, 0, 1, "n")]
    [InlineData(1, 1, 0, "k")]
    [InlineData(-3, 1, 1, "m")]
    public void NonPositiveSizes(int m, int n, int k, string argument) =>
        Throws(argument, () => Cpu.Int8Gemm(new sbyte[Math.Max(0, m * k)], new sbyte[Math.Max(0, n * k)], m, n, k), "expected ≥ 1");

    [Fact]
    public void KTooLargeForInt32Accumulation() =>
        Throws("k", () => Cpu.Int8Gemm(new sbyte[131072], new sbyte[131072], 1, 1, 131072), "131071", "131072");

    [Fact]
    public void WrongLengths()
    {
        Throws("a", () => Cpu.Int8Gemm(new sbyte[11], new sbyte[12], 3, 3, 4), "m·k", "12", "got 11");
        Throws("b", () => Cpu.Int8Gemm(new sbyte[12], new sbyte[13], 3, 3, 4), "n·k", "12", "got 13");
        Throws("b", () => Cpu.Int8GemmBatched(new sbyte[24], new sbyte[13], 2, 3, 3, 4), "n·k");
        Throws("aScale", () => Cpu.Int8GemmDequant(new sbyte[12], new sbyte[12], new float[2], new float[3], [], 3, 3, 4), "got 2");
        Throws("bScale", () => Cpu.Int8GemmDequant(new sbyte[12], new sbyte[12], new float[3], new float[4], [], 3, 3, 4), "got 4");
        Throws("bias", () => Cpu.Int8GemmDequant(new sbyte[12], new sbyte[12], new float[3], new float[3], new float[2], 3, 3, 4), "got 2");
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void NonFiniteScalesAndBias(float bad)
    {
        float[] ok = [1, 1, 1];
        float[] broken = [1, bad, 1];
        Throws("aScale", () => Cpu.Int8GemmDequant(new sbyte[12], new sbyte[12], broken, ok, [], 3, 3, 4), "index 1");
        Throws("bScale", () => Cpu.Int8GemmDequant(new sbyte[12], new sbyte[12], ok, broken, [], 3, 3, 4), "index 1");
        Throws("bias", () => Cpu.Int8GemmDequant(new sbyte[12], new sbyte[12], ok, ok, broken, 3, 3, 4), "index 1");
    }

    [Fact]
    public void DeviceBuffersTooShortOrForeignOrDisposed()
    {
        KernelSession s = Cpu;
        using var a = s.Allocate<sbyte>(12);
        using var b = s.Allocate<sbyte>(12);
        using var c = s.Allocate<int>(8);
        Throws("c", () => s.Int8Gemm(a, b, c, 3, 3, 4), "m·n", "9", "got 8");
        Throws("a", () => s.Int8Gemm(a, b, c, 4, 2, 4), "m·k", "16", "got 12");

        var disposed = s.Allocate<int>(9);
        disposed.Dispose();
        Throws("c", () => s.Int8Gemm(a, b, disposed, 3, 3, 4), "disposed");
        Assert.Throws<ObjectDisposedException>(() => disposed.ToArray());

        using var other = KernelSession.Create(Backend.Cpu);
        using var foreign = other.Allocate<int>(9);
        Throws("c", () => s.Int8Gemm(a, b, foreign, 3, 3, 4), "another session");
    }

    [Fact]
    public void BatchStridesThatOverlapOutputsAreRefused()
    {
        KernelSession s = Cpu;
        using var a = s.Allocate<sbyte>(64);
        using var b = s.Allocate<sbyte>(64);
        using var c = s.Allocate<int>(64);
        Throws("batch", () => s.Int8GemmBatched(a, b, c, 2, 2, 2, new StridedBatch(2, 4, 4, 3)), "StrideC", "≥ m·n = 4");
        Throws("batch.StrideA", () => s.Int8GemmBatched(a, b, c, 2, 2, 2, new StridedBatch(2, -1, 4, 4)), "≥ 0");
        Throws("batchCount", () => s.Int8GemmBatched(a, b, c, 2, 2, 2, new StridedBatch(0, 4, 4, 4)), "≥ 1");
        Throws("batchCount", () => s.Int8GemmBatched(a, b, c, 2, 2, 2, new StridedBatch(70000, 0, 0, 4)), "65535");
    }

    [Fact]
    public void NothingIsWrittenWhenValidationFails()
    {
        KernelSession s = Cpu;
        using var a = s.Upload<sbyte>([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        using var b = s.Upload<sbyte>([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        using var scales = s.Upload<float>([1, 1, 1]);
        using var y = s.Upload<float>(Enumerable.Repeat(-7f, 9).ToArray());
        using var shortScales = s.Upload<float>([1, 1]);
        Assert.ThrowsAny<ArgumentException>(() => s.Int8GemmDequant(a, b, scales, shortScales, null, y, 3, 3, 4));
        Assert.All(y.ToArray(), v => Assert.Equal(-7f, v));
    }

    [Fact]
    public void DisposedSessionRefusesWork()
    {
        var s = KernelSession.Create(Backend.Cpu);
        var buffer = s.Allocate<int>(4);
        s.Dispose();
        Assert.Throws<ObjectDisposedException>(() => s.Int8Gemm(new sbyte[1], new sbyte[1], 1, 1, 1));
        Assert.Throws<ObjectDisposedException>(() => s.Allocate<int>(4));
        Assert.Throws<ObjectDisposedException>(() => buffer.ToArray());
        buffer.Dispose();
        s.Dispose();
    }

    [Fact]
    public void SimdKernelOnlyOnTheSimdBackend()
    {
        using var a = Cpu.Allocate<sbyte>(4);
        using var c = Cpu.Allocate<int>(1);
        Throws("kernel", () => Cpu.Int8Gemm(a, a, c, 1, 1, 4, GemmKernel.Simd), "cpu-simd");
        Assert.Equal(GemmKernel.Simd, Sessions.Get(Backend.CpuSimd).ResolveKernel(GemmKernel.Auto));
    }

    [Fact]
    public void BadBackendNames()
    {
        var ex = Assert.Throws<ArgumentException>(() => BackendNames.Parse("tpu", "KERNELS_BACKEND"));
        Assert.Equal("KERNELS_BACKEND", ex.ParamName);
        Assert.Contains("'tpu'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(Backend.OpenCL, BackendNames.Parse("OpenCL"));
        Assert.Equal(Backend.Cpu, BackendNames.Parse(" cpu "));
        Assert.Equal(Backend.CpuSimd, BackendNames.Parse("cpu-simd"));
    }
}
