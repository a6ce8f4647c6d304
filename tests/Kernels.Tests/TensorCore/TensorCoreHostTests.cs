using Kernels.Backends.CudaPtx;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Tests.TensorCore;

/// <summary>The host side of the tensor-core kernel: dispatch, errors without CUDA, the launch plan and its tile schedule.</summary>
public class TensorCoreHostTests
{
    [Theory]
    [InlineData(Backend.Cpu)]
    [InlineData(Backend.CpuSimd)]
    [InlineData(Backend.OpenCL)]
    public void TensorCoreIsRefusedOffCuda(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        var ex = Assert.Throws<ArgumentException>(() => session.ResolveKernel(GemmKernel.TensorCore));
        Assert.Equal("kernel", ex.ParamName);
        Assert.Contains("only the cuda backend", ex.Message, StringComparison.Ordinal);
        Assert.NotEqual(GemmKernel.TensorCore, session.ResolveKernel(GemmKernel.Auto));
        Assert.NotNull(session.TensorCoreUnsupported);
        using var a = session.Allocate<sbyte>(4);
        using var c = session.Allocate<int>(1);
        Assert.Throws<ArgumentException>(() => session.Int8Gemm(a, a, c, 1, 1, 4, GemmKernel.TensorCore));
    }

    [Fact]
    public void LoaderExplainsWhyWithoutCuda()
    {
        KernelSession session = Sessions.Get(Backend.Cpu);
        string? why = TensorCoreGemm.WhyUnsupported(session.Accelerator);
        Assert.NotNull(why);
        Assert.Contains("CUDA", why, StringComparison.Ordinal);
        var ex = Assert.Throws<NotSupportedException>(() => TensorCoreGemm.Load(session.Accelerator));
        Assert.Equal(why, ex.Message);
    }

    [Fact]
    public void JitFailureCarriesTheLog()
    {
        string message = TensorCoreGemm.JitFailure("CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed", "ptxas application ptx input, line 7; error   : Unknown symbol\0\0\0");
        Assert.Contains("CUDA_ERROR_INVALID_PTX", message, StringComparison.Ordinal);
        Assert.EndsWith("JIT log: ptxas application ptx input, line 7; error   : Unknown symbol", message, StringComparison.Ordinal);
        Assert.Contains("The JIT log is empty.", TensorCoreGemm.JitFailure("E", "d", "\0\0"), StringComparison.Ordinal);
    }

    [Fact]
    public void CudaSessionPicksTensorCoresOnAmpereAndNewer()
    {
        KernelSession session = Sessions.Get(Backend.Cuda);
        GemmKernel expected = session.TensorCoreUnsupported is null ? GemmKernel.TensorCore : GemmKernel.Dp4a;
        Assert.Equal(expected, session.ResolveKernel(GemmKernel.Auto));
        Assert.Contains(session.ResolveKernel(GemmKernel.TensorCore), new[] { GemmKernel.TensorCore, GemmKernel.Dp4a });
        if (session.TensorCoreUnsupported is null)
        {
            // The module loads and runs: a shape for the GEMM kernel and one for the decode kernel.
            foreach ((int m, int n, int k) in new[] { (70, 33, 100), (5, 300, 64) })
            {
                var random = new Random(m);
                sbyte[] a = Seeded.Int8(random, (long)m * k), b = Seeded.Int8(random, (long)n * k);
                int[] c = GemmTests.RunDevice(session, GemmKernel.TensorCore, a, b, m, n, k);
                Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), c, $"tensorcore {m}×{n}×{k}");
            }
            Assert.Null(session.TensorCoreUnsupported);
        }
    }

    [Fact]
    public void CudaLoaderReportsTheJitLogOfBadPtx()
    {
        KernelSession session = Sessions.Get(Backend.Cuda);
        if (session.TensorCoreUnsupported is { } why)
            Assert.Skip(why);
        string broken = TensorCorePtx.LibraryModule().Replace("mma.sync.aligned", "mma.bogus.aligned", StringComparison.Ordinal);
        var ex = Assert.Throws<InvalidOperationException>(() => TensorCoreGemm.Load(session.Accelerator, broken).Dispose());
        Assert.Contains("could not load the generated module", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1, 4096, 1, "decode_t8_w4_u4")]
    [InlineData(8, 4096, 1, "decode_t8_w4_u4")]
    [InlineData(9, 4096, 1, "decode_t16_w4_u2")]
    [InlineData(17, 11008, 1, "decode_t32_w4_u2")]
    [InlineData(32, 7, 3, "decode_t32_w4_u2")]
    [InlineData(33, 64, 1, "tc64x64x64_w2x2_s4")]
    [InlineData(4096, 4096, 1, "tc128x128x64_w2x4_s3")]
    [InlineData(512, 512, 1, "tc64x64x64_w2x2_s4")]
    [InlineData(512, 512, 16, "tc128x128x64_w2x4_s3")]
    public void PlanPicksTheKernel(int m, int n, int batch, string expected)
    {
        TensorCorePlan plan = TensorCoreGemm.Plan(m, n, batch, multiprocessors: 132);
        Assert.Equal(expected, plan.Name);
        Assert.Equal(batch, plan.Grid.Z);
    }

    /// <summary>
    /// The tile schedule of the plan on large shapes: blocks × warps × lanes × fragment elements, with
    /// the row and column formulas of the generated epilogues (which the interpreter tests run on small
    /// shapes), hit every output of (m, n) exactly once.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 4099)]
    [InlineData(31, 333)]
    [InlineData(33, 1)]
    [InlineData(1000, 1001)]
    [InlineData(4097, 129)]
    [InlineData(129, 4097)]
    public void TileScheduleCoversEveryOutputOnce(int m, int n)
    {
        TensorCorePlan plan = TensorCoreGemm.Plan(m, n, 1, multiprocessors: 132);
        var hits = new byte[(long)m * n];
        for (int bx = 0; bx < plan.Grid.X; bx++)
        {
            for (int by = 0; by < plan.Grid.Y; by++)
            {
                for (int thread = 0; thread < plan.Threads; thread++)
                {
                    int warp = thread / 32, lane = thread % 32, g = lane / 4, t = lane % 4;
                    foreach ((int row, int col) in plan.Gemm is { } tile ? GemmOutputs(tile, bx, by, warp, g, t) : DecodeOutputs(plan.Decode!, bx, warp, g, t))
                    {
                        if (row < m && col < n)
                            hits[(long)row * n + col]++;
                    }
                }
            }
        }
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    private static IEnumerable<(int Row, int Col)> GemmOutputs(TensorCoreTile tile, int bx, int by, int warp, int g, int t)
    {
        int rowBase = by * tile.BlockM + warp / tile.WarpsN * tile.WarpTileM + g;
        int colBase = bx * tile.BlockN + warp % tile.WarpsN * tile.WarpTileN + 2 * t;
        for (int i = 0; i < tile.FragmentsM; i++)
        {
            for (int h = 0; h < 2; h++)
            {
                for (int j = 0; j < tile.FragmentsN; j++)
                {
                    for (int e = 0; e < 2; e++)
                        yield return (rowBase + 16 * i + 8 * h, colBase + 8 * j + e);
                }
            }
        }
    }

    private static IEnumerable<(int Row, int Col)> DecodeOutputs(DecodeTile tile, int bx, int warp, int g, int t)
    {
        // Warp 0 of a block stores: output row = token 8j + 2t + e, output column = weight row 16·block + g + 8h.
        if (warp != 0)
            yield break;
        int rowBase = bx * DecodeTile.RowsPerBlock;
        for (int j = 0; j < tile.TokenTiles; j++)
        {
            for (int e = 0; e < 2; e++)
            {
                for (int h = 0; h < 2; h++)
                    yield return (8 * j + 2 * t + e, rowBase + g + 8 * h);
            }
        }
    }
}
