using System.Runtime.InteropServices;

namespace Kernels.Peers;

/// <summary>
/// oneDNN's BLAS-like GEMMs as a CPU peer to compare against: <c>dnnl_gemm_s8s8s32</c> and
/// <c>dnnl_sgemm</c>, called row-major with B transposed so that they compute the library's layout
/// <c>C[m,n] = Σ_k A[m,k]·B[n,k]</c>. The library is loaded on first use by its soname
/// (Debian 12: <c>libdnnl.so.2</c> from <c>apt-get install libdnnl2</c>; newer releases: <c>libdnnl.so.3</c>);
/// when it is missing, <see cref="IsAvailable"/> says why instead of failing.
/// </summary>
internal static unsafe class OneDnn
{
    private static readonly string[] Candidates = ["libdnnl.so.3", "libdnnl.so.2", "libdnnl.so", "dnnl"];

    private static readonly Lazy<Api> Loaded = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Whether libdnnl could be loaded and exports both functions; otherwise the reason.</summary>
    public static bool IsAvailable(out string reason)
    {
        Api api = Loaded.Value;
        reason = api.Reason ?? string.Empty;
        return api.Reason is null;
    }

    /// <summary>The file name of the loaded library (for reports), or null when it is unavailable.</summary>
    public static string? LibraryName => Loaded.Value.Name;

    /// <summary><c>C = A·Bᵀ</c> in int32 through <c>dnnl_gemm_s8s8s32</c> (row-major, no offsets).</summary>
    public static void GemmS8S8S32(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, Span<int> c, int m, int n, int k)
    {
        Check.GemmShape(m, n, k);
        Check.MinLength(a.Length, (long)m * k, nameof(a), "m·k");
        Check.MinLength(b.Length, (long)n * k, nameof(b), "n·k");
        Check.MinLength(c.Length, (long)m * n, nameof(c), "m·n");
        fixed (sbyte* pa = a)
        fixed (sbyte* pb = b)
        fixed (int* pc = c)
            GemmS8S8S32(pa, pb, pc, m, n, k);
    }

    /// <summary>The pointer form of <see cref="GemmS8S8S32(ReadOnlySpan{sbyte}, ReadOnlySpan{sbyte}, Span{int}, int, int, int)"/>.</summary>
    public static void GemmS8S8S32(sbyte* a, sbyte* b, int* c, int m, int n, int k)
    {
        Api api = Require();
        int offset = 0;
        int status = api.GemmS8S8S32((byte)'N', (byte)'T', (byte)'F', m, n, k, 1.0f, a, k, 0, b, k, 0, 0.0f, c, n, &offset);
        if (status != 0)
            throw new InvalidOperationException($"dnnl_gemm_s8s8s32 failed with status {status} (m={m}, n={n}, k={k}).");
    }

    /// <summary><c>C = A·Bᵀ</c> in float32 through <c>dnnl_sgemm</c> (row-major).</summary>
    public static void Sgemm(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k)
    {
        Check.Positive(m, nameof(m));
        Check.Positive(n, nameof(n));
        Check.Positive(k, nameof(k));
        Check.MinLength(a.Length, (long)m * k, nameof(a), "m·k");
        Check.MinLength(b.Length, (long)n * k, nameof(b), "n·k");
        Check.MinLength(c.Length, (long)m * n, nameof(c), "m·n");
        Api api = Require();
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            int status = api.Sgemm((byte)'N', (byte)'T', m, n, k, 1.0f, pa, k, pb, k, 0.0f, pc, n);
            if (status != 0)
                throw new InvalidOperationException($"dnnl_sgemm failed with status {status} (m={m}, n={n}, k={k}).");
        }
    }

    private static Api Require()
    {
        Api api = Loaded.Value;
        if (api.Reason is not null)
            throw new InvalidOperationException($"oneDNN is not available: {api.Reason}");
        return api;
    }

    private static Api Load()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsWindows() && !OperatingSystem.IsMacOS())
            return new Api { Reason = "unsupported operating system" };
        foreach (string name in Candidates)
        {
            if (!NativeLibrary.TryLoad(name, out IntPtr handle))
                continue;
            if (!NativeLibrary.TryGetExport(handle, "dnnl_gemm_s8s8s32", out IntPtr s8) ||
                !NativeLibrary.TryGetExport(handle, "dnnl_sgemm", out IntPtr sg))
            {
                return new Api { Reason = $"{name} loaded but does not export dnnl_gemm_s8s8s32 and dnnl_sgemm", Name = name };
            }
            return new Api
            {
                Name = name,
                GemmS8S8S32 = (delegate* unmanaged[Cdecl]<byte, byte, byte, long, long, long, float, sbyte*, long, sbyte, sbyte*, long, sbyte, float, int*, long, int*, int>)s8,
                Sgemm = (delegate* unmanaged[Cdecl]<byte, byte, long, long, long, float, float*, long, float*, long, float, float*, long, int>)sg,
            };
        }
        return new Api { Reason = $"none of {string.Join(", ", Candidates)} could be loaded (Debian/Ubuntu: apt-get install libdnnl2, or libdnnl-dev)" };
    }

    private sealed class Api
    {
        public string? Reason { get; init; }

        public string? Name { get; init; }

        public delegate* unmanaged[Cdecl]<byte, byte, byte, long, long, long, float, sbyte*, long, sbyte, sbyte*, long, sbyte, float, int*, long, int*, int> GemmS8S8S32 { get; init; }

        public delegate* unmanaged[Cdecl]<byte, byte, long, long, long, float, float*, long, float*, long, float, float*, long, int> Sgemm { get; init; }
    }
}
