using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Kernels.Backends.Simd;
using Kernels.Simd;

namespace Kernels.Benchmarks;

/// <summary>
/// The CPU sparse int8 kernels (<c>SparseSimd.Int8</c> with a prepared plan) against the dense SIMD
/// GEMM (<c>Int8GemmSimd.Gemm</c>, B packed inside the call, the baseline) on the same pruned random
/// matrix (non-zeros never 0), m = n = k, int32 output, at the best level of this machine.
/// Run: <c>dotnet run -c Release --project benchmarks/Kernels.Benchmarks -- --filter '*SparseSimd*'</c>.
/// </summary>
public unsafe class SparseSimdBenchmarks : IDisposable
{
    private sbyte* _x;
    private sbyte* _dense;
    private int* _c;
    private int* _ptr;
    private int* _cols;
    private sbyte* _vals;
    private byte* _meta;
    private SparseSimdPlan? _plan;

    [Params(1024, 2048)]
    public int Size { get; set; }

    /// <summary>Fraction of zero weights (2:4 ignores it: always 0.5).</summary>
    [Params(0.5, 0.9)]
    public double Sparsity { get; set; }

    [Params("csr", "bsr4x4", "2:4")]
    public string Format { get; set; } = "csr";

    [GlobalSetup]
    public void Setup()
    {
        int s = Size;
        var random = new Random(42);
        long count = (long)s * s;
        _x = (sbyte*)NativeMemory.AlignedAlloc((nuint)count, 64);
        _dense = (sbyte*)NativeMemory.AlignedAlloc((nuint)count, 64);
        _c = (int*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(int)), 64);
        for (long i = 0; i < count; i++)
            _x[i] = (sbyte)(random.Next(255) - 127);
        int br = Format == "bsr4x4" ? 4 : 1, bc = Format == "bsr4x4" ? 4 : 1;
        int groups = s / 4;
        for (int r = 0; r < s; r++)
        {
            for (int g = 0; g < groups; g++)
            {
                int keepA = random.Next(4), keepB = (keepA + 1 + random.Next(3)) % 4;
                for (int t = 0; t < 4; t++)
                {
                    long at = (long)r * s + 4 * g + t;
                    bool keep = Format == "2:4" ? t == keepA || t == keepB : random.NextDouble() >= Sparsity;
                    _dense[at] = keep ? NonZero(random) : (sbyte)0;
                }
            }
        }
        if (Format == "bsr4x4")
        {
            // Whole 4×4 blocks: keep a block with probability 1 − sparsity.
            for (int b = 0; b < s / br; b++)
            {
                for (int j = 0; j < s / bc; j++)
                {
                    bool keep = random.NextDouble() >= Sparsity;
                    for (int i = 0; i < br; i++)
                    {
                        for (int c = 0; c < bc; c++)
                            _dense[(long)(b * br + i) * s + j * bc + c] = keep ? NonZero(random) : (sbyte)0;
                    }
                }
            }
        }
        _plan = SparseSimdPlan.Prepare(Encode(s, br, bc), SimdLevel.AvxVnni);
    }

    [Benchmark(Baseline = true)]
    public void Dense() => Int8GemmSimd.Gemm(_x, _dense, Size, Size, Size, 1, 0, 0, SimdEpilogue.Int32(_c, 0), SimdLevel.AvxVnni);

    [Benchmark]
    public void Sparse() => SparseSimd.Int8(_plan!, _x, Size, SimdEpilogue.Int32(_c, 0));

    private SparseWeights Encode(int s, int br, int bc)
    {
        if (Format == "2:4")
        {
            int groups = s / 4;
            _vals = (sbyte*)NativeMemory.AlignedAlloc((nuint)((long)s * groups * 2), 64);
            _meta = (byte*)NativeMemory.AlignedAlloc((nuint)((long)s * groups), 64);
            for (int r = 0; r < s; r++)
            {
                for (int g = 0; g < groups; g++)
                {
                    long at = (long)r * groups + g;
                    int found = 0;
                    var pos = new int[2];
                    for (int t = 0; t < 4 && found < 2; t++)
                    {
                        if (_dense[(long)r * s + 4 * g + t] != 0)
                            pos[found++] = t;
                    }
                    _meta[at] = (byte)(pos[0] | (pos[1] << 2));
                    _vals[2 * at] = _dense[(long)r * s + 4 * g + pos[0]];
                    _vals[2 * at + 1] = _dense[(long)r * s + 4 * g + pos[1]];
                }
            }
            return new SparseWeights { Format = SparseFormat.TwoFour, Rows = s, Columns = s, BlockRows = 1, BlockColumns = 1, Values = _vals, Meta = _meta };
        }
        var ptr = new List<int> { 0 };
        var cols = new List<int>();
        var vals = new List<sbyte>();
        for (int b = 0; b < s / br; b++)
        {
            for (int j = 0; j < s / bc; j++)
            {
                bool any = false;
                for (int i = 0; i < br && !any; i++)
                {
                    for (int c = 0; c < bc; c++)
                        any |= _dense[(long)(b * br + i) * s + j * bc + c] != 0;
                }
                if (!any)
                    continue;
                cols.Add(j);
                for (int i = 0; i < br; i++)
                {
                    for (int c = 0; c < bc; c++)
                        vals.Add(_dense[(long)(b * br + i) * s + j * bc + c]);
                }
            }
            ptr.Add(cols.Count);
        }
        _ptr = Copy(ptr.ToArray());
        _cols = Copy(cols.ToArray());
        _vals = (sbyte*)Copy(vals.ToArray());
        return new SparseWeights
        {
            Format = br == 1 && bc == 1 ? SparseFormat.Csr : SparseFormat.Bsr, Rows = s, Columns = s, BlockRows = br, BlockColumns = bc,
            RowPointers = _ptr, ColumnIndices = _cols, Values = _vals,
        };
    }

    private static T* Copy<T>(T[] data)
        where T : unmanaged
    {
        var p = (T*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, data.Length) * sizeof(T)), 64);
        data.CopyTo(new Span<T>(p, data.Length));
        return p;
    }

    private static sbyte NonZero(Random random)
    {
        int v = random.Next(-128, 127);
        return (sbyte)(v >= 0 ? v + 1 : v);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _plan?.Dispose();
        _plan = null;
        foreach (void* p in new[] { (void*)_x, _dense, _c, _ptr, _cols, _vals, _meta })
        {
            if (p != null)
                NativeMemory.AlignedFree(p);
        }
        _x = null;
        _dense = null;
        _c = null;
        _ptr = null;
        _cols = null;
        _vals = null;
        _meta = null;
        GC.SuppressFinalize(this);
    }
}
