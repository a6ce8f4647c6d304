using System.Globalization;
using System.Text.RegularExpressions;
using Kernels.Backends.CudaPtx;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Tests.TensorCore;

/// <summary>The generated PTX: deterministic, the expected structure, and (where ptxas is found) assembled for sm_80 and sm_90.</summary>
public class TensorCorePtxTests
{
    [Fact]
    public void ModuleIsDeterministic()
    {
        Assert.Equal(TensorCorePtx.LibraryModule(), TensorCorePtx.LibraryModule());
        Assert.Equal(
            TensorCorePtx.GemmEntry(TensorCorePtx.GemmTiles[0], PtxEpilogue.Dequant),
            TensorCorePtx.GemmEntry(new TensorCoreTile(128, 128, 64, 2, 4, 3), PtxEpilogue.Dequant));
    }

    [Fact]
    public void ModuleDeclaresTheIsaAndHoldsEveryEntry()
    {
        string module = TensorCorePtx.LibraryModule();
        Assert.StartsWith("// Generated", module, StringComparison.Ordinal);
        Assert.Contains(".version 7.8\n.target sm_80\n.address_size 64\n", module, StringComparison.Ordinal);
        foreach (string name in TensorCoreGemm.EntryNames())
            Assert.Contains($".visible .entry {name}(", module, StringComparison.Ordinal);
        Assert.Equal(TensorCoreGemm.EntryNames().Count(), Regex.Count(module, @"\.visible \.entry "));
        Assert.DoesNotContain(".local", module, StringComparison.Ordinal);
        // Only the .rn float forms: never contracted into an FMA.
        Assert.DoesNotContain("fma.", module, StringComparison.Ordinal);
        Assert.DoesNotContain("mul.f32", module, StringComparison.Ordinal);
        Assert.DoesNotContain("add.f32", module, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(TileIndices))]
    public void GemmEntryHasThePipelineStructure(int tileIndex)
    {
        TensorCoreTile tile = TensorCoreInterpreterTests.Tiles[tileIndex];
        foreach (PtxEpilogue epilogue in new[] { PtxEpilogue.Raw, PtxEpilogue.Dequant })
        {
            string entry = TensorCorePtx.GemmEntry(tile, epilogue);
            Assert.Contains($".maxntid {tile.Threads}, 1, 1", entry, StringComparison.Ordinal);
            int smem = Regex.Matches(entry, @"\.shared \.align 128 \.b8 \w+\[(\d+)\]")
                .Sum(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
            Assert.Equal(tile.SharedBytes, smem);
            Assert.True(smem <= TensorCoreTile.MaxSharedBytes);
            // One copy per 16-byte chunk of a stage per thread, in the prologue and in the loop.
            int copies = (tile.BlockM + tile.BlockN) * tile.ChunksPerRow / tile.Threads;
            Assert.Equal(copies * tile.Stages, Count(entry, "cp.async.cg.shared.global ["));
            Assert.Equal(tile.Stages, Count(entry, "cp.async.commit_group"));
            Assert.Contains($"cp.async.wait_group {tile.Stages - 2};", entry, StringComparison.Ordinal);
            Assert.Equal(1, Count(entry, "bar.sync 0"));
            int steps = tile.BlockK / 32;
            Assert.Equal(steps * (tile.FragmentsM + tile.FragmentsN / 2), Count(entry, "ldmatrix.sync.aligned.m8n8.x4.shared.b16"));
            Assert.Equal(steps * tile.FragmentsM * tile.FragmentsN, Count(entry, "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"));
            int stores = tile.FragmentsM * tile.FragmentsN * 4;
            Assert.Equal(stores, Count(entry, epilogue == PtxEpilogue.Raw ? "st.global.b32" : "st.global.f32"));
            if (epilogue == PtxEpilogue.Dequant)
            {
                Assert.Equal(stores, Count(entry, "cvt.rn.f32.s32"));
                Assert.Equal(2 * stores, Count(entry, "mul.rn.f32"));
                Assert.Equal(stores, Count(entry, "@%has_bias add.rn.f32"));
            }
        }
    }

    [Fact]
    public void DecodeEntryStreamsTheWeightsAndReducesThroughSharedMemory()
    {
        foreach (DecodeTile tile in TensorCorePtx.DecodeTiles.Append(new DecodeTile(2, 1, 3)))
        {
            string entry = TensorCorePtx.DecodeEntry(tile, PtxEpilogue.Raw);
            Assert.Equal(tile.Warps > 1 ? 1 : 0, Count(entry, ".shared .align 16 .b8 "));
            Assert.Contains(tile.Warps > 1 ? $"_partial[{tile.SharedBytes}];" : "{", entry, StringComparison.Ordinal);
            Assert.Equal(tile.Warps > 1 ? 2 : 0, Count(entry, "bar.sync 0"));
            Assert.Equal(tile.Warps > 1 ? 4 * tile.TokenTiles : 0, Count(entry, "st.shared.b32"));
            Assert.Equal((tile.Warps - 1) * 4 * tile.TokenTiles, Count(entry, "ld.shared.b32"));
            // Main loop: KUnroll steps; tail: one step. Each step: 2 weight loads + one per token tile, 2 mma per token tile.
            Assert.Equal((tile.KUnroll + 1) * (2 + tile.TokenTiles), Count(entry, "ld.global.nc.v4.u32"));
            Assert.Equal((tile.KUnroll + 1) * 2 * tile.TokenTiles, Count(entry, "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"));
        }
    }

    [Fact]
    public void InvalidTilesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => TensorCorePtx.GemmEntry(new TensorCoreTile(128, 128, 48, 2, 4, 3), PtxEpilogue.Raw));
        Assert.Throws<ArgumentException>(() => TensorCorePtx.GemmEntry(new TensorCoreTile(128, 128, 64, 2, 4, 4), PtxEpilogue.Raw)); // 64 KiB
        Assert.Throws<ArgumentException>(() => TensorCorePtx.GemmEntry(new TensorCoreTile(48, 64, 64, 2, 2, 2), PtxEpilogue.Raw));
        Assert.Throws<ArgumentException>(() => TensorCorePtx.GemmEntry(new TensorCoreTile(64, 64, 64, 2, 2, 1), PtxEpilogue.Raw));
        Assert.Throws<ArgumentException>(() => TensorCorePtx.DecodeEntry(new DecodeTile(5, 4, 2), PtxEpilogue.Raw));
    }

    public static TheoryData<int> TileIndices => new(Enumerable.Range(0, TensorCoreInterpreterTests.Tiles.Length));

    private static int Count(string text, string what) => Regex.Count(text, Regex.Escape(what));

    // ------------------------------------------------------------------ ptxas

    public static TheoryData<string, string> Variants
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string arch in new[] { "sm_80", "sm_90" })
            {
                foreach (TensorCoreTile tile in TensorCoreInterpreterTests.Tiles)
                    data.Add(tile.Name, arch);
                foreach (DecodeTile tile in TensorCoreInterpreterTests.DecodeTiles)
                    data.Add(tile.Name, arch);
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void PtxasAssemblesWithoutSpillsWithinTheRegisterBudget(string variant, string arch)
    {
        TensorCoreTile? gemm = TensorCoreInterpreterTests.Tiles.FirstOrDefault(t => t.Name == variant);
        DecodeTile? decode = TensorCoreInterpreterTests.DecodeTiles.FirstOrDefault(t => t.Name == variant);
        string module = gemm is not null ? TensorCorePtx.Module([gemm], []) : TensorCorePtx.Module([], [decode!]);
        // GEMM: two blocks per SM (.minnctapersm 2) when a block has ≤ 256 threads; decode: ≥ 16 warps per SM.
        int threads = gemm?.Threads ?? decode!.Threads;
        int registerBudget = gemm is not null
            ? Math.Min(255, 65536 / ((threads <= 256 ? 2 : 1) * threads) / 8 * 8)
            : 128;

        IReadOnlyList<PtxasFunction> functions = Ptxas.Assemble(module, arch, variant);
        Assert.Equal(2, functions.Count);
        foreach (PtxasFunction f in functions)
        {
            Assert.True(f.StackBytes == 0 && f.SpillStores == 0 && f.SpillLoads == 0, $"{f.Name} ({arch}): stack {f.StackBytes}, spills {f.SpillStores}/{f.SpillLoads}");
            Assert.True(f.Registers <= registerBudget, $"{f.Name} ({arch}): {f.Registers} registers > budget {registerBudget}");
            Assert.Equal(gemm?.SharedBytes ?? decode!.SharedBytes, f.SharedBytes);
        }
    }
}
