namespace Kernels.Tests;

public class SessionTests
{
    [Fact]
    public void TenThousandCallsLeakNoDeviceMemory()
    {
        using var session = KernelSession.Create(Backend.Cpu);
        session.GemmKernel = GemmKernel.Reference;
        sbyte[] a = [3, -2, 7];
        sbyte[] b = [1, 1, 1, -1, 0, 5];
        session.Int8Gemm(a, b, 1, 2, 3);
        using var da = session.Upload<sbyte>(a);
        using var db = session.Upload<sbyte>(b);
        using var dc = session.Allocate<int>(2);
        long before = session.AllocatedBytes;
        for (int i = 0; i < 10_000; i++)
        {
            if (i % 2 == 0)
                Assert.Equal([8, 32], session.Int8Gemm(a, b, 1, 2, 3));
            else
                session.Int8Gemm(da, db, dc, 1, 2, 3, GemmKernel.Reference);
        }
        Assert.Equal([8, 32], dc.ToArray());
        Assert.Equal(before, session.AllocatedBytes);
    }

    [Fact]
    public void BuffersReturnTheirMemory()
    {
        using var session = KernelSession.Create(Backend.Cpu);
        long before = session.AllocatedBytes;
        var buffer = session.Allocate<int>(1000);
        Assert.Equal(before + 4000, session.AllocatedBytes);
        buffer.Dispose();
        buffer.Dispose();
        Assert.Equal(before, session.AllocatedBytes);
    }

    [Fact]
    public void AnAllocationLargerThanTheDeviceIsAnError()
    {
        KernelSession session = Sessions.Get(Backend.Cpu);
        long tooMany = session.DeviceMemoryBytes / 4 + 1;
        var ex = Assert.Throws<DeviceOutOfMemoryException>(() => session.Allocate<int>(tooMany));
        Assert.Contains("do not fit", ex.Message, StringComparison.Ordinal);
        Assert.Throws<DeviceOutOfMemoryException>(() => session.Allocate<long>(long.MaxValue / 2));
        // The session still works afterwards.
        Assert.Equal([6], session.Int8Gemm([2], [3], 1, 1, 1));
    }

    [Fact]
    public void ConcurrentCallersGetCorrectResults()
    {
        KernelSession session = Sessions.Get(Backend.Cpu);
        Seeded.Run((random, seed) =>
        {
            var cases = Enumerable.Range(0, 8).Select(i =>
            {
                var r = new Random(seed + i);
                int m = r.Next(1, 30), n = r.Next(1, 30), k = r.Next(1, 30);
                return (m, n, k, a: Seeded.Int8(r, m * k), b: Seeded.Int8(r, n * k));
            }).ToArray();
            Parallel.For(0, 32, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            {
                var (m, n, k, a, b) = cases[i % cases.Length];
                Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), session.Int8Gemm(a, b, m, n, k), $"call {i}");
            });
        });
    }

    [Fact]
    public void AutoHonoursTheEnvironmentAndExplicitBackendsExplainWhyNot()
    {
        using (var session = KernelSession.Create(Backend.Cpu))
        {
            Assert.Equal(Backend.Cpu, session.Backend);
            Assert.False(string.IsNullOrEmpty(session.DeviceName));
        }

        IReadOnlyList<DeviceInfo> devices = DeviceCatalog.List();
        Assert.Contains(devices, d => d.Backend == Backend.Cpu && d.Usable);
        Assert.All(devices.Where(d => !d.Usable), d => Assert.False(string.IsNullOrWhiteSpace(d.Reason)));
        foreach (Backend gpu in new[] { Backend.Cuda, Backend.OpenCL })
        {
            if (devices.Any(d => d.Backend == gpu && d.Usable))
                continue;
            var ex = Assert.Throws<BackendUnavailableException>(() => KernelSession.Create(gpu));
            Assert.Equal(gpu, ex.Backend);
            Assert.False(string.IsNullOrWhiteSpace(ex.Reason));
        }

        if (!devices.Any(d => d.Backend is Backend.Cuda or Backend.OpenCL && d.Usable)
            && Environment.GetEnvironmentVariable(BackendNames.EnvironmentVariable) is null)
        {
            using var auto = KernelSession.Create();
            Assert.Equal(Backend.CpuSimd, auto.Backend);
        }
        Assert.Contains(devices, d => d.Backend == Backend.CpuSimd && d.Usable);
    }

    [Fact]
    public void DriverLibrariesResolveToVersionedNames()
    {
        Assert.Equal("libcuda.so.1", NativeLibraries.Candidates("cuda")[0]);
        Assert.Equal("libcuda.so.1", NativeLibraries.Candidates("nvcuda")[0]);
        Assert.Equal("libnvidia-ml.so.1", NativeLibraries.Candidates("nvidia-ml.so")[0]);
        Assert.Equal("libOpenCL.so.1", NativeLibraries.Candidates("OpenCL")[0]);
        Assert.Empty(NativeLibraries.Candidates("libc"));
    }
}
