namespace Kernels.Backends.Simd;

// Small m (decode): dot products with gathers or vpermb panels.
internal static unsafe partial class SparseSimdKernels
{
    /// <summary>
    /// Small-m panel of four tokens: dword <c>kk</c> holds X[t0+t, kk] + 128 in byte t (tokens past m: 128).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackFour(sbyte* x, int m, int k, int t0, uint* dst)
    {
        sbyte* r0 = x + (long)t0 * k;
        sbyte* r1 = t0 + 1 < m ? r0 + k : null;
        sbyte* r2 = t0 + 2 < m ? r0 + 2L * k : null;
        sbyte* r3 = t0 + 3 < m ? r0 + 3L * k : null;
        for (int kk = 0; kk < k; kk++)
        {
            uint v = (byte)r0[kk];
            if (r1 != null)
                v |= (uint)(byte)r1[kk] << 8;
            if (r2 != null)
                v |= (uint)(byte)r2[kk] << 16;
            if (r3 != null)
                v |= (uint)(byte)r3[kk] << 24;
            dst[kk] = v ^ 0x80808080u;
        }
    }

    /// <summary>One-token panel: int <c>kk</c> holds X[0, kk] as int16 in its low half, zero in its high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackOne(sbyte* x, int k, int* dst)
    {
        for (int kk = 0; kk < k; kk++)
            dst[kk] = (ushort)x[kk];
    }

    /// <summary>
    /// m = 1: Σ x[col]·w over [p0, p1) with eight-column gathers from a <see cref="PackOne"/> panel. The weights are
    /// sign-extended to int32 and <c>vpmaddwd</c> multiplies each lane's low halves (x and w as int16) and adds the
    /// product of the high halves, which is 0 because the panel's high halves are. Exact; plain AVX2. The columns are
    /// int (the CSR view) or ushort (<see cref="SparseSimdPlan.Col16"/> of a kept plan: 3 bytes per non-zero read
    /// instead of 5; n = k = 4096 at 91.5 % zeros on the Xeon VM: 0.31–0.36 ms against 0.33–0.39 with int columns,
    /// docs/perf/cpu-sparse.md).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static int DotOne<TIndex>(int* x, TIndex* col, sbyte* val, int p0, int p1)
        where TIndex : unmanaged
    {
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero;
        int p = p0;
        for (; p + 16 <= p1; p += 16)
        {
            Vector256<int> g0 = Avx2.GatherVector256(x, Columns8(col + p), 4);
            Vector256<int> g1 = Avx2.GatherVector256(x, Columns8(col + p + 8), 4);
            acc0 = Avx2.Add(acc0, Avx2.MultiplyAddAdjacent(g0.AsInt16(), Avx2.ConvertToVector256Int32(val + p).AsInt16()));
            acc1 = Avx2.Add(acc1, Avx2.MultiplyAddAdjacent(g1.AsInt16(), Avx2.ConvertToVector256Int32(val + p + 8).AsInt16()));
        }
        if (p + 8 <= p1)
        {
            Vector256<int> g = Avx2.GatherVector256(x, Columns8(col + p), 4);
            acc0 = Avx2.Add(acc0, Avx2.MultiplyAddAdjacent(g.AsInt16(), Avx2.ConvertToVector256Int32(val + p).AsInt16()));
            p += 8;
        }
        int sum = Vector256.Sum(Avx2.Add(acc0, acc1));
        for (; p < p1; p++)
            sum += (short)x[Index(col, p)] * val[p];
        return sum;
    }

    /// <summary>Eight int or ushort column indices as int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Columns8<TIndex>(TIndex* col)
        where TIndex : unmanaged =>
        typeof(TIndex) == typeof(ushort) ? Avx2.ConvertToVector256Int32((ushort*)col) : Avx.LoadVector256((int*)col);

    /// <summary>
    /// Small m, AVX-VNNI: Σ (x+128)·w over [p0, p1) for the four tokens of a <see cref="PackFour"/> panel,
    /// eight non-zeros per gather: the gathered dwords (four tokens each) are transposed 4×4 per 128-bit
    /// lane with <c>vpshufb</c>, so that one <c>vpdpbusd</c> with the matching weight quads adds four
    /// products for each token; a second <c>vpdpbusd</c> of ones sums the weights for the −128·Σw
    /// correction. Results (exact): dst[0..3].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void DotFour(uint* x4, int* col, sbyte* val, int p0, int p1, int* dst) =>
        DotFour<GatheredColumns>(x4, col, val, p0, p1, dst);

    /// <summary>
    /// The one loop of <see cref="DotFour(uint*, int*, sbyte*, int, int, int*)"/> and
    /// <see cref="DotFourPermuted"/>: sixteen non-zeros per step as two vectors of eight columns
    /// (<typeparamref name="TColumns"/>: lane 4h + t of 128-bit half h = token t of four columns), the
    /// weight quads spread to match; the last group of eight repeats its last column with weight 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotFour<TColumns>(uint* x4, int* col, sbyte* val, int p0, int p1, int* dst)
        where TColumns : struct, IFourTokenColumns
    {
        Vector256<sbyte> spread = Vector256.Create(
            (sbyte)0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
            4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero;
        Vector256<int> sum0 = Vector256<int>.Zero, sum1 = Vector256<int>.Zero;
        var xi = (int*)x4;
        int* tailCol = stackalloc int[8];
        int p = p0;
        for (; p + 16 <= p1; p += 16)
        {
            Vector256<sbyte> w0 = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<long>(val + p)).AsSByte(), spread);
            Vector256<sbyte> w1 = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<long>(val + p + 8)).AsSByte(), spread);
            acc0 = Vnni256.DotAdd(acc0, TColumns.Load(xi, col + p), w0);
            acc1 = Vnni256.DotAdd(acc1, TColumns.Load(xi, col + p + 8), w1);
            sum0 = Vnni256.QuadSums(sum0, w0);
            sum1 = Vnni256.QuadSums(sum1, w1);
        }
        for (; p < p1; p += 8)
        {
            int rem = Math.Min(8, p1 - p);
            long weights = 0;
            for (int j = 0; j < 8; j++)
            {
                tailCol[j] = col[p + Math.Min(j, rem - 1)];
                if (j < rem)
                    weights |= (long)(byte)val[p + j] << (8 * j);
            }
            Vector256<sbyte> w = Avx2.Shuffle(Vector256.Create(weights).AsSByte(), spread);
            acc0 = Vnni256.DotAdd(acc0, TColumns.Load(xi, tailCol), w);
            sum0 = Vnni256.QuadSums(sum0, w);
        }
        // Lanes 0–3 and 4–7 hold the two halves of each token's sum; every lane of a half holds that
        // half's Σw: subtract 128·Σw, then add the halves.
        Vector256<int> acc = Avx2.Subtract(Avx2.Add(acc0, acc1), Avx2.ShiftLeftLogical(Avx2.Add(sum0, sum1), 7));
        Sse2.Store(dst, Sse2.Add(acc.GetLower(), acc.GetUpper()));
    }

    /// <summary>
    /// Eight columns of a <see cref="PackFour"/> panel (dword j = tokens 0..3 of column j) with the bytes
    /// reordered so that dword 4h + t = token t of columns 4h..4h+3.
    /// </summary>
    internal interface IFourTokenColumns
    {
        static abstract Vector256<byte> Load(int* x4, int* col);
    }

    /// <summary>Input dword j = tokens 0..3 of column j; output lane 4h + t = (column 4h..4h+3 of token t).</summary>
    private static Vector256<byte> FourTokenOrder
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector256.Create(
            (byte)0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
            16, 20, 24, 28, 17, 21, 25, 29, 18, 22, 26, 30, 19, 23, 27, 31);
    }

    /// <summary>AVX2: one gather, then <c>vpshufb</c> per 128-bit lane (which reads only the low four bits of 16..31).</summary>
    internal struct GatheredColumns : IFourTokenColumns
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(int* x4, int* col) =>
            Avx2.Shuffle(Avx2.GatherVector256(x4, Avx.LoadVector256(col), 4).AsByte(), FourTokenOrder);
    }

    /// <summary>AVX-512 VBMI: loads and inserts, then one <c>vpermb</c>.</summary>
    internal struct PermutedColumns : IFourTokenColumns
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(int* x4, int* col) => Avx512Vbmi.VL.PermuteVar32x8(Columns8(x4, col), FourTokenOrder);
    }

    /// <summary>
    /// Small-m panel of <paramref name="width"/> (8 or 16) tokens: byte <c>kk·width + t</c> holds X[t0+t, kk] + 128
    /// (tokens past m: 128).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackTokens(sbyte* x, int m, int k, int t0, int width, byte* dst)
    {
        int tokens = Math.Min(width, m - t0);
        for (int t = 0; t < width; t++)
        {
            byte* d = dst + t;
            if (t >= tokens)
            {
                for (int kk = 0; kk < k; kk++)
                    d[(long)width * kk] = 0x80;
                continue;
            }
            sbyte* s = x + (long)(t0 + t) * k;
            for (int kk = 0; kk < k; kk++)
                d[(long)width * kk] = (byte)(s[kk] ^ unchecked((sbyte)0x80));
        }
    }

    /// <summary>
    /// Small m, AVX-VNNI with AVX-512 VBMI: Σ (x+128)·w over [p0, p1) for the eight tokens of a
    /// <see cref="PackTokens"/> panel of eight, four non-zeros at a time. Their four 8-byte panel rows are loaded
    /// into one 256-bit vector (plain loads and inserts, no gathers), one <c>vpermb</c> makes each dword
    /// one token's four values, and one <c>vpdpbusd</c> with the broadcast weight quad adds them; a
    /// <c>vpdpbusd</c> of ones sums the weights for the −128·Σw correction. A row whose count is not a
    /// multiple of 4 ends with a quad that repeats its last column with weight 0. Results (exact): dst[0..7].
    /// 2.5× faster than two passes of <see cref="DotFour"/> at m = 8 (n = k = 4096, 10 % density, one
    /// core; docs/perf/cpu-sparse.md); m ≤ 4 use <see cref="DotFourPermuted"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotEight(byte* panel, int* col, sbyte* val, int p0, int p1, int* dst)
    {
        // Bytes [a0..a7 b0..b7 | c0..c7 d0..d7] → dword t = (a_t, b_t, c_t, d_t).
        Vector256<byte> order = Vector256.Create(
            (byte)0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27,
            4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31);
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero, sum = Vector256<int>.Zero;
        int* tailCol = stackalloc int[4];
        int p = p0;
        for (; p + 8 <= p1; p += 8)
        {
            Vector256<sbyte> w0 = Vector256.Create(Unsafe.ReadUnaligned<int>(val + p)).AsSByte();
            Vector256<sbyte> w1 = Vector256.Create(Unsafe.ReadUnaligned<int>(val + p + 4)).AsSByte();
            acc0 = Vnni256.DotAdd(acc0, Avx512Vbmi.VL.PermuteVar32x8(Rows4(panel, col + p), order), w0);
            acc1 = Vnni256.DotAdd(acc1, Avx512Vbmi.VL.PermuteVar32x8(Rows4(panel, col + p + 4), order), w1);
            sum = Vnni256.QuadSums(sum, w0);
            sum = Vnni256.QuadSums(sum, w1);
        }
        for (; p < p1; p += 4)
        {
            Vector256<sbyte> w = Vector256.Create(TailQuad(col, val, p, p1, tailCol)).AsSByte();
            acc0 = Vnni256.DotAdd(acc0, Avx512Vbmi.VL.PermuteVar32x8(Rows4(panel, tailCol), order), w);
            sum = Vnni256.QuadSums(sum, w);
        }
        Avx.Store(dst, Avx2.Subtract(Avx2.Add(acc0, acc1), Avx2.ShiftLeftLogical(sum, 7)));
    }

    /// <summary>
    /// As <see cref="DotEight"/> for a <see cref="PackTokens"/> panel of sixteen tokens: the four 16-byte
    /// panel rows in one 512-bit vector, one 512-bit <c>vpermb</c>, and two 256-bit <c>vpdpbusd</c> (tokens
    /// 0–7 and 8–15). Results (exact): dst[0..15].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotSixteen(byte* panel, int* col, sbyte* val, int p0, int p1, int* dst)
    {
        // Bytes [a0..a15 | b0..b15 | c0..c15 | d0..d15] → dword t = (a_t, b_t, c_t, d_t).
        Vector512<byte> order = Vector512.Create(
            (byte)0, 16, 32, 48, 1, 17, 33, 49, 2, 18, 34, 50, 3, 19, 35, 51,
            4, 20, 36, 52, 5, 21, 37, 53, 6, 22, 38, 54, 7, 23, 39, 55,
            8, 24, 40, 56, 9, 25, 41, 57, 10, 26, 42, 58, 11, 27, 43, 59,
            12, 28, 44, 60, 13, 29, 45, 61, 14, 30, 46, 62, 15, 31, 47, 63);
        Vector256<int> lo0 = Vector256<int>.Zero, hi0 = Vector256<int>.Zero, lo1 = Vector256<int>.Zero, hi1 = Vector256<int>.Zero;
        Vector256<int> sum = Vector256<int>.Zero;
        int* tailCol = stackalloc int[4];
        int p = p0;
        for (; p + 8 <= p1; p += 8)
        {
            Vector256<sbyte> w0 = Vector256.Create(Unsafe.ReadUnaligned<int>(val + p)).AsSByte();
            Vector256<sbyte> w1 = Vector256.Create(Unsafe.ReadUnaligned<int>(val + p + 4)).AsSByte();
            Vector512<byte> t0 = Avx512Vbmi.PermuteVar64x8(Rows4Wide(panel, col + p), order);
            Vector512<byte> t1 = Avx512Vbmi.PermuteVar64x8(Rows4Wide(panel, col + p + 4), order);
            lo0 = Vnni256.DotAdd(lo0, t0.GetLower(), w0);
            hi0 = Vnni256.DotAdd(hi0, t0.GetUpper(), w0);
            lo1 = Vnni256.DotAdd(lo1, t1.GetLower(), w1);
            hi1 = Vnni256.DotAdd(hi1, t1.GetUpper(), w1);
            sum = Vnni256.QuadSums(sum, w0);
            sum = Vnni256.QuadSums(sum, w1);
        }
        for (; p < p1; p += 4)
        {
            Vector256<sbyte> w = Vector256.Create(TailQuad(col, val, p, p1, tailCol)).AsSByte();
            Vector512<byte> t0 = Avx512Vbmi.PermuteVar64x8(Rows4Wide(panel, tailCol), order);
            lo0 = Vnni256.DotAdd(lo0, t0.GetLower(), w);
            hi0 = Vnni256.DotAdd(hi0, t0.GetUpper(), w);
            sum = Vnni256.QuadSums(sum, w);
        }
        Vector256<int> correction = Avx2.ShiftLeftLogical(sum, 7);
        Avx.Store(dst, Avx2.Subtract(Avx2.Add(lo0, lo1), correction));
        Avx.Store(dst + 8, Avx2.Subtract(Avx2.Add(hi0, hi1), correction));
    }

    /// <summary>The 16-byte panel rows of columns c[0..3], side by side in one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Rows4Wide(byte* panel, int* c) => Vector512.Create(
        Vector256.Create(Vector128.Load(panel + ((nint)c[0] << 4)), Vector128.Load(panel + ((nint)c[1] << 4))),
        Vector256.Create(Vector128.Load(panel + ((nint)c[2] << 4)), Vector128.Load(panel + ((nint)c[3] << 4))));

    /// <summary>
    /// The last (partial) quad of a row from non-zero <paramref name="p"/>: its columns into
    /// <paramref name="tailCol"/> (the last one repeated) and its weights as a packed word (0 where repeated).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int TailQuad(int* col, sbyte* val, int p, int p1, int* tailCol)
    {
        int rem = Math.Min(4, p1 - p);
        int weights = 0;
        for (int j = 0; j < 4; j++)
        {
            tailCol[j] = col[p + Math.Min(j, rem - 1)];
            if (j < rem)
                weights |= (val[p + j] & 0xFF) << (8 * j);
        }
        return weights;
    }

    /// <summary>
    /// As <see cref="DotEight"/> for the four tokens of a <see cref="PackFour"/> panel (m ≤ 4): eight
    /// non-zeros' dwords in one 256-bit vector (loads and inserts), one <c>vpermb</c> so that lanes 0–3
    /// hold tokens 0–3 of the first four columns and lanes 4–7 those of the next four, one <c>vpdpbusd</c>
    /// with the two weight quads; the halves are added at the end. The panel is half the size of the
    /// eight-token one (k·4 bytes: in L1 up to k ≈ 12 K), and each instruction covers eight non-zeros.
    /// Results (exact): dst[0..3].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void DotFourPermuted(uint* x4, int* col, sbyte* val, int p0, int p1, int* dst) =>
        DotFour<PermutedColumns>(x4, col, val, p0, p1, dst);

    /// <summary>The dwords of columns c[0..7] of a four-token panel, in one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Columns8(int* x, int* c) =>
        Vector256.Create(x[c[0]], x[c[1]], x[c[2]], x[c[3]], x[c[4]], x[c[5]], x[c[6]], x[c[7]]).AsByte();

    /// <summary>The 8-byte panel rows of columns c[0..3], side by side in one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Rows4(byte* panel, int* c) => Vector256.Create(
        Unsafe.ReadUnaligned<long>(panel + ((nint)c[0] << 3)), Unsafe.ReadUnaligned<long>(panel + ((nint)c[1] << 3)),
        Unsafe.ReadUnaligned<long>(panel + ((nint)c[2] << 3)), Unsafe.ReadUnaligned<long>(panel + ((nint)c[3] << 3))).AsByte();

    /// <summary>Σ x[col[p]]·val[p] over [p0, p1) in float with 8-wide gathers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float DotFloat(float* x, int* col, float* val, int p0, int p1)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        int p = p0;
        bool fma = Fma.IsSupported;
        for (; p + 16 <= p1; p += 16)
        {
            Vector256<float> g0 = Avx2.GatherVector256(x, Avx.LoadVector256(col + p), 4);
            Vector256<float> g1 = Avx2.GatherVector256(x, Avx.LoadVector256(col + p + 8), 4);
            if (fma)
            {
                acc0 = Fma.MultiplyAdd(g0, Avx.LoadVector256(val + p), acc0);
                acc1 = Fma.MultiplyAdd(g1, Avx.LoadVector256(val + p + 8), acc1);
            }
            else
            {
                acc0 = Avx.Add(acc0, Avx.Multiply(g0, Avx.LoadVector256(val + p)));
                acc1 = Avx.Add(acc1, Avx.Multiply(g1, Avx.LoadVector256(val + p + 8)));
            }
        }
        float sum = Vector256.Sum(Avx.Add(acc0, acc1));
        for (; p < p1; p++)
            sum += x[col[p]] * val[p];
        return sum;
    }
}
