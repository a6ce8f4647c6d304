using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Kernels.Backends.Ilgpu;

namespace Kernels.Tests;

/// <summary>
/// Compiles kernels with ILGPU's PTX (sm_90) and OpenCL C backends without a GPU: what the compile
/// tests of every kernel family share. The CPU accelerator runs kernels as .NET code, so this is what
/// catches device code the GPU backends would refuse on machines (like CI) that have none.
/// </summary>
public abstract class OfflineCompiler : IDisposable
{
    private readonly Context _context = Context.Create(b => b.CPU().Optimize(OptimizationLevel.O2));

    /// <summary>The PTX text of <paramref name="entry"/> for sm_90 (PTX ISA 7.8).</summary>
    protected string Ptx(EntryPointDescription entry)
    {
        using var backend = new PTXBackend(_context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, null);
        return ((PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty)).PTXAssembly;
    }

    /// <summary>
    /// The OpenCL C source of <paramref name="entry"/> (OpenCL C 2.0, generic address space), checked for what
    /// a real OpenCL runtime needs and ILGPU 1.5.3 does not guarantee (docs/opencl.md): no shared (<c>local</c>)
    /// variable at program scope, where all work-groups would share it (ILGPU puts dynamic shared memory
    /// there), and every barrier in a form <see cref="GroupedKernels.WithLocalFences"/> gives the local-memory fence.
    /// </summary>
    protected string OpenCLC(EntryPointDescription entry)
    {
        var capabilities = new CLCapabilityContext(false, false, false, false, true);
        using var backend = new CLBackend(_context, capabilities, CLDeviceVendor.Other, CLCVersion.CL20);
        string source = ((CLCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty)).Source;
        foreach (string line in source.Split('\n'))
        {
            Assert.False(line.StartsWith("local ", StringComparison.Ordinal),
                $"{entry.MethodSource.Name}: program-scope shared variable, one for all work-groups: {line}");
        }
        string fenced = GroupedKernels.WithLocalFences(source);
        Assert.DoesNotContain("CLK_GLOBAL_MEM_FENCE )", fenced, StringComparison.Ordinal);
        return source;
    }

    public void Dispose()
    {
        _context.Dispose();
        GC.SuppressFinalize(this);
    }
}
