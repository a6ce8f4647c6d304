using System.Globalization;
using Kernels.Backends.Simd;
using Kernels.Backends.Simd.Jit;
using Kernels.Simd;

namespace Kernels.Tests.Simd;

/// <summary>
/// The generated AVX-512 VNNI GEMM kernels (issue 17): bit-identical to the intrinsics path and exact
/// against the int64 reference over every remainder of the tile, W^X code pages, the switches that turn
/// them off, and no access outside the buffers they are given (guard pages).
/// </summary>
public class JitGemmTests
{
    /// <summary>Skips where the generated kernels cannot run, or (<paramref name="effective"/>) are switched off.</summary>
    internal static VnniJit.KernelSet Require(bool effective = true)
    {
        if (!VnniJit.CanRun)
            Assert.Skip($"avx512-vnni: {VnniJit.WhyNot}");
        if (effective && CpuSimd.Effective < SimdLevel.Avx512Vnni)
            Assert.Skip($"avx512-vnni: capped by {CpuSimd.MaxLevelVariable} or {CpuSimd.JitVariable} to {CpuSimd.Effective.ToName()}");
        VnniJit.KernelSet? set = VnniJit.TryGet(out string? failure);
        Assert.True(set != null, failure);
        return set;
    }

    /// <summary>Seeded int8 over the full range with −128 and 127 placed at the first and last element.</summary>
    private static sbyte[] Data(Random random, long length)
    {
        sbyte[] data = Seeded.Int8(random, length);
        data[0] = -128;
        data[^1] = data.Length > 1 ? (sbyte)127 : (sbyte)-128;
        return data;
    }

    private static int[] Gemm(sbyte[] a, sbyte[] b, int m, int n, int k, SimdLevel level)
    {
        var c = new int[m * n];
        Int8GemmSimd.Gemm(a, b, c, m, n, k, 1, 0, 0, 0, level);
        return c;
    }

    private static void AssertSame(int[] expected, int[] actual, int n, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
                Assert.Fail($"{what}: element ({i / n},{i % n}) is {actual[i]}, expected {expected[i]}");
        }
    }

    [Fact]
    public void Generated_gemm_is_bit_identical_to_intrinsics_and_reference_over_every_remainder()
    {
        Require();
        int[] ns = [.. Enumerable.Range(1, 17), 31, 32, 33, 47, 48, 49, 63, 64, 65];
        int[] ks = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 130];
        Seeded.Run((random, _) =>
        {
            for (int m = 1; m <= 17; m++)
            {
                foreach (int n in ns)
                {
                    foreach (int k in ks)
                    {
                        sbyte[] a = Data(random, (long)m * k);
                        sbyte[] b = Data(random, (long)n * k);
                        int[] generated = Gemm(a, b, m, n, k, SimdLevel.Avx512Vnni);
                        AssertSame(Gemm(a, b, m, n, k, SimdLevel.AvxVnni), generated, n, $"m={m} n={n} k={k} against avx-vnni");
                        long[] reference = HostReference.Int8Gemm(a, b, m, n, k);
                        AssertSame([.. reference.Select(v => (int)v)], generated, n, $"m={m} n={n} k={k} against the int64 reference");
                    }
                }
            }
        });
    }

    [Fact]
    public void Generated_gemm_is_bit_identical_on_threaded_blocked_and_prepacked_shapes()
    {
        Require();
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (200, 301, 1000), (97, 1000, 515), (1, 4096, 333), (8, 200, 4100), (301, 3, 513) })
            {
                sbyte[] a = Data(random, (long)m * k);
                sbyte[] b = Data(random, (long)n * k);
                int[] generated = Gemm(a, b, m, n, k, SimdLevel.Avx512Vnni);
                AssertSame(Gemm(a, b, m, n, k, SimdLevel.AvxVnni), generated, n, $"m={m} n={n} k={k}");
                using PackedWeights packed = PackWeights(b, n, k, SimdLevel.Avx512Vnni);
                Assert.Equal(SimdLevel.Avx512Vnni, packed.Level);
                var c = new int[m * n];
                Int8GemmSimd.Gemm(a, packed, c, m, 1, 0, 0);
                AssertSame(generated, c, n, $"pre-packed m={m} n={n} k={k}");
            }
        });
    }

    private static unsafe PackedWeights PackWeights(sbyte[] b, int n, int k, SimdLevel level)
    {
        fixed (sbyte* pb = b)
            return Int8GemmSimd.PackWeights(pb, n, k, 1, 0, level);
    }

    [Fact]
    public void Generated_dequant_output_is_bit_identical_to_intrinsics()
    {
        Require();
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (1, 65, 130), (7, 33, 64), (13, 100, 257), (64, 256, 512) })
            {
                sbyte[] a = Data(random, (long)m * k);
                sbyte[] b = Data(random, (long)n * k);
                float[] aScale = [.. Enumerable.Range(0, m).Select(_ => (float)(random.NextDouble() * 0.1 + 1e-3))];
                float[] bScale = [.. Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 0.1 + 1e-3))];
                float[] bias = [.. Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 20 - 10))];
                foreach (bool hasBias in new[] { false, true })
                {
                    var generated = new float[m * n];
                    var intrinsics = new float[m * n];
                    ReadOnlySpan<float> bs = hasBias ? bias : [];
                    Int8GemmSimd.GemmDequant(a, b, aScale, bScale, bs, generated, m, n, k, 1, 0, 0, 0, 0, 0, SimdLevel.Avx512Vnni);
                    Int8GemmSimd.GemmDequant(a, b, aScale, bScale, bs, intrinsics, m, n, k, 1, 0, 0, 0, 0, 0, SimdLevel.AvxVnni);
                    for (int i = 0; i < generated.Length; i++)
                    {
                        if (BitConverter.SingleToInt32Bits(generated[i]) != BitConverter.SingleToInt32Bits(intrinsics[i]))
                            Assert.Fail($"m={m} n={n} k={k} bias={hasBias}: element ({i / n},{i % n}) is {generated[i]:R}, avx-vnni gives {intrinsics[i]:R}");
                    }
                }
            }
        });
    }

    [Fact]
    public unsafe void Code_pages_are_read_execute_never_writable()
    {
        VnniJit.KernelSet set = Require(effective: false);
        ulong start = (ulong)set.Pages.Address;
        ulong end = start + (ulong)set.Pages.Length;
        var covering = new List<string>();
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            string[] range = fields[0].Split('-');
            ulong lo = ulong.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ulong hi = ulong.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (lo < end && hi > start)
                covering.Add(line);
        }
        Assert.NotEmpty(covering);
        foreach (string line in covering)
            Assert.True(line.Split(' ')[1] == "r-xp", $"the generated code's pages are not r-x only: {line}");
    }

    [Fact]
    public void Jit_variable_parses_and_names_itself_when_invalid()
    {
        Assert.True(CpuSimd.ParseJit(null));
        Assert.True(CpuSimd.ParseJit(" "));
        Assert.True(CpuSimd.ParseJit("1"));
        Assert.True(CpuSimd.ParseJit("ON"));
        Assert.False(CpuSimd.ParseJit("0"));
        Assert.False(CpuSimd.ParseJit(" false "));
        Assert.False(CpuSimd.ParseJit("off"));
        var ex = Assert.Throws<ArgumentException>(() => CpuSimd.ParseJit("maybe"));
        Assert.Equal(CpuSimd.JitVariable, ex.ParamName);
    }

    [Fact]
    public void Kernels_jit_variable_turns_generated_code_off_in_a_process()
    {
        var off = new Dictionary<string, string> { [CpuSimd.JitVariable] = "0" };
        (int code, string stdout, string stderr) = CliExitCodeTests.RunWith(off, "jit");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        // Off: the best intrinsics level, which is AVX2 on AVX-512 VNNI processors without the 256-bit AVX-VNNI.
        SimdLevel expected = CpuSimd.Detected < SimdLevel.AvxVnni ? CpuSimd.Detected
            : System.Runtime.Intrinsics.X86.AvxVnni.IsSupported ? SimdLevel.AvxVnni : SimdLevel.Avx2;
        Assert.Contains($"effective: {expected.ToName()}", stdout, StringComparison.Ordinal);
        Assert.Contains("generated code: off", stdout, StringComparison.Ordinal);
        (code, _, stderr) = CliExitCodeTests.RunWith(off, "jit", "--dump");
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", stderr, StringComparison.Ordinal);
        (code, _, stderr) = CliExitCodeTests.RunWith(new Dictionary<string, string> { [CpuSimd.JitVariable] = "maybe" }, "jit");
        Assert.Equal(2, code);
        Assert.Contains(CpuSimd.JitVariable, stderr, StringComparison.Ordinal);
        (code, stdout, _) = CliExitCodeTests.RunWith(new Dictionary<string, string> { [CpuSimd.MaxLevelVariable] = "avx-vnni" }, "jit");
        Assert.Equal(0, code);
        Assert.Contains("generated code: off", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Kernels_jit_dump_disassembles_every_kernel()
    {
        Require();
        (int code, string stdout, string stderr) = CliExitCodeTests.RunWith(new Dictionary<string, string>(), "jit", "--dump");
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Contains("generated code: on", stdout, StringComparison.Ordinal);
        Assert.Contains("micro-kernel 6x64", stdout, StringComparison.Ordinal);
        Assert.Contains("micro-kernel 1x16", stdout, StringComparison.Ordinal);
        Assert.Contains("sparse int8 row kernel, interleave of four non-zeros, 16-bit columns", stdout, StringComparison.Ordinal);
        Assert.Contains("sparse int8 row kernel, aligned quads", stdout, StringComparison.Ordinal);
        Assert.Contains("vpunpcklbw zmm", stdout, StringComparison.Ordinal);
        Assert.Contains("vpdpbusd  zmm", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("(bad)", stdout, StringComparison.Ordinal);
    }

    /// <summary>
    /// Each generated kernel alone, for every output, with its packed A, packed B panels, correction, output rows,
    /// scales and bias each placed flush against an inaccessible page, after and then before the buffer (any read or
    /// write past the given extent faults), and the last panel whole or cut to 1, 5 or 15 columns; checked against
    /// sums computed here from the packed bytes and the epilogue's arithmetic in float32.
    /// </summary>
    [Fact]
    public unsafe void Generated_kernels_stay_inside_their_buffers()
    {
        VnniJit.KernelSet set = Require(effective: false);
        Seeded.Run((random, _) =>
        {
            const int MR = Int8GemmSimd.MR, NR = Int8GemmSimd.NR;
            foreach (VnniOutput kind in Enum.GetValues<VnniOutput>())
            {
                foreach (int groups in new[] { 1, 2, 3, 17, 64 })
                {
                    for (int rows = 1; rows <= MR; rows++)
                    {
                        for (int panels = 1; panels <= VnniKernelGenerator.MaxPanels; panels++)
                        {
                            foreach (int lastColumns in new[] { NR, 1, 5, 15 })
                                CheckKernel(set, random, kind, groups, rows, panels, lastColumns);
                        }
                    }
                }
            }
        });
    }

    private static unsafe void CheckKernel(VnniJit.KernelSet set, Random random, VnniOutput kind, int groups, int rows, int panels, int lastColumns)
    {
        const int MR = Int8GemmSimd.MR, NR = Int8GemmSimd.NR;
        int columns = (panels - 1) * NR + lastColumns;
        long aBytes = (long)groups * MR * 4;
        long panelBytes = (long)groups * NR * 4;
        long bBytes = panels * panelBytes;
        byte[] a = [.. Seeded.Int8(random, aBytes).Select(v => (byte)v)];
        byte[] b = [.. Seeded.Int8(random, bBytes).Select(v => (byte)v)];
        int[] corr = [.. Enumerable.Range(0, panels * NR).Select(_ => random.Next(-1 << 20, 1 << 20))];
        float[] aScale = [.. Enumerable.Range(0, rows).Select(_ => (float)(random.NextDouble() * 0.1 + 1e-3))];
        float[] bScale = [.. Enumerable.Range(0, columns).Select(_ => (float)(random.NextDouble() * 0.1 + 1e-3))];
        float[] bias = [.. Enumerable.Range(0, columns).Select(_ => (float)(random.NextDouble() * 20 - 10))];
        foreach (bool atEnd in new[] { true, false })
        {
            using var ga = new GuardedBuffer(aBytes, atEnd);
            using var gb = new GuardedBuffer(bBytes, atEnd);
            using var gk = new GuardedBuffer(corr.Length * sizeof(int), atEnd);
            using var go = new GuardedBuffer((long)rows * columns * sizeof(int), atEnd);
            using var gas = new GuardedBuffer(rows * sizeof(float), atEnd);
            using var gbs = new GuardedBuffer(columns * sizeof(float), atEnd);
            using var gbias = new GuardedBuffer(columns * sizeof(float), atEnd);
            a.CopyTo(new Span<byte>(ga.Pointer, (int)aBytes));
            b.CopyTo(new Span<byte>(gb.Pointer, (int)bBytes));
            corr.CopyTo(new Span<int>(gk.Pointer, corr.Length));
            aScale.CopyTo(new Span<float>(gas.Pointer, rows));
            bScale.CopyTo(new Span<float>(gbs.Pointer, columns));
            bias.CopyTo(new Span<float>(gbias.Pointer, columns));
            new Span<int>(go.Pointer, rows * columns).Fill(unchecked((int)0xDEADBEEF));
            TileOutput tile = new()
            {
                Out = (byte*)go.Pointer,
                RowBytes = columns * sizeof(int),
                Corr = (int*)gk.Pointer,
                AScale = (float*)gas.Pointer,
                BScale = (float*)gbs.Pointer,
                Bias = (float*)gbias.Pointer,
                LastMask = (1L << lastColumns) - 1,
            };
            set.Get(kind, rows, panels)(ga.Pointer, gb.Pointer, groups, panelBytes, &tile);
            string where = $"{kind} {rows}x{panels} last panel {lastColumns} columns, groups={groups}, {(atEnd ? "end" : "start")}-aligned";
            for (int r = 0; r < rows; r++)
            {
                for (int col = 0; col < columns; col++)
                {
                    int j = col / NR, c = col % NR;
                    int sum = 0;
                    for (int g = 0; g < groups; g++)
                    {
                        for (int t = 0; t < 4; t++)
                            sum += a[g * MR * 4 + r * 4 + t] * (sbyte)b[j * panelBytes + g * NR * 4 + c * 4 + t];
                    }
                    int acc = sum - corr[col];
                    int actual = ((int*)go.Pointer)[r * columns + col];
                    int expected = kind == VnniOutput.Int32 ? acc
                        : BitConverter.SingleToInt32Bits(Int8GemmSimd.Dequant(acc, aScale[r], bScale[col], bias[col], kind == VnniOutput.DequantBias));
                    if (actual != expected)
                        Assert.Fail($"{where}: row {r} column {col} is 0x{actual:x8}, expected 0x{expected:x8}");
                }
            }
        }
    }

    /// <summary>The whole GEMM with A, B and C (and, dequantizing, the scales, the bias and Y) flush against inaccessible pages, on edge remainders.</summary>
    [Fact]
    public unsafe void Generated_gemm_stays_inside_the_callers_buffers()
    {
        Require();
        Seeded.Run((random, _) =>
        {
            foreach ((int m, int n, int k) in new[] { (1, 1, 1), (1, 65, 130), (7, 17, 5), (13, 33, 37), (17, 64, 129), (6, 48, 4) })
            {
                sbyte[] a = Data(random, (long)m * k);
                sbyte[] b = Data(random, (long)n * k);
                int[] expected = Gemm(a, b, m, n, k, SimdLevel.AvxVnni);
                foreach (bool atEnd in new[] { true, false })
                {
                    using var ga = new GuardedBuffer(a.Length, atEnd);
                    using var gb = new GuardedBuffer(b.Length, atEnd);
                    using var gc = new GuardedBuffer((long)m * n * sizeof(int), atEnd);
                    a.AsSpan().CopyTo(new Span<sbyte>(ga.Pointer, a.Length));
                    b.AsSpan().CopyTo(new Span<sbyte>(gb.Pointer, b.Length));
                    Int8GemmSimd.Gemm((sbyte*)ga.Pointer, (sbyte*)gb.Pointer, m, n, k, 1, 0, 0,
                        SimdEpilogue.Int32((int*)gc.Pointer, 0), SimdLevel.Avx512Vnni);
                    AssertSame(expected, new Span<int>(gc.Pointer, m * n).ToArray(), n, $"m={m} n={n} k={k} {(atEnd ? "end" : "start")}-aligned");

                    // The dequantizing outputs: scales, bias and Y flush against the pages too.
                    float[] aScale = [.. Enumerable.Range(0, m).Select(_ => (float)(random.NextDouble() * 0.1 + 1e-3))];
                    float[] bScale = [.. Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 0.1 + 1e-3))];
                    float[] bias = [.. Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 20 - 10))];
                    foreach (bool hasBias in new[] { false, true })
                    {
                        var intrinsics = new float[m * n];
                        Int8GemmSimd.GemmDequant(a, b, aScale, bScale, hasBias ? bias : [], intrinsics, m, n, k, 1, 0, 0, 0, 0, 0, SimdLevel.AvxVnni);
                        using var gas = new GuardedBuffer(m * sizeof(float), atEnd);
                        using var gbs = new GuardedBuffer(n * sizeof(float), atEnd);
                        using var gbias = new GuardedBuffer(n * sizeof(float), atEnd);
                        using var gy = new GuardedBuffer((long)m * n * sizeof(float), atEnd);
                        aScale.CopyTo(new Span<float>(gas.Pointer, m));
                        bScale.CopyTo(new Span<float>(gbs.Pointer, n));
                        bias.CopyTo(new Span<float>(gbias.Pointer, n));
                        Int8GemmSimd.Gemm((sbyte*)ga.Pointer, (sbyte*)gb.Pointer, m, n, k, 1, 0, 0,
                            SimdEpilogue.Dequant((float*)gy.Pointer, 0, (float*)gas.Pointer, 0, (float*)gbs.Pointer,
                                hasBias ? (float*)gbias.Pointer : null, 0), SimdLevel.Avx512Vnni);
                        float[] generated = new Span<float>(gy.Pointer, m * n).ToArray();
                        for (int i = 0; i < generated.Length; i++)
                        {
                            if (BitConverter.SingleToInt32Bits(generated[i]) != BitConverter.SingleToInt32Bits(intrinsics[i]))
                                Assert.Fail($"m={m} n={n} k={k} bias={hasBias} {(atEnd ? "end" : "start")}-aligned: Y({i / n},{i % n}) is {generated[i]:R}, the intrinsics give {intrinsics[i]:R}");
                        }
                    }
                }
            }
        });
    }
}

/// <summary>Tests that change a process-wide switch run alone, after every parallel test.</summary>
[CollectionDefinition(nameof(ProcessWideSwitches), DisableParallelization = true)]
public sealed class ProcessWideSwitches;

/// <summary><see cref="CpuSimd.GeneratedCode"/> turns the generated kernels off in-process (and back on).</summary>
[Collection(nameof(ProcessWideSwitches))]
public class JitSwitchTests
{
    [Fact]
    public void Generated_code_option_caps_the_level_at_avx_vnni()
    {
        if (CpuSimd.Detected < SimdLevel.AvxVnni)
            Assert.Skip($"avx-vnni: this processor/runtime supports only {CpuSimd.Detected.ToName()}");
        SimdLevel before = CpuSimd.Effective;
        try
        {
            CpuSimd.GeneratedCode = false;
            Assert.True(CpuSimd.Effective <= SimdLevel.AvxVnni);
            Assert.True(CpuSimd.Resolve(SimdLevel.Avx512Vnni) <= SimdLevel.AvxVnni);
            Seeded.Run((random, _) =>
            {
                const int m = 9, n = 70, k = 67;
                sbyte[] a = Seeded.Int8(random, m * k);
                sbyte[] b = Seeded.Int8(random, n * k);
                var c = new int[m * n];
                Int8GemmSimd.Gemm(a, b, c, m, n, k, 1, 0, 0, 0, SimdLevel.Avx512Vnni);
                long[] reference = HostReference.Int8Gemm(a, b, m, n, k);
                for (int i = 0; i < c.Length; i++)
                    Assert.Equal(reference[i], c[i]);
            });
        }
        finally
        {
            CpuSimd.GeneratedCode = true;
        }
        Assert.Equal(before, CpuSimd.Effective);
    }
}
