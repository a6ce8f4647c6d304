using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
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

namespace Kernels.Tests.Sparse;

/// <summary>Every sparse kernel instantiation compiles to PTX (sm_90) and OpenCL C with ILGPU's own backends, without a GPU.</summary>
public sealed partial class SparseCompileTests : OfflineCompiler
{
    /// <summary>"kernel/format/epilogue" for the products, "Transpose/type" for the transpose, "TiledInt8/epilogue" and "PackTokenWords" for the tiled int8 kernel.</summary>
    public static TheoryData<string> KernelNames
    {
        get
        {
            var data = new TheoryData<string>("Transpose/sbyte", "Transpose/float", "PackTokenWords", "TiledInt8/Int32", "TiledInt8/Dequant");
            foreach (string format in new[] { "Csr", "Bsr", "TwoFour" })
            {
                foreach (string kernel in new[] { "General", "Small" })
                {
                    data.Add($"{kernel}/{format}/Int32");
                    data.Add($"{kernel}/{format}/Dequant");
                    data.Add($"{kernel}/{format}/Float32");
                }
            }
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void SparseCompilesToPtxForSm90(string name)
    {
        string ptx = Ptx(EntryPoint(name));
        Assert.Contains(".entry", ptx, StringComparison.Ordinal);
        if (name.Contains("Small", StringComparison.Ordinal) || name.StartsWith("Tiled", StringComparison.Ordinal))
            Assert.Contains("bar.sync", ptx, StringComparison.Ordinal);
        if (name.StartsWith("Tiled", StringComparison.Ordinal))
        {
            // The byte transposes and the dot products are single instructions on CUDA.
            Assert.Contains("prmt.b32", ptx, StringComparison.Ordinal);
            Assert.Contains("dp4a.s32.s32", ptx, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void SparseCompilesToOpenCLC(string name)
    {
        string source = OpenCLC(EntryPoint(name));
        Assert.Contains("kernel", source, StringComparison.Ordinal);
        if (name.Contains("Small", StringComparison.Ordinal) || name.StartsWith("Tiled", StringComparison.Ordinal))
            Assert.Contains("barrier", source, StringComparison.Ordinal);
    }

    /// <summary>
    /// ptxas (sm_90) assembles ILGPU's PTX of the tiled int8 kernel without spills, in at most 64 registers
    /// (four groups of 256 threads per SM), with its shared memory under the 48 KiB static limit.
    /// </summary>
    [Theory]
    [InlineData("TiledInt8/Int32")]
    [InlineData("TiledInt8/Dequant")]
    public void TiledInt8AssemblesWithoutSpills(string name)
    {
        string? ptxas = Kernels.Tests.TensorCore.TensorCorePtxTests.FindPtxas();
        if (ptxas is null)
            Assert.Skip("ptxas not found (set KERNELS_PTXAS, put it on PATH, or unpack Debian's nvidia-cuda-toolkit into /opt/cuda-ptxas)");
        string folder = Path.Combine(Path.GetTempPath(), $"kernels-ptxas-tiled-{Environment.ProcessId}-{name.Replace('/', '-')}");
        Directory.CreateDirectory(folder);
        try
        {
            string input = Path.Combine(folder, "tiled.ptx");
            File.WriteAllText(input, Ptx(EntryPoint(name)));
            var start = new ProcessStartInfo(ptxas!, ["-v", "-arch=sm_90", input, "-o", Path.Combine(folder, "tiled.cubin")])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using Process process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit();
            TestContext.Current.TestOutputHelper?.WriteLine(output);
            Assert.True(process.ExitCode == 0, $"ptxas failed ({process.ExitCode}):\n{output}");
            Match f = PtxasRegex().Match(output);
            Assert.True(f.Success, $"no register/spill summary in:\n{output}");
            int stores = int.Parse(f.Groups["stores"].Value, CultureInfo.InvariantCulture);
            int loads = int.Parse(f.Groups["loads"].Value, CultureInfo.InvariantCulture);
            int registers = int.Parse(f.Groups["regs"].Value, CultureInfo.InvariantCulture);
            int shared = int.Parse(f.Groups["smem"].Value, CultureInfo.InvariantCulture);
            Assert.True(stores == 0 && loads == 0, $"{name}: spills {stores}/{loads}");
            Assert.True(registers <= 64, $"{name}: {registers} registers > 64");
            Assert.True(shared <= 48 * 1024, $"{name}: {shared} bytes of shared memory > 48 KiB");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [GeneratedRegex(@"(?<stores>\d+) bytes spill stores, (?<loads>\d+) bytes spill loads\s+ptxas info\s+: Used (?<regs>\d+) registers, (?<smem>\d+) bytes smem")]
    private static partial Regex PtxasRegex();

    private static EntryPointDescription EntryPoint(string name)
    {
        string[] parts = name.Split('/');
        if (parts[0] == "PackTokenWords")
            return EntryPointDescription.FromImplicitlyGroupedKernel(typeof(SparseKernels).GetMethod(nameof(SparseKernels.PackTokenWords))!);
        if (parts[0] == "TiledInt8")
        {
            return EntryPointDescription.FromExplicitlyGroupedKernel(typeof(SparseKernels).GetMethod(nameof(SparseKernels.TiledInt8))!
                .MakeGenericMethod(parts[1] == "Dequant" ? typeof(DequantEpilogue) : typeof(Int32Epilogue)));
        }
        if (parts[0] == "Transpose")
        {
            Type element = parts[1] == "float" ? typeof(float) : typeof(sbyte);
            return EntryPointDescription.FromImplicitlyGroupedKernel(
                typeof(SparseKernels).GetMethod(nameof(SparseKernels.Transpose))!.MakeGenericMethod(element));
        }
        bool int8 = parts[2] != "Float32";
        Type value = int8 ? typeof(sbyte) : typeof(float);
        Type rows = parts[1] switch
        {
            "Csr" => typeof(CsrRows<>),
            "Bsr" => typeof(BsrRows<>),
            _ => typeof(TwoFourRows<>),
        };
        rows = rows.MakeGenericType(value);
        MethodInfo method = typeof(SparseKernels).GetMethod(parts[0])!;
        Type product = int8
            ? typeof(Int8Product<>).MakeGenericType(parts[2] == "Dequant" ? typeof(DequantEpilogue) : typeof(Int32Epilogue))
            : typeof(Float32Product);
        method = method.MakeGenericMethod(value, int8 ? typeof(int) : typeof(float), rows, product);
        return parts[0] == "Small"
            ? EntryPointDescription.FromExplicitlyGroupedKernel(method)
            : EntryPointDescription.FromImplicitlyGroupedKernel(method);
    }
}
