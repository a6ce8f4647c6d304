using Kernels.Backends.Simd;
using Kernels.Backends.Simd.Jit;
using Kernels.Simd;

namespace Kernels.Tests.Simd;

/// <summary>
/// The generated AVX-512 VNNI sparse int8 row kernels (issue 17): each kernel alone against the definition over every
/// remainder of four non-zeros, with every buffer flush against an inaccessible page; the whole sparse product with a
/// kept plan (16-bit columns, aligned quads) exact against the int64 reference; the plan's choice at this level.
/// </summary>
public class JitSparseTests
{
    private const int Tokens = SparseSimdKernels.TBV;

    /// <summary>
    /// The interleave kernels (32- and 16-bit columns), the aligned-quad kernel and the small-m kernels (8 and 16 tokens;
    /// where AVX-512 VBMI is), for 0..9, 13, 31 and 64 entries,
    /// columns (or quads) including the first and the last line of the panel, u8 panel bytes and s8 weights at their
    /// extremes; panel, indices, weights and the 64 outputs each against a guard page after, then before, their
    /// extent. Expected: the definition, dst[32h + t] = Σ w·panel[column·64 + 32h + PosVnni(t)] (interleave) and
    /// dst[t] = Σ_q Σ_b (sbyte)(weights[q] &gt;&gt; 8b)·panel[quad·256 + 4t + b] (quads) and dst[t] = Σ w·(panel[column·W + t] − 128)
    /// (small m, W tokens), in int32 with wrap-around.
    /// </summary>
    [Fact]
    public unsafe void Generated_sparse_row_kernels_match_the_definition_and_stay_inside_their_buffers()
    {
        VnniJit.KernelSet set = JitGemmTests.Require(effective: false);
        Seeded.Run((random, _) =>
        {
            foreach (SparseRowKernel kernel in Enum.GetValues<SparseRowKernel>())
            {
                if (kernel is SparseRowKernel.Small8 or SparseRowKernel.Small16 && !System.Runtime.Intrinsics.X86.Avx512Vbmi.VL.IsSupported)
                    continue;   // vpermb: these run only where AVX-512 VBMI is (the intrinsics they replace need it too)
                foreach (int lines in new[] { 1, 3, 97 })
                {
                    foreach (int count in new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 31, 64 })
                        Check(set, random, kernel, lines, count);
                }
            }
        });
    }

    private static unsafe void Check(VnniJit.KernelSet set, Random random, SparseRowKernel kernel, int lines, int count)
    {
        bool quads = kernel == SparseRowKernel.Quads;
        int small = kernel switch { SparseRowKernel.Small8 => 8, SparseRowKernel.Small16 => 16, _ => 0 };
        int outputs = small > 0 ? small : Tokens;
        int lineBytes = quads ? 4 * Tokens : small > 0 ? small : Tokens;
        var panel = new byte[lines * lineBytes];
        random.NextBytes(panel);
        panel[0] = 255;
        panel[^1] = 0;
        var index = new int[count];
        for (int i = 0; i < count; i++)
            index[i] = i == 0 ? lines - 1 : i == 1 ? 0 : random.Next(lines);
        int indexBytes = kernel == SparseRowKernel.Interleave16 ? 2 : 4;
        int weightBytes = quads ? 4 : 1;
        var weights = new sbyte[count * weightBytes];
        for (int i = 0; i < weights.Length; i++)
            weights[i] = i % 7 == 0 ? (sbyte)-128 : i % 7 == 1 ? (sbyte)127 : (sbyte)random.Next(-128, 128);

        var expected = new int[outputs];
        for (int i = 0; i < count; i++)
        {
            for (int t = 0; t < outputs; t++)
            {
                if (small > 0)
                    expected[t] += weights[i] * (panel[index[i] * lineBytes + t] - 128);
                else if (quads)
                {
                    for (int b = 0; b < 4; b++)
                        expected[t] += weights[4 * i + b] * panel[index[i] * lineBytes + 4 * t + b];
                }
                else
                {
                    int h = t / 32, u = t % 32;
                    expected[t] += weights[i] * panel[index[i] * lineBytes + 32 * h + SparseSimdKernels.PosVnni(u)];
                }
            }
        }

        foreach (bool atEnd in new[] { true, false })
        {
            using var gp = new GuardedBuffer(panel.Length, atEnd);
            using var gi = new GuardedBuffer((long)count * indexBytes, atEnd);
            using var gw = new GuardedBuffer(weights.Length, atEnd);
            using var gd = new GuardedBuffer(outputs * sizeof(int), atEnd);
            panel.CopyTo(new Span<byte>(gp.Pointer, panel.Length));
            for (int i = 0; i < count; i++)
            {
                if (indexBytes == 2)
                    ((ushort*)gi.Pointer)[i] = (ushort)index[i];
                else
                    ((int*)gi.Pointer)[i] = index[i];
            }
            new ReadOnlySpan<byte>((byte[])(Array)weights).CopyTo(new Span<byte>(gw.Pointer, weights.Length));
            new Span<int>(gd.Pointer, outputs).Fill(unchecked((int)0xDEADBEEF));
            set.Sparse(kernel)(gp.Pointer, gi.Pointer, gw.Pointer, count, (int*)gd.Pointer);
            for (int t = 0; t < outputs; t++)
            {
                int actual = ((int*)gd.Pointer)[t];
                if (actual != expected[t])
                    Assert.Fail($"{kernel}, {count} entries over {lines} lines, {(atEnd ? "end" : "start")}-aligned: output {t} is {actual}, expected {expected[t]}");
            }
        }
    }

    /// <summary>
    /// At this level the plan picks by the costs measured for the generated kernels: 70 % zeros the dense GEMM (prefill
    /// loses), 88 % too (decode loses), 95 % the generated interleave kernel (16-bit columns), 6 % of 4×4 blocks (94 %
    /// zeros) the generated aligned quads; each exact against the int64 reference for prefill sizes (m past one
    /// 64-token panel, ragged) and the small-m ones.
    /// </summary>
    [Fact]
    public unsafe void Kept_plans_pick_by_the_generated_kernels_costs_and_stay_exact()
    {
        JitGemmTests.Require();
        const SimdLevel level = SimdLevel.Avx512Vnni;
        Seeded.Run((random, _) =>
        {
            const int n = 45, k = 203;
            sbyte[] sparse95 = SparseBuild.Pruned(random, n, k, 0.05, SparseBuild.NonZero8);
            sbyte[] sparse88 = SparseBuild.Pruned(random, n, k, 0.12, SparseBuild.NonZero8);
            sbyte[] sparse70 = SparseBuild.Pruned(random, n, k, 0.3, SparseBuild.NonZero8);
            sbyte[] blocks = SparseBuild.BlockPruned(random, n, k, 4, 4, 0.06);
            (SparseCase<sbyte> w, string form)[] cases =
            [
                (SparseBuild.Csr(sparse70, n, k), "dense fallback"),
                (SparseBuild.Csr(sparse88, n, k), "dense fallback"),
                (SparseBuild.Csr(sparse95, n, k), "interleave of four non-zeros, 16-bit columns (generated vpdpbusd zmm)"),
                (SparseBuild.Bsr(random, blocks, n, k, 4, 4), "aligned quads (generated vpdpbusd zmm)"),
            ];
            foreach ((SparseCase<sbyte> w, string form) in cases)
            {
                w.With(sw =>
                {
                    using SparseSimdPlan plan = SparseSimdPlan.Prepare(sw, level);
                    Assert.Contains(form, SparseSimd.DescribeInt8(plan, 70), StringComparison.Ordinal);
                    foreach (int m in new[] { 1, 16, 17, 64, 70, 131 })
                    {
                        sbyte[] x = Seeded.Int8(random, (long)m * k);
                        x[0] = -128;
                        x[^1] = 127;
                        long[] reference = HostReference.Int8Gemm(x, w.Dense, m, n, k);
                        var c = new int[m * n + 7];
                        Array.Fill(c, unchecked((int)0xDEADBEEF));
                        fixed (sbyte* px = x)
                        fixed (int* pc = c)
                            SparseSimd.Int8(plan, px, m, SimdEpilogue.Int32(pc, 0));
                        for (int i = 0; i < m * n; i++)
                        {
                            if (c[i] != reference[i])
                                Assert.Fail($"{w} ({form}) m={m}: element ({i / n},{i % n}) is {c[i]}, expected {reference[i]}");
                        }
                        for (int i = m * n; i < c.Length; i++)
                            Assert.True(c[i] == unchecked((int)0xDEADBEEF), $"{w} m={m}: element {i} past the output was written");
                    }
                });
            }
        });
    }
}

/// <summary>A plan prepared with generated code on still runs, exactly, on the intrinsics after it is turned off.</summary>
[Collection(nameof(ProcessWideSwitches))]
public class JitSparseSwitchTests
{
    [Fact]
    public unsafe void A_plan_falls_back_to_the_intrinsics_when_generated_code_is_turned_off()
    {
        if (!VnniJit.CanRun || CpuSimd.Effective < SimdLevel.Avx512Vnni)
            Assert.Skip($"avx512-vnni: {VnniJit.WhyNot ?? "switched off"}");
        Seeded.Run((random, _) =>
        {
            const int n = 37, k = 150;
            sbyte[] dense = SparseBuild.Pruned(random, n, k, 0.08, SparseBuild.NonZero8);
            // Small m (4, 16: generated where AVX-512 VBMI is) and large m (70).
            foreach (int m in new[] { 4, 16, 70 })
            {
                sbyte[] x = Seeded.Int8(random, (long)m * k);
                long[] reference = HostReference.Int8Gemm(x, dense, m, n, k);
                SparseBuild.Csr(dense, n, k).With(sw => Check(sw, x, reference, m, n));
            }
        });
    }

    private static unsafe void Check(SparseWeights sw, sbyte[] x, long[] reference, int m, int n)
    {
        using SparseSimdPlan plan = SparseSimdPlan.Prepare(sw, SimdLevel.Avx512Vnni);
        if (m > SparseSimd.SmallMInt8Vbmi || System.Runtime.Intrinsics.X86.Avx512Vbmi.VL.IsSupported)
            Assert.Contains("generated", SparseSimd.DescribeInt8(plan, m), StringComparison.Ordinal);
        try
        {
            CpuSimd.GeneratedCode = false;
            Assert.DoesNotContain("generated", SparseSimd.DescribeInt8(plan, m), StringComparison.Ordinal);
            var c = new int[m * n];
            fixed (sbyte* px = x)
            fixed (int* pc = c)
                SparseSimd.Int8(plan, px, m, SimdEpilogue.Int32(pc, 0));
            for (int i = 0; i < c.Length; i++)
                Assert.Equal(reference[i], c[i]);
        }
        finally
        {
            CpuSimd.GeneratedCode = true;
        }
    }
}
