using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Kernels;

/// <summary>One device (or one missing backend) as Kernels sees it.</summary>
/// <param name="Backend">The backend the device belongs to.</param>
/// <param name="Name">The device name, or a placeholder when the backend has no device.</param>
/// <param name="MemoryBytes">Device memory in bytes (0 when unknown).</param>
/// <param name="Usable">Whether a <see cref="KernelSession"/> can run on it.</param>
/// <param name="Reason">Why it is not usable (null when usable).</param>
/// <param name="Details">Architecture, version and limits, for people.</param>
public sealed record DeviceInfo(
    Backend Backend,
    string Name,
    long MemoryBytes,
    bool Usable,
    string? Reason,
    string Details);

/// <summary>Finds the devices of every backend and says which can be used and why not.</summary>
public static class DeviceCatalog
{
    /// <summary>Every device of every backend, in the order Auto prefers them; missing drivers appear as unusable entries.</summary>
    public static IReadOnlyList<DeviceInfo> List()
    {
        var result = new List<DeviceInfo>();
        result.AddRange(ListCuda());
        result.AddRange(ListOpenCL());
        result.Add(new DeviceInfo(Backend.CpuSimd, CpuSimdName(), GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
            true, null, CpuSimdDetails()));
        result.Add(CpuInfo());
        return result;
    }

    /// <summary>Threads per group of the simulated CPU device: the largest group a Kernels kernel launches.</summary>
    internal const int CpuGroupThreads = 256;

    /// <summary>
    /// The ILGPU CPU device Kernels uses: by default 8 warps of 32 threads (256 threads per group, as the
    /// tiled kernels need) on one simulated multiprocessor. ILGPU runs each simulated thread on its own OS
    /// thread and barriers dominate; one multiprocessor measured faster than one per core on a 2-core
    /// machine. Tests build it with other warp sizes and multiprocessor counts: a kernel must not depend on
    /// either (no GPU promises 32 lanes in lockstep).
    /// </summary>
    /// <param name="warpSize">Simulated lanes per warp: a power of two that divides <see cref="CpuGroupThreads"/>.</param>
    /// <param name="multiprocessors">Simulated multiprocessors (groups that run at the same time), 1 to 64.</param>
    internal static CPUDevice CreateCpuDevice(int warpSize = 32, int multiprocessors = 1)
    {
        if (warpSize < 1 || warpSize > CpuGroupThreads || (warpSize & (warpSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(warpSize), warpSize, $"expected a power of two from 1 to {CpuGroupThreads}");
        if (multiprocessors is < 1 or > 64)
            throw new ArgumentOutOfRangeException(nameof(multiprocessors), multiprocessors, "expected 1 to 64");
        return new(numThreadsPerWarp: warpSize, numWarpsPerMultiprocessor: CpuGroupThreads / warpSize, numMultiprocessors: multiprocessors);
    }

    /// <summary>An ILGPU context with the devices of <paramref name="backend"/> (<paramref name="cpu"/>: the CPU device to simulate, default <see cref="CreateCpuDevice"/>).</summary>
    internal static Context CreateContext(Backend backend, CPUDevice? cpu = null)
    {
        NativeLibraries.EnsureInstalled();
        return Context.Create(builder =>
        {
            builder.Optimize(OptimizationLevel.O2);
            switch (backend)
            {
                case Backend.Cuda:
                    builder.Cuda(_ => true);
                    break;
                case Backend.OpenCL:
                    builder.OpenCL(_ => true);
                    break;
                default:
                    builder.CPU(cpu ?? CreateCpuDevice());
                    break;
            }
        });
    }

    /// <summary>
    /// The devices of one backend in a context. A context with no device of the kinds asked for falls
    /// back to ILGPU's default CPU device, which must not pass for a CUDA or OpenCL device.
    /// </summary>
    internal static IEnumerable<Device> DevicesOf(Context context, Backend backend) => backend switch
    {
        Backend.Cuda => context.Devices.OfType<CudaDevice>(),
        Backend.OpenCL => context.Devices.OfType<CLDevice>(),
        _ => context.Devices.OfType<CPUDevice>(),
    };

    /// <summary>Why an ILGPU device cannot be used by Kernels, or null when it can.</summary>
    internal static string? WhyUnusable(Device device) => device switch
    {
        CudaDevice cuda when cuda.Architecture is null =>
            "compute capability not known to ILGPU 1.5.3",
        CudaDevice cuda when !PtxArchitectureSupported(cuda) =>
            $"architecture {cuda.Architecture} not supported by ILGPU 1.5.3's PTX backend",
        CLDevice cl when !cl.Capabilities.GenericAddressSpace =>
            $"no generic address space support (OpenCL {cl.DeviceVersion}, OpenCL C {cl.CVersion}); ILGPU's OpenCL backend needs it",
        _ => null,
    };

    private static bool PtxArchitectureSupported(CudaDevice cuda) => cuda.InstructionSet is not null;

    private static bool DriverPresent(string bareName)
    {
        foreach (string candidate in NativeLibraries.Candidates(bareName))
        {
            if (NativeLibrary.TryLoad(candidate, out IntPtr handle))
            {
                NativeLibrary.Free(handle);
                return true;
            }
        }
        return false;
    }

    private static List<DeviceInfo> ListCuda()
    {
        if (!DriverPresent("cuda"))
            return [Missing(Backend.Cuda, "no CUDA driver found (libcuda.so.1)")];
        return ListFromContext(Backend.Cuda, "no CUDA device found (the driver is present)");
    }

    private static List<DeviceInfo> ListOpenCL()
    {
        if (!DriverPresent("OpenCL"))
            return [Missing(Backend.OpenCL, "no OpenCL ICD loader found (libOpenCL.so.1)")];
        return ListFromContext(Backend.OpenCL, "no OpenCL platform or device found (the ICD loader is present)");
    }

    private static List<DeviceInfo> ListFromContext(Backend backend, string noneReason)
    {
        var list = new List<DeviceInfo>();
        try
        {
            using Context context = CreateContext(backend);
            foreach (Device device in DevicesOf(context, backend))
            {
                string? why = WhyUnusable(device);
                list.Add(new DeviceInfo(backend, device.Name, device.MemorySize, why is null, why, Describe(device)));
            }
        }
#pragma warning disable CA1031 // A broken driver is reported, not thrown: listing must never crash.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            list.Add(Missing(backend, $"the driver failed to enumerate devices: {ex.GetType().Name}: {ex.Message}"));
        }
        if (list.Count == 0)
            list.Add(Missing(backend, noneReason));
        return list;
    }

    private static DeviceInfo CpuInfo()
    {
        CPUDevice cpu = CreateCpuDevice();
        return new DeviceInfo(Backend.Cpu, "ILGPU CPU accelerator", GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
            true, null, Describe(cpu));
    }

    /// <summary>The processor's model name (from /proc/cpuinfo on Linux), or its architecture.</summary>
    internal static string CpuModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                foreach (string line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (line.StartsWith("model name", StringComparison.Ordinal))
                        return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    internal static string CpuSimdName() => $"{CpuModel()} (SIMD)";

    private static string CpuSimdDetails() =>
        $"{Simd.CpuSimd.ToName(Simd.CpuSimd.Effective)} (detected {Simd.CpuSimd.ToName(Simd.CpuSimd.Detected)}), {Environment.ProcessorCount} threads";

    private static DeviceInfo Missing(Backend backend, string reason) =>
        new(backend, "(none)", 0, false, reason, "");

    internal static string Describe(Device device) => device switch
    {
        CudaDevice cuda =>
            $"sm {cuda.Architecture?.ToString() ?? "?"}, {cuda.NumMultiprocessors} SMs, driver {cuda.DriverVersion}, " +
            $"{cuda.MaxSharedMemoryPerGroup / 1024} KiB shared/group",
        CLDevice cl =>
            $"{cl.PlatformName}, OpenCL {cl.DeviceVersion}, OpenCL C {cl.CVersion}, {cl.NumMultiprocessors} CUs, " +
            $"{cl.MaxSharedMemoryPerGroup / 1024} KiB local/group",
        CPUDevice cpu =>
            $"{cpu.NumMultiprocessors} simulated multiprocessors, warp {cpu.WarpSize}, " +
            $"{cpu.MaxNumThreadsPerGroup} threads/group",
        _ => device.ToString() ?? "",
    };
}
