using Kernels.Backends.CudaPtx;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Tests.TensorCore;

/// <summary>
/// The generated PTX run by <see cref="PtxInterpreter"/> on small, odd shapes: int32 output bit for bit
/// against an int64 reference, the dequantized output bit for bit against the epilogue's float math,
/// every output written exactly once and nothing else written.
/// </summary>
public class TensorCoreInterpreterTests
{
    /// <summary>The shipped tiles and two more shapes of the generator's parameters (BlockK 32 and 128, 2 stages).</summary>
    internal static readonly TensorCoreTile[] Tiles =
    [
        .. TensorCorePtx.GemmTiles,
        new TensorCoreTile(32, 32, 32, 1, 1, 2),
        new TensorCoreTile(64, 32, 128, 2, 1, 3),
    ];

    public static TheoryData<int, int, int, int, int, bool> GemmCases
    {
        get
        {
            var data = new TheoryData<int, int, int, int, int, bool>();
            (int M, int N, int K, int Batch)[] shapes =
            [
                (1, 1, 1, 1),
                (17, 23, 50, 1),
                (37, 71, 83, 1),
                (100, 97, 96, 1),
                (13, 131, 200, 1),
                (33, 45, 61, 2),
            ];
            for (int t = 0; t < Tiles.Length; t++)
            {
                foreach ((int m, int n, int k, int batch) in shapes)
                {
                    data.Add(t, m, n, k, batch, false);
                    data.Add(t, m, n, k, batch, true);
                }
            }
            data.Add(0, 131, 5, 77, 1, true);
            data.Add(1, 70, 3, 300, 1, false);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(GemmCases))]
    public void GemmComputesTheProductAndEpilogue(int tileIndex, int m, int n, int k, int batch, bool dequant) =>
        Seeded.Run((random, _) =>
        {
            TensorCoreTile tile = Tiles[tileIndex];
            PtxEpilogue epilogue = dequant ? PtxEpilogue.Dequant : PtxEpilogue.Raw;
            var grid = ((n + tile.BlockN - 1) / tile.BlockN, (m + tile.BlockM - 1) / tile.BlockM, batch);
            Case c = Case.Create(random, m, n, k, batch, lda: (k + 15) / 16 * 16, sharedB: batch > 1, garbagePadding: true, withBias: random.Next(2) == 1);
            var interpreter = new PtxInterpreter(TensorCorePtx.Module([tile], []));
            c.Run(interpreter, new TensorCorePlan(tile.Name, tile, null, grid, tile.Threads), epilogue);
        });

    /// <summary>The shipped decode tiles and two more: one warp (no reduction), three warps with one step per group.</summary>
    internal static readonly DecodeTile[] DecodeTiles =
    [
        .. TensorCorePtx.DecodeTiles,
        new DecodeTile(2, 1, 3),
        new DecodeTile(1, 3, 1),
    ];

    public static TheoryData<int, int, int, int, bool> DecodeCases
    {
        get
        {
            var data = new TheoryData<int, int, int, int, bool>();
            (int Tile, int M, int N, int K)[] shapes =
            [
                (0, 1, 37, 16),
                (0, 5, 100, 208),
                (0, 8, 64, 336),
                (0, 3, 17, 1024),
                (1, 13, 50, 80),
                (1, 9, 65, 144),
                (2, 32, 33, 272),
                (2, 19, 17, 48),
                (2, 25, 70, 528),
                (0, 6, 20, 2000),
                (3, 16, 40, 400),
                (3, 1, 3, 16),
                (4, 8, 35, 1008),
                (4, 3, 16, 64),
            ];
            foreach ((int tile, int m, int n, int k) in shapes)
            {
                data.Add(tile, m, n, k, false);
                data.Add(tile, m, n, k, true);
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(DecodeCases))]
    public void DecodeComputesTheProductAndEpilogue(int tileIndex, int m, int n, int k, bool dequant) =>
        Seeded.Run((random, _) =>
        {
            DecodeTile tile = DecodeTiles[tileIndex];
            PtxEpilogue epilogue = dequant ? PtxEpilogue.Dequant : PtxEpilogue.Raw;
            // The decode kernel takes k % 16 = 0 and zero padding (the host passes the padded k).
            Case c = Case.Create(random, m, n, k, 1, lda: k, sharedB: false, garbagePadding: false, withBias: random.Next(2) == 1);
            var interpreter = new PtxInterpreter(TensorCorePtx.Module([], [tile]));
            c.Run(interpreter, new TensorCorePlan(tile.Name, null, tile, ((n + DecodeTile.RowsPerBlock - 1) / DecodeTile.RowsPerBlock, 1, 1), tile.Threads), epilogue);
        });

    [Fact]
    public void DecodeHandlesABatch() =>
        Seeded.Run((random, _) =>
        {
            DecodeTile tile = TensorCorePtx.DecodeTiles[1];
            Case c = Case.Create(random, 11, 40, 96, 3, lda: 96, sharedB: true, garbagePadding: false, withBias: true);
            var interpreter = new PtxInterpreter(TensorCorePtx.Module([], [tile]));
            c.Run(interpreter, new TensorCorePlan(tile.Name, null, tile, ((40 + DecodeTile.RowsPerBlock - 1) / DecodeTile.RowsPerBlock, 1, 3), tile.Threads), PtxEpilogue.Dequant);
        });

    private static readonly Lazy<PtxInterpreter> Library = new(() => new PtxInterpreter(TensorCorePtx.LibraryModule()));

    /// <summary>
    /// The module the session loads, run the way the session runs it: the host's plan (kernel and grid),
    /// the host's rule for reading rows in place or padded with zeros, the host's argument list.
    /// </summary>
    [Theory]
    [InlineData(1, 50, 40, 1, false)]
    [InlineData(7, 130, 64, 1, true)]
    [InlineData(20, 33, 96, 2, true)]
    [InlineData(32, 65, 21, 1, false)]
    [InlineData(33, 70, 77, 1, true)]
    [InlineData(140, 20, 32, 1, false)]
    [InlineData(45, 129, 48, 3, true)]
    public void LibraryModuleThroughTheHostPlanAndArguments(int m, int n, int k, int batch, bool dequant) =>
        Seeded.Run((random, _) =>
        {
            TensorCorePlan plan = TensorCoreGemm.Plan(m, n, batch, multiprocessors: 132);
            int rowBytes = TensorCoreGemm.RowsUsableInPlace(k, 0, 0) ? k : (k + 15) / 16 * 16;
            // Padded rows hold zeros past k, as the host's PackRows writes them.
            Case c = Case.Create(random, m, n, k, batch, lda: rowBytes, sharedB: batch > 1, garbagePadding: false, withBias: true);
            c.Run(Library.Value, plan, dequant ? PtxEpilogue.Dequant : PtxEpilogue.Raw);
        });

    /// <summary>Every entry of the library module and every instruction form in it runs at least once.</summary>
    [Fact]
    public void InterpreterCoversEveryInstructionOfTheLibraryModule() =>
        Seeded.Run((random, _) =>
        {
            var interpreter = new PtxInterpreter(TensorCorePtx.LibraryModule());
            var launched = new HashSet<string>(StringComparer.Ordinal);
            foreach (bool dequant in new[] { false, true })
            {
                // multiprocessors 1: the large tile; 1000: the small one; m ≤ 32: the decode tiles.
                foreach ((int m, int n, int k, int sms) in new[] { (40, 20, 30, 1), (40, 20, 30, 1000), (3, 20, 600, 1), (12, 20, 48, 1), (30, 20, 300, 1) })
                {
                    TensorCorePlan plan = TensorCoreGemm.Plan(m, n, 1, sms);
                    Case c = Case.Create(random, m, n, k, 1, lda: (k + 15) / 16 * 16, sharedB: false, garbagePadding: plan.Gemm is not null, withBias: dequant);
                    PtxEpilogue epilogue = dequant ? PtxEpilogue.Dequant : PtxEpilogue.Raw;
                    c.Run(interpreter, plan, epilogue);
                    launched.Add(TensorCoreGemm.EntryName(plan, epilogue));
                }
            }
            Assert.Equal(interpreter.EntryNames.OrderBy(x => x, StringComparer.Ordinal), launched.OrderBy(x => x, StringComparer.Ordinal));
            string[] neverRun = interpreter.Opcodes.Where(o => !interpreter.Executed.ContainsKey(o)).ToArray();
            Assert.True(neverRun.Length == 0, $"never executed: {string.Join(", ", neverRun)}");
            TestContext.Current.TestOutputHelper?.WriteLine(string.Join("\n", interpreter.Executed.OrderBy(x => x.Key, StringComparer.Ordinal).Select(x => $"{x.Key}: {x.Value}")));
        });

    [Fact]
    public void ArgumentsFollowTheParameterOrder()
    {
        var operands = new TensorCoreOperands(101, 102, 103, 104, 105, 106, 112, 113, true, 115, 116, 117, 118, 119);
        TensorCorePlan gemm = TensorCoreGemm.Plan(100, 100, 1, 132);
        long[] arguments = TensorCoreGemm.Arguments(gemm, 107, 108, 109, operands);
        var byName = TensorCorePtx.Parameters.Select((p, i) => (p.Name, Value: arguments[i])).ToDictionary(x => x.Name, x => x.Value);
        Assert.Equal(101, byName["p_a"]);
        Assert.Equal(102, byName["p_b"]);
        Assert.Equal(103, byName["p_out"]);
        Assert.Equal(104, byName["p_ascale"]);
        Assert.Equal(105, byName["p_bscale"]);
        Assert.Equal(106, byName["p_bias"]);
        Assert.Equal(107, byName["p_m"]);
        Assert.Equal(108, byName["p_n"]);
        Assert.Equal(109, byName["p_k"]);
        Assert.Equal(112, byName["p_lda"]);
        Assert.Equal(112, byName["p_ldb"]);
        Assert.Equal(113, byName["p_ldc"]);
        Assert.Equal(1, byName["p_hasbias"]);
        Assert.Equal(115, byName["p_stride_a"]);
        Assert.Equal(116, byName["p_stride_b"]);
        Assert.Equal(117, byName["p_stride_c"]);
        Assert.Equal(118, byName["p_stride_ascale"]);
        Assert.Equal(119, byName["p_stride_bscale"]);
        // The decode kernel gets the padded k (the row stride).
        Assert.Equal(112, TensorCoreGemm.Arguments(TensorCoreGemm.Plan(8, 100, 1, 132), 8, 108, 109, operands)[8]);
    }

    [Fact]
    public void InterpreterRejectsAnOutOfBoundsRead()
    {
        // m larger than the rows A holds: the kernel's loads must hit memory that is not there.
        TensorCoreTile tile = Tiles[2];
        var interpreter = new PtxInterpreter(TensorCorePtx.Module([tile], []));
        var memory = new PtxInterpreter.GlobalMemory();
        ulong a = memory.Allocate(new byte[16 * 32]);
        ulong b = memory.Allocate(new byte[32 * 32]);
        ulong c = memory.Allocate(new int[32 * 32]);
        Assert.Throws<PtxExecutionException>(() => interpreter.Launch(
            TensorCorePtx.EntryName(tile, PtxEpilogue.Raw), (1, 1, 1), tile.Threads, memory,
            (long)a, (long)b, (long)c, 0, 0, 0, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0, 0, 0));
    }

    /// <summary>One GEMM problem in emulated memory, its reference and the checks.</summary>
    private sealed class Case
    {
        public int M, N, K, Batch, Lda;
        public long StrideA, StrideB, StrideC, StrideAScale, StrideBScale;
        public sbyte[] A = [], B = [];
        public float[] AScale = [], BScale = [], Bias = [];
        public bool HasBias;

        public static Case Create(Random random, int m, int n, int k, int batch, int lda, bool sharedB, bool garbagePadding, bool withBias)
        {
            var c = new Case { M = m, N = n, K = k, Batch = batch, Lda = lda, HasBias = withBias };
            c.StrideA = (long)m * lda;
            c.StrideB = sharedB ? 0 : (long)n * lda;
            c.StrideC = (long)m * n + 5; // a gap between the outputs of a batch that must stay untouched
            c.StrideAScale = m;
            c.StrideBScale = sharedB ? 0 : n;
            c.A = Matrix(random, batch * m, k, lda, garbagePadding);
            c.B = Matrix(random, (sharedB ? 1 : batch) * n, k, lda, garbagePadding);
            c.AScale = Seeded.Floats(random, (long)batch * m, -0.02f, 0.02f);
            c.BScale = Seeded.Floats(random, (long)(sharedB ? 1 : batch) * n, -0.05f, 0.05f);
            c.Bias = Seeded.Floats(random, (long)(sharedB ? 1 : batch) * n, -3f, 3f);
            // Exact zeros in the scales make -0.0 results: the bias must be skipped, not added as 0.
            c.AScale[0] = 0f;
            if (n > 1)
                c.BScale[1] = -c.BScale[1];
            return c;
        }

        private static sbyte[] Matrix(Random random, int rows, int k, int lda, bool garbagePadding)
        {
            var data = new sbyte[rows * lda];
            for (int r = 0; r < rows; r++)
            {
                for (int j = 0; j < lda; j++)
                {
                    if (j < k || garbagePadding)
                        data[r * lda + j] = (sbyte)random.Next(-128, 128);
                }
            }
            return data;
        }

        public void Run(PtxInterpreter interpreter, TensorCorePlan plan, PtxEpilogue epilogue)
        {
            bool dequant = epilogue == PtxEpilogue.Dequant;
            var memory = new PtxInterpreter.GlobalMemory();
            ulong a = memory.Allocate(A.Select(x => (byte)x).ToArray());
            ulong b = memory.Allocate(B.Select(x => (byte)x).ToArray());
            long outLength = (Batch - 1) * StrideC + (long)M * N;
            ulong output = dequant ? memory.Allocate(new float[outLength]) : memory.Allocate(new int[outLength]);
            ulong aScale = memory.Allocate(AScale);
            ulong bScale = memory.Allocate(BScale);
            ulong bias = memory.Allocate(Bias);
            var operands = new TensorCoreOperands((long)a, (long)b, (long)output, (long)aScale, (long)bScale, (long)bias,
                Lda, N, HasBias, StrideA, StrideB, StrideC, StrideAScale, StrideBScale);
            interpreter.Launch(TensorCoreGemm.EntryName(plan, epilogue), plan.Grid, plan.Threads, memory,
                TensorCoreGemm.Arguments(plan, M, N, K, operands));

            byte[] bytes = memory.Bytes(output);
            int[] stores = memory.Stores(output);
            var written = new bool[outLength];
            for (int z = 0; z < Batch; z++)
            {
                for (int i = 0; i < M; i++)
                {
                    for (int j = 0; j < N; j++)
                    {
                        long acc = 0;
                        for (int kk = 0; kk < K; kk++)
                            acc += A[z * StrideA + (long)i * Lda + kk] * B[z * StrideB + (long)j * Lda + kk];
                        long index = z * StrideC + (long)i * N + j;
                        written[index] = true;
                        Assert.True(stores[4 * index] == 1, $"output ({z}, {i}, {j}) stored {stores[4 * index]} times");
                        int actual = BitConverter.ToInt32(bytes, (int)(4 * index));
                        if (!dequant)
                        {
                            Assert.True(acc == actual, $"C[{z}][{i},{j}]: expected {acc}, got {actual}");
                            continue;
                        }
                        // The same float math as DequantEpilogue.Store.
                        float expected = (int)acc * AScale[z * StrideAScale + i] * BScale[z * StrideBScale + j];
                        if (HasBias)
                            expected += Bias[z * StrideBScale + j];
                        int expectedBits = BitConverter.SingleToInt32Bits(expected);
                        Assert.True(expectedBits == actual,
                            $"Y[{z}][{i},{j}]: expected {expected:R} (0x{expectedBits:X8}), got {BitConverter.Int32BitsToSingle(actual):R} (0x{actual:X8})");
                    }
                }
            }
            for (long index = 0; index < outLength; index++)
            {
                if (!written[index])
                    Assert.True(stores[4 * index] == 0, $"element {index} outside the outputs was written");
            }
        }
    }
}
