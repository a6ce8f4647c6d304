namespace Kernels.Simd;

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
        int rem = k & 3;
        int done = 0;
        bool vectorSums = AvxVnni.IsSupported && col0 + NR <= n;
        if (Avx2.IsSupported && col0 + NR <= n)
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
            byte* d = dst + c * 4;
            int col = col0 + c;
            if (col >= n)
            {
                for (int g = 0; g < groups; g++)
                    *(int*)(d + (long)g * GroupBytesB) = 0;
                corr[c] = 0;
                continue;
            }
            sbyte* s = b + (long)col * k;
            int g4 = done;
            for (; g4 + 4 <= full; g4 += 4)
            {
                uint v0 = Unsafe.ReadUnaligned<uint>(s + 4 * g4);
                uint v1 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 4);
                uint v2 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 8);
                uint v3 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 12);
                byte* p = d + (long)g4 * GroupBytesB;
                *(uint*)p = v0;
                *(uint*)(p + GroupBytesB) = v1;
                *(uint*)(p + 2 * GroupBytesB) = v2;
                *(uint*)(p + 3 * GroupBytesB) = v3;
            }
            for (; g4 < full; g4++)
                *(uint*)(d + (long)g4 * GroupBytesB) = Unsafe.ReadUnaligned<uint>(s + 4 * g4);
            if (rem != 0)
            {
                uint v = 0;
                for (int t = 0; t < rem; t++)
                    v |= (uint)(byte)s[4 * full + t] << (8 * t);
                *(uint*)(d + (long)full * GroupBytesB) = v;
            }
            if (!vectorSums)
                corr[c] = 128 * RowSum(s, k);
        }
        if (vectorSums)
        {
            // Column sums from the packed panel itself (L1-hot): vpdpbusd of ones (u8) with the s8 groups
            // adds each column's four bytes exactly; the zero padding adds nothing.
            Vector256<byte> ones = Vector256.Create((byte)1);
            Vector256<int> s0 = Vector256<int>.Zero, s1 = Vector256<int>.Zero;
            Vector256<int> s2 = Vector256<int>.Zero, s3 = Vector256<int>.Zero;
            int g = 0;
            for (; g + 2 <= groups; g += 2)
            {
                byte* p = dst + (long)g * GroupBytesB;
                s0 = AvxVnni.MultiplyWideningAndAdd(s0, ones, Avx.LoadVector256((sbyte*)p));
                s1 = AvxVnni.MultiplyWideningAndAdd(s1, ones, Avx.LoadVector256((sbyte*)p + 32));
                s2 = AvxVnni.MultiplyWideningAndAdd(s2, ones, Avx.LoadVector256((sbyte*)p + 64));
                s3 = AvxVnni.MultiplyWideningAndAdd(s3, ones, Avx.LoadVector256((sbyte*)p + 96));
            }
            if (g < groups)
            {
                byte* p = dst + (long)g * GroupBytesB;
                s0 = AvxVnni.MultiplyWideningAndAdd(s0, ones, Avx.LoadVector256((sbyte*)p));
                s1 = AvxVnni.MultiplyWideningAndAdd(s1, ones, Avx.LoadVector256((sbyte*)p + 32));
            }
            Avx.Store(corr, Avx2.ShiftLeftLogical(Avx2.Add(s0, s2), 7));
            Avx.Store(corr + 8, Avx2.ShiftLeftLogical(Avx2.Add(s1, s3), 7));
        }
    }

    /// <summary>One AVX2 B panel: int16 <c>g·32 + c·2 + t</c> = B[col0 + c, 2g + t]; <c>corr</c> is zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackBAvx2(sbyte* b, int n, int k, int groups, int col0, byte* dst, int* corr)
    {
        int full = k >> 1;
        for (int c = 0; c < NR; c++)
        {
            byte* d = dst + c * 4;
            corr[c] = 0;
            int col = col0 + c;
            if (col >= n)
            {
                for (int g = 0; g < groups; g++)
                    *(int*)(d + (long)g * GroupBytesB) = 0;
                continue;
            }
            sbyte* s = b + (long)col * k;
            for (int g = 0; g < full; g++)
                *(int*)(d + (long)g * GroupBytesB) = Pair(s[2 * g], s[2 * g + 1]);
            if ((k & 1) != 0)
                *(int*)(d + (long)full * GroupBytesB) = Pair(s[k - 1], 0);
        }
    }

    /// <summary>
    /// VNNI A micro-panels of <paramref name="rows"/> rows: byte <c>p·groups·24 + g·24 + r·4 + t</c> =
    /// A[6p + r, 4g + t] + 128 as u8 (the sign bit flipped).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackAVnni(sbyte* a, int rows, int k, int groups, byte* dst)
    {
        int full = k >> 2;
        int rem = k & 3;
        long panelBytes = (long)groups * GroupBytesA;
        int panels = (rows + MR - 1) / MR;
        for (int p = 0; p < panels; p++)
        {
            for (int r = 0; r < MR; r++)
            {
                byte* d = dst + p * panelBytes + r * 4;
                int row = p * MR + r;
                if (row >= rows)
                {
                    for (int g = 0; g < groups; g++)
                        *(uint*)(d + (long)g * GroupBytesA) = 0;
                    continue;
                }
                sbyte* s = a + (long)row * k;
                int g4 = 0;
                for (; g4 + 4 <= full; g4 += 4)
                {
                    uint v0 = Unsafe.ReadUnaligned<uint>(s + 4 * g4) ^ 0x80808080u;
                    uint v1 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 4) ^ 0x80808080u;
                    uint v2 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 8) ^ 0x80808080u;
                    uint v3 = Unsafe.ReadUnaligned<uint>(s + 4 * g4 + 12) ^ 0x80808080u;
                    byte* q = d + (long)g4 * GroupBytesA;
                    *(uint*)q = v0;
                    *(uint*)(q + GroupBytesA) = v1;
                    *(uint*)(q + 2 * GroupBytesA) = v2;
                    *(uint*)(q + 3 * GroupBytesA) = v3;
                }
                for (; g4 < full; g4++)
                    *(uint*)(d + (long)g4 * GroupBytesA) = Unsafe.ReadUnaligned<uint>(s + 4 * g4) ^ 0x80808080u;
                if (rem != 0)
                {
                    uint v = 0;
                    for (int t = 0; t < rem; t++)
                        v |= (uint)((byte)s[4 * full + t] ^ 0x80) << (8 * t);
                    *(uint*)(d + (long)full * GroupBytesA) = v;
                }
            }
        }
    }

    /// <summary>AVX2 A micro-panels: int16 <c>(p·groups·24 + g·24 + r·4)/2 + t</c> = A[6p + r, 2g + t].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackAAvx2(sbyte* a, int rows, int k, int groups, byte* dst)
    {
        int full = k >> 1;
        long panelBytes = (long)groups * GroupBytesA;
        int panels = (rows + MR - 1) / MR;
        for (int p = 0; p < panels; p++)
        {
            for (int r = 0; r < MR; r++)
            {
                byte* d = dst + p * panelBytes + r * 4;
                int row = p * MR + r;
                if (row >= rows)
                {
                    for (int g = 0; g < groups; g++)
                        *(int*)(d + (long)g * GroupBytesA) = 0;
                    continue;
                }
                sbyte* s = a + (long)row * k;
                for (int g = 0; g < full; g++)
                    *(int*)(d + (long)g * GroupBytesA) = Pair(s[2 * g], s[2 * g + 1]);
                if ((k & 1) != 0)
                    *(int*)(d + (long)full * GroupBytesA) = Pair(s[k - 1], 0);
            }
        }
    }

    /// <summary>
    /// Reads 32 bytes (eight groups of four) from each of eight rows <paramref name="pitch"/> apart and
    /// writes group j of the eight rows as 32 contiguous bytes at <c>dst + j·64</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8(sbyte* src, int pitch, byte* dst)
    {
        Vector256<int> r0 = Avx.LoadVector256((int*)src);
        Vector256<int> r1 = Avx.LoadVector256((int*)(src + pitch));
        Vector256<int> r2 = Avx.LoadVector256((int*)(src + 2L * pitch));
        Vector256<int> r3 = Avx.LoadVector256((int*)(src + 3L * pitch));
        Vector256<int> r4 = Avx.LoadVector256((int*)(src + 4L * pitch));
        Vector256<int> r5 = Avx.LoadVector256((int*)(src + 5L * pitch));
        Vector256<int> r6 = Avx.LoadVector256((int*)(src + 6L * pitch));
        Vector256<int> r7 = Avx.LoadVector256((int*)(src + 7L * pitch));
        Vector256<int> t0 = Avx2.UnpackLow(r0, r1);
        Vector256<int> t1 = Avx2.UnpackHigh(r0, r1);
        Vector256<int> t2 = Avx2.UnpackLow(r2, r3);
        Vector256<int> t3 = Avx2.UnpackHigh(r2, r3);
        Vector256<int> t4 = Avx2.UnpackLow(r4, r5);
        Vector256<int> t5 = Avx2.UnpackHigh(r4, r5);
        Vector256<int> t6 = Avx2.UnpackLow(r6, r7);
        Vector256<int> t7 = Avx2.UnpackHigh(r6, r7);
        Vector256<int> u0 = Avx2.UnpackLow(t0.AsInt64(), t2.AsInt64()).AsInt32();
        Vector256<int> u1 = Avx2.UnpackHigh(t0.AsInt64(), t2.AsInt64()).AsInt32();
        Vector256<int> u2 = Avx2.UnpackLow(t1.AsInt64(), t3.AsInt64()).AsInt32();
        Vector256<int> u3 = Avx2.UnpackHigh(t1.AsInt64(), t3.AsInt64()).AsInt32();
        Vector256<int> u4 = Avx2.UnpackLow(t4.AsInt64(), t6.AsInt64()).AsInt32();
        Vector256<int> u5 = Avx2.UnpackHigh(t4.AsInt64(), t6.AsInt64()).AsInt32();
        Vector256<int> u6 = Avx2.UnpackLow(t5.AsInt64(), t7.AsInt64()).AsInt32();
        Vector256<int> u7 = Avx2.UnpackHigh(t5.AsInt64(), t7.AsInt64()).AsInt32();
        Avx.Store((int*)dst, Avx2.Permute2x128(u0, u4, 0x20));
        Avx.Store((int*)(dst + GroupBytesB), Avx2.Permute2x128(u1, u5, 0x20));
        Avx.Store((int*)(dst + 2 * GroupBytesB), Avx2.Permute2x128(u2, u6, 0x20));
        Avx.Store((int*)(dst + 3 * GroupBytesB), Avx2.Permute2x128(u3, u7, 0x20));
        Avx.Store((int*)(dst + 4 * GroupBytesB), Avx2.Permute2x128(u0, u4, 0x31));
        Avx.Store((int*)(dst + 5 * GroupBytesB), Avx2.Permute2x128(u1, u5, 0x31));
        Avx.Store((int*)(dst + 6 * GroupBytesB), Avx2.Permute2x128(u2, u6, 0x31));
        Avx.Store((int*)(dst + 7 * GroupBytesB), Avx2.Permute2x128(u3, u7, 0x31));
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
