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
    /// <summary>Assembles <paramref name="kernel"/> (position-independent code).</summary>
    public static byte[] Emit(SparseRowKernel kernel) => kernel switch
    {
        SparseRowKernel.Interleave32 => EmitInterleave(indexBytes: 4),
        SparseRowKernel.Interleave16 => EmitInterleave(indexBytes: 2),
        SparseRowKernel.Quads => EmitQuads(),
        _ => throw new ArgumentOutOfRangeException(nameof(kernel), kernel, "kernel: expected Interleave32, Interleave16 or Quads."),
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
        Column(r9, r9d, 0);
        asm.movzx(eax, __byte_ptr[rdx]);
        asm.mov(r10, r9);
        asm.mov(r11, r9);
        asm.cmp(ecx, 1);
        asm.je(build);
        Column(r10, r10d, 1);
        asm.movzx(r11d, __byte_ptr[rdx + 1]);
        asm.shl(r11d, 8);
        asm.or(eax, r11d);
        asm.mov(r11, r10);
        asm.cmp(ecx, 2);
        asm.je(build);
        Column(r11, r11d, 2);
        asm.movzx(ecx, __byte_ptr[rdx + 2]);
        asm.shl(ecx, 16);
        asm.or(eax, ecx);
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

        Label loop = asm.CreateLabel();
        Label odd = asm.CreateLabel();
        Label store = asm.CreateLabel();
        for (int i = 0; i < 8; i++)
        {
            var acc = new AssemblerRegisterZMM(Register.ZMM0 + i);
            asm.vpxord(acc, acc, acc);
        }
        asm.mov(rax, rcx);
        asm.shr(rax, 1);
        asm.jz(odd);
        asm.Label(ref loop);
        Quad(0, 0);
        Quad(1, 1);
        asm.add(rsi, 8);
        asm.add(rdx, 8);
        asm.dec(rax);
        asm.jnz(loop);
        asm.Label(ref odd);
        asm.test(cl, 1);
        asm.jz(store);
        Quad(0, 0);
        asm.Label(ref store);
        for (int j = 0; j < 4; j++)
        {
            asm.vpaddd(Acc(0, j), Acc(0, j), Acc(1, j));
            asm.vmovdqu32(__zmmword_ptr[r8 + 64 * j], Acc(0, j));
        }
        asm.vzeroupper();
        asm.ret();
        return Assemble(asm);
    }

    private static byte[] Assemble(Assembler asm)
    {
        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), 0);
        return stream.ToArray();
    }
}
