using System.Reflection;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Kernels.DeviceCode;

namespace Kernels.Tests;

/// <summary>
/// The kernels compile to PTX (sm_90) and to OpenCL C with ILGPU's own backends, without a GPU.
/// The CPU accelerator runs kernels as .NET code, so this is what catches device code ILGPU's GPU
/// backends would refuse, on machines (like CI) that have no GPU.
/// </summary>
public sealed class CompileTests : IDisposable
{
    private readonly Context _context = Context.Create(b => b.CPU().Optimize(OptimizationLevel.O2));

    public void Dispose() => _context.Dispose();

    public static TheoryData<string> KernelNames => new(
        "Reference/Int32", "Reference/Dequant",
        "Tiled/Portable/Int32", "Tiled/Portable/Dequant",
        "Tiled/Dp4a/Int32", "Tiled/Dp4a/Dequant",
        "PackRows");

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void CompilesToPtxForSm90(string name)
    {
        using var backend = new PTXBackend(_context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, null);
        var compiled = (PTXCompiledKernel)backend.Compile(EntryPoint(name), KernelSpecialization.Empty);
        Assert.Contains(".entry", compiled.PTXAssembly, StringComparison.Ordinal);
        if (name.Contains("Dp4a", StringComparison.Ordinal))
            Assert.Contains("dp4a.s32.s32", compiled.PTXAssembly, StringComparison.Ordinal);
        else
            Assert.DoesNotContain("dp4a", compiled.PTXAssembly, StringComparison.Ordinal);
        if (name.StartsWith("Tiled", StringComparison.Ordinal))
            Assert.Contains("bar.sync", compiled.PTXAssembly, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void CompilesToOpenCLC(string name)
    {
        var capabilities = new CLCapabilityContext(false, false, false, false, true);
        using var backend = new CLBackend(_context, capabilities, CLDeviceVendor.Other, CLCVersion.CL20);
        var compiled = (CLCompiledKernel)backend.Compile(EntryPoint(name), KernelSpecialization.Empty);
        Assert.Contains("kernel", compiled.Source, StringComparison.Ordinal);
        Assert.DoesNotContain("dp4a", compiled.Source, StringComparison.Ordinal);
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
