using System.Reflection;
using ILGPU.Backends.EntryPoints;
using Kernels.DeviceCode;

namespace Kernels.Tests.Sparse;

/// <summary>Every sparse kernel instantiation compiles to PTX (sm_90) and OpenCL C with ILGPU's own backends, without a GPU.</summary>
public sealed class SparseCompileTests : OfflineCompiler
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
        PtxasFunction f = Assert.Single(Ptxas.Assemble(Ptx(EntryPoint(name)), "sm_90", name));
        Assert.True(f.StackBytes == 0 && f.SpillStores == 0 && f.SpillLoads == 0, $"{name}: stack {f.StackBytes}, spills {f.SpillStores}/{f.SpillLoads}");
        Assert.True(f.Registers <= 64, $"{name}: {f.Registers} registers > 64");
        Assert.True(f.SharedBytes <= 48 * 1024, $"{name}: {f.SharedBytes} bytes of shared memory > 48 KiB");
    }

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
