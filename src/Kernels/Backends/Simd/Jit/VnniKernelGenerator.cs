using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Kernels.Backends.Simd.Jit;

/// <summary>
/// Emits one AVX-512 VNNI micro-kernel with Iced: a tile of <c>rows</c> (1..6) × <c>panels</c> (1..4)·16
/// int32 columns from one packed A micro-panel and <c>panels</c> consecutive packed B panels (the
/// <see cref="Packing"/> VNNI layouts: A group = 6 rows × 4 bytes, B group = 16 columns × 4 bytes = one zmm).
/// </summary>
/// <remarks>
/// System V x64 calling convention: <c>void kernel(byte* a /*rdi*/, byte* b /*rsi*/, long groups /*rdx*/,
/// long panelBytes /*rcx*/, int* tile /*r8*/)</c>. Accumulators zmm0..23 (row r, panel j: r·panels + j),
/// B zmm24..27, broadcast A zmm28/29; only volatile registers are used, so there is no prologue.
/// Per k group: one 64-byte load per panel, one <c>vpbroadcastd</c> per row, rows·panels <c>vpdpbusd</c>.
/// The result (the raw u8·s8 sums; the caller subtracts the +128 correction) goes to <c>tile</c>:
/// panel j's 6×16 block at <c>tile + j·96</c>, row r at <c>+ r·16</c>, rows past <c>rows</c> untouched.
/// Memory touched: <c>a[0 .. groups·24)</c> (row bytes below <c>4·rows</c> of each group),
/// <c>b + j·panelBytes + [0 .. groups·64)</c> for j &lt; panels, and the tile rows written.
/// </remarks>
internal static class VnniKernelGenerator
{
    /// <summary>Rows of A per micro-panel (as <see cref="Int8GemmSimd.MR"/>).</summary>
    public const int MaxRows = Int8GemmSimd.MR;

    /// <summary>B panels (zmm columns of 16 int32) per tile at most.</summary>
    public const int MaxPanels = 4;

    private const int GroupBytesA = Int8GemmSimd.MR * 4;
    private const int GroupBytesB = Int8GemmSimd.NR * 4;
    private const int TileInts = Int8GemmSimd.MR * Int8GemmSimd.NR;

    /// <summary>Assembles the kernel for <paramref name="rows"/> × <paramref name="panels"/> (position-independent code).</summary>
    public static byte[] Emit(int rows, int panels)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, MaxRows);
        ArgumentOutOfRangeException.ThrowIfLessThan(panels, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(panels, MaxPanels);
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
        asm.Label(ref store);
        for (int j = 0; j < panels; j++)
        {
            for (int r = 0; r < rows; r++)
                asm.vmovdqu32(__zmmword_ptr[r8 + (j * TileInts + r * Int8GemmSimd.NR) * sizeof(int)], Acc(r, j));
        }
        asm.vzeroupper();
        asm.ret();

        using var stream = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(stream), 0);
        return stream.ToArray();
    }
}
