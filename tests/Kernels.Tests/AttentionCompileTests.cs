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

/// <summary>The attention kernels compile to PTX (sm_90) and OpenCL C with ILGPU's own backends, without a GPU.</summary>
public sealed class AttentionCompileTests : IDisposable
{
    private readonly Context _context = Context.Create(b => b.CPU().Optimize(OptimizationLevel.O2));

    public void Dispose() => _context.Dispose();

    public static TheoryData<string> KernelNames => new("Forward", "Combine");

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void AttentionCompilesToPtxForSm90(string name)
    {
        using var backend = new PTXBackend(_context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, null);
        var compiled = (PTXCompiledKernel)backend.Compile(EntryPoint(name), KernelSpecialization.Empty);
        Assert.Contains(".entry", compiled.PTXAssembly, StringComparison.Ordinal);
        if (name == "Forward")
            Assert.Contains("bar.sync", compiled.PTXAssembly, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void AttentionCompilesToOpenCLC(string name)
    {
        var capabilities = new CLCapabilityContext(false, false, false, false, true);
        using var backend = new CLBackend(_context, capabilities, CLDeviceVendor.Other, CLCVersion.CL20);
        var compiled = (CLCompiledKernel)backend.Compile(EntryPoint(name), KernelSpecialization.Empty);
        Assert.Contains("kernel", compiled.Source, StringComparison.Ordinal);
        if (name == "Forward")
            Assert.Contains("barrier", compiled.Source, StringComparison.Ordinal);
    }

    private static EntryPointDescription EntryPoint(string name) => name switch
    {
        "Forward" => EntryPointDescription.FromExplicitlyGroupedKernel(
            typeof(AttentionKernels).GetMethod(nameof(AttentionKernels.Forward))!.MakeGenericMethod(typeof(FloatAttentionIo))),
        _ => EntryPointDescription.FromImplicitlyGroupedKernel(
            typeof(AttentionKernels).GetMethod(nameof(AttentionKernels.Combine))!.MakeGenericMethod(typeof(FloatAttentionIo))),
    };
}
