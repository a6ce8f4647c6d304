using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Kernels.Backends.Simd.Jit;

/// <summary>What a generated micro-kernel writes (the two outputs of <see cref="SimdEpilogue"/>).</summary>
internal enum VnniOutput
{
    /// <summary>The int32 sums: <c>C = acc − corr</c>.</summary>
    Int32,

    /// <summary>Dequantized: <c>Y = (float)(acc − corr)·aScale[row]·bScale[col]</c>, each step rounded to float32.</summary>
    Dequant,

    /// <summary>As <see cref="Dequant"/>, then <c>+ bias[col]</c>.</summary>
    DequantBias,
}

/// <summary>
/// Where one call of a generated micro-kernel writes its tile, and with what (the kernel's fifth argument). Laid out
/// as <see cref="VnniKernelGenerator"/> reads it: one field every 8 bytes.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct TileOutput
{
    /// <summary>The tile's first output element: C (int32) or Y (float32).</summary>
    public byte* Out;

    /// <summary>Bytes from one output row to the next (n·4).</summary>
    public long RowBytes;

    /// <summary>The correction 128·Σ_k B at the tile's first column: whole panels of 16 are read.</summary>
    public int* Corr;

    /// <summary>The activation scale of the tile's first row (dequantizing outputs).</summary>
    public float* AScale;

    /// <summary>The weight scale of the tile's first column (dequantizing outputs).</summary>
    public float* BScale;

    /// <summary>The bias of the tile's first column (<see cref="VnniOutput.DequantBias"/>).</summary>
    public float* Bias;

    /// <summary>Bit c set: column c of the last panel is inside the matrix (0xFFFF for a whole panel).</summary>
    public long LastMask;
}

/// <summary>
/// Emits one AVX-512 VNNI micro-kernel with Iced: a tile of <c>rows</c> (1..6) × <c>panels</c> (1..4)·16
/// int32 columns from one packed A micro-panel and <c>panels</c> consecutive packed B panels (the
/// <see cref="Packing"/> VNNI layouts: A group = 6 rows × 4 bytes, B group = 16 columns × 4 bytes = one zmm),
/// written straight to the output through one of the <see cref="VnniOutput"/> epilogues.
/// </summary>
/// <remarks>
/// <para>System V x64 calling convention: <c>void kernel(byte* a /*rdi*/, byte* b /*rsi*/, long groups /*rdx*/,
/// long panelBytes /*rcx*/, TileOutput* output /*r8*/)</c>. Accumulators zmm0..23 (row r, panel j: r·panels + j),
/// B zmm24..27, broadcast A zmm28/29; only volatile registers are used, so there is no prologue.</para>
/// <para>First the output lines of the tile are prefetched (they are stored after the whole k loop). Per k group:
/// one 64-byte load per panel, one <c>vpbroadcastd</c> per row, rows·panels <c>vpdpbusd</c>. Then, panel by panel:
/// the correction is subtracted (the u8 view of A is A + 128), the dequantizing outputs convert, multiply by the
/// row's and the column's scales and add the bias, in that order with one rounding each, as
/// <see cref="Int8GemmSimd"/>'s intrinsics path does; the last panel's loads of scales and bias and its stores
/// are masked by <see cref="TileOutput.LastMask"/>.</para>
/// <para>Memory touched: <c>a[0 .. groups·24)</c> (row bytes below <c>4·rows</c> of each group),
/// <c>b + j·panelBytes + [0 .. groups·64)</c> and <c>Corr[16j .. 16j + 16)</c> for j &lt; panels, <c>AScale[0 .. rows)</c>,
/// the masked columns of <c>BScale</c> and <c>Bias</c>, and the masked columns of the rows written.</para>
/// </remarks>
internal static class VnniKernelGenerator
{
    /// <summary>Rows of A per micro-panel (as <see cref="Int8GemmSimd.MR"/>).</summary>
    public const int MaxRows = Int8GemmSimd.MR;

    /// <summary>B panels (zmm columns of 16 int32) per tile at most.</summary>
    public const int MaxPanels = 4;

    private const int GroupBytesA = Int8GemmSimd.MR * 4;
    private const int GroupBytesB = Int8GemmSimd.NR * 4;

    /// <summary>Assembles the kernel for <paramref name="rows"/> × <paramref name="panels"/> writing <paramref name="output"/> (position-independent code).</summary>
    public static byte[] Emit(int rows, int panels, VnniOutput output)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, MaxRows);
        ArgumentOutOfRangeException.ThrowIfLessThan(panels, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(panels, MaxPanels);
        if (!Enum.IsDefined(output))
            throw new ArgumentOutOfRangeException(nameof(output), output, "output: expected Int32, Dequant or DequantBias.");
        var asm = new Assembler(64);
        AssemblerRegisterZMM Acc(int r, int j) => new(Register.ZMM0 + r * panels + j);
        AssemblerRegisterZMM B(int j) => new(Register.ZMM24 + j);
        AssemblerRegisterZMM A(int r) => new(Register.ZMM28 + (r & 1));
        AssemblerMemoryOperand Panel(int j) => j switch
        {
            0 => __zmmword_ptr[rsi],
            1 => __zmmword_ptr[rsi + rcx],
            2 => __zmmword_ptr[rsi + rcx * 2],
            _ => __zmmword_ptr[rsi + rax],
        };

        Label loop = asm.CreateLabel();
        Label store = asm.CreateLabel();

        // Prefetch the tile's output lines (the row's last byte too, for rows that do not start on a line).
        asm.mov(r9, __qword_ptr[r8]);
        asm.mov(r10, __qword_ptr[r8 + 8]);
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < panels; j++)
                asm.prefetcht0(__byte_ptr[r9 + j * 64]);
            asm.prefetcht0(__byte_ptr[r9 + (panels * 64 - 1)]);
            if (r + 1 < rows)
                asm.add(r9, r10);
        }

        if (panels > 3)
            asm.lea(rax, __[rcx + rcx * 2]);
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < panels; j++)
                asm.vpxord(Acc(r, j), Acc(r, j), Acc(r, j));
        }
        asm.test(rdx, rdx);
        asm.jle(store);
        asm.Label(ref loop);
        for (int j = 0; j < panels; j++)
            asm.vmovdqu32(B(j), Panel(j));
        for (int r = 0; r < rows; r++)
        {
            asm.vpbroadcastd(A(r), __dword_ptr[rdi + 4 * r]);
            for (int j = 0; j < panels; j++)
                asm.vpdpbusd(Acc(r, j), A(r), B(j));
        }
        asm.add(rdi, GroupBytesA);
        asm.add(rsi, GroupBytesB);
        asm.dec(rdx);
        asm.jne(loop);

        // The epilogue, panel by panel: r9 output, r10 row bytes, r11 corr, rax aScale, rdx bScale, rcx bias,
        // rdi the current output row; zmm24 corr, zmm25 bScale, zmm26 bias.
        asm.Label(ref store);
        bool dequant = output != VnniOutput.Int32;
        bool bias = output == VnniOutput.DequantBias;
        asm.kmovw(k1, __word_ptr[r8 + 48]);
        asm.mov(r9, __qword_ptr[r8]);
        asm.mov(r11, __qword_ptr[r8 + 16]);
        if (dequant)
        {
            asm.mov(rax, __qword_ptr[r8 + 24]);
            asm.mov(rdx, __qword_ptr[r8 + 32]);
        }
        if (bias)
            asm.mov(rcx, __qword_ptr[r8 + 40]);
        for (int j = 0; j < panels; j++)
        {
            bool last = j == panels - 1;
            asm.vmovdqu32(zmm24, __zmmword_ptr[r11 + j * 64]);
            if (dequant)
            {
                if (last)
                    asm.vmovups(zmm25.k1.z, __zmmword_ptr[rdx + j * 64]);
                else
                    asm.vmovups(zmm25, __zmmword_ptr[rdx + j * 64]);
            }
            if (bias)
            {
                if (last)
                    asm.vmovups(zmm26.k1.z, __zmmword_ptr[rcx + j * 64]);
                else
                    asm.vmovups(zmm26, __zmmword_ptr[rcx + j * 64]);
            }
            asm.lea(rdi, __[r9 + j * 64]);
            for (int r = 0; r < rows; r++)
            {
                AssemblerRegisterZMM acc = Acc(r, j);
                asm.vpsubd(acc, acc, zmm24);
                if (dequant)
                {
                    asm.vcvtdq2ps(acc, acc);
                    asm.vmulps(acc, acc, __dword_bcst[rax + 4 * r]);
                    asm.vmulps(acc, acc, zmm25);
                    if (bias)
                        asm.vaddps(acc, acc, zmm26);
                }
                if (last)
                    asm.vmovdqu32(__zmmword_ptr[rdi].k1, acc);
                else
                    asm.vmovdqu32(__zmmword_ptr[rdi], acc);
                if (r + 1 < rows)
                    asm.add(rdi, r10);
            }
        }
        asm.vzeroupper();
        asm.ret();

        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), 0);
        return stream.ToArray();
    }
}
