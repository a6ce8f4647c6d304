namespace Kernels;

/// <summary>Where kernels run.</summary>
public enum Backend
{
    /// <summary>
    /// The best usable backend: CUDA, then a usable OpenCL device, then the SIMD CPU path (<see cref="CpuSimd"/>).
    /// The environment variable <c>KERNELS_BACKEND</c> (auto, cuda, opencl, cpu, cpu-simd) overrides the choice.
    /// </summary>
    Auto,

    /// <summary>An NVIDIA GPU through ILGPU's CUDA accelerator.</summary>
    Cuda,

    /// <summary>An OpenCL device with generic address space support (OpenCL 2.0, or 3.0 with the feature).</summary>
    OpenCL,

    /// <summary>ILGPU's CPU accelerator: simulates GPU threads; exact but slow, meant for testing the ILGPU kernels.</summary>
    Cpu,

    /// <summary>
    /// The fast CPU path: int8 GEMM written with <c>System.Runtime.Intrinsics</c> (AVX-512 VNNI, AVX-VNNI,
    /// AVX2 or scalar), cache-blocked and multi-threaded. Buffers live in host memory.
    /// </summary>
    CpuSimd,
}

/// <summary>Parsing and naming of <see cref="Backend"/> values as the CLI and the environment spell them.</summary>
public static class BackendNames
{
    /// <summary>The environment variable that overrides <see cref="Backend.Auto"/>.</summary>
    public const string EnvironmentVariable = "KERNELS_BACKEND";

    /// <summary>The lower-case name of a backend (auto, cuda, opencl, cpu).</summary>
    public static string ToName(this Backend backend) => backend switch
    {
        Backend.Auto => "auto",
        Backend.Cuda => "cuda",
        Backend.OpenCL => "opencl",
        Backend.Cpu => "cpu",
        Backend.CpuSimd => "cpu-simd",
        _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, "unknown backend"),
    };

    /// <summary>Parses a backend name, case-insensitively; throws naming the accepted values otherwise.</summary>
    /// <param name="value">The name.</param>
    /// <param name="argumentName">The argument or variable the name came from, for the error message.</param>
    public static Backend Parse(string value, string argumentName = "backend")
    {
        ArgumentNullException.ThrowIfNull(value);
        return value.Trim().ToLowerInvariant() switch
        {
            "auto" or "" => Backend.Auto,
            "cuda" => Backend.Cuda,
            "opencl" or "cl" => Backend.OpenCL,
            "cpu" => Backend.Cpu,
            "cpu-simd" or "cpusimd" or "simd" => Backend.CpuSimd,
            _ => throw new ArgumentException(
                $"{argumentName}: expected one of auto, cuda, opencl, cpu, cpu-simd; got '{value}'.", argumentName),
        };
    }
}
