using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using Kernels.DeviceCode;
using Half = System.Half;

namespace Kernels.Tests;

/// <summary>
/// Attention with half storage against the float64 reference on the half inputs converted to float (exact).
/// Tolerance 1e-3 relative + 1e-3 absolute: the output is rounded to half once (nearest even, at most 2^-11 ≈ 4.9e-4
/// relative for normal halves, 2^-25 absolute for subnormals), on top of the kernels' float32 error (~1e-6).
/// </summary>
public sealed class AttentionHalfTests
{
    private const double Tolerance = 1e-3;

    private static Half[] Halves(Random random, long length) =>
        Seeded.Floats(random, length, -1, 1).Select(x => (Half)x).ToArray();

    private static float[] ToFloat(Half[] x) => x.Select(h => (float)h).ToArray();

    private static void Compare(KernelSession session, Random random, AttentionShape shape, AttentionOptions options,
        int[]? lengths, int splits)
    {
        Half[] q = Halves(random, shape.QueryElements), k = Halves(random, shape.KeyElements), v = Halves(random, shape.KeyElements);
        float[] qf = ToFloat(q), kf = ToFloat(k), vf = ToFloat(v);
        double[] expected = HostReference.Attention(qf, kf, vf, shape, options, lengths);
        Half[] actual = lengths is null
            ? session.Attention(q, k, v, shape, options)
            : session.AttentionDecode(q, k, v, lengths, shape, options, splits);
        string what = $"{session.Backend.ToName()} {shape} window {options.Window} lengths [{string.Join(",", lengths ?? [])}] splits {splits}";
        Expect.Close(expected, ToFloat(actual), Tolerance, Tolerance, what);

        // The float API on the same (converted) values agrees to half rounding; cpu-simd runs the same float kernel, so exactly.
        float[] single = lengths is null
            ? session.Attention(qf, kf, vf, shape, options)
            : session.AttentionDecode(qf, kf, vf, lengths, shape, options, splits);
        for (int i = 0; i < single.Length; i++)
        {
            if (session.Backend == Backend.CpuSimd)
                Assert.True((Half)single[i] == actual[i], $"{what}: element {i}: half {actual[i]}, float {single[i]}");
            else
                Assert.True(Math.Abs((float)actual[i] - single[i]) <= Math.Abs(single[i]) / 2048f + 1e-6f,
                    $"{what}: element {i}: half {actual[i]}, float {single[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void Prefill_MatchesReferenceOnConvertedInputs(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, _) =>
        {
            // GQA, odd lengths and head dim, causal and not, a window.
            var shape = new AttentionShape(2, 6, 2, 13, 29, 19, Causal: false);
            Compare(session, random, shape, AttentionOptions.Default, null, 1);
            Compare(session, random, shape with { Causal = true }, AttentionOptions.Default, null, 1);
            Compare(session, random, shape with { Causal = true }, new AttentionOptions(Scale: 0.3f, Window: 7), null, 1);
            // Multi-head, D = 64, more keys than a tile, fewer queries than keys.
            Compare(session, random, new AttentionShape(1, 4, 4, 5, 131, 64, Causal: true), AttentionOptions.Default, null, 1);
            // Multi-query, D = 128.
            Compare(session, random, new AttentionShape(1, 3, 1, 7, 7, 128, Causal: false), AttentionOptions.Default, null, 1);
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void Decode_RaggedMatchesReferenceOnConvertedInputs(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, _) =>
        {
            var shape = new AttentionShape(4, 8, 2, 1, 70, 40, Causal: false);
            int[] lengths = [0, 70, 1, 37];
            foreach (int splits in new[] { 1, 3 })
            {
                Compare(session, random, shape, AttentionOptions.Default, lengths, splits);
                Compare(session, random, shape with { Causal = true }, AttentionOptions.Default, lengths, splits);
                var mq = new AttentionShape(2, 4, 1, 3, 33, 13, Causal: true);
                Compare(session, random, mq, new AttentionOptions(Window: 5), [33, 20], splits);
            }
            Compare(session, random, new AttentionShape(1, 2, 2, 1, 600, 64, Causal: true), AttentionOptions.Default, [600], 0);
        });
    }

    [Theory]
    [MemberData(nameof(Sessions.Backends), MemberType = typeof(Sessions))]
    public void RejectsBadArguments(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        var shape = new AttentionShape(2, 2, 1, 1, 4, 8, Causal: true);
        var q = new Half[shape.QueryElements];
        var k = new Half[shape.KeyElements];
        var e = Assert.Throws<ArgumentException>(() => session.Attention(q, new Half[3], k, shape));
        Assert.Equal("k", e.ParamName);
        var r = Assert.Throws<ArgumentOutOfRangeException>(() => session.AttentionDecode(q, k, k, [1, 5], shape));
        Assert.Equal("cacheLengths", r.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => session.AttentionDecode(q, k, k, [1, 4], shape, splits: -1));
    }

    [Fact]
    public void HalfToFloat_IsExactForEveryHalf()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            float actual = AttentionHalfKernels.HalfToFloat((ushort)bits);
            if (float.IsNaN(expected))
                Assert.True(float.IsNaN(actual), $"bits {bits:X4}");
            else
                Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(actual));
        }
    }

    [Fact]
    public void FloatToHalf_RoundsLikeSystemHalf()
    {
        void Check(float f)
        {
            Half expected = (Half)f;
            ushort actual = AttentionHalfKernels.FloatToHalf(f);
            if (Half.IsNaN(expected))
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(actual)), $"{f}");
            else
                Assert.True(BitConverter.HalfToUInt16Bits(expected) == actual, $"{f:R}: {actual:X4}, expected {BitConverter.HalfToUInt16Bits(expected):X4}");
        }
        float[] edges =
        [
            0f, -0f, 1f, -1f, 65504f, 65519.99f, 65520f, 65536f, float.MaxValue, float.PositiveInfinity, float.NegativeInfinity,
            float.NaN, float.Epsilon, MathF.ScaleB(1f, -24), MathF.ScaleB(1f, -25), MathF.ScaleB(1.5f, -25), MathF.ScaleB(1f, -14), MathF.ScaleB(1023f, -24), MathF.ScaleB(2047f, -25), 1f + MathF.ScaleB(1f, -11),
            1f + MathF.ScaleB(3f, -11), 1f + MathF.ScaleB(5f, -11), 2049f, 2051f,
        ];
        foreach (float f in edges)
        {
            Check(f);
            Check(-f);
        }
        // Every half, its neighbours at the rounding boundaries, and random bit patterns.
        for (int bits = 0; bits < 0x7C00; bits++)
        {
            float h = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            uint u = BitConverter.SingleToUInt32Bits(h);
            foreach (uint d in new uint[] { 0, 0xFFF, 0x1000, 0x1001 })
                Check(BitConverter.UInt32BitsToSingle(u + d));
        }
        var random = new Random(7);
        for (int i = 0; i < 200_000; i++)
            Check(BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)));
    }

    public static TheoryData<string> KernelNames => new("Forward", "Combine");

    [Theory]
    [MemberData(nameof(KernelNames))]
    public void Kernels_CompileToPtxForSm90AndOpenCLC(string name)
    {
        using var context = Context.Create(b => b.CPU().Optimize(OptimizationLevel.O2));
        var entry = name == "Forward"
            ? EntryPointDescription.FromExplicitlyGroupedKernel(
                typeof(AttentionKernels).GetMethod(nameof(AttentionKernels.Forward))!.MakeGenericMethod(typeof(HalfAttentionIo)))
            : EntryPointDescription.FromImplicitlyGroupedKernel(
                typeof(AttentionKernels).GetMethod(nameof(AttentionKernels.Combine))!.MakeGenericMethod(typeof(HalfAttentionIo)));
        using (var ptx = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, null))
        {
            var compiled = (PTXCompiledKernel)ptx.Compile(entry, KernelSpecialization.Empty);
            Assert.Contains(".entry", compiled.PTXAssembly, StringComparison.Ordinal);
            if (name == "Forward")
                Assert.Contains("bar.sync", compiled.PTXAssembly, StringComparison.Ordinal);
        }
        using var cl = new CLBackend(context, new CLCapabilityContext(false, false, false, false, true), CLDeviceVendor.Other, CLCVersion.CL20);
        var source = ((CLCompiledKernel)cl.Compile(entry, KernelSpecialization.Empty)).Source;
        Assert.Contains("kernel", source, StringComparison.Ordinal);
        if (name == "Forward")
            Assert.Contains("barrier", source, StringComparison.Ordinal);
    }
}
