using Kernels.Tests.Sparse;
using Half = System.Half;

namespace Kernels.Tests.Conformance;

/// <summary>
/// The conformance harness (ggml's <c>test-backend-ops</c> is the model): one case list per op, run as one
/// theory over every backend and every kernel it offers, through the public device API, against the
/// float64/int64 reference. Outputs are poisoned past their end and must stay so. Adding a backend
/// adds a target here; adding a case adds a line to the op's list; nothing else changes.
/// </summary>
/// <remarks>
/// The targets: cpu-simd, the ILGPU CPU accelerator (the default schedule, and warps of 4 lanes on 3
/// multiprocessors), OpenCL and CUDA (skipped, with the reason, where the machine has none). Deeper
/// tests of each kernel (every SIMD level, schedules, extremes, validation) live beside the kernels.
/// </remarks>
public sealed class ConformanceTests
{
    /// <summary>Every target a test session can be opened on.</summary>
    public static readonly string[] Targets = ["cpu-simd", "cpu", "cpu-warp4", "opencl", "cuda"];

    internal static KernelSession Open(string target) =>
        target == "cpu-warp4" ? Sessions.Cpu(4, 3) : Sessions.Get(BackendNames.Parse(target, "target"));

    private static IEnumerable<GemmKernel> GemmKernelsOf(string target) => target switch
    {
        "cpu-simd" => [GemmKernel.Auto, GemmKernel.Simd],
        "cuda" => [GemmKernel.Auto, GemmKernel.Reference, GemmKernel.Tiled, GemmKernel.Dp4a, GemmKernel.TensorCore],
        _ => [GemmKernel.Auto, GemmKernel.Reference, GemmKernel.Tiled, GemmKernel.Dp4a],
    };

    // ------------------------------------------------------------------------------------------ GEMM

    /// <summary>A GEMM case: shape, batch (shared weights when <paramref name="SharedB"/>), output kind.</summary>
    public sealed record GemmCase(int M, int N, int K, int Batch, bool SharedB, bool Dequant, bool Bias, bool Extremes)
    {
        public override string ToString() =>
            $"{M}×{N}×{K} batch {Batch}{(SharedB ? " shared B" : "")}{(Dequant ? Bias ? " dequant+bias" : " dequant" : "")}{(Extremes ? " extremes" : "")}";
    }

    public static readonly GemmCase[] GemmCases =
    [
        new(1, 1, 1, 1, false, false, false, false),
        new(1, 37, 64, 1, false, false, false, false),        // decode row
        new(7, 13, 5, 1, false, false, false, false),         // k not a multiple of 4
        new(17, 31, 67, 1, false, true, true, false),         // primes, dequant with bias
        new(64, 64, 64, 1, false, false, false, true),        // ±127/−128 everywhere
        new(33, 65, 129, 1, false, true, false, false),       // one past the tiles
        new(5, 11, 23, 3, false, false, false, false),        // batch, own weights
        new(9, 19, 16, 4, true, true, true, false),           // batch, shared weights and scales
        new(3, 300, 1001, 1, false, true, true, true),        // long k, extremes, dequant
    ];

    public static TheoryData<string, GemmKernel, int> Gemm
    {
        get
        {
            var data = new TheoryData<string, GemmKernel, int>();
            foreach (string target in Targets)
            {
                foreach (GemmKernel kernel in GemmKernelsOf(target))
                {
                    for (int i = 0; i < GemmCases.Length; i++)
                        data.Add(target, kernel, i);
                }
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Gemm))]
    public void GemmMatchesTheReference(string target, GemmKernel kernel, int index)
    {
        GemmCase c = GemmCases[index];
        KernelSession session = Open(target);
        Seeded.Run((random, _) =>
        {
            int m = c.M, n = c.N, k = c.K, count = c.Batch;
            long strideB = c.SharedB ? 0 : (long)n * k;
            sbyte[] a = c.Extremes ? Seeded.Int8(random, (long)count * m * k, -128, -127) : Seeded.Int8(random, (long)count * m * k);
            sbyte[] b = c.Extremes ? Seeded.Int8(random, c.SharedB ? (long)n * k : (long)count * n * k, -128, -127)
                : Seeded.Int8(random, c.SharedB ? (long)n * k : (long)count * n * k);
            float[] aScale = Seeded.Floats(random, (long)count * m, 1e-3f, 0.1f);
            float[] bScale = Seeded.Floats(random, c.SharedB ? n : (long)count * n, 1e-3f, 0.1f);
            float[] bias = Seeded.Floats(random, c.SharedB ? n : (long)count * n, -1, 1);
            var batch = new StridedBatch(count, (long)m * k, strideB, (long)m * n);
            string what = $"{target}/{kernel} {c}";

            using DeviceBuffer<sbyte> da = session.Upload<sbyte>(a);
            using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
            if (!c.Dequant)
            {
                using DeviceBuffer<int> dc = session.Upload<int>(Poisoned((long)count * m * n + 7, unchecked((int)0xDEADBEEF)));
                session.Int8GemmBatched(da, db, dc, m, n, k, batch, kernel);
                int[] got = dc.ToArray();
                for (int g = 0; g < count; g++)
                {
                    long[] expected = HostReference.Int8Gemm(a.AsSpan(g * m * k, m * k), b.AsSpan((int)(g * strideB), n * k), m, n, k);
                    Expect.Equal(expected, got[(g * m * n)..((g + 1) * m * n)], $"{what} gemm {g}");
                }
                AssertPoisoned(got, (long)count * m * n, unchecked((int)0xDEADBEEF), what);
                return;
            }

            long scaleStride = c.SharedB ? 0 : n;
            using DeviceBuffer<float> das = session.Upload<float>(aScale);
            using DeviceBuffer<float> dbs = session.Upload<float>(bScale);
            using DeviceBuffer<float> dbias = session.Upload<float>(bias);
            using DeviceBuffer<float> dy = session.Upload<float>(Poisoned((long)count * m * n + 7, float.NaN));
            session.Int8GemmDequantBatched(da, db, das, dbs, c.Bias ? dbias : null, dy, m, n, k, batch, m, scaleStride, kernel);
            float[] y = dy.ToArray();
            for (int g = 0; g < count; g++)
            {
                int s = (int)(g * scaleStride);
                double[] expected = HostReference.Int8GemmDequant(a.AsSpan(g * m * k, m * k), b.AsSpan((int)(g * strideB), n * k),
                    aScale.AsSpan(g * m, m), bScale.AsSpan(s, n), c.Bias ? bias.AsSpan(s, n) : [], m, n, k);
                // float32: the int32 sum converted exactly, two products and the bias each rounded once.
                Expect.Close(expected, y[(g * m * n)..((g + 1) * m * n)], 5e-7, 1.2e-6, $"{what} gemm {g}");
            }
            Assert.All(y[(count * m * n)..], v => Assert.True(float.IsNaN(v), $"{what}: written past the output"));
        });
    }

    // ---------------------------------------------------------------------------------------- sparse

    /// <summary>A sparse case: layout, shape (m tokens, n×k weights), sparsity, output.</summary>
    public sealed record SparseCase(SparseFormat Format, int M, int N, int K, double Sparsity, string Output)
    {
        public override string ToString() => $"{Format} {M}×{N}×{K} sparsity {Sparsity} {Output}";
    }

    public static readonly SparseCase[] SparseCases =
    [
        new(SparseFormat.Csr, 1, 37, 64, 0.9, "int32"),        // decode
        new(SparseFormat.Csr, 33, 70, 257, 0.7, "dequant"),    // the tiled kernel, odd k
        new(SparseFormat.Csr, 5, 9, 13, 1.0, "int32"),         // nothing left: zeros
        new(SparseFormat.Bsr, 17, 64, 96, 0.5, "int32"),
        new(SparseFormat.Bsr, 40, 30, 33, 0.8, "float32"),
        new(SparseFormat.TwoFour, 8, 64, 128, 0.5, "dequant"),
        new(SparseFormat.TwoFour, 129, 48, 200, 0.6, "int32"),
        new(SparseFormat.Csr, 20, 50, 100, 0.0, "float32"),    // dense as sparse
    ];

    public static TheoryData<string, int> Sparse
    {
        get
        {
            var data = new TheoryData<string, int>();
            foreach (string target in Targets)
            {
                for (int i = 0; i < SparseCases.Length; i++)
                    data.Add(target, i);
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Sparse))]
    public void SparseMatchesTheReference(string target, int index)
    {
        SparseCase c = SparseCases[index];
        KernelSession session = Open(target);
        Seeded.Run((random, _) =>
        {
            int m = c.M, n = c.N, k = c.K;
            string what = $"{target} {c}";
            if (c.Output == "float32")
            {
                float[] dense = SparseTestData.PrunedFloats(random, n, k, c.Format, c.Sparsity).Select(v => v / 64f).ToArray();
                SparseMatrixF32 wf = SparseTestData.FloatMatrix(dense, n, k, c.Format);
                float[] xf = Seeded.Floats(random, (long)m * k, -2, 2);
                float[] bias = Seeded.Floats(random, n, -1, 1);
                using DeviceSparseMatrix<float> dwf = session.Upload(wf);
                using DeviceBuffer<float> dxf = session.Upload<float>(xf);
                using DeviceBuffer<float> dbias = session.Upload<float>(bias);
                using DeviceBuffer<float> dyf = session.Upload<float>(Poisoned((long)m * n + 5, float.NaN));
                session.SparseGemm(dwf, dxf, dbias, dyf, m);
                float[] yf = dyf.ToArray();
                double[] expectedF = HostReference.SparseGemm(wf, xf, m, bias);
                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < n; j++)
                    {
                        // float32 sums of k products: each addition rounds once, relative to Σ|x·w|.
                        double magnitude = Math.Abs(bias[j]);
                        for (int t = 0; t < k; t++)
                            magnitude += Math.Abs((double)xf[i * k + t] * dense[j * k + t]);
                        double error = Math.Abs(yf[i * n + j] - expectedF[i * n + j]);
                        Assert.True(error <= (k + 2) * 6e-8 * magnitude + 1e-7, $"{what} ({i}, {j}): {yf[i * n + j]}, expected {expectedF[i * n + j]}");
                    }
                }
                Assert.All(yf[(m * n)..], v => Assert.True(float.IsNaN(v), $"{what}: written past the output"));
                return;
            }

            sbyte[] w = SparseTestData.PrunedInt8(random, n, k, c.Format, c.Sparsity);
            SparseMatrix sparse = SparseTestData.Int8Matrix(w, n, k, c.Format);
            sbyte[] x = Seeded.Int8(random, (long)m * k);
            using DeviceSparseMatrix<sbyte> dw = session.Upload(sparse);
            using DeviceBuffer<sbyte> dx = session.Upload<sbyte>(x);
            if (c.Output == "int32")
            {
                using DeviceBuffer<int> dy = session.Upload<int>(Poisoned((long)m * n + 5, unchecked((int)0xDEADBEEF)));
                session.SparseInt8Gemm(dw, dx, dy, m);
                int[] y = dy.ToArray();
                Expect.Equal(HostReference.SparseInt8Gemm(sparse, x, m), y[..(m * n)], what);
                AssertPoisoned(y, (long)m * n, unchecked((int)0xDEADBEEF), what);
                return;
            }
            float[] xScale = Seeded.Floats(random, m, 1e-3f, 0.1f);
            float[] wScale = Seeded.Floats(random, n, 1e-3f, 0.1f);
            float[] b = Seeded.Floats(random, n, -1, 1);
            using DeviceBuffer<float> dxs = session.Upload<float>(xScale);
            using DeviceBuffer<float> dws = session.Upload<float>(wScale);
            using DeviceBuffer<float> db = session.Upload<float>(b);
            using DeviceBuffer<float> dyq = session.Upload<float>(Poisoned((long)m * n + 5, float.NaN));
            session.SparseInt8GemmDequant(dw, dx, dxs, dws, db, dyq, m);
            float[] yq = dyq.ToArray();
            Expect.Close(HostReference.Int8GemmDequant(x, w, xScale, wScale, b, m, n, k), yq[..(m * n)], 5e-7, 1.2e-6, what);
            Assert.All(yq[(m * n)..], v => Assert.True(float.IsNaN(v), $"{what}: written past the output"));
        });
    }

    // ------------------------------------------------------------------------------------- attention

    /// <summary>An attention case: shape, window, storage, and (decode) ragged cache lengths with a split count.</summary>
    public sealed record AttentionCase(AttentionShape Shape, int Window, bool Half, bool Decode, int Splits)
    {
        public override string ToString() =>
            $"{Shape}{(Window > 0 ? $" window {Window}" : "")}{(Half ? " half" : "")}{(Decode ? $" decode splits {Splits}" : "")}";
    }

    public static readonly AttentionCase[] AttentionCases =
    [
        new(new AttentionShape(1, 1, 1, 1, 1, 16, false), 0, false, false, 0),
        new(new AttentionShape(2, 2, 2, 7, 33, 16, false), 0, false, false, 0),     // odd lengths
        new(new AttentionShape(2, 2, 2, 33, 33, 16, true), 0, false, false, 0),     // causal
        new(new AttentionShape(1, 4, 1, 5, 70, 64, true), 0, false, false, 0),      // multi-query, causal bottom-right
        new(new AttentionShape(1, 6, 2, 19, 19, 32, true), 4, false, false, 0),     // grouped, sliding window
        new(new AttentionShape(1, 2, 2, 9, 40, 128, false), 7, false, false, 0),    // wide head, window not causal
        new(new AttentionShape(1, 2, 1, 11, 11, 64, true), 0, true, false, 0),      // half storage
        new(new AttentionShape(3, 4, 2, 1, 300, 64, true), 0, false, true, 0),      // ragged decode, automatic splits
        new(new AttentionShape(2, 2, 2, 3, 97, 32, true), 16, false, true, 5),      // decode, three queries, window, 5 splits
    ];

    public static TheoryData<string, int> Attention
    {
        get
        {
            var data = new TheoryData<string, int>();
            foreach (string target in Targets)
            {
                for (int i = 0; i < AttentionCases.Length; i++)
                    data.Add(target, i);
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Attention))]
    public void AttentionMatchesTheReference(string target, int index)
    {
        AttentionCase c = AttentionCases[index];
        KernelSession session = Open(target);
        Seeded.Run((random, _) =>
        {
            AttentionShape shape = c.Shape;
            var options = new AttentionOptions(Window: c.Window);
            string what = $"{target} {c}";
            float[] q = Seeded.Floats(random, shape.QueryElements, -1, 1);
            float[] k = Seeded.Floats(random, shape.KeyElements, -1, 1);
            float[] v = Seeded.Floats(random, shape.KeyElements, -1, 1);
            if (c.Half)
            {
                // Inputs representable in half, so the reference sees exactly what the kernel stores.
                q = [.. q.Select(x => (float)(Half)x)];
                k = [.. k.Select(x => (float)(Half)x)];
                v = [.. v.Select(x => (float)(Half)x)];
                Half[] got = session.Attention([.. q.Select(x => (Half)x)], [.. k.Select(x => (Half)x)], [.. v.Select(x => (Half)x)], shape, options);
                double[] reference = HostReference.Attention(q, k, v, shape, options);
                // One rounding to half at the end: 2^-11 relative, plus the float32 kernel's own error.
                Expect.Close(reference, [.. got.Select(x => (float)x)], 4.9e-4, 1e-4, what);
                return;
            }

            int[] lengths = c.Decode
                ? [.. Enumerable.Range(0, shape.Batch).Select(b => b == 0 ? shape.KeyLength : random.Next(shape.QueryLength, shape.KeyLength + 1))]
                : [];
            double[] expected = HostReference.Attention(q, k, v, shape, options, lengths);
            using DeviceBuffer<float> dq = session.Upload<float>(q);
            using DeviceBuffer<float> dk = session.Upload<float>(k);
            using DeviceBuffer<float> dv = session.Upload<float>(v);
            using DeviceBuffer<float> output = session.Upload<float>(Poisoned(shape.QueryElements + 3, float.NaN));
            if (c.Decode)
            {
                using DeviceBuffer<int> dl = session.Upload<int>(lengths);
                session.AttentionDecode(dq, dk, dv, dl, output, shape, options, c.Splits);
            }
            else
            {
                session.Attention(dq, dk, dv, output, shape, options);
            }
            float[] y = output.ToArray();
            Expect.Close(expected, y[..(int)shape.QueryElements], 1e-4, 1e-4, what);
            Assert.All(y[(int)shape.QueryElements..], x => Assert.True(float.IsNaN(x), $"{what}: written past the output"));
        });
    }

    // --------------------------------------------------------------------------------------- helpers

    internal static T[] Poisoned<T>(long length, T value)
    {
        var data = new T[length];
        Array.Fill(data, value);
        return data;
    }

    private static void AssertPoisoned(int[] values, long from, int poison, string what)
    {
        for (long i = from; i < values.Length; i++)
            Assert.True(values[i] == poison, $"{what}: element {i} past the output was written");
    }
}
