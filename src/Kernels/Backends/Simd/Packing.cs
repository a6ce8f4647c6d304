namespace Kernels.Backends.Simd;

/// <summary>
/// Packs A and B into the layouts the micro-kernels stream. Both layouts group k: by four bytes for
/// AVX-VNNI and by two int16 for AVX2, so that one group of a B panel is 64 bytes (16 columns) and one
/// group of an A micro-panel is 24 bytes (6 rows). k is zero-padded to whole groups in B (so A's
/// padding never contributes), and rows or columns past the matrix edge are zero.
/// </summary>
internal static unsafe class Packing
{
    private const int MR = Int8GemmSimd.MR;
    private const int NR = Int8GemmSimd.NR;
    private const int GroupBytesA = MR * 4;
    private const int GroupBytesB = NR * 4;

    /// <summary>
    /// One VNNI B panel: byte <c>g·64 + c·4 + t</c> = B[col0 + c, 4g + t] (s8), and
    /// <c>corr[c] = 128·Σ_k B[col0 + c, k]</c>, the offset the u8 view of A (A+128) adds.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackBVnni(sbyte* b, int n, int k, int groups, int col0, byte* dst, int* corr)
    {
        int full = k >> 2;
        int done = 0;
        bool vectorSums = Avx2.IsSupported && col0 + NR <= n;
        if (vectorSums)
        {
            // Whole panel: 8×8 dword transposes move eight groups of eight columns per step.
            for (; done + 8 <= full; done += 8)
            {
                Transpose8(b + (long)col0 * k + 4 * done, k, dst + (long)done * GroupBytesB);
                Transpose8(b + (long)(col0 + 8) * k + 4 * done, k, dst + (long)done * GroupBytesB + 32);
            }
        }
        for (int c = 0; c < NR; c++)
        {
            int col = col0 + c;
            sbyte* s = col < n ? b + (long)col * k : null;
            LineVnni(s, k, groups, done, dst + c * 4, GroupBytesB, 0);
            if (s == null)
                corr[c] = 0;
            else if (!vectorSums)
                corr[c] = 128 * RowSum(s, k);
        }
        if (vectorSums)
        {
            // Column sums from the packed panel itself (L1-hot): vpdpbusd of ones (u8) with the s8 groups
            // adds each column's four bytes exactly (Vnni256.QuadSums); the zero padding adds nothing.
            Vector256<int> s0 = Vector256<int>.Zero, s1 = Vector256<int>.Zero;
            Vector256<int> s2 = Vector256<int>.Zero, s3 = Vector256<int>.Zero;
            int g = 0;
            for (; g + 2 <= groups; g += 2)
            {
                byte* p = dst + (long)g * GroupBytesB;
                s0 = Vnni256.QuadSums(s0, Avx.LoadVector256((sbyte*)p));
                s1 = Vnni256.QuadSums(s1, Avx.LoadVector256((sbyte*)p + 32));
                s2 = Vnni256.QuadSums(s2, Avx.LoadVector256((sbyte*)p + 64));
                s3 = Vnni256.QuadSums(s3, Avx.LoadVector256((sbyte*)p + 96));
            }
            if (g < groups)
            {
                byte* p = dst + (long)g * GroupBytesB;
                s0 = Vnni256.QuadSums(s0, Avx.LoadVector256((sbyte*)p));
                s1 = Vnni256.QuadSums(s1, Avx.LoadVector256((sbyte*)p + 32));
            }
            Avx.Store(corr, Avx2.ShiftLeftLogical(Avx2.Add(s0, s2), 7));
            Avx.Store(corr + 8, Avx2.ShiftLeftLogical(Avx2.Add(s1, s3), 7));
        }
    }

    /// <summary>One AVX2 B panel: int16 <c>g·32 + c·2 + t</c> = B[col0 + c, 2g + t]; <c>corr</c> is zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackBAvx2(sbyte* b, int n, int k, int groups, int col0, byte* dst, int* corr)
    {
        for (int c = 0; c < NR; c++)
        {
            corr[c] = 0;
            int col = col0 + c;
            LineAvx2(col < n ? b + (long)col * k : null, k, groups, dst + c * 4, GroupBytesB);
        }
    }

    /// <summary>
    /// VNNI A micro-panels of <paramref name="rows"/> rows: byte <c>p·groups·24 + g·24 + r·4 + t</c> =
    /// A[6p + r, 4g + t] + 128 as u8 (the sign bit flipped). <paramref name="avx512"/>: the call runs at
    /// <see cref="Kernels.Simd.SimdLevel.Avx512Vnni"/>, so the packing may use AVX-512 too (same bytes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackAVnni(sbyte* a, int rows, int k, int groups, byte* dst, bool avx512)
    {
        if (!avx512 || !Avx512F.IsSupported || k < 16)
        {
            PackA<VnniLine>(a, rows, k, groups, dst);
            return;
        }
        // Four groups of six rows at a time: 16 bytes of each row (zero past the last row), flipped to u8, and
        // one 6×4 transpose of dwords (two two-table permutes) into the panel's 96 contiguous bytes; the groups
        // past the last whole 16 bytes of a row, one row at a time.
        long panelBytes = (long)groups * GroupBytesA;
        int panels = (rows + MR - 1) / MR;
        int blocks = k >> 4;
        Vector512<int> first = Vector512.Create(0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14);
        Vector512<int> second = Vector512.Create(18, 22, 3, 7, 11, 15, 19, 23, 0, 0, 0, 0, 0, 0, 0, 0);
        Vector128<int> flip = Vector128.Create(unchecked((int)0x80808080u));
        for (int p = 0; p < panels; p++)
        {
            byte* panel = dst + p * panelBytes;
            int valid = Math.Min(MR, rows - p * MR);
            sbyte* r0 = a + (long)p * MR * k;
            for (int g4 = 0; g4 < blocks; g4++)
            {
                long at = 16L * g4;
                Vector128<int> x0 = Row(r0, at, 0, valid, k, flip), x1 = Row(r0, at, 1, valid, k, flip);
                Vector128<int> x2 = Row(r0, at, 2, valid, k, flip), x3 = Row(r0, at, 3, valid, k, flip);
                Vector128<int> x4 = Row(r0, at, 4, valid, k, flip), x5 = Row(r0, at, 5, valid, k, flip);
                Vector512<int> lo = Vector512.Create(Vector256.Create(x0, x1), Vector256.Create(x2, x3));
                Vector512<int> hi = Vector512.Create(Vector256.Create(x4, x5), Vector256<int>.Zero);
                byte* q = panel + g4 * 4L * GroupBytesA;
                Avx512F.Store((int*)q, Avx512F.PermuteVar16x32x2(lo, first, hi));
                Avx.Store((int*)(q + 64), Avx512F.PermuteVar16x32x2(lo, second, hi).GetLower());
            }
            for (int r = 0; r < MR; r++)
                LineVnni(r < valid ? r0 + (long)r * k : null, k, groups, 4 * blocks, panel + r * 4, GroupBytesA, 0x80808080u);
        }
    }

    /// <summary>Row <paramref name="r"/>'s 16 bytes at <paramref name="at"/>, sign bits flipped; zero past the last row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Row(sbyte* r0, long at, int r, int valid, int k, Vector128<int> flip) =>
        r < valid ? Sse2.Xor(Sse2.LoadVector128((int*)(r0 + (long)r * k + at)), flip) : Vector128<int>.Zero;

    /// <summary>AVX2 A micro-panels: int16 <c>(p·groups·24 + g·24 + r·4)/2 + t</c> = A[6p + r, 2g + t].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PackAAvx2(sbyte* a, int rows, int k, int groups, byte* dst) => PackA<Avx2Line>(a, rows, k, groups, dst);

    /// <summary>A micro-panels of <paramref name="rows"/> rows, each row one line of <typeparamref name="TLine"/> (past the edge: zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA<TLine>(sbyte* a, int rows, int k, int groups, byte* dst)
        where TLine : struct, IALine
    {
        long panelBytes = (long)groups * GroupBytesA;
        int panels = (rows + MR - 1) / MR;
        for (int p = 0; p < panels; p++)
        {
            for (int r = 0; r < MR; r++)
            {
                int row = p * MR + r;
                TLine.Pack(row < rows ? a + (long)row * k : null, k, groups, dst + p * panelBytes + r * 4);
            }
        }
    }

    /// <summary>One row of A into the groups of a micro-panel (GroupBytesA apart).</summary>
    private interface IALine
    {
        static abstract void Pack(sbyte* s, int k, int groups, byte* d);
    }

    /// <summary>VNNI: A + 128 as u8.</summary>
    private struct VnniLine : IALine
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Pack(sbyte* s, int k, int groups, byte* d) => LineVnni(s, k, groups, 0, d, GroupBytesA, 0x80808080u);
    }

    /// <summary>AVX2: int16 pairs.</summary>
    private struct Avx2Line : IALine
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Pack(sbyte* s, int k, int groups, byte* d) => LineAvx2(s, k, groups, d, GroupBytesA);
    }

    /// <summary>
    /// Reads 32 bytes (eight groups of four) from each of eight rows <paramref name="pitch"/> apart and
    /// writes group j of the eight rows as 32 contiguous bytes at <c>dst + j·64</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8(sbyte* src, int pitch, byte* dst)
    {
        SimdOps.Transpose8x8((byte*)src, pitch, out Vector256<int> o0, out Vector256<int> o1, out Vector256<int> o2, out Vector256<int> o3,
            out Vector256<int> o4, out Vector256<int> o5, out Vector256<int> o6, out Vector256<int> o7);
        SimdOps.Store8((int*)dst, GroupBytesB / 4, o0, o1, o2, o3, o4, o5, o6, o7);
    }

    /// <summary>
    /// One line of k int8 (a row of A or a column of B; null: past the matrix edge, all zero) into VNNI
    /// groups <paramref name="stride"/> bytes apart from group <paramref name="g4"/> on: the dword of
    /// group g holds bytes 4g..4g+3 XOR <paramref name="flip"/> (k zero-padded, the padding not flipped).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LineVnni(sbyte* s, int k, int groups, int g4, byte* d, int stride, uint flip)
    {
        if (s == null)
        {
            for (int g = 0; g < groups; g++)
                *(uint*)(d + (long)g * stride) = 0;
            return;
        }
        int full = k >> 2;
        int rem = k & 3;
        for (; g4 + 4 <= full; g4 += 4)
        {
            uint v0 = Unsafe.ReadUnaligned<uint>(s + 4 * g4) ^ flip;
            uint v1 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 4) ^ flip;
            uint v2 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 8) ^ flip;
            uint v3 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 12) ^ flip;
            byte* q = d + (long)g4 * stride;
            *(uint*)q = v0;
            *(uint*)(q + stride) = v1;
            *(uint*)(q + 2 * stride) = v2;
            *(uint*)(q + 3 * stride) = v3;
        }
        for (; g4 < full; g4++)
            *(uint*)(d + (long)g4 * stride) = Unsafe.ReadUnaligned<uint>(s + 4 * g4) ^ flip;
        if (rem != 0)
        {
            uint v = 0;
            for (int t = 0; t < rem; t++)
                v |= (uint)((byte)s[4 * full + t] ^ (byte)flip) << (8 * t);
            *(uint*)(d + (long)full * stride) = v;
        }
    }

    /// <summary>
    /// One line of k int8 (null: all zero) into AVX2 groups <paramref name="stride"/> bytes apart: the
    /// dword of group g holds the int16 pair (s[2g], s[2g + 1]) (k zero-padded).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LineAvx2(sbyte* s, int k, int groups, byte* d, int stride)
    {
        if (s == null)
        {
            for (int g = 0; g < groups; g++)
                *(int*)(d + (long)g * stride) = 0;
            return;
        }
        int full = k >> 1;
        for (int g = 0; g < full; g++)
            *(int*)(d + (long)g * stride) = Pair(s[2 * g], s[2 * g + 1]);
        if ((k & 1) != 0)
            *(int*)(d + (long)full * stride) = Pair(s[k - 1], 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Pair(sbyte lo, sbyte hi) => (ushort)(short)lo | (hi << 16);

    /// <summary>Σ of <paramref name="k"/> signed bytes (exact: |Σ| ≤ 128·131071).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int RowSum(sbyte* s, int k)
    {
        int i = 0;
        int sum = 0;
        if (Avx2.IsSupported && k >= 32)
        {
            Vector256<int> acc = Vector256<int>.Zero;
            Vector256<short> ones = Vector256.Create((short)1);
            for (; i + 32 <= k; i += 32)
            {
                Vector256<sbyte> v = Avx.LoadVector256(s + i);
                acc = Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(v.GetLower()), ones));
                acc = Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(v.GetUpper()), ones));
            }
            sum = Vector256.Sum(acc);
        }
        for (; i < k; i++)
            sum += s[i];
        return sum;
    }
}
