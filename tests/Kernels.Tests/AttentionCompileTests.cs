using ILGPU.Backends.EntryPoints;
using Kernels.DeviceCode;

namespace Kernels.Tests;

/// <summary>The attention kernels compile to PTX (sm_90) and OpenCL C with ILGPU's own backends, without a GPU.</summary>
public sealed class AttentionCompileTests : OfflineCompiler
{
    public static TheoryData<string> KernelNames => new("Forward", "ForwardWide", "Combine");

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void AttentionCompilesToPtxForSm90(string name)
    {
        string ptx = Ptx(EntryPoint(name));
        Assert.Contains(".entry", ptx, StringComparison.Ordinal);
        if (name != "Combine")
            Assert.Contains("bar.sync", ptx, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void AttentionCompilesToOpenCLC(string name)
    {
        string source = OpenCLC(EntryPoint(name));
        Assert.Contains("kernel", source, StringComparison.Ordinal);
        if (name != "Combine")
            Assert.Contains("work_group_barrier", source, StringComparison.Ordinal);
    }

    private static EntryPointDescription EntryPoint(string name) => name switch
    {
        "Forward" or "ForwardWide" => EntryPointDescription.FromExplicitlyGroupedKernel(
            typeof(AttentionKernels).GetMethod(name)!.MakeGenericMethod(typeof(FloatAttentionIo))),
        _ => EntryPointDescription.FromImplicitlyGroupedKernel(
            typeof(AttentionKernels).GetMethod(nameof(AttentionKernels.Combine))!.MakeGenericMethod(typeof(FloatAttentionIo))),
    };
}
