using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels.Tests;

/// <summary>
/// The device helpers that work around ILGPU 1.5.3 code-generation faults (docs/opencl.md), run as kernels
/// on every ILGPU backend present: exactly the conditions under which the obvious code went wrong.
/// </summary>
public sealed class CodegenFaultTests
{
    public static TheoryData<Backend> IlgpuBackends => new(Backend.Cpu, Backend.Cuda, Backend.OpenCL);

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void MaxNaN_PropagatesNaN_AfterAnotherKernelUsingItWasCompiled(Backend backend)
    {
        Accelerator acc = Sessions.Get(backend).Accelerator;
        // Fault 3: compiling a kernel that uses the helper first made ILGPU if-convert the reduction
        // below into an unordered compare that the OpenCL backend writes as an ordered one.
        var pairwise = acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(PairwiseMax);
        var rowMax = acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, int, ArrayView<float>>(RowMax);
        float[][] rows =
        [
            [1f, float.NaN, 2f, 3f],
            [float.NaN, 1f, 2f],
            [1f, 2f, float.NaN],
            [float.NegativeInfinity, -1f, 5f, 4f],
            [BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00001)), 0f],   // a negative NaN with a payload
            [float.NegativeInfinity, float.PositiveInfinity],
        ];
        using MemoryBuffer1D<float, Stride1D.Dense> result = acc.Allocate1D<float>(1);
        foreach (float[] row in rows)
        {
            using MemoryBuffer1D<float, Stride1D.Dense> x = acc.Allocate1D(row);
            rowMax(acc.DefaultStream, 1, x.View, row.Length, result.View);
            float got = result.GetAsArray1D()[0];
            float expected = row.Any(float.IsNaN) ? float.NaN : row.Max();
            Assert.True(got.Equals(expected), $"{backend.ToName()}: max of [{string.Join(", ", row)}] is {got}, expected {expected}");
        }

        float[] a = [1f, float.NaN, 2f, float.NaN, float.NegativeInfinity];
        float[] b = [float.NaN, 1f, 3f, float.NaN, -2f];
        using MemoryBuffer1D<float, Stride1D.Dense> da = acc.Allocate1D(a), db = acc.Allocate1D(b), dm = acc.Allocate1D<float>(a.Length);
        pairwise(acc.DefaultStream, a.Length, da.View, db.View, dm.View);
        float[] m = dm.GetAsArray1D();
        for (int i = 0; i < a.Length; i++)
        {
            float expected = float.IsNaN(a[i]) || float.IsNaN(b[i]) ? float.NaN : Math.Max(a[i], b[i]);
            Assert.True(m[i].Equals(expected), $"{backend.ToName()}: MaxNaN({a[i]}, {b[i]}) is {m[i]}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Permute_OfWordsTruncatedFromLongs_MatchesTheHost(Backend backend)
    {
        Accelerator acc = Sessions.Get(backend).Accelerator;
        // Fault 1: the portable permute widened (uint) bytes of an int truncated from a long; ILGPU emitted
        // a sign extension and bytes ≥ 0x80 came out as 0xFF…. Groups in the tiled sparse kernel are such longs.
        var permute = acc.LoadAutoGroupedKernel<Index1D, ArrayView<long>, ArrayView<int>, ArrayView<int>>(PermuteWords);
        Seeded.Run((random, seed) =>
        {
            const int count = 4096;
            var words = new long[count];
            var selectors = new int[count];
            for (int i = 0; i < count; i++)
            {
                words[i] = random.NextInt64(long.MinValue, long.MaxValue);
                if (i < 16)
                    words[i] = (i & 1) == 0 ? unchecked((long)0x80FF7F01_FF80017FUL) : -1L;   // every sign-bit byte
                selectors[i] = random.Next(0, 0x10000) & 0x7777;
            }
            using MemoryBuffer1D<long, Stride1D.Dense> dw = acc.Allocate1D(words);
            using MemoryBuffer1D<int, Stride1D.Dense> ds = acc.Allocate1D(selectors), dout = acc.Allocate1D<int>(count);
            permute(acc.DefaultStream, count, dw.View, ds.View, dout.View);
            int[] got = dout.GetAsArray1D();
            for (int i = 0; i < count; i++)
            {
                int expected = Packed.Permute((int)words[i], (int)(words[i] >> 32), selectors[i]);
                Assert.True(got[i] == expected,
                    $"{backend.ToName()}: permute(0x{words[i]:X16}, selector 0x{selectors[i]:X4}) is 0x{got[i]:X8}, expected 0x{expected:X8}");
            }
        });
    }

    private static void PairwiseMax(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> m) =>
        m[i] = AttentionKernels.MaxNaN(a[i], b[i]);

    private static void RowMax(Index1D i, ArrayView<float> x, int n, ArrayView<float> result)
    {
        float m = float.NegativeInfinity;
        for (int j = 0; j < n; j++)
            m = AttentionKernels.MaxNaN(m, x[j]);
        result[i] = m;
    }

    private static void PermuteWords(Index1D i, ArrayView<long> words, ArrayView<int> selectors, ArrayView<int> result)
    {
        long word = words[i];
        result[i] = Packed.Permute((int)word, (int)(word >> 32), selectors[i]);
    }
}
