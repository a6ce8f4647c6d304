using System.Reflection;
using ILGPU.Backends.EntryPoints;
using Kernels.DeviceCode;

namespace Kernels.Tests;

/// <summary>
/// The kernels compile to PTX (sm_90) and to OpenCL C with ILGPU's own backends, without a GPU.
/// The CPU accelerator runs kernels as .NET code, so this is what catches device code ILGPU's GPU
/// backends would refuse, on machines (like CI) that have no GPU.
/// </summary>
public sealed class CompileTests : OfflineCompiler
{
    public static TheoryData<string> KernelNames => new(
        "Reference/Int32", "Reference/Dequant",
        "Tiled/Portable/Int32", "Tiled/Portable/Dequant",
        "Tiled/Dp4a/Int32", "Tiled/Dp4a/Dequant",
        "PackRows");

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void CompilesToPtxForSm90(string name)
    {
        string ptx = Ptx(EntryPoint(name));
        Assert.Contains(".entry", ptx, StringComparison.Ordinal);
        if (name.Contains("Dp4a", StringComparison.Ordinal))
            Assert.Contains("dp4a.s32.s32", ptx, StringComparison.Ordinal);
        else
            Assert.DoesNotContain("dp4a", ptx, StringComparison.Ordinal);
        if (name.StartsWith("Tiled", StringComparison.Ordinal))
            Assert.Contains("bar.sync", ptx, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void CompilesToOpenCLC(string name)
    {
        string source = OpenCLC(EntryPoint(name));
        Assert.Contains("kernel", source, StringComparison.Ordinal);
        Assert.DoesNotContain("dp4a", source, StringComparison.Ordinal);
    }

    private static EntryPointDescription EntryPoint(string name)
    {
        Type kernels = typeof(Int8GemmKernels);
        string[] parts = name.Split('/');
        Type epilogue = parts[^1] == "Dequant" ? typeof(DequantEpilogue) : typeof(Int32Epilogue);
        switch (parts[0])
        {
            case "Reference":
                return EntryPointDescription.FromImplicitlyGroupedKernel(
                    kernels.GetMethod(nameof(Int8GemmKernels.Reference))!.MakeGenericMethod(epilogue));
            case "PackRows":
                return EntryPointDescription.FromImplicitlyGroupedKernel(kernels.GetMethod(nameof(Int8GemmKernels.PackRows))!);
            default:
                Type dot = parts[1] == "Dp4a" ? typeof(Dp4aDot4) : typeof(PortableDot4);
                MethodInfo tiled = kernels.GetMethod(nameof(Int8GemmKernels.Tiled))!.MakeGenericMethod(dot, epilogue);
                return EntryPointDescription.FromExplicitlyGroupedKernel(tiled);
        }
    }
}
