namespace Kernels.Tests.Sparse;

public sealed class SparseAdvisorTests
{
    [Theory]
    [InlineData(Backend.CpuSimd, SparseFormat.Csr)]
    [InlineData(Backend.CpuSimd, SparseFormat.Bsr)]
    [InlineData(Backend.CpuSimd, SparseFormat.TwoFour)]
    [InlineData(Backend.Cpu, SparseFormat.Csr)]
    [InlineData(Backend.Cuda, SparseFormat.Csr)]
    [InlineData(Backend.OpenCL, SparseFormat.Csr)]
    public void Measure_checks_the_sparse_result_and_reports_the_pruned_sparsity(Backend backend, SparseFormat format)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            SparseAdvice a = SparseAdvisor.Measure(session, 5, 37, 29, 0.8, format, 2, 4, repeat: 1, seed: seed);
            Assert.True(a.Verified);
            Assert.Equal(session.Backend, a.Backend);
            Assert.True(a.SparseMs > 0 && a.DenseMs > 0);
            // Magnitude pruning zeros exactly round(0.8·count) weights (2:4 then only adds zeros, and so
            // may quantization); block pruning counts blocks, so only a loose bound holds for BSR.
            const int count = 37 * 29;
            if (format == SparseFormat.Bsr)
                Assert.InRange(a.Sparsity, 0.5, 1.0);
            else
                Assert.InRange(a.NonZeros, 1, count - (long)Math.Round(0.8 * count, MidpointRounding.ToEven));
            Assert.Equal(1.0 - (double)a.NonZeros / count, a.Sparsity, 12);
            Assert.Equal(a.DenseMs / a.SparseMs, a.Speedup);
            Assert.StartsWith(backend == Backend.CpuSimd ? "cpu-simd" : backend == Backend.Cuda && format == SparseFormat.TwoFour ? "mma.sp" : "ILGPU",
                a.Kernel, StringComparison.Ordinal);
        });
    }

    [Fact]
    public void Advise_measures_once_per_session_and_shape()
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        SparseAdvice first = SparseAdvisor.Advise(session, 3, 11, 13, 0.5, repeat: 1);
        Assert.Same(first, SparseAdvisor.Advise(session, 3, 11, 13, 0.5, repeat: 1));
        Assert.NotSame(first, SparseAdvisor.Advise(session, 3, 11, 13, 0.75, repeat: 1));
    }

    [Fact]
    public void Crossover_interpolates_where_the_speedup_reaches_one()
    {
        SparseAdvice At(double sparsity, double speedup) =>
            new(Backend.CpuSimd, SparseFormat.Csr, 1, 1, 1, 1, 1, sparsity, sparsity, 1, 1.0, speedup, 1, true, "test");

        Assert.Equal(0.75, SparseAdvisor.CrossoverOf([At(0.5, 0.5), At(0.7, 0.8), At(0.8, 1.2), At(0.9, 3)])!.Value, 12);
        Assert.Equal(0.5, SparseAdvisor.CrossoverOf([At(0.5, 1.5), At(0.9, 3)]));
        Assert.Null(SparseAdvisor.CrossoverOf([At(0.5, 0.2), At(0.9, 0.9)]));
        Assert.Null(SparseAdvisor.CrossoverOf([]));

        // Dense-fallback points time the dense kernel twice: their ratio is noise and does not count.
        SparseAdvice Fallback(double sparsity, double speedup) => At(sparsity, speedup) with { DenseFallback = true };
        Assert.Equal(0.7, SparseAdvisor.CrossoverOf([Fallback(0.5, 1.09), Fallback(0.6, 0.98), At(0.7, 1.5), At(0.9, 3)]));
        Assert.Equal(0.75, SparseAdvisor.CrossoverOf([Fallback(0.6, 1.02), At(0.7, 0.8), At(0.8, 1.2)])!.Value, 12);
        Assert.Null(SparseAdvisor.CrossoverOf([Fallback(0.5, 1.1), At(0.9, 0.9)]));
    }

    [Theory]
    [InlineData(0, 4, 4, 0.5, "m")]
    [InlineData(4, 4, 131072, 0.5, "k")]
    [InlineData(4, 4, 4, 1.5, "sparsity")]
    [InlineData(4, 4, 4, double.NaN, "sparsity")]
    public void Bad_arguments_are_named(int m, int n, int k, double sparsity, string name)
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        var ex = Assert.ThrowsAny<ArgumentException>(() => SparseAdvisor.Measure(session, m, n, k, sparsity));
        Assert.Equal(name, ex.ParamName);
        Assert.StartsWith(name + ":", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_block_shape_is_named()
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        var ex = Assert.ThrowsAny<ArgumentException>(() => SparseAdvisor.Measure(session, 4, 4, 4, 0.5, SparseFormat.Bsr, 0, 4));
        Assert.Equal("blockRows", ex.ParamName);
    }
}
