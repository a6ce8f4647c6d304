namespace Kernels.Backends.Simd;

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
    public static void Vnni(byte* pa, byte* pb, int groups, int* tile) => Kernel<VnniDot>(pa, pb, groups, tile);

    /// <summary>AVX2: <c>vpmaddwd</c> of int16 pairs (exactly widened s8) and <c>vpaddd</c>.</summary>
    public static void Avx2(byte* pa, byte* pb, int groups, int* tile) => Kernel<Avx2Dot>(pa, pb, groups, tile);

    /// <summary>The one loop of both levels: a broadcast group of A per row, two B vectors per k group.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel<TDot>(byte* pa, byte* pb, int groups, int* tile)
        where TDot : struct, IInt8Dot
    {
        Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<int> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int g = 0; g < groups; g++)
        {
            Vector256<int> b0 = Avx.LoadVector256((int*)pb);
            Vector256<int> b1 = Avx.LoadVector256((int*)(pb + 32));
            Row<TDot>(ref c00, ref c01, pa, b0, b1);
            Row<TDot>(ref c10, ref c11, pa + 4, b0, b1);
            Row<TDot>(ref c20, ref c21, pa + 8, b0, b1);
            Row<TDot>(ref c30, ref c31, pa + 12, b0, b1);
            Row<TDot>(ref c40, ref c41, pa + 16, b0, b1);
            Row<TDot>(ref c50, ref c51, pa + 20, b0, b1);
            pa += StepA;
            pb += StepB;
        }
        SimdOps.Store4(tile, c00, c01, c10, c11);
        SimdOps.Store4(tile + 32, c20, c21, c30, c31);
        SimdOps.Store4(tile + 64, c40, c41, c50, c51);
    }

    /// <summary>One row of the tile: its broadcast A group against the two B vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row<TDot>(ref Vector256<int> c0, ref Vector256<int> c1, byte* pa, Vector256<int> b0, Vector256<int> b1)
        where TDot : struct, IInt8Dot
    {
        Vector256<int> a = Vector256.Create(*(int*)pa);
        c0 = TDot.Accumulate(c0, a, b0);
        c1 = TDot.Accumulate(c1, a, b1);
    }
}
