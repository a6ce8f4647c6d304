using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;

namespace Kernels.Backends.Ilgpu;

/// <summary>
/// Loads the explicitly grouped kernels (the ones whose threads share memory across <c>Group.Barrier</c>):
/// ILGPU's own loader everywhere, except that on OpenCL the barriers are given the local-memory fence.
/// </summary>
/// <remarks>
/// ILGPU 1.5.3's OpenCL backend writes every <c>Group.Barrier()</c> as
/// <c>work_group_barrier(CLK_GLOBAL_MEM_FENCE)</c>. The OpenCL C specification orders only the address
/// spaces named in the flags, so that barrier does not promise that a work-item sees the <c>local</c> (shared)
/// memory another work-item wrote before it, which is what every barrier in these kernels is for. PoCL and
/// most GPU drivers fence everything at a barrier anyway; the specification does not, so the source is
/// compiled by ILGPU, its barriers are given <c>CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE</c>, and the
/// patched source is loaded (docs/opencl.md). The PTX backend's <c>bar.sync</c> orders shared memory already.
/// </remarks>
internal static partial class GroupedKernels
{
    /// <summary>Loads an explicitly grouped kernel of four parameters.</summary>
    public static Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4> Load<T1, T2, T3, T4>(
        Accelerator accelerator, Action<T1, T2, T3, T4> kernel) =>
        Load<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4>>(accelerator, kernel.Method);

    /// <summary>Loads an explicitly grouped kernel of eight parameters.</summary>
    public static Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> Load<T1, T2, T3, T4, T5, T6, T7, T8>(
        Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7, T8> kernel) =>
        Load<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8>>(accelerator, kernel.Method);

    /// <summary>Loads an explicitly grouped kernel of nine parameters.</summary>
    public static Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9>(
        Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel) =>
        Load<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9>>(accelerator, kernel.Method);

    private static TDelegate Load<TDelegate>(Accelerator accelerator, MethodInfo method)
        where TDelegate : Delegate
    {
        if (accelerator is not CLAccelerator)
            return accelerator.LoadKernel<TDelegate>(method);
        var compiled = (CLCompiledKernel)accelerator.CompileKernel(EntryPointDescription.FromExplicitlyGroupedKernel(method));
        var fenced = new CLCompiledKernel(accelerator.Context, EntryPointOf(compiled), compiled.Info,
            WithLocalFences(compiled.Source), compiled.CVersion);
        return accelerator.LoadKernel(fenced).CreateLauncherDelegate<TDelegate>();
    }

    /// <summary>
    /// The entry point ILGPU compiled (parameter layout for the launcher): public to construct a
    /// <see cref="CLCompiledKernel"/> with, but exposed by <see cref="CompiledKernel"/> only internally.
    /// </summary>
    private static SeparateViewEntryPoint EntryPointOf(CompiledKernel compiled) =>
        typeof(CompiledKernel).GetProperty("EntryPoint", BindingFlags.Instance | BindingFlags.NonPublic)?.GetValue(compiled) as SeparateViewEntryPoint
        ?? throw new InvalidOperationException("ILGPU's CompiledKernel.EntryPoint was not found (is this ILGPU 1.5.3?).");

    /// <summary>
    /// <paramref name="source"/> (OpenCL C from ILGPU) with every work-group barrier fencing local and global
    /// memory. Throws if a barrier of another form remains: it would go unfenced silently.
    /// </summary>
    internal static string WithLocalFences(string source)
    {
        string fenced = GlobalOnlyBarrier().Replace(source, "work_group_barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)");
        int barriers = AnyBarrier().Count(fenced);
        int withLocal = FencedBarrier().Count(fenced);
        if (barriers != withLocal)
            throw new InvalidOperationException(
                $"OpenCL source: {barriers - withLocal} of {barriers} barriers are not of the form ILGPU 1.5.3 writes and were not given the local-memory fence.");
        return fenced;
    }

    [GeneratedRegex(@"\bwork_group_barrier\s*\(\s*CLK_GLOBAL_MEM_FENCE\s*\)")]
    private static partial Regex GlobalOnlyBarrier();

    [GeneratedRegex(@"\b(work_group_barrier|sub_group_barrier|barrier)\s*\(")]
    private static partial Regex AnyBarrier();

    [GeneratedRegex(@"\bwork_group_barrier\(CLK_LOCAL_MEM_FENCE \| CLK_GLOBAL_MEM_FENCE\)")]
    private static partial Regex FencedBarrier();
}
