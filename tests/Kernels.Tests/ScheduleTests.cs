using Kernels.Tests.Sparse;

namespace Kernels.Tests;

/// <summary>
/// The ILGPU kernels on CPU accelerators built with other warp sizes and multiprocessor counts than the
/// default (32 lanes × 8 warps, one multiprocessor, which every other CPU-accelerator test uses). No GPU
/// promises 32 lanes in lockstep or one group at a time (NVIDIA has 32-lane warps, AMD GCN 64, PoCL picks
/// its own): a kernel whose threads cooperate must order them with barriers, so its results may not depend
/// on either. Lanes of 4, 8 and 64, and 1, 2 and 3 groups running at once.
/// </summary>
public sealed class ScheduleTests
{
    public static TheoryData<int, int> Schedules => new() { { 4, 1 }, { 8, 2 }, { 64, 3 } };

    private static KernelSession On(int warpSize, int multiprocessors) => Sessions.Cpu(warpSize, multiprocessors);

    private static string Name(int warpSize, int multiprocessors) => $"cpu warp {warpSize} × {multiprocessors} SM";

    [Theory]
    [MemberData(nameof(Schedules))]
    public void Int8Gemm_EveryIlgpuKernel(int warpSize, int multiprocessors)
    {
        KernelSession session = On(warpSize, multiprocessors);
        Seeded.Run((random, _) =>
        {
            foreach (GemmKernel kernel in new[] { GemmKernel.Reference, GemmKernel.Tiled, GemmKernel.Dp4a })
            {
                foreach ((int m, int n, int k) in new[] { (7, 13, 31), (65, 63, 67), (2, 131, 257), (128, 2, 5) })
                {
                    sbyte[] a = Seeded.Int8(random, (long)m * k);
                    sbyte[] b = Seeded.Int8(random, (long)n * k);
                    int[] actual = GemmTests.RunDevice(session, kernel, a, b, m, n, k);
                    Expect.Equal(HostReference.Int8Gemm(a, b, m, n, k), actual, $"{Name(warpSize, multiprocessors)} {kernel} {m}×{n}×{k}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void SparseInt8_EveryFormat(int warpSize, int multiprocessors)
    {
        foreach (SparseFormat format in SparseTestData.Formats)
            SparseGemmTests.Int8MatchesReferenceAndDenseKernelBitForBitOn(On(warpSize, multiprocessors), format, Name(warpSize, multiprocessors));
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void SparseInt8_TiledAndGeneral(int warpSize, int multiprocessors)
    {
        using KernelSession session = KernelSession.CreateCpu(warpSize, multiprocessors); // the test sets the kernel choice
        SparseGemmTests.TiledAndGeneralInt8KernelsGiveTheReferenceBitForBitOn(session, Name(warpSize, multiprocessors));
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void Attention_Prefill(int warpSize, int multiprocessors)
    {
        KernelSession session = On(warpSize, multiprocessors);
        string name = Name(warpSize, multiprocessors);
        AttentionIlgpuTests.Attention_MatchesReference_OddLengths_CausalOrNotOn(session, name);
        AttentionIlgpuTests.Attention_GroupedAndMultiQueryOn(session, name);
        AttentionIlgpuTests.Attention_SlidingWindow_RowsWithoutKeysAreZeroOn(session, name);
        AttentionIlgpuTests.Attention_NaNInOneQueryRow_PropagatesToThatRowOnlyOn(session, name);
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void Attention_HeadDims(int warpSize, int multiprocessors) =>
        AttentionIlgpuTests.Attention_HeadDimsOn(On(warpSize, multiprocessors), Name(warpSize, multiprocessors));

    [Theory]
    [MemberData(nameof(Schedules))]
    public void Attention_Decode(int warpSize, int multiprocessors)
    {
        KernelSession session = On(warpSize, multiprocessors);
        string name = Name(warpSize, multiprocessors);
        AttentionIlgpuTests.AttentionDecode_Ragged_MatchesReferenceOn(session, name);
        AttentionIlgpuTests.AttentionDecode_SplitK_EqualsUnsplitOn(session, name);
    }

    [Fact]
    public void TheSimulatedDeviceHasTheScheduleAskedFor()
    {
        using KernelSession session = KernelSession.CreateCpu(64, 3);
        Assert.Equal(64, session.Accelerator.WarpSize);
        Assert.Equal(3, session.Accelerator.NumMultiprocessors);
        Assert.Equal(DeviceCatalog.CpuGroupThreads, session.Accelerator.MaxNumThreadsPerGroup);
        Assert.Throws<ArgumentOutOfRangeException>(() => DeviceCatalog.CreateCpuDevice(48, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => DeviceCatalog.CreateCpuDevice(32, 0));
    }
}
