namespace Kernels.Tests.Sparse;

/// <summary>The sparse products on every backend present against the dense reference and the dense kernels.</summary>
public class SparseGemmTests
{
    // (m, n, k): small m (1, 2, 16: the decode kernels) and larger m (17, 33: transpose + general kernel),
    // odd shapes; the CPU accelerator simulates the kernels, so they stay tiny.
    private static readonly (int M, int N, int K)[] Shapes =
    [
        (1, 1, 1), (2, 7, 13), (16, 5, 9), (1, 31, 67), (17, 7, 13), (33, 6, 10),
    ];

    private static readonly double[] Sparsities = [0, 0.5, 0.9, 1];

    [Theory]
    [MemberData(nameof(SparseTestData.BackendsAndFormats), MemberType = typeof(SparseTestData))]
    public void Int8MatchesReferenceAndDenseKernelBitForBit(Backend backend, SparseFormat format) => Int8MatchesReferenceAndDenseKernelBitForBitOn(Sessions.Get(backend), format, backend.ToName());

    internal static void Int8MatchesReferenceAndDenseKernelBitForBitOn(KernelSession session, SparseFormat format, string target)
    {
        Seeded.Run((random, seed) =>
        {
            foreach ((int m, int n, int k) in Shapes)
            {
                foreach (double sparsity in Sparsities)
                {
                    sbyte[] dense = SparseTestData.PrunedInt8(random, n, k, format, sparsity);
                    SparseMatrix w = SparseTestData.Int8Matrix(dense, n, k, format);
                    sbyte[] x = Seeded.Int8(random, m * k);
                    string what = $"{target}/{format} {m}×{n}×{k} sparsity {sparsity}";
                    int[] y = session.SparseInt8Gemm(w, x, m);
                    Expect.Equal(HostReference.Int8Gemm(x, dense, m, n, k), y, what);
                    // The dense kernel is slow on the CPU accelerator (it simulates the tiled kernel's barriers): one sparsity.
                    if (sparsity == 0.5)
                        Assert.True(session.Int8Gemm(x, dense, m, n, k).SequenceEqual(y), $"{what}: differs from the dense kernel");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(SparseTestData.BackendsAndFormats), MemberType = typeof(SparseTestData))]
    public void EmptyRowsSingleNonZeroAndExtremes(Backend backend, SparseFormat format)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            int n = 9, k = 11;
            foreach (int m in new[] { 3, 17 })
            {
                // One non-zero (in row 4; the other rows empty), then all -128 against all -128 in the kept places.
                var single = new sbyte[n * k];
                single[4 * k + 7] = -128;
                sbyte[] extremes = SparseTestData.PrunedInt8(random, n, k, format, 0.5).Select(v => v == 0 ? (sbyte)0 : (sbyte)-128).ToArray();
                foreach (sbyte[] dense in new[] { single, extremes })
                {
                    SparseMatrix w = SparseTestData.Int8Matrix(dense, n, k, format);
                    sbyte[] x = Enumerable.Repeat((sbyte)-128, m * k).ToArray();
                    x[random.Next(x.Length)] = 127;
                    Expect.Equal(HostReference.Int8Gemm(x, dense, m, n, k), session.SparseInt8Gemm(w, x, m), $"{backend}/{format} m={m} nnz={w.NonZeros}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(SparseTestData.BackendsAndFormats), MemberType = typeof(SparseTestData))]
    public void DequantIsBitIdenticalToTheDenseDequantGemm(Backend backend, SparseFormat format)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            foreach ((int m, int n, int k) in new[] { (2, 7, 13), (17, 5, 9) })
            {
                sbyte[] dense = SparseTestData.PrunedInt8(random, n, k, format, 0.6);
                SparseMatrix w = SparseTestData.Int8Matrix(dense, n, k, format);
                sbyte[] x = Seeded.Int8(random, m * k);
                float[] xScale = Seeded.Floats(random, m, 1e-3f, 0.1f);
                float[] wScale = Seeded.Floats(random, n, 1e-3f, 0.1f);
                float[] bias = Seeded.Floats(random, n, -5, 5);
                foreach (float[] b in new[] { bias, [] })
                {
                    float[] y = session.SparseInt8GemmDequant(w, x, xScale, wScale, b, m);
                    float[] expected = session.Int8GemmDequant(x, dense, xScale, wScale, b, m, n, k);
                    for (int i = 0; i < y.Length; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(y[i]),
                            $"{backend}/{format} {m}×{n}×{k} bias={b.Length > 0} element {i}: {y[i]}, dense kernel {expected[i]}");
                }
            }
        });
    }

    public static TheoryData<Backend> IlgpuBackends => new(Backend.Cpu, Backend.Cuda, Backend.OpenCL);

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void TiledAndGeneralInt8KernelsGiveTheReferenceBitForBit(Backend backend)
    {
        // The tiled kernel (groups of 4 non-zeros × 4 tokens, 256-column k chunks, 64 rows × 128 tokens per
        // group) against the one-thread-per-output kernel: m not a multiple of 4 and past one token tile,
        // n past one row tile and not a multiple of 8, k within one chunk, exactly one, and across chunks
        // with a partial last one; rows empty, full, and with non-zeros in one chunk only; every format.
        _ = Sessions.Get(backend);   // skips with the reason when the backend is absent
        using KernelSession session = KernelSession.Create(backend);
        TiledAndGeneralInt8KernelsGiveTheReferenceBitForBitOn(session, backend.ToName());
    }

    /// <summary>The body of <see cref="TiledAndGeneralInt8KernelsGiveTheReferenceBitForBit"/> on a session of its own (it sets the session's kernel choice).</summary>
    internal static void TiledAndGeneralInt8KernelsGiveTheReferenceBitForBitOn(KernelSession session, string target)
    {
        Seeded.Run((random, seed) =>
        {
            foreach ((int m, int n, int k) in new[] { (17, 7, 13), (130, 65, 256), (257, 70, 600), (33, 130, 300) })
            {
                foreach (SparseFormat format in SparseTestData.Formats)
                {
                    foreach (double sparsity in new[] { 0.0, 0.9, 1.0 })
                    {
                        sbyte[] dense = SparseTestData.PrunedInt8(random, n, k, format, sparsity);
                        if (sparsity == 0.9 && k > 256)
                        {
                            // Row 1 empty; row 2 with its non-zeros in the last chunk only; extremes.
                            Array.Clear(dense, k, 2 * k);
                            for (int c = 256; c < k; c += 3)
                                dense[2 * k + c] = -128;
                        }
                        SparseMatrix w = SparseTestData.Int8Matrix(dense, n, k, format);
                        sbyte[] x = Seeded.Int8(random, m * k);
                        x[0] = -128;
                        x[^1] = 127;
                        long[] expected = HostReference.Int8Gemm(x, dense, m, n, k);
                        using DeviceSparseMatrix<sbyte> dw = session.Upload(w);
                        using DeviceBuffer<sbyte> dx = session.Upload<sbyte>(x);
                        using DeviceBuffer<int> dy = session.Allocate<int>((long)m * n + 5);
                        foreach (SparseInt8Kernel kernel in new[] { SparseInt8Kernel.Tiled, SparseInt8Kernel.General })
                        {
                            session.SparseInt8Kernel = kernel;
                            dy.CopyFrom(Enumerable.Repeat(unchecked((int)0xDEADBEEF), m * n + 5).ToArray());
                            session.SparseInt8Gemm(dw, dx, dy, m);
                            int[] y = dy.ToArray();
                            string what = $"{target}/{format} {kernel} {m}×{n}×{k} sparsity {sparsity}";
                            Expect.Equal(expected, y[..(m * n)], what);
                            for (int i = m * n; i < y.Length; i++)
                                Assert.True(y[i] == unchecked((int)0xDEADBEEF), $"{what}: element {i} past the output was written");
                        }
                        Assert.IsAssignableFrom<Backends.Ilgpu.SparseTiledWeights>(dw.Prepared);
                    }
                }
            }
        });
    }

    /// <summary>
    /// (m, n, k) for the CUDA 2:4 sparse tensor-core path: every tile (m ≤ 8, ≤ 32, &gt; 32), one and
    /// several blocks in both directions, k a multiple of 64, of 16 only, and neither (X repacked),
    /// decode-sized and prefill-sized m.
    /// </summary>
    public static TheoryData<int, int, int> TensorCoreShapes => new()
    {
        { 1, 300, 200 }, { 8, 64, 64 }, { 9, 129, 1000 }, { 32, 70, 257 }, { 33, 200, 512 },
        { 300, 513, 4096 }, { 1000, 1024, 1024 }, { 4096, 256, 320 },
    };

    [Theory]
    [InlineData(Backend.Cpu)]
    [InlineData(Backend.CpuSimd)]
    public void OffCudaTwoFourKeepsNoTensorCoreCopyAndSaysWhy(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Assert.Contains("CUDA", session.SparseTensorCoreUnsupported, StringComparison.Ordinal);
        sbyte[] dense = SparseTestData.PrunedInt8(new Random(7), 5, 9, SparseFormat.TwoFour, 0.5);
        using DeviceSparseMatrix<sbyte> w = session.Upload(SparseTestData.Int8Matrix(dense, 5, 9, SparseFormat.TwoFour));
        Assert.IsNotType<Backends.CudaPtx.PtxSparseWeights>(w.Prepared);
    }

    [Theory]
    [MemberData(nameof(TensorCoreShapes))]
    public void TwoFourOnCudaRunsOnTheSparseTensorCoresBitForBit(int m, int n, int k)
    {
        KernelSession session = Sessions.Get(Backend.Cuda);
        Seeded.Run((random, seed) =>
        {
            sbyte[] dense = SparseTestData.PrunedInt8(random, n, k, SparseFormat.TwoFour, 0.6);
            SparseMatrix w = SparseTestData.Int8Matrix(dense, n, k, SparseFormat.TwoFour);
            sbyte[] x = Seeded.Int8(random, (long)m * k);
            string what = $"cuda/2:4 {m}×{n}×{k}";
            int[] y = session.SparseInt8Gemm(w, x, m);
            // On compute capability ≥ 8.0 the product must have run on mma.sp, not on the portable kernels.
            if (session.TensorCoreUnsupported is null)
                Assert.True(session.SparseTensorCoreUnsupported is null, $"{what}: {session.SparseTensorCoreUnsupported}");
            TestContext.Current.TestOutputHelper?.WriteLine($"{what}: sparse tensor cores {session.SparseTensorCoreUnsupported ?? "used"}, form {session.SparseTensorCoreForm}");
            if ((long)m * n * k <= 200_000_000)
                Expect.Equal(HostReference.Int8Gemm(x, dense, m, n, k), y, what);
            Assert.True(session.Int8Gemm(x, dense, m, n, k).SequenceEqual(y), $"{what}: differs from the dense kernel");

            float[] xScale = Seeded.Floats(random, m, 1e-3f, 0.1f);
            float[] wScale = Seeded.Floats(random, n, 1e-3f, 0.1f);
            float[] bias = Seeded.Floats(random, n, -5, 5);
            foreach (float[] b in new[] { bias, [] })
            {
                float[] yd = session.SparseInt8GemmDequant(w, x, xScale, wScale, b, m);
                float[] expected = session.Int8GemmDequant(x, dense, xScale, wScale, b, m, n, k);
                for (int i = 0; i < yd.Length; i++)
                {
                    if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(yd[i]))
                        Assert.Fail($"{what} bias={b.Length > 0} element {i}: {yd[i]}, dense kernel {expected[i]}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(SparseTestData.BackendsAndFormats), MemberType = typeof(SparseTestData))]
    public void Float32WithinToleranceOfFloat64(Backend backend, SparseFormat format)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            foreach ((int m, int n, int k) in Shapes)
            {
                foreach (double sparsity in new[] { 0, 0.7, 1 })
                {
                    float[] dense = SparseTestData.PrunedFloats(random, n, k, format, sparsity).Select(v => v / 64f).ToArray();
                    SparseMatrixF32 w = SparseTestData.FloatMatrix(dense, n, k, format);
                    float[] x = Seeded.Floats(random, m * k, -2, 2);
                    float[] bias = Seeded.Floats(random, n, -1, 1);
                    foreach (float[] b in new[] { bias, [] })
                    {
                        float[] y = session.SparseGemm(w, x, m, b);
                        double[] expected = HostReference.SparseGemm(w, x, m, b);
                        for (int i = 0; i < m; i++)
                        {
                            for (int j = 0; j < n; j++)
                            {
                                // float32 sums of k products: each addition rounds once, relative to Σ|x·w|.
                                double magnitude = Math.Abs(b.Length > 0 ? b[j] : 0);
                                for (int c = 0; c < k; c++)
                                    magnitude += Math.Abs((double)x[i * k + c] * dense[j * k + c]);
                                double error = Math.Abs(y[i * n + j] - expected[i * n + j]);
                                Assert.True(error <= (k + 2) * 6e-8 * magnitude + 1e-7,
                                    $"{backend}/{format} {m}×{n}×{k} sparsity {sparsity} ({i}, {j}): {y[i * n + j]}, expected {expected[i * n + j]}");
                            }
                        }
                    }
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(SparseTestData.BackendsAndFormats), MemberType = typeof(SparseTestData))]
    public void DeviceApiWritesEveryOutputAndNothingBeyond(Backend backend, SparseFormat format)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, seed) =>
        {
            const int slack = 7;
            foreach (int m in new[] { 1, 16, 17 })
            {
                int n = 10, k = 14;
                sbyte[] dense = SparseTestData.PrunedInt8(random, n, k, format, 0.5);
                sbyte[] x = Seeded.Int8(random, m * k);
                float[] xScale = Seeded.Floats(random, m, 1e-3f, 0.1f), wScale = Seeded.Floats(random, n, 1e-3f, 0.1f), bias = Seeded.Floats(random, n, -1, 1);
                using DeviceSparseMatrix<sbyte> dw = session.Upload(SparseTestData.Int8Matrix(dense, n, k, format));
                using DeviceBuffer<sbyte> dx = session.Upload<sbyte>(x);
                const int poison = unchecked((int)0xDEADBEEF);
                using DeviceBuffer<int> dc = session.Upload<int>(Enumerable.Repeat(poison, m * n + slack).ToArray());
                session.SparseInt8Gemm(dw, dx, dc, m);
                int[] c = dc.ToArray();
                Expect.Equal(HostReference.Int8Gemm(x, dense, m, n, k), c[..(m * n)], $"{backend}/{format} m={m} int32");
                Assert.All(c[(m * n)..], v => Assert.Equal(poison, v));

                using DeviceBuffer<float> dxs = session.Upload<float>(xScale), dws = session.Upload<float>(wScale), db = session.Upload<float>(bias);
                using DeviceBuffer<float> dy = session.Upload<float>(Enumerable.Repeat(float.NaN, m * n + slack).ToArray());
                session.SparseInt8GemmDequant(dw, dx, dxs, dws, db, dy, m);
                float[] y = dy.ToArray();
                float[] expected = session.Int8GemmDequant(x, dense, xScale, wScale, bias, m, n, k);
                Assert.True(expected.AsSpan().SequenceEqual(y.AsSpan(0, m * n)), $"{backend}/{format} m={m} dequant differs from the dense kernel");
                Assert.All(y[(m * n)..], v => Assert.True(float.IsNaN(v)));

                float[] denseF = dense.Select(v => (float)v).ToArray();
                float[] xf = x.Select(v => (float)v).ToArray();
                using DeviceSparseMatrix<float> dwf = session.Upload(SparseTestData.FloatMatrix(denseF, n, k, format));
                using DeviceBuffer<float> dxf = session.Upload<float>(xf);
                using DeviceBuffer<float> dyf = session.Upload<float>(Enumerable.Repeat(float.NaN, m * n + slack).ToArray());
                session.SparseGemm(dwf, dxf, null, dyf, m);
                float[] yf = dyf.ToArray();
                // Small integers: float32 sums are exact here.
                long[] exact = HostReference.Int8Gemm(x, dense, m, n, k);
                for (int i = 0; i < m * n; i++)
                    Assert.Equal(exact[i], (long)yf[i]);
                Assert.All(yf[(m * n)..], v => Assert.True(float.IsNaN(v)));

                // With a bias: the exact sum plus the bias, rounded once.
                session.SparseGemm(dwf, dxf, db, dyf, m);
                yf = dyf.ToArray();
                for (int i = 0; i < m * n; i++)
                    Assert.Equal((float)(exact[i] + (double)bias[i % n]), yf[i]);
                Assert.All(yf[(m * n)..], v => Assert.True(float.IsNaN(v)));
            }
        });
    }

    [Fact]
    public void ConvenienceCallsUploadEachMatrixOnce()
    {
        Seeded.Run((random, seed) =>
        {
            // A session per run: the counts below start from an empty cache (KERNELS_TEST_REPEAT runs the body again).
            using var session = KernelSession.Create(Backend.Cpu);
            int n = 5, k = 8, m = 2;
            sbyte[] dense = SparseTestData.PrunedInt8(random, n, k, SparseFormat.Csr, 0.5);
            SparseMatrix w = SparseMatrix.FromDense(dense, n, k, SparseFormat.Csr);
            sbyte[] x = Seeded.Int8(random, m * k);
            int[] first = session.SparseInt8Gemm(w, x, m);
            Assert.Equal(1, session.CachedSparseUploads);
            long bytes = session.AllocatedBytes;
            Assert.Equal(first, session.SparseInt8Gemm(w, x, m));
            Assert.Equal(1, session.CachedSparseUploads);
            Assert.Equal(bytes, session.AllocatedBytes);
            SparseMatrix other = SparseMatrix.FromDense(dense, n, k, SparseFormat.Bsr);
            Assert.Equal(first, session.SparseInt8Gemm(other, x, m));
            Assert.Equal(2, session.CachedSparseUploads);

            // The upload of a matrix that was collected is freed at the next call.
            UseThrowawayMatrix(session, dense, n, k, x, m);
            Assert.Equal(3, session.CachedSparseUploads);
            long withThrowaway = session.AllocatedBytes;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            Assert.Equal(first, session.SparseInt8Gemm(w, x, m));
            Assert.Equal(2, session.CachedSparseUploads);
            Assert.True(session.AllocatedBytes < withThrowaway, "the collected matrix's upload was freed");
            GC.KeepAlive(other);
        });
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void UseThrowawayMatrix(KernelSession session, sbyte[] dense, int n, int k, sbyte[] x, int m) =>
        Assert.Equal(HostReference.Int8Gemm(x, dense, m, n, k), session.SparseInt8Gemm(SparseMatrix.FromDense(dense, n, k, SparseFormat.Csr), x, m).Select(v => (long)v).ToArray());

    [Fact]
    public void ValidationErrorsLeaveOutputsUntouched()
    {
        KernelSession s = Sessions.Get(Backend.Cpu);
        int n = 4, k = 6, m = 3;
        SparseMatrix w = SparseMatrix.FromDense(new sbyte[] { 1, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 5, 0, 6, 0, 0, 7, 0 }, n, k, SparseFormat.Csr);
        using DeviceSparseMatrix<sbyte> dw = s.Upload(w);
        using DeviceBuffer<sbyte> dx = s.Allocate<sbyte>(m * k);
        int[] poison = Enumerable.Repeat(-7, m * n).ToArray();
        using DeviceBuffer<int> dc = s.Upload<int>(poison);
        using DeviceBuffer<int> shortC = s.Upload<int>(poison.AsSpan(0, m * n - 1));
        using DeviceBuffer<float> dy = s.Upload<float>(Enumerable.Repeat(-7f, m * n).ToArray());
        using DeviceBuffer<float> scales = s.Upload<float>(Enumerable.Repeat(1f, 8).ToArray());

        SparseTestData.Throws("m", () => s.SparseInt8Gemm(dw, dx, dc, 0), "expected ≥ 1");
        SparseTestData.Throws("x", () => s.SparseInt8Gemm(dw, dx, dc, m + 1), "m·w.Columns");
        SparseTestData.Throws("y", () => s.SparseInt8Gemm(dw, dx, shortC, m), "m·w.Rows", $"got {m * n - 1}");
        using DeviceBuffer<float> twoScales = s.Upload<float>([1f, 1f]);
        SparseTestData.Throws("xScale", () => s.SparseInt8GemmDequant(dw, dx, twoScales, scales, null, dy, m), "got 2");
        SparseTestData.Throws("wScale", () => s.SparseInt8GemmDequant(dw, dx, scales, twoScales, null, dy, m), "got 2");
        SparseTestData.Throws("bias", () => s.SparseInt8GemmDequant(dw, dx, scales, scales, twoScales, dy, m), "got 2");

        using var other = KernelSession.Create(Backend.Cpu);
        using DeviceSparseMatrix<sbyte> foreign = other.Upload(w);
        SparseTestData.Throws("w", () => s.SparseInt8Gemm(foreign, dx, dc, m), "another session");
        DeviceSparseMatrix<sbyte> disposed = s.Upload(w);
        disposed.Dispose();
        SparseTestData.Throws("w", () => s.SparseInt8Gemm(disposed, dx, dc, m), "disposed");

        Assert.Equal(poison, dc.ToArray());
        Assert.All(dy.ToArray(), v => Assert.Equal(-7f, v));

        // Convenience layer.
        SparseTestData.Throws("x", () => s.SparseInt8Gemm(w, new sbyte[m * k - 1], m), "m·w.Columns", $"got {m * k - 1}");
        SparseTestData.Throws("m", () => s.SparseInt8Gemm(w, [], 0), "expected ≥ 1");
        SparseTestData.Throws("xScale", () => s.SparseInt8GemmDequant(w, new sbyte[m * k], new float[m - 1], new float[n], [], m), "got 2");
        SparseTestData.Throws("wScale", () => s.SparseInt8GemmDequant(w, new sbyte[m * k], new float[m], [1, float.NaN, 1, 1], [], m), "index 1");
        SparseTestData.Throws("bias", () => s.SparseInt8GemmDequant(w, new sbyte[m * k], new float[m], new float[n], new float[n + 1], m), "got 5");
        SparseMatrixF32 wf = SparseMatrixF32.FromDense(new float[n * k], n, k, SparseFormat.Csr);
        SparseTestData.Throws("bias", () => s.SparseGemm(wf, new float[m * k], m, [float.PositiveInfinity, 0, 0, 0]), "index 0");
        SparseTestData.Throws("x", () => s.SparseGemm(wf, new float[m * k + 1], m), "got 19");

        SparseMatrix wide = SparseMatrix.FromCsr(1, 131072, [0, 1], [131071], [1]);
        SparseTestData.Throws("w", () => s.SparseInt8Gemm(wide, new sbyte[131072], 1), "131071", "131072");
        Assert.Single(s.SparseGemm(SparseMatrixF32.FromCsr(1, 131072, [0, 1], [131071], [1]), new float[131072], 1));
    }
}
