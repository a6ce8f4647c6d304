namespace Kernels.Tests;

public class SmokeTests
{
    [Fact]
    public void CpuAcceleratorCompilesAndRunsAKernelOnNet10()
    {
        KernelSession session = Sessions.Get(Backend.Cpu);
        sbyte[] a = [1, 2, 3, 4, 5, 6];      // 2×3
        sbyte[] b = [1, 0, -1, 2, 2, 2];     // 2×3
        int[] c = session.Int8Gemm(a, b, 2, 2, 3);
        Assert.Equal([1 - 3, 2 + 4 + 6, 4 - 6, 8 + 10 + 12], c);
        Assert.Equal(10, Environment.Version.Major);
    }
}
