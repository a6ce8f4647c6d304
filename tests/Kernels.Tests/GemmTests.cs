namespace Kernels.Tests;

public class GemmTests
{
    // Sizes: 1, primes, and sizes just off the 64-wide tile and the 4-byte word.
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 },
        { 1, 1, 7 },
        { 3, 5, 2 },
        { 7, 13, 31 },
        { 17, 1, 64 },
        { 1, 29, 129 },
        { 63, 65, 33 },
        { 64, 64, 32 },
        { 65, 63, 67 },
        { 37, 71, 4 },
        { 128, 2, 5 },
        { 2, 131, 257 },
    };

    public static TheoryData<Backend, GemmKernel, int, int, int> Cases
    {
        get
        {
            var data = new TheoryData<Backend, GemmKernel, int, int, int>();
            foreach (var bk in Sessions.BackendsAndKernels)
            {
                foreach (var shape in Shapes)
                {
                    var (backend, kernel) = ((Backend, GemmKernel))(bk.Data.Item1, bk.Data.Item2);
                    data.Add(backend, kernel, shape.Data.Item1, shape.Data.Item2, shape.Data.Item3);
                }
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesInt64Reference(Backend backend, GemmKernel kernel, int m, int n, int k)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            sbyte[] a = Seeded.Int8(random, (long)m * k);
            sbyte[] b = Seeded.Int8(random, (long)n * k);
            long[] expected = HostReference.Int8Gemm(a, b, m, n, k);
            int[] actual = RunDevice(session, kernel, a, b, m, n, k);
            Expect.Equal(expected, actual, $"{backend}/{kernel} {m}×{n}×{k}");
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.BackendsAndKernels), MemberType = typeof(Sessions))]
    public void ExtremesAtTheLargestK(Backend backend, GemmKernel kernel)
    {
        // All -128 times all -128 over k = 131071 is the largest sum there is: 2 147 467 264.
        KernelSession session = Sessions.Get(backend);
        foreach ((sbyte av, sbyte bv, int k) in Extremes(kernel))
        {
            int m = 3, n = 2;
            sbyte[] a = Enumerable.Repeat(av, m * k).ToArray();
            sbyte[] b = Enumerable.Repeat(bv, n * k).ToArray();
            int[] c = RunDevice(session, kernel, a, b, m, n, k);
            long expected = (long)av * bv * k;
            Assert.All(c, value => Assert.Equal(expected, value));
        }
    }

    [Theory]
    [MemberData(nameof(Sessions.BackendsAndKernels), MemberType = typeof(Sessions))]
    public void EveryOutputIsWrittenAndNothingBeyond(Backend backend, GemmKernel kernel)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            int m = random.Next(1, 90), n = random.Next(1, 90), k = random.Next(1, 80);
            sbyte[] a = Seeded.Int8(random, (long)m * k);
            sbyte[] b = Seeded.Int8(random, (long)n * k);
            const int poison = unchecked((int)0xDEADBEEF);
            const int slack = 97;
            int[] output = Enumerable.Repeat(poison, m * n + slack).ToArray();
            using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
            using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
            using DeviceBuffer<int> dc = session.Upload<int>(output);
            session.Int8Gemm(da, db, dc, m, n, k, kernel);
            dc.CopyTo(output);
            Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), output[..(m * n)], $"{backend}/{kernel} {m}×{n}×{k}");
            Assert.All(output[(m * n)..], value => Assert.Equal(poison, value));
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.BackendsAndKernels), MemberType = typeof(Sessions))]
    public void StridedBatchMatchesPerGemmReference(Backend backend, GemmKernel kernel)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            int batch = random.Next(2, 6), m = random.Next(1, 70), n = random.Next(1, 70), k = random.Next(1, 70);
            foreach (bool sharedB in new[] { false, true })
            {
                sbyte[] a = Seeded.Int8(random, (long)batch * m * k);
                sbyte[] b = Seeded.Int8(random, (sharedB ? 1L : batch) * n * k);
                session.GemmKernel = GemmKernel.Auto;
                using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
                using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
                using DeviceBuffer<int> dc = session.Allocate<int>((long)batch * m * n);
                var strides = new StridedBatch(batch, (long)m * k, sharedB ? 0 : (long)n * k, (long)m * n);
                session.Int8GemmBatched(da, db, dc, m, n, k, strides, kernel);
                int[] c = dc.ToArray();
                for (int i = 0; i < batch; i++)
                {
                    long[] expected = HostReference.Int8Gemm(
                        a.AsSpan(i * m * k, m * k), b.AsSpan(sharedB ? 0 : i * n * k, n * k), m, n, k);
                    Expect.Equal(expected, c[(i * m * n)..((i + 1) * m * n)], $"batch {i}/{batch} {m}×{n}×{k} sharedB={sharedB}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void ConvenienceBatchedSharesWeights(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            int batch = 3, m = 5, n = 11, k = 9;
            sbyte[] a = Seeded.Int8(random, batch * m * k);
            sbyte[] b = Seeded.Int8(random, n * k);
            int[] c = session.Int8GemmBatched(a, b, batch, m, n, k);
            for (int i = 0; i < batch; i++)
                Expect.Equal(HostReference.Int8Gemm(a.AsSpan(i * m * k, m * k), b, m, n, k), c[(i * m * n)..((i + 1) * m * n)], $"batch {i}");
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.BackendsAndKernels), MemberType = typeof(Sessions))]
    public void DequantEpilogueWithinFloatToleranceOfFloat64(Backend backend, GemmKernel kernel)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            int m = random.Next(1, 80), n = random.Next(1, 80), k = random.Next(1, 300);
            sbyte[] a = Seeded.Int8(random, (long)m * k);
            sbyte[] b = Seeded.Int8(random, (long)n * k);
            float[] aScale = Seeded.Floats(random, m, 1e-4f, 0.1f);
            float[] bScale = Seeded.Floats(random, n, 1e-4f, 0.1f);
            float[] bias = Seeded.Floats(random, n, -50f, 50f);
            foreach (bool withBias in new[] { true, false })
            {
                float[] b2 = withBias ? bias : [];
                double[] expected = HostReference.Int8GemmDequant(a, b, aScale, bScale, b2, m, n, k);
                session.GemmKernel = kernel;
                float[] y;
                try
                {
                    y = session.Int8GemmDequant(a, b, aScale, bScale, b2, m, n, k);
                }
                finally
                {
                    session.GemmKernel = GemmKernel.Auto;
                }
                // float32: the int32 → float conversion, two products and the bias each round once.
                Expect.Close(expected, y, rtol: 4e-7 * 4, atol: 1e-5 + (withBias ? 50 * 1.2e-7 : 0), $"{backend}/{kernel} {m}×{n}×{k} bias={withBias}");
            }
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void DeviceDequantDoesNotWritePastTheOutput(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            int m = 19, n = 23, k = 41;
            sbyte[] a = Seeded.Int8(random, m * k);
            sbyte[] b = Seeded.Int8(random, n * k);
            float[] aScale = Seeded.Floats(random, m, 0.01f, 0.02f);
            float[] bScale = Seeded.Floats(random, n, 0.01f, 0.02f);
            using var da = session.Upload<sbyte>(a);
            using var db = session.Upload<sbyte>(b);
            using var das = session.Upload<float>(aScale);
            using var dbs = session.Upload<float>(bScale);
            using var dy = session.Upload<float>(Enumerable.Repeat(float.NaN, m * n + 5).ToArray());
            session.Int8GemmDequant(da, db, das, dbs, null, dy, m, n, k);
            float[] y = dy.ToArray();
            Expect.Close(HostReference.Int8GemmDequant(a, b, aScale, bScale, [], m, n, k), y[..(m * n)], 2e-6, 1e-6, "dequant");
            Assert.All(y[(m * n)..], v => Assert.True(float.IsNaN(v)));
        });
    }

    [Fact]
    public void SimdWeightsArePackedOnceAndRepackedWhenWrittenOrReshaped()
    {
        using var session = KernelSession.Create(Backend.CpuSimd);
        Seeded.Run((random, seed) =>
        {
            int m = 9, n = 37, k = 70;
            sbyte[] a = Seeded.Int8(random, m * k);
            sbyte[] b = Seeded.Int8(random, n * k);
            long empty = session.AllocatedBytes;
            using var da = session.Upload<sbyte>(a);
            using var dc = session.Allocate<int>(m * n);
            var db = session.Upload<sbyte>(b);
            long buffersOnly = session.AllocatedBytes;

            session.Int8Gemm(da, db, dc, m, n, k);
            Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), dc.ToArray(), "first call");
            long withPacked = session.AllocatedBytes;
            Assert.True(withPacked > buffersOnly, "the packed weights are counted");

            session.Int8Gemm(da, db, dc, m, n, k);
            Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), dc.ToArray(), "second call (packed copy reused)");
            Assert.Equal(withPacked, session.AllocatedBytes);

            sbyte[] b2 = Seeded.Int8(random, n * k);
            db.CopyFrom(b2);
            session.Int8Gemm(da, db, dc, m, n, k);
            Expect.Equal(HostReference.Int8Gemm(a, b2, m, n, k), dc.ToArray(), "after the weights were written");

            int n2 = 20;
            session.Int8Gemm(da, db, dc, m, n2, k);
            Expect.Equal(HostReference.Int8Gemm(a, b2.AsSpan(0, n2 * k), m, n2, k), dc.ToArray()[..(m * n2)], "fewer rows of the same buffer");

            db.Dispose();
            Assert.Equal(empty + (buffersOnly - empty) - b.Length, session.AllocatedBytes);
        });
    }

    [Fact]
    public void EveryBackendPresentGivesBitIdenticalResults()
    {
        var sessions = new List<KernelSession> { Sessions.Get(Backend.Cpu), Sessions.Get(Backend.CpuSimd) };
        foreach (Backend backend in new[] { Backend.Cuda, Backend.OpenCL })
        {
            try
            {
                sessions.Add(KernelSession.Create(backend));
            }
            catch (BackendUnavailableException)
            {
            }
        }
        Seeded.Run((random, seed) =>
        {
            int m = 77, n = 91, k = 203;
            sbyte[] a = Seeded.Int8(random, m * k);
            sbyte[] b = Seeded.Int8(random, n * k);
            int[] first = sessions[0].Int8Gemm(a, b, m, n, k);
            foreach (KernelSession s in sessions.Skip(1))
                Assert.True(first.SequenceEqual(s.Int8Gemm(a, b, m, n, k)), $"{s.Backend} differs from {sessions[0].Backend}");
            float[] aScale = Seeded.Floats(random, m, 0.001f, 0.01f), bScale = Seeded.Floats(random, n, 0.001f, 0.01f), bias = Seeded.Floats(random, n, -1, 1);
            float[] y = sessions[0].Int8GemmDequant(a, b, aScale, bScale, bias, m, n, k);
            foreach (KernelSession s in sessions.Skip(1))
            {
                float[] other = s.Int8GemmDequant(a, b, aScale, bScale, bias, m, n, k);
                // Same float32 operations in the same order on every backend (GPU compilers may contract to FMA: allow 1 ulp there).
                for (int i = 0; i < y.Length; i++)
                {
                    bool cpuPair = s.Backend is Backend.Cpu or Backend.CpuSimd;
                    Assert.True(cpuPair ? y[i] == other[i] : Math.Abs(y[i] - other[i]) <= 2 * float.Epsilon + Math.Abs(y[i]) * 1.2e-7f,
                        $"dequant element {i}: {other[i]} on {s.Backend}, {y[i]} on {sessions[0].Backend}");
                }
            }
        });
    }

    /// <summary>
    /// The overflow-critical case (all −128 at k = 131071) for every kernel; the other sign pairs at the
    /// largest k only on the reference kernel, and at k = 1021 on the tiled ones (the CPU accelerator
    /// simulates the tiled kernels' barriers slowly).
    /// </summary>
    private static IEnumerable<(sbyte, sbyte, int)> Extremes(GemmKernel kernel)
    {
        yield return (-128, -128, 131071);
        int k = kernel == GemmKernel.Reference ? 131071 : 1021;
        yield return (127, 127, k);
        yield return (-128, 127, k);
        yield return (127, -128, k);
    }

    internal static int[] RunDevice(KernelSession session, GemmKernel kernel, sbyte[] a, sbyte[] b, int m, int n, int k)
    {
        using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
        using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
        using DeviceBuffer<int> dc = session.Upload<int>(Enumerable.Repeat(unchecked((int)0xDEADBEEF), m * n).ToArray());
        session.Int8Gemm(da, db, dc, m, n, k, kernel);
        return dc.ToArray();
    }
}
