using System.Text.RegularExpressions;
using Kernels.Backends.CudaPtx;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Tests.TensorCore;

/// <summary>
/// The 2:4 sparse tensor-core kernel: the host packing, the generated PTX run by <see cref="PtxInterpreter"/>
/// on small odd shapes bit for bit against an int64 reference of the dense pruned matrix (both
/// epilogues, both mma.sp forms), and ptxas -v on sm_80 and sm_90.
/// </summary>
public class SparseTensorCoreTests
{
    /// <summary>The shipped tiles and two more: warps along the tokens with one step per loop, three fragments of rows.</summary>
    internal static readonly SparseTensorCoreTile[] Tiles =
    [
        .. SparseTensorCorePtx.Tiles,
        new SparseTensorCoreTile(1, 2, 1, 2, 1),
        new SparseTensorCoreTile(3, 1, 1, 1, 3),
    ];

    // ------------------------------------------------------------------ packing

    [Fact]
    public void PackingPutsEachKeptValueWhereTheFragmentLayoutSaysAndPadsWithPositionsZeroOne()
    {
        // One row, 8 columns: group 0 keeps positions 1, 3 (values 5, 6), group 1 keeps 0, 2 (7, 8).
        sbyte[] values = [5, 6, 7, 8];
        byte[] meta = [1 | (3 << 2), 0 | (2 << 2)];
        SparseTensorCorePacked p = SparseTensorCorePacked.Pack(1, 8, values, meta);
        Assert.Equal(1, p.RowTiles);
        Assert.Equal(1, p.KSteps);
        Assert.Equal(512, p.Values.Length);
        Assert.Equal(32, p.Meta.Length);
        // Real chunk 0 sits at mma chunk 0 (lane 0 register 0 bytes 0-1); real chunk 1 at mma chunk 4
        // (ActualChunk(4) = 1): lane t = 2, register 0, bytes 0-1.
        Assert.Equal(1, SparseTensorCorePtx.ActualChunk(4));
        Assert.Equal([5, 6], p.Values[0..2].Select(b => (int)(sbyte)b));
        Assert.Equal([7, 8], p.Values[(16 * 2)..(16 * 2 + 2)].Select(b => (int)(sbyte)b));
        // Metadata of row 0, mma chunks 0..7: lane 0; chunk 4 holds real chunk 1; all else padding 0b0100.
        uint expected = 0x44444444u;
        expected = (expected & ~0xFu) | 0xDu;
        expected = (expected & ~(0xFu << 16)) | (0x8u << 16);
        Assert.Equal(expected, p.Meta[0]);
        Assert.Equal(0x44444444u, p.Meta[1]); // row 8: past the matrix
        Assert.All(p.Values.Where((_, i) => i is not (0 or 1 or 32 or 33)), b => Assert.Equal(0, b));
    }

    [Fact]
    public void PackingRefusesMetadataThatIsNotFirstBelowSecond()
    {
        Assert.Throws<ArgumentException>(() => SparseTensorCorePacked.Pack(1, 4, new sbyte[2], [0]));
        Assert.Throws<ArgumentException>(() => SparseTensorCorePacked.Pack(1, 4, new sbyte[2], [2 | (1 << 2)]));
        Assert.Throws<ArgumentException>(() => SparseTensorCorePacked.Pack(1, 4, new sbyte[4], [4]));
    }

    // ------------------------------------------------------------------ interpreter

    public static TheoryData<int, int, int, int, bool, bool> Cases
    {
        get
        {
            var data = new TheoryData<int, int, int, int, bool, bool>();
            (int M, int N, int K)[] shapes =
            [
                (1, 1, 1),
                (5, 37, 100),
                (8, 16, 64),
                (13, 50, 130),
                (33, 70, 200),
                (70, 33, 257),
            ];
            for (int t = 0; t < Tiles.Length; t++)
            {
                for (int s = 0; s < shapes.Length; s++)
                {
                    (int m, int n, int k) = shapes[s];
                    data.Add(t, m, n, k, (s + t) % 2 == 1, (s + t) % 3 == 0);
                }
            }
            data.Add(2, 100, 130, 460, true, false);
            data.Add(0, 3, 200, 1000, false, true);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void KernelComputesThePrunedProductAndEpilogue(int tileIndex, int m, int n, int k, bool dequant, bool ordered) =>
        Seeded.Run((random, _) =>
        {
            SparseTensorCoreTile tile = Tiles[tileIndex];
            var interpreter = new PtxInterpreter(SparseTensorCorePtx.Module([tile], ordered));
            Run(random, interpreter, tile, m, n, k, dequant ? PtxEpilogue.Dequant : PtxEpilogue.Raw);
        });

    [Fact]
    public void LibraryModuleRunsEveryEntryThroughTheHostPlan() =>
        Seeded.Run((random, _) =>
        {
            foreach (bool ordered in new[] { false, true })
            {
                var interpreter = new PtxInterpreter(SparseTensorCorePtx.LibraryModule(ordered));
                foreach (int m in new[] { 7, 20, 45 })
                {
                    SparseTensorCorePlan plan = SparseTensorCoreGemm.Plan(m, 40);
                    Assert.Same(SparseTensorCorePtx.TileFor(m), plan.Tile);
                    foreach (PtxEpilogue epilogue in new[] { PtxEpilogue.Raw, PtxEpilogue.Dequant })
                        Run(random, interpreter, plan.Tile, m, 40, 150, epilogue);
                }
                // Every instruction form of the module ran at least once.
                Assert.DoesNotContain(interpreter.Opcodes, o => !interpreter.Executed.ContainsKey(o));
            }
        });

    /// <summary>Builds a pruned 2:4 problem, packs it, runs the kernel and checks every output.</summary>
    private static void Run(Random random, PtxInterpreter interpreter, SparseTensorCoreTile tile, int m, int n, int k, PtxEpilogue epilogue)
    {
        bool dequant = epilogue == PtxEpilogue.Dequant;
        // Heavier pruning than 2:4 leaves groups with one or no non-zero.
        sbyte[] dense = Sparse.SparseTestData.PrunedInt8(random, n, k, SparseFormat.TwoFour, 0.6);
        SparseMatrix w = SparseMatrix.FromDense(dense, n, k, SparseFormat.TwoFour);
        SparseTensorCorePacked packed = SparseTensorCorePacked.Pack(n, k, w.Values, w.Meta);
        int ldx = (k + 15) / 16 * 16;
        var x = new sbyte[m * ldx];
        for (int i = 0; i < x.Length; i++)
            x[i] = (sbyte)random.Next(-128, 128); // garbage between k and ldx meets zero weights
        float[] xScale = Seeded.Floats(random, m, -0.02f, 0.02f);
        float[] wScale = Seeded.Floats(random, n, -0.05f, 0.05f);
        float[] bias = Seeded.Floats(random, n, -3f, 3f);
        xScale[0] = 0f;
        bool hasBias = random.Next(2) == 1;

        var memory = new PtxInterpreter.GlobalMemory();
        ulong values = memory.Allocate(packed.Values);
        ulong meta = memory.Allocate(packed.Meta);
        ulong xa = memory.Allocate(x.Select(v => (byte)v).ToArray());
        int ldc = n + 3; // a gap after each row that must stay untouched
        long outLength = (long)(m - 1) * ldc + n;
        ulong output = dequant ? memory.Allocate(new float[outLength]) : memory.Allocate(new int[outLength]);
        ulong xs = memory.Allocate(xScale), ws = memory.Allocate(wScale), b = memory.Allocate(bias);
        var operands = new SparseTensorCoreOperands((long)values, (long)meta, (long)xa, (long)output, (long)xs, (long)ws, (long)b, ldx, ldx, ldc, hasBias);
        var grid = ((n + tile.RowsPerBlock - 1) / tile.RowsPerBlock, (m + tile.TokensPerBlock - 1) / tile.TokensPerBlock, 1);
        interpreter.Launch(SparseTensorCorePtx.EntryName(tile, epilogue), grid, tile.Threads, memory,
            SparseTensorCoreGemm.Arguments(m, n, packed.KSteps, operands));

        byte[] bytes = memory.Bytes(output);
        int[] stores = memory.Stores(output);
        var written = new bool[outLength];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                long acc = 0;
                for (int kk = 0; kk < k; kk++)
                    acc += x[i * ldx + kk] * dense[j * k + kk];
                long index = (long)i * ldc + j;
                written[index] = true;
                Assert.True(stores[4 * index] == 1, $"Y[{i},{j}] stored {stores[4 * index]} times");
                int actual = BitConverter.ToInt32(bytes, (int)(4 * index));
                if (!dequant)
                {
                    Assert.True(acc == actual, $"Y[{i},{j}]: expected {acc}, got {actual}");
                    continue;
                }
                float expected = (int)acc * xScale[i] * wScale[j];
                if (hasBias)
                    expected += bias[j];
                int expectedBits = BitConverter.SingleToInt32Bits(expected);
                Assert.True(expectedBits == actual,
                    $"Y[{i},{j}]: expected {expected:R} (0x{expectedBits:X8}), got {BitConverter.Int32BitsToSingle(actual):R} (0x{actual:X8})");
            }
        }
        for (long index = 0; index < outLength; index++)
        {
            if (!written[index])
                Assert.True(stores[4 * index] == 0, $"element {index} outside the outputs was written");
        }
    }

    [Fact]
    public void InterpreterRefusesUndefinedMetadata()
    {
        // A zero metadata word (positions 0, 0 everywhere) is undefined behaviour: the interpreter throws.
        SparseTensorCoreTile tile = Tiles[0];
        var interpreter = new PtxInterpreter(SparseTensorCorePtx.Module([tile], false));
        var memory = new PtxInterpreter.GlobalMemory();
        ulong values = memory.Allocate(new byte[512]);
        ulong meta = memory.Allocate(new uint[32]);
        ulong x = memory.Allocate(new byte[64]);
        ulong y = memory.Allocate(new int[16]);
        Assert.Throws<PtxExecutionException>(() => interpreter.Launch(
            SparseTensorCorePtx.EntryName(tile, PtxEpilogue.Raw), (1, 1, 1), tile.Threads, memory,
            SparseTensorCoreGemm.Arguments(1, 16, 1, new SparseTensorCoreOperands((long)values, (long)meta, (long)x, (long)y, 0, 0, 0, 64, 64, 16, false))));
    }

    // ------------------------------------------------------------------ structure and ptxas

    [Fact]
    public void ModulesDeclareTheirIsaAndOnlyTheRoundedFloatForms()
    {
        string plain = SparseTensorCorePtx.LibraryModule(false), ordered = SparseTensorCorePtx.LibraryModule(true);
        Assert.Equal(plain, SparseTensorCorePtx.LibraryModule(false));
        Assert.Contains(".version 7.8\n.target sm_80\n", plain, StringComparison.Ordinal);
        Assert.Contains(".version 8.5\n.target sm_80\n", ordered, StringComparison.Ordinal);
        Assert.DoesNotContain("::ordered_metadata", plain, StringComparison.Ordinal);
        Assert.Equal(Regex.Count(plain, "mma.sp.sync"), Regex.Count(ordered, "mma.sp::ordered_metadata.sync"));
        foreach (string name in SparseTensorCoreGemm.EntryNames())
            Assert.Contains($".visible .entry {name}(", plain, StringComparison.Ordinal);
        foreach (string module in new[] { plain, ordered })
        {
            Assert.DoesNotContain("fma.", module, StringComparison.Ordinal);
            Assert.DoesNotContain("mul.f32", module, StringComparison.Ordinal);
            Assert.DoesNotContain(".shared", module, StringComparison.Ordinal);
            Assert.DoesNotContain(".local", module, StringComparison.Ordinal);
        }
        foreach (SparseTensorCoreTile tile in Tiles)
        {
            // Main loop KUnroll steps, tail one step: FragmentsM·FragmentsN mma per step.
            string entry = SparseTensorCorePtx.Entry(tile, PtxEpilogue.Raw, false);
            Assert.Equal((tile.KUnroll + 1) * tile.FragmentsM * tile.FragmentsN, Regex.Count(entry, Regex.Escape(SparseTensorCorePtx.MmaOpcode(false))));
            Assert.Equal(4 * tile.FragmentsM * tile.FragmentsN, Regex.Count(entry, Regex.Escape("st.global.b32")));
        }
        Assert.Throws<ArgumentException>(() => SparseTensorCorePtx.Entry(new SparseTensorCoreTile(5, 1, 1, 1, 1), PtxEpilogue.Raw, false));
    }

    public static TheoryData<string, string> Variants
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string arch in new[] { "sm_80", "sm_90" })
            {
                foreach (SparseTensorCoreTile tile in Tiles)
                    data.Add(tile.Name, arch);
            }
            return data;
        }
    }

    /// <summary>The plain mma.sp module (ptxas 11.8 knows PTX ≤ 7.8, so not the ::ordered_metadata one): no spills, ≤ 128 registers.</summary>
    [Theory]
    [MemberData(nameof(Variants))]
    public void PtxasAssemblesWithoutSpillsWithinTheRegisterBudget(string variant, string arch)
    {
        SparseTensorCoreTile tile = Tiles.First(t => t.Name == variant);
        IReadOnlyList<PtxasFunction> functions = Ptxas.Assemble(SparseTensorCorePtx.Module([tile], false), arch, variant);
        Assert.Equal(2, functions.Count);
        foreach (PtxasFunction f in functions)
        {
            Assert.True(f.StackBytes == 0 && f.SpillStores == 0 && f.SpillLoads == 0, $"{f.Name} ({arch}): stack {f.StackBytes}, spills {f.SpillStores}/{f.SpillLoads}");
            Assert.True(f.Registers <= 128, $"{f.Name} ({arch}): {f.Registers} registers > 128");
        }
    }
}
