using Kernels.Backends.Simd;
using Kernels.Simd;

namespace Kernels.Tests.Sparse;

public sealed class SparsePlanCacheTests
{
    [Fact]
    public void A_matrix_prepares_its_cpu_plan_once_per_level()
    {
        Seeded.Run((random, _) =>
        {
            sbyte[] dense = Seeded.Int8(random, 13 * 29);
            for (int i = 0; i < dense.Length; i++)
                dense[i] = random.Next(10) < 8 ? (sbyte)0 : dense[i];
            SparseMatrix w = SparseMatrix.FromDense(dense, 13, 29, SparseFormat.Csr);
            SimdLevel level = CpuSimd.Effective;
            SparseSimdPlan plan = w.SimdPlan(level);
            Assert.Same(plan, w.SimdPlan(level));
            if (level != SimdLevel.Scalar)
                Assert.NotSame(plan, w.SimdPlan(SimdLevel.Scalar));
        });
    }

    [Fact]
    public void Repeated_cpu_simd_calls_reuse_the_plan_and_stay_exact()
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        Seeded.Run((random, _) =>
        {
            const int n = 37, k = 67, m = 19;
            sbyte[] dense = Seeded.Int8(random, n * k);
            for (int i = 0; i < dense.Length; i++)
                dense[i] = random.Next(10) < 9 ? (sbyte)0 : dense[i];
            foreach (SparseFormat format in Enum.GetValues<SparseFormat>())
            {
                sbyte[] pruned = format == SparseFormat.TwoFour ? TwoFourOf(dense, n, k) : dense;
                SparseMatrix w = SparseMatrix.FromDense(pruned, n, k, format);
                sbyte[] x = Seeded.Int8(random, m * k);
                long[] expected = HostReference.Int8Gemm(x, pruned, m, n, k);
                for (int call = 0; call < 3; call++)
                {
                    int[] got = session.SparseInt8Gemm(w, x, m);
                    Assert.Equal(expected, got.Select(v => (long)v));
                }
                Assert.Same(w.SimdPlan(CpuSimd.Effective), w.SimdPlan(CpuSimd.Effective));
            }
        });
    }

    [Fact]
    public void A_disposed_device_matrix_has_no_plan()
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        SparseMatrix w = SparseMatrix.FromDense(new sbyte[] { 1, 0, 0, 2, 0, 3 }, 2, 3, SparseFormat.Csr);
        DeviceSparseMatrix<sbyte> dw = session.Upload(w);
        var prepared = Assert.IsType<SimdSparseWeights<sbyte>>(dw.Prepared);
        Assert.NotNull(prepared.Plan(CpuSimd.Effective));
        dw.Dispose();
        Assert.Throws<ObjectDisposedException>(() => prepared.Plan(CpuSimd.Effective));
    }

    private static sbyte[] TwoFourOf(sbyte[] dense, int rows, int cols)
    {
        var result = (sbyte[])dense.Clone();
        for (int r = 0; r < rows; r++)
        {
            for (int c0 = 0; c0 < cols; c0 += 4)
            {
                int kept = 0;
                for (int c = c0; c < Math.Min(cols, c0 + 4); c++)
                {
                    if (result[r * cols + c] != 0 && ++kept > 2)
                        result[r * cols + c] = 0;
                }
            }
        }
        return result;
    }
}
