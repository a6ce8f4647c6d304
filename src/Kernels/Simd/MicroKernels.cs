using X86Avx2 = System.Runtime.Intrinsics.X86.Avx2;

namespace Kernels.Simd;

/// <summary>
/// The 6×16 register-blocked micro-kernels: twelve 256-bit int32 accumulators (6 rows × 2 vectors of 8
/// columns), one broadcast of four A bytes (or two A int16) per row and two B vectors per k group.
/// Each writes the full tile, row-major with a pitch of 16, to <c>tile</c>.
/// </summary>
internal static unsafe class MicroKernels
{
    private const int StepA = Int8GemmSimd.MR * 4;
    private const int StepB = Int8GemmSimd.NR * 4;

    /// <summary>AVX-VNNI: <c>vpdpbusd</c> of u8 A (A+128) with s8 B; the caller subtracts 128·Σ_k B.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Vnni(byte* pa, byte* pb, int groups, int* tile)
    {
        Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<int> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int g = 0; g < groups; g++)
        {
            Vector256<sbyte> b0 = Avx.LoadVector256((sbyte*)pb);
            Vector256<sbyte> b1 = Avx.LoadVector256((sbyte*)pb + 32);
            Vector256<byte> a = Vector256.Create(*(int*)pa).AsByte();
            c00 = AvxVnni.MultiplyWideningAndAdd(c00, a, b0);
            c01 = AvxVnni.MultiplyWideningAndAdd(c01, a, b1);
            a = Vector256.Create(*(int*)(pa + 4)).AsByte();
            c10 = AvxVnni.MultiplyWideningAndAdd(c10, a, b0);
            c11 = AvxVnni.MultiplyWideningAndAdd(c11, a, b1);
            a = Vector256.Create(*(int*)(pa + 8)).AsByte();
            c20 = AvxVnni.MultiplyWideningAndAdd(c20, a, b0);
            c21 = AvxVnni.MultiplyWideningAndAdd(c21, a, b1);
            a = Vector256.Create(*(int*)(pa + 12)).AsByte();
            c30 = AvxVnni.MultiplyWideningAndAdd(c30, a, b0);
            c31 = AvxVnni.MultiplyWideningAndAdd(c31, a, b1);
            a = Vector256.Create(*(int*)(pa + 16)).AsByte();
            c40 = AvxVnni.MultiplyWideningAndAdd(c40, a, b0);
            c41 = AvxVnni.MultiplyWideningAndAdd(c41, a, b1);
            a = Vector256.Create(*(int*)(pa + 20)).AsByte();
            c50 = AvxVnni.MultiplyWideningAndAdd(c50, a, b0);
            c51 = AvxVnni.MultiplyWideningAndAdd(c51, a, b1);
            pa += StepA;
            pb += StepB;
        }
        Avx.Store(tile, c00);
        Avx.Store(tile + 8, c01);
        Avx.Store(tile + 16, c10);
        Avx.Store(tile + 24, c11);
        Avx.Store(tile + 32, c20);
        Avx.Store(tile + 40, c21);
        Avx.Store(tile + 48, c30);
        Avx.Store(tile + 56, c31);
        Avx.Store(tile + 64, c40);
        Avx.Store(tile + 72, c41);
        Avx.Store(tile + 80, c50);
        Avx.Store(tile + 88, c51);
    }

    /// <summary>AVX2: <c>vpmaddwd</c> of int16 pairs (exactly widened s8) and <c>vpaddd</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx2(byte* pa, byte* pb, int groups, int* tile)
    {
        Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<int> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int g = 0; g < groups; g++)
        {
            Vector256<short> b0 = Avx.LoadVector256((short*)pb);
            Vector256<short> b1 = Avx.LoadVector256((short*)(pb + 32));
            Vector256<short> a = Vector256.Create(*(int*)pa).AsInt16();
            c00 = X86Avx2.Add(c00, X86Avx2.MultiplyAddAdjacent(a, b0));
            c01 = X86Avx2.Add(c01, X86Avx2.MultiplyAddAdjacent(a, b1));
            a = Vector256.Create(*(int*)(pa + 4)).AsInt16();
            c10 = X86Avx2.Add(c10, X86Avx2.MultiplyAddAdjacent(a, b0));
            c11 = X86Avx2.Add(c11, X86Avx2.MultiplyAddAdjacent(a, b1));
            a = Vector256.Create(*(int*)(pa + 8)).AsInt16();
            c20 = X86Avx2.Add(c20, X86Avx2.MultiplyAddAdjacent(a, b0));
            c21 = X86Avx2.Add(c21, X86Avx2.MultiplyAddAdjacent(a, b1));
            a = Vector256.Create(*(int*)(pa + 12)).AsInt16();
            c30 = X86Avx2.Add(c30, X86Avx2.MultiplyAddAdjacent(a, b0));
            c31 = X86Avx2.Add(c31, X86Avx2.MultiplyAddAdjacent(a, b1));
            a = Vector256.Create(*(int*)(pa + 16)).AsInt16();
            c40 = X86Avx2.Add(c40, X86Avx2.MultiplyAddAdjacent(a, b0));
            c41 = X86Avx2.Add(c41, X86Avx2.MultiplyAddAdjacent(a, b1));
            a = Vector256.Create(*(int*)(pa + 20)).AsInt16();
            c50 = X86Avx2.Add(c50, X86Avx2.MultiplyAddAdjacent(a, b0));
            c51 = X86Avx2.Add(c51, X86Avx2.MultiplyAddAdjacent(a, b1));
            pa += StepA;
            pb += StepB;
        }
        Avx.Store(tile, c00);
        Avx.Store(tile + 8, c01);
        Avx.Store(tile + 16, c10);
        Avx.Store(tile + 24, c11);
        Avx.Store(tile + 32, c20);
        Avx.Store(tile + 40, c21);
        Avx.Store(tile + 48, c30);
        Avx.Store(tile + 56, c31);
        Avx.Store(tile + 64, c40);
        Avx.Store(tile + 72, c41);
        Avx.Store(tile + 80, c50);
        Avx.Store(tile + 88, c51);
    }
}
