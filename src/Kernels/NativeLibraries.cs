using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace Kernels;

/// <summary>
/// Resolves the native driver libraries ILGPU imports by bare name (<c>cuda</c>, <c>nvidia-ml</c>,
/// <c>OpenCL</c>) to the versioned names a driver-only Linux machine ships (<c>libcuda.so.1</c>,
/// <c>libnvidia-ml.so.1</c>, <c>libOpenCL.so.1</c>). Installed once, before ILGPU is first used, as a
/// fallback of the default load context: it runs only when the normal probing failed.
/// </summary>
internal static class NativeLibraries
{
    private static int _installed;

    private static readonly string[] SearchFolders =
    [
        "/usr/local/nvidia/lib64",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib/wsl/lib",
        "/usr/local/cuda/lib64",
    ];

    public static void EnsureInstalled()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 0)
            AssemblyLoadContext.Default.ResolvingUnmanagedDll += Resolve;
    }

    /// <summary>The versioned file names to try for a bare library name, or none.</summary>
    internal static string[] Candidates(string libraryName)
    {
        string name = libraryName.ToLowerInvariant();
        if (name.Contains("nvidia-ml", StringComparison.Ordinal) || name.Contains("nvml", StringComparison.Ordinal))
            return ["libnvidia-ml.so.1", "libnvidia-ml.so"];
        if (name.Contains("nvcuda", StringComparison.Ordinal) || name is "cuda" or "libcuda" or "libcuda.so")
            return ["libcuda.so.1", "libcuda.so"];
        if (name.Contains("opencl", StringComparison.Ordinal))
            return ["libOpenCL.so.1", "libOpenCL.so"];
        return [];
    }

    private static IntPtr Resolve(Assembly assembly, string libraryName)
    {
        if (!OperatingSystem.IsLinux())
            return IntPtr.Zero;
        foreach (string candidate in Candidates(libraryName))
        {
            if (NativeLibrary.TryLoad(candidate, out IntPtr handle))
                return handle;
            foreach (string folder in SearchFolders)
            {
                string path = Path.Combine(folder, candidate);
                if (File.Exists(path) && NativeLibrary.TryLoad(path, out handle))
                    return handle;
            }
        }
        return IntPtr.Zero;
    }
}
