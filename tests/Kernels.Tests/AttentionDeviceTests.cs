namespace Kernels.Tests;

/// <summary>The device-buffer attention API: same results as the host-array API, nothing written past the output, clear errors.</summary>
public class AttentionDeviceTests
{
    public static TheoryData<Backend> Backends => new(Backend.Cpu, Backend.CpuSimd, Backend.Cuda, Backend.OpenCL);

    [Theory]
    [MemberData(nameof(Backends))]
    public void DeviceBuffersGiveTheHostResultAndWriteNothingBeyond(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            var shape = new AttentionShape(2, 4, 2, 5, 9, 16, Causal: true);
            float[] q = Seeded.Floats(random, shape.QueryElements, -1, 1);
            float[] k = Seeded.Floats(random, shape.KeyElements, -1, 1);
            float[] v = Seeded.Floats(random, shape.KeyElements, -1, 1);
            const int slack = 7;
            using var dq = session.Upload<float>(q);
            using var dk = session.Upload<float>(k);
            using var dv = session.Upload<float>(v);
            using var dout = session.Upload<float>(Enumerable.Repeat(-9f, (int)shape.QueryElements + slack).ToArray());

            session.Attention(dq, dk, dv, dout, shape);
            float[] got = dout.ToArray();
            Expect.Close(HostReference.Attention(q, k, v, shape), got[..(int)shape.QueryElements], 1e-4, 1e-4, $"{backend} prefill");
            Assert.All(got[(int)shape.QueryElements..], x => Assert.Equal(-9f, x));

            int[] lengths = [9, 3];
            using var dl = session.Upload<int>(lengths);
            session.AttentionDecode(dq, dk, dv, dl, dout, shape, null, splits: 2);
            got = dout.ToArray();
            Expect.Close(HostReference.Attention(q, k, v, shape, null, lengths), got[..(int)shape.QueryElements], 1e-4, 1e-4, $"{backend} decode");
            Assert.All(got[(int)shape.QueryElements..], x => Assert.Equal(-9f, x));
        });
    }

    [Fact]
    public void DeviceBufferErrors()
    {
        KernelSession session = Sessions.Get(Backend.CpuSimd);
        var shape = new AttentionShape(1, 2, 1, 3, 4, 8, Causal: false);
        using var q = session.Allocate<float>(shape.QueryElements);
        using var k = session.Allocate<float>(shape.KeyElements);
        using var shortOut = session.Allocate<float>(shape.QueryElements - 1);
        using var output = session.Allocate<float>(shape.QueryElements);
        var ex = Assert.ThrowsAny<ArgumentException>(() => session.Attention(q, k, k, shortOut, shape));
        Assert.Equal("output", ex.ParamName);
        using var badLengths = session.Upload<int>([5]);
        ex = Assert.ThrowsAny<ArgumentException>(() => session.AttentionDecode(q, k, k, badLengths, output, shape));
        Assert.Equal("cacheLengths", ex.ParamName);
        Assert.Contains("0..4", ex.Message, StringComparison.Ordinal);
    }
}
