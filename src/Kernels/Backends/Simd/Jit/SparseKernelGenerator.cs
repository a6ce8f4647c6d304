using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Kernels.Backends.Simd.Jit;

/// <summary>The large-m sparse int8 row kernels <see cref="SparseKernelGenerator"/> emits.</summary>
internal enum SparseRowKernel
{
    /// <summary>The interleave of four non-zeros, 32-bit column indices (<see cref="SparseSimdPlan.Col"/>).</summary>
    Interleave32,

    /// <summary>The interleave of four non-zeros, 16-bit column indices (<see cref="SparseSimdPlan.Col16"/>).</summary>
    Interleave16,

    /// <summary>Aligned quads (<see cref="SparseSimdPlan.QuadIndex"/>, <see cref="SparseSimdPlan.QuadWeights"/>).</summary>
    Quads,

    /// <summary>Small m: eight tokens of a <see cref="SparseSimdKernels.PackTokens"/> panel (as <see cref="SparseSimdKernels.DotEight"/>).</summary>
    Small8,

    /// <summary>Small m: sixteen tokens of a <see cref="SparseSimdKernels.PackTokens"/> panel (as <see cref="SparseSimdKernels.DotSixteen"/>).</summary>
    Small16,
}

/// <summary>
/// Emits the AVX-512 VNNI forms of <see cref="SparseSimdKernels"/>' large-m int8 row kernels with Iced: one row of
/// W against one 64-token panel, 64 int32 sums (Σ (x+128)·w, the caller subtracts 128·Σw) written to <c>dst</c> in
/// the order of the intrinsics kernels (<see cref="SparseSimdKernels.RowVnni{TIndex}"/>,
/// <see cref="SparseSimdKernels.RowQuads"/>), so the two give the same bits.
/// </summary>
/// <remarks>
/// <para>System V x64: <c>void kernel(byte* panel /*rdi*/, void* index /*rsi*/, void* weights /*rdx*/,
/// long count /*rcx*/, int* dst /*r8*/)</c>, where index and weights already point at the row's first entry and
/// count is its number of entries (non-zeros, or quads). Only volatile registers; no prologue.</para>
/// <para>Interleave (<see cref="SparseKernelGenerator.EmitInterleave"/>): per four non-zeros, four 64-byte panel lines
/// (<c>panel + column·64</c>, the <see cref="SparseSimdKernels.PackVnni"/> layout), interleaved byte by byte with
/// <c>vpunpck{l,h}bw</c> then <c>vpunpck{l,h}wd</c> so that each 32-bit lane holds one token's four values, and four
/// <c>vpdpbusd zmm</c> with the four weights broadcast. A row whose count is not a multiple of 4 ends with one quad
/// that repeats its last column with weight 0; nothing past <c>index[count)</c> or <c>weights[count)</c> is read.
/// The accumulators hold tokens in 128-bit lane order; <c>vshufi64x2</c> puts them in the intrinsics' order.</para>
/// <para>Quads (<see cref="SparseKernelGenerator.EmitQuads"/>): per quad, the 256 bytes of the
/// <see cref="SparseSimdKernels.PackQuads"/> panel at <c>quadIndex·256</c> against the broadcast weight dword: four
/// <c>vpdpbusd</c>, no interleave. Two sets of accumulators (even and odd quads, added at the end: int32 wraps, so
/// the sum is the same) keep the <c>vpdpbusd</c> latency off the critical path.</para>
/// </remarks>
internal static class SparseKernelGenerator
{
    /// <summary>Bytes of constant data at the end of <see cref="SparseRowKernel.Small8"/> and <see cref="SparseRowKernel.Small16"/> (the <c>vpermb</c> order, read RIP-relative).</summary>
    public const int SmallDataBytes = 64;

    /// <summary>
    /// Assembles <paramref name="kernel"/> (position-independent code); the last <paramref name="dataBytes"/> bytes are
    /// constant data, not instructions.
    /// </summary>
    public static byte[] Emit(SparseRowKernel kernel, out int dataBytes)
    {
        dataBytes = kernel is SparseRowKernel.Small8 or SparseRowKernel.Small16 ? SmallDataBytes : 0;
        return Emit(kernel);
    }

    /// <summary>Assembles <paramref name="kernel"/> (position-independent code).</summary>
    public static byte[] Emit(SparseRowKernel kernel) => kernel switch
    {
        SparseRowKernel.Interleave32 => EmitInterleave(indexBytes: 4),
        SparseRowKernel.Interleave16 => EmitInterleave(indexBytes: 2),
        SparseRowKernel.Quads => EmitQuads(),
        SparseRowKernel.Small8 => EmitSmall(tokens: 8),
        SparseRowKernel.Small16 => EmitSmall(tokens: 16),
        _ => throw new ArgumentOutOfRangeException(nameof(kernel), kernel, "kernel: expected Interleave32, Interleave16, Quads, Small8 or Small16."),
    };

    /// <summary>The interleave kernel with 16-bit (<paramref name="indexBytes"/> = 2) or 32-bit (4) column indices.</summary>
    internal static byte[] EmitInterleave(int indexBytes)
    {
        if (indexBytes is not (2 or 4))
            throw new ArgumentOutOfRangeException(nameof(indexBytes), indexBytes, "indexBytes: expected 2 or 4.");
        var asm = new Assembler(64);
        // Column j of the current quad into a 64-bit register, times 64 (the panel line).
        void Column(AssemblerRegister64 to, AssemblerRegister32 to32, int j)
        {
            if (indexBytes == 2)
                asm.movzx(to32, __word_ptr[rsi + 2 * j]);
            else
                asm.mov(to32, __dword_ptr[rsi + 4 * j]);
            asm.shl(to, 6);
        }

        // The interleave of the lines in zmm4..7 (a, b, c, d) and four vpdpbusd with the weights in zmm8.
        void Quad()
        {
            asm.vpunpcklbw(zmm9, zmm4, zmm5);
            asm.vpunpckhbw(zmm10, zmm4, zmm5);
            asm.vpunpcklbw(zmm11, zmm6, zmm7);
            asm.vpunpckhbw(zmm12, zmm6, zmm7);
            asm.vpunpcklwd(zmm13, zmm9, zmm11);
            asm.vpunpckhwd(zmm14, zmm9, zmm11);
            asm.vpunpcklwd(zmm15, zmm10, zmm12);
            asm.vpunpckhwd(zmm16, zmm10, zmm12);
            asm.vpdpbusd(zmm0, zmm13, zmm8);
            asm.vpdpbusd(zmm1, zmm14, zmm8);
            asm.vpdpbusd(zmm2, zmm15, zmm8);
            asm.vpdpbusd(zmm3, zmm16, zmm8);
        }

        Label loop = asm.CreateLabel();
        Label tail = asm.CreateLabel();
        Label build = asm.CreateLabel();
        Label store = asm.CreateLabel();

        for (int i = 0; i < 4; i++)
        {
            var acc = new AssemblerRegisterZMM(Register.ZMM0 + i);
            asm.vpxord(acc, acc, acc);
        }
        asm.mov(rax, rcx);
        asm.shr(rax, 2);
        asm.jz(tail);
        asm.Label(ref loop);
        Column(r9, r9d, 0);
        Column(r10, r10d, 1);
        asm.vmovdqu8(zmm4, __zmmword_ptr[rdi + r9]);
        asm.vmovdqu8(zmm5, __zmmword_ptr[rdi + r10]);
        Column(r9, r9d, 2);
        Column(r10, r10d, 3);
        asm.vmovdqu8(zmm6, __zmmword_ptr[rdi + r9]);
        asm.vmovdqu8(zmm7, __zmmword_ptr[rdi + r10]);
        asm.vpbroadcastd(zmm8, __dword_ptr[rdx]);
        Quad();
        asm.add(rsi, 4 * indexBytes);
        asm.add(rdx, 4);
        asm.dec(rax);
        asm.jnz(loop);

        // 1..3 entries left: columns c0, c1, c2 (the last one repeated), weights w0, w1, w2 and zeros.
        asm.Label(ref tail);
        asm.and(ecx, 3);
        asm.jz(store);
        TailQuad(asm, build, (to, to32, j) => Column(to, to32, j));
        asm.Label(ref build);
        asm.vpbroadcastd(zmm8, eax);
        asm.vmovdqu8(zmm4, __zmmword_ptr[rdi + r9]);
        asm.vmovdqu8(zmm5, __zmmword_ptr[rdi + r10]);
        asm.vmovdqu8(zmm6, __zmmword_ptr[rdi + r11]);
        asm.vmovdqa64(zmm7, zmm6);
        Quad();

        // zmm i holds 32-token halves in its 256-bit halves: dst[0..32) the low halves of zmm0..3, dst[32..64) the high.
        asm.Label(ref store);
        asm.vshufi64x2(zmm4, zmm0, zmm1, 0x44);
        asm.vshufi64x2(zmm5, zmm2, zmm3, 0x44);
        asm.vshufi64x2(zmm6, zmm0, zmm1, 0xEE);
        asm.vshufi64x2(zmm7, zmm2, zmm3, 0xEE);
        asm.vmovdqu32(__zmmword_ptr[r8], zmm4);
        asm.vmovdqu32(__zmmword_ptr[r8 + 64], zmm5);
        asm.vmovdqu32(__zmmword_ptr[r8 + 128], zmm6);
        asm.vmovdqu32(__zmmword_ptr[r8 + 192], zmm7);
        asm.vzeroupper();
        asm.ret();
        return Assemble(asm);
    }

    /// <summary>The aligned-quad kernel: 32-bit quad indices and weight dwords.</summary>
    internal static byte[] EmitQuads()
    {
        var asm = new Assembler(64);
        AssemblerRegisterZMM Acc(int set, int j) => new(Register.ZMM0 + 4 * set + j);
        void Quad(int set, int at)
        {
            asm.mov(r9d, __dword_ptr[rsi + 4 * at]);
            asm.shl(r9, 8);
            asm.vpbroadcastd(zmm16, __dword_ptr[rdx + 4 * at]);
            for (int j = 0; j < 4; j++)
                asm.vmovdqu8(new AssemblerRegisterZMM(Register.ZMM8 + j), __zmmword_ptr[rdi + r9 + 64 * j]);
            for (int j = 0; j < 4; j++)
                asm.vpdpbusd(Acc(set, j), new AssemblerRegisterZMM(Register.ZMM8 + j), zmm16);
        }

        for (int i = 0; i < 8; i++)
        {
            var acc = new AssemblerRegisterZMM(Register.ZMM0 + i);
            asm.vpxord(acc, acc, acc);
        }
        Pairs(asm, rax, pairShift: 1, oddBit: 1, indexStep: 4, weightStep: 4, Quad);
        for (int j = 0; j < 4; j++)
        {
            asm.vpaddd(Acc(0, j), Acc(0, j), Acc(1, j));
            asm.vmovdqu32(__zmmword_ptr[r8 + 64 * j], Acc(0, j));
        }
        asm.vzeroupper();
        asm.ret();
        return Assemble(asm);
    }

    /// <summary>
    /// The last 1..3 entries of a row (ecx, not 0): their columns into r9, r10, r11 by <paramref name="column"/>
    /// (r9 ← entry 0, r10 ← entry 1 or r9's, r11 ← entry 2 or r10's: the last one repeated) and their weights into eax
    /// (bytes w0, w1, w2 of the entries there, zeros elsewhere); reads nothing past entry ecx − 1. Jumps to
    /// <paramref name="done"/>, which the caller places after it.
    /// </summary>
    private static void TailQuad(Assembler asm, Label done, Action<AssemblerRegister64, AssemblerRegister32, int> column)
    {
        column(r9, r9d, 0);
        asm.movzx(eax, __byte_ptr[rdx]);
        asm.mov(r10, r9);
        asm.mov(r11, r9);
        asm.cmp(ecx, 1);
        asm.je(done);
        column(r10, r10d, 1);
        asm.movzx(r11d, __byte_ptr[rdx + 1]);
        asm.shl(r11d, 8);
        asm.or(eax, r11d);
        asm.mov(r11, r10);
        asm.cmp(ecx, 2);
        asm.je(done);
        column(r11, r11d, 2);
        asm.movzx(ecx, __byte_ptr[rdx + 2]);
        asm.shl(ecx, 16);
        asm.or(eax, ecx);
    }

    /// <summary>
    /// The small-m kernel for a <see cref="SparseSimdKernels.PackTokens"/> panel of <paramref name="tokens"/> (8 or 16)
    /// u8 tokens per column, 32-bit columns: per four non-zeros, their four panel rows side by side in one ymm (8) or
    /// zmm (16) register (a load and inserts), one <c>vpermb</c> so that dword t holds token t's four values, one
    /// <c>vpdpbusd</c> with the broadcast weight quad, and one with ones for Σw; two sets of sums alternate between
    /// quads. dst[0..tokens) = Σ (x+128)·w − 128·Σw: the exact Σ x·w, as the intrinsics kernels (which need AVX-512
    /// VBMI for <c>vpermb</c> too) write it. A row whose count is not a multiple of 4 ends with a quad that repeats its
    /// last column with weight 0.
    /// </summary>
    internal static byte[] EmitSmall(int tokens)
    {
        if (tokens is not (8 or 16))
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "tokens: expected 8 or 16.");
        var asm = new Assembler(64);
        // EVEX for the ymm vpdpbusd (AVX512_VNNI with VL): the VEX form is AVX-VNNI, which these CPUs may lack.
        asm.PreferVex = false;
        bool wide = tokens == 16;
        int shift = wide ? 4 : 3;
        AssemblerRegisterZMM Z(int i) => new(Register.ZMM0 + i);
        AssemblerRegisterYMM Y(int i) => new(Register.YMM0 + i);
        AssemblerRegisterXMM X(int i) => new(Register.XMM0 + i);
        void Column(AssemblerRegister64 to, AssemblerRegister32 to32, int j)
        {
            asm.mov(to32, __dword_ptr[rsi + 4 * j]);
            asm.shl(to, (byte)shift);
        }

        // The four panel rows at r9, r10, r11, rcx into register 4 (as dword t = token t's four values after vpermb
        // with the order in register 3), then the sums: set 0 (registers 0, 2) or 1 (registers 1, 7); weights in 5.
        void Rows(AssemblerRegister64 a, AssemblerRegister64 b, AssemblerRegister64 c, AssemblerRegister64 d)
        {
            if (wide)
            {
                asm.vmovdqu8(X(4), __xmmword_ptr[rdi + a]);
                asm.vinserti32x4(Z(4), Z(4), __xmmword_ptr[rdi + b], 1);
                asm.vinserti32x4(Z(4), Z(4), __xmmword_ptr[rdi + c], 2);
                asm.vinserti32x4(Z(4), Z(4), __xmmword_ptr[rdi + d], 3);
                asm.vpermb(Z(4), Z(3), Z(4));
            }
            else
            {
                asm.vmovq(X(4), __qword_ptr[rdi + a]);
                asm.vpinsrq(X(4), X(4), __qword_ptr[rdi + b], 1);
                asm.vmovq(X(8), __qword_ptr[rdi + c]);
                asm.vpinsrq(X(8), X(8), __qword_ptr[rdi + d], 1);
                asm.vinserti128(Y(4), Y(4), X(8), 1);
                asm.vpermb(Y(4), Y(3), Y(4));
            }
        }

        void Sums(int set)
        {
            int acc = set == 0 ? 0 : 1, sum = set == 0 ? 2 : 7;
            if (wide)
            {
                asm.vpdpbusd(Z(acc), Z(4), Z(5));
                asm.vpdpbusd(Z(sum), Z(6), Z(5));
            }
            else
            {
                asm.vpdpbusd(Y(acc), Y(4), Y(5));
                asm.vpdpbusd(Y(sum), Y(6), Y(5));
            }
        }

        void Quad(int set, int at)
        {
            asm.mov(r9d, __dword_ptr[rsi + 16 * at]);
            asm.shl(r9, (byte)shift);
            asm.mov(r10d, __dword_ptr[rsi + 16 * at + 4]);
            asm.shl(r10, (byte)shift);
            asm.mov(r11d, __dword_ptr[rsi + 16 * at + 8]);
            asm.shl(r11, (byte)shift);
            asm.mov(eax, __dword_ptr[rsi + 16 * at + 12]);
            asm.shl(rax, (byte)shift);
            Rows(r9, r10, r11, rax);
            if (wide)
                asm.vpbroadcastd(Z(5), __dword_ptr[rdx + 4 * at]);
            else
                asm.vpbroadcastd(Y(5), __dword_ptr[rdx + 4 * at]);
            Sums(set);
        }

        Label order = asm.CreateLabel();
        Label build = asm.CreateLabel();
        Label store = asm.CreateLabel();

        foreach (int i in new[] { 0, 1, 2, 7 })
            asm.vpxord(Z(i), Z(i), Z(i));
        asm.vmovdqu8(Z(3), __zmmword_ptr[order]);
        asm.vpternlogd(Z(6), Z(6), Z(6), 0xFF);
        asm.vpabsb(Z(6), Z(6));
        // Pairs of quads, then one quad, then the tail; rcx keeps the count (its low two bits: the tail).
        asm.push(rbx);
        Pairs(asm, rbx, pairShift: 3, oddBit: 4, indexStep: 16, weightStep: 4, Quad);
        asm.pop(rbx);
        asm.and(ecx, 3);
        asm.jz(store);
        TailQuad(asm, build, (to, to32, j) => Column(to, to32, j));
        asm.Label(ref build);
        Rows(r9, r10, r11, r11);
        if (wide)
            asm.vpbroadcastd(Z(5), eax);
        else
            asm.vpbroadcastd(Y(5), eax);
        Sums(0);

        // dst = (acc0 + acc1) − 128·(sum0 + sum1).
        asm.Label(ref store);
        asm.vpaddd(Z(0), Z(0), Z(1));
        asm.vpaddd(Z(2), Z(2), Z(7));
        asm.vpslld(Z(2), Z(2), 7);
        asm.vpsubd(Z(0), Z(0), Z(2));
        if (wide)
            asm.vmovdqu32(__zmmword_ptr[r8], Z(0));
        else
            asm.vmovdqu32(__ymmword_ptr[r8], Y(0));
        asm.vzeroupper();
        asm.ret();

        // vpermb order: byte 4t + j ← row j's byte t (rows side by side, `tokens` bytes each); 64 bytes.
        asm.Label(ref order);
        var table = new byte[SmallDataBytes];
        for (int t = 0; t < tokens; t++)
        {
            for (int j = 0; j < 4; j++)
                table[4 * t + j] = (byte)(tokens * j + t);
        }
        asm.db(table);
        return Assemble(asm);
    }

    /// <summary>
    /// The loop of the kernels that alternate two sets of sums: <paramref name="item"/>(set, at) for the items of a row,
    /// two per iteration (sets 0 and 1, at 0 and 1), then the odd one (set 0); <paramref name="counter"/> ← rcx &gt;&gt;
    /// <paramref name="pairShift"/> pairs, bit <paramref name="oddBit"/> of rcx says whether one item is left; rsi and
    /// rdx advance by <paramref name="indexStep"/> and <paramref name="weightStep"/> bytes per item. The caller emits an
    /// instruction after it (the loop's exit label sits on it).
    /// </summary>
    private static void Pairs(Assembler asm, AssemblerRegister64 counter, int pairShift, int oddBit, int indexStep, int weightStep,
        Action<int, int> item)
    {
        Label loop = asm.CreateLabel(), single = asm.CreateLabel(), done = asm.CreateLabel();
        asm.mov(counter, rcx);
        asm.shr(counter, (byte)pairShift);
        asm.jz(single);
        asm.Label(ref loop);
        item(0, 0);
        item(1, 1);
        asm.add(rsi, 2 * indexStep);
        asm.add(rdx, 2 * weightStep);
        asm.dec(counter);
        asm.jnz(loop);
        asm.Label(ref single);
        asm.test(cl, (byte)oddBit);
        asm.jz(done);
        item(0, 0);
        asm.add(rsi, indexStep);
        asm.add(rdx, weightStep);
        asm.Label(ref done);
    }

    private static byte[] Assemble(Assembler asm)
    {
        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), 0);
        return stream.ToArray();
    }
}
