namespace Kernels.Simd;

// Row kernels: one row of W against one panel, 32 int32/float results (token order) to dst.
internal static unsafe partial class SparseSimdKernels
{
    /// <summary>
    /// AVX-VNNI: Σ (x+128)·w over the row's (column, value) pairs [p0, p1), four at a time, for the 64
    /// tokens of a <see cref="TBV"/> panel (two 32-token halves of the same interleave). A row whose count
    /// is not a multiple of 4 ends with one quad that repeats its last column with weight 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    [SkipLocalsInit]
    internal static void RowVnni<TIndex>(byte* panel, TIndex* col, sbyte* val, int p0, int p1, int* dst)
        where TIndex : unmanaged
    {
        TIndex* tailCol = stackalloc TIndex[4];
        sbyte* tailVal = stackalloc sbyte[4];
        TIndex* cp = col + p0;
        sbyte* vp = val + p0;
        int quads = (p1 - p0) >> 2;
        int rem = (p1 - p0) & 3;
        Vector256<int> c0 = Vector256<int>.Zero, c1 = Vector256<int>.Zero;
        Vector256<int> c2 = Vector256<int>.Zero, c3 = Vector256<int>.Zero;
        Vector256<int> c4 = Vector256<int>.Zero, c5 = Vector256<int>.Zero;
        Vector256<int> c6 = Vector256<int>.Zero, c7 = Vector256<int>.Zero;
        while (true)
        {
            for (int q = 0; q < quads; q++, cp += 4, vp += 4)
            {
                Vector256<sbyte> w = Vector256.Create(Unsafe.ReadUnaligned<int>(vp)).AsSByte();
                // One 64-byte row per k: the 512-bit unpacks interleave both 32-token halves at once.
                Vector512<byte> a = Avx512F.LoadVector512(panel + (Index(cp, 0) << 6));
                Vector512<byte> b = Avx512F.LoadVector512(panel + (Index(cp, 1) << 6));
                Vector512<byte> c = Avx512F.LoadVector512(panel + (Index(cp, 2) << 6));
                Vector512<byte> d = Avx512F.LoadVector512(panel + (Index(cp, 3) << 6));
                Vector512<short> abLo = Avx512BW.UnpackLow(a, b).AsInt16();
                Vector512<short> abHi = Avx512BW.UnpackHigh(a, b).AsInt16();
                Vector512<short> cdLo = Avx512BW.UnpackLow(c, d).AsInt16();
                Vector512<short> cdHi = Avx512BW.UnpackHigh(c, d).AsInt16();
                Vector512<byte> v0 = Avx512BW.UnpackLow(abLo, cdLo).AsByte();
                Vector512<byte> v1 = Avx512BW.UnpackHigh(abLo, cdLo).AsByte();
                Vector512<byte> v2 = Avx512BW.UnpackLow(abHi, cdHi).AsByte();
                Vector512<byte> v3 = Avx512BW.UnpackHigh(abHi, cdHi).AsByte();
                c0 = AvxVnni.MultiplyWideningAndAdd(c0, v0.GetLower(), w);
                c1 = AvxVnni.MultiplyWideningAndAdd(c1, v1.GetLower(), w);
                c2 = AvxVnni.MultiplyWideningAndAdd(c2, v2.GetLower(), w);
                c3 = AvxVnni.MultiplyWideningAndAdd(c3, v3.GetLower(), w);
                c4 = AvxVnni.MultiplyWideningAndAdd(c4, v0.GetUpper(), w);
                c5 = AvxVnni.MultiplyWideningAndAdd(c5, v1.GetUpper(), w);
                c6 = AvxVnni.MultiplyWideningAndAdd(c6, v2.GetUpper(), w);
                c7 = AvxVnni.MultiplyWideningAndAdd(c7, v3.GetUpper(), w);
            }
            if (rem == 0)
                break;
            for (int j = 0; j < 4; j++)
            {
                tailCol[j] = cp[Math.Min(j, rem - 1)];
                tailVal[j] = j < rem ? vp[j] : (sbyte)0;
            }
            cp = tailCol;
            vp = tailVal;
            quads = 1;
            rem = 0;
        }
        Avx.Store(dst, c0);
        Avx.Store(dst + 8, c1);
        Avx.Store(dst + 16, c2);
        Avx.Store(dst + 24, c3);
        Avx.Store(dst + 32, c4);
        Avx.Store(dst + 40, c5);
        Avx.Store(dst + 48, c6);
        Avx.Store(dst + 56, c7);
    }

    /// <summary>Column <paramref name="i"/> of an int or ushort index array, as a native integer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nint Index<TIndex>(TIndex* p, int i)
        where TIndex : unmanaged =>
        typeof(TIndex) == typeof(ushort) ? ((ushort*)p)[i] : ((int*)p)[i];

    /// <summary>As <see cref="RowVnni"/> without AVX-512BW: the same interleave in two 256-bit halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    [SkipLocalsInit]
    internal static void RowVnni256(byte* panel, int* col, sbyte* val, int p0, int p1, int* dst)
    {
        int* tailCol = stackalloc int[4];
        sbyte* tailVal = stackalloc sbyte[4];
        for (int half = 0; half < 2; half++)
        {
            int* cp = col + p0;
            sbyte* vp = val + p0;
            int quads = (p1 - p0) >> 2;
            int rem = (p1 - p0) & 3;
            byte* ph = panel + 32 * half;
            Vector256<int> c0 = Vector256<int>.Zero, c1 = Vector256<int>.Zero;
            Vector256<int> c2 = Vector256<int>.Zero, c3 = Vector256<int>.Zero;
            while (true)
            {
                for (int q = 0; q < quads; q++, cp += 4, vp += 4)
                {
                    Vector256<sbyte> w = Vector256.Create(Unsafe.ReadUnaligned<int>(vp)).AsSByte();
                    Vector256<byte> a = Avx.LoadVector256(ph + ((nint)cp[0] << 6));
                    Vector256<byte> b = Avx.LoadVector256(ph + ((nint)cp[1] << 6));
                    Vector256<byte> c = Avx.LoadVector256(ph + ((nint)cp[2] << 6));
                    Vector256<byte> d = Avx.LoadVector256(ph + ((nint)cp[3] << 6));
                    Vector256<short> abLo = Avx2.UnpackLow(a, b).AsInt16();
                    Vector256<short> abHi = Avx2.UnpackHigh(a, b).AsInt16();
                    Vector256<short> cdLo = Avx2.UnpackLow(c, d).AsInt16();
                    Vector256<short> cdHi = Avx2.UnpackHigh(c, d).AsInt16();
                    c0 = AvxVnni.MultiplyWideningAndAdd(c0, Avx2.UnpackLow(abLo, cdLo).AsByte(), w);
                    c1 = AvxVnni.MultiplyWideningAndAdd(c1, Avx2.UnpackHigh(abLo, cdLo).AsByte(), w);
                    c2 = AvxVnni.MultiplyWideningAndAdd(c2, Avx2.UnpackLow(abHi, cdHi).AsByte(), w);
                    c3 = AvxVnni.MultiplyWideningAndAdd(c3, Avx2.UnpackHigh(abHi, cdHi).AsByte(), w);
                }
                if (rem == 0)
                    break;
                for (int j = 0; j < 4; j++)
                {
                    tailCol[j] = cp[Math.Min(j, rem - 1)];
                    tailVal[j] = j < rem ? vp[j] : (sbyte)0;
                }
                cp = tailCol;
                vp = tailVal;
                quads = 1;
                rem = 0;
            }
            int* dh = dst + 32 * half;
            Avx.Store(dh, c0);
            Avx.Store(dh + 8, c1);
            Avx.Store(dh + 16, c2);
            Avx.Store(dh + 24, c3);
        }
    }

    /// <summary>AVX2: Σ x·w with exact int16 pairs and <c>vpmaddwd</c>, two non-zeros at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RowAvx2(short* panel, int* col, sbyte* val, int p0, int p1, int* dst)
    {
        Vector256<int> c0 = Vector256<int>.Zero, c1 = Vector256<int>.Zero;
        Vector256<int> c2 = Vector256<int>.Zero, c3 = Vector256<int>.Zero;
        int p = p0;
        for (; p + 2 <= p1; p += 2)
        {
            int wp = (val[p] & 0xFFFF) | (val[p + 1] << 16);
            Vector256<short> w = Vector256.Create(wp).AsInt16();
            short* a = panel + ((nint)col[p] << 5);
            short* b = panel + ((nint)col[p + 1] << 5);
            Vector256<short> a0 = Avx.LoadVector256(a), a1 = Avx.LoadVector256(a + 16);
            Vector256<short> b0 = Avx.LoadVector256(b), b1 = Avx.LoadVector256(b + 16);
            c0 = Avx2.Add(c0, Avx2.MultiplyAddAdjacent(Avx2.UnpackLow(a0, b0), w));
            c1 = Avx2.Add(c1, Avx2.MultiplyAddAdjacent(Avx2.UnpackHigh(a0, b0), w));
            c2 = Avx2.Add(c2, Avx2.MultiplyAddAdjacent(Avx2.UnpackLow(a1, b1), w));
            c3 = Avx2.Add(c3, Avx2.MultiplyAddAdjacent(Avx2.UnpackHigh(a1, b1), w));
        }
        if (p < p1)
        {
            int wp = (ushort)val[p];
            Vector256<short> w = Vector256.Create(wp).AsInt16();
            short* a = panel + ((nint)col[p] << 5);
            Vector256<short> a0 = Avx.LoadVector256(a), a1 = Avx.LoadVector256(a + 16);
            c0 = Avx2.Add(c0, Avx2.MultiplyAddAdjacent(Avx2.UnpackLow(a0, a0), w));
            c1 = Avx2.Add(c1, Avx2.MultiplyAddAdjacent(Avx2.UnpackHigh(a0, a0), w));
            c2 = Avx2.Add(c2, Avx2.MultiplyAddAdjacent(Avx2.UnpackLow(a1, a1), w));
            c3 = Avx2.Add(c3, Avx2.MultiplyAddAdjacent(Avx2.UnpackHigh(a1, a1), w));
        }
        Avx.Store(dst, c0);
        Avx.Store(dst + 8, c1);
        Avx.Store(dst + 16, c2);
        Avx.Store(dst + 24, c3);
    }

    /// <summary>
    /// AVX-VNNI, aligned quads: for each of the row's quads [q0, q1) (k-quad index, four weights with zeros
    /// where the row has none), one <c>vpdpbusd</c> per eight tokens straight from the aligned-quad panel
    /// (no interleave), 64 tokens.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RowQuads(byte* panel, int* quadIndex, int* quadWeights, int q0, int q1, int* dst)
    {
        Vector256<int> c0 = Vector256<int>.Zero, c1 = Vector256<int>.Zero;
        Vector256<int> c2 = Vector256<int>.Zero, c3 = Vector256<int>.Zero;
        Vector256<int> c4 = Vector256<int>.Zero, c5 = Vector256<int>.Zero;
        Vector256<int> c6 = Vector256<int>.Zero, c7 = Vector256<int>.Zero;
        for (int q = q0; q < q1; q++)
        {
            Vector256<sbyte> w = Vector256.Create(quadWeights[q]).AsSByte();
            byte* xq = panel + ((nint)quadIndex[q] << 8);
            c0 = AvxVnni.MultiplyWideningAndAdd(c0, Avx.LoadVector256(xq), w);
            c1 = AvxVnni.MultiplyWideningAndAdd(c1, Avx.LoadVector256(xq + 32), w);
            c2 = AvxVnni.MultiplyWideningAndAdd(c2, Avx.LoadVector256(xq + 64), w);
            c3 = AvxVnni.MultiplyWideningAndAdd(c3, Avx.LoadVector256(xq + 96), w);
            c4 = AvxVnni.MultiplyWideningAndAdd(c4, Avx.LoadVector256(xq + 128), w);
            c5 = AvxVnni.MultiplyWideningAndAdd(c5, Avx.LoadVector256(xq + 160), w);
            c6 = AvxVnni.MultiplyWideningAndAdd(c6, Avx.LoadVector256(xq + 192), w);
            c7 = AvxVnni.MultiplyWideningAndAdd(c7, Avx.LoadVector256(xq + 224), w);
        }
        Avx.Store(dst, c0);
        Avx.Store(dst + 8, c1);
        Avx.Store(dst + 16, c2);
        Avx.Store(dst + 24, c3);
        Avx.Store(dst + 32, c4);
        Avx.Store(dst + 40, c5);
        Avx.Store(dst + 48, c6);
        Avx.Store(dst + 56, c7);
    }

    /// <summary>
    /// Float: Σ x·w over [p0, p1) against the float panel (32 tokens), with FMA where available. The
    /// non-zeros go round-robin into four partial sums (non-zero p into sum (p − p0) mod 4), each summed in
    /// storage order from 0, then added as (s0 + s1) + (s2 + s3): eight independent FMA chains instead
    /// of four, which the FMA latency had bound (one non-zero per 4 cycles). The order is fixed, so the
    /// result does not depend on the thread split or the level's vector width.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RowFloat(float* panel, int* col, float* val, int p0, int p1, float* dst, bool wide)
    {
        if (wide && Avx512F.IsSupported)
        {
            RowFloat512(panel, col, val, p0, p1, dst);
            return;
        }
        // Four partial sums of 32 tokens, four vectors each (16 accumulators: AVX-512 CPUs have the
        // registers; on AVX2-only ones some live in memory).
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector256<float> d0 = default, d1 = default, d2 = default, d3 = default;
        int p = p0;
        for (; p + 4 <= p1; p += 4)
        {
            AddRow256(ref a0, ref a1, ref a2, ref a3, panel + ((nint)col[p] << 5), val[p]);
            AddRow256(ref b0, ref b1, ref b2, ref b3, panel + ((nint)col[p + 1] << 5), val[p + 1]);
            AddRow256(ref c0, ref c1, ref c2, ref c3, panel + ((nint)col[p + 2] << 5), val[p + 2]);
            AddRow256(ref d0, ref d1, ref d2, ref d3, panel + ((nint)col[p + 3] << 5), val[p + 3]);
        }
        int rem = p1 - p;
        if (rem > 0)
            AddRow256(ref a0, ref a1, ref a2, ref a3, panel + ((nint)col[p] << 5), val[p]);
        if (rem > 1)
            AddRow256(ref b0, ref b1, ref b2, ref b3, panel + ((nint)col[p + 1] << 5), val[p + 1]);
        if (rem > 2)
            AddRow256(ref c0, ref c1, ref c2, ref c3, panel + ((nint)col[p + 2] << 5), val[p + 2]);
        Avx.Store(dst, Avx.Add(Avx.Add(a0, b0), Avx.Add(c0, d0)));
        Avx.Store(dst + 8, Avx.Add(Avx.Add(a1, b1), Avx.Add(c1, d1)));
        Avx.Store(dst + 16, Avx.Add(Avx.Add(a2, b2), Avx.Add(c2, d2)));
        Avx.Store(dst + 24, Avx.Add(Avx.Add(a3, b3), Avx.Add(c3, d3)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow256(ref Vector256<float> s0, ref Vector256<float> s1, ref Vector256<float> s2, ref Vector256<float> s3, float* a, float weight)
    {
        Vector256<float> w = Vector256.Create(weight);
        if (Fma.IsSupported)
        {
            s0 = Fma.MultiplyAdd(Avx.LoadVector256(a), w, s0);
            s1 = Fma.MultiplyAdd(Avx.LoadVector256(a + 8), w, s1);
            s2 = Fma.MultiplyAdd(Avx.LoadVector256(a + 16), w, s2);
            s3 = Fma.MultiplyAdd(Avx.LoadVector256(a + 24), w, s3);
        }
        else
        {
            s0 = Avx.Add(s0, Avx.Multiply(Avx.LoadVector256(a), w));
            s1 = Avx.Add(s1, Avx.Multiply(Avx.LoadVector256(a + 8), w));
            s2 = Avx.Add(s2, Avx.Multiply(Avx.LoadVector256(a + 16), w));
            s3 = Avx.Add(s3, Avx.Multiply(Avx.LoadVector256(a + 24), w));
        }
    }

    /// <summary><see cref="RowFloat"/> with 512-bit vectors (two per 32-token row; the AVX-VNNI level on AVX-512 CPUs), the same order of additions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowFloat512(float* panel, int* col, float* val, int p0, int p1, float* dst)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = Vector512<float>.Zero;
        Vector512<float> b0 = Vector512<float>.Zero, b1 = Vector512<float>.Zero;
        Vector512<float> c0 = Vector512<float>.Zero, c1 = Vector512<float>.Zero;
        Vector512<float> d0 = Vector512<float>.Zero, d1 = Vector512<float>.Zero;
        int p = p0;
        for (; p + 4 <= p1; p += 4)
        {
            float* ra = panel + ((nint)col[p] << 5), rb = panel + ((nint)col[p + 1] << 5);
            float* rc = panel + ((nint)col[p + 2] << 5), rd = panel + ((nint)col[p + 3] << 5);
            Vector512<float> wa = Vector512.Create(val[p]), wb = Vector512.Create(val[p + 1]);
            Vector512<float> wc = Vector512.Create(val[p + 2]), wd = Vector512.Create(val[p + 3]);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(ra), wa, a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(ra + 16), wa, a1);
            b0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rb), wb, b0);
            b1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rb + 16), wb, b1);
            c0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rc), wc, c0);
            c1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rc + 16), wc, c1);
            d0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rd), wd, d0);
            d1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rd + 16), wd, d1);
        }
        int rem = p1 - p;
        if (rem > 0)
        {
            float* ra = panel + ((nint)col[p] << 5);
            Vector512<float> wa = Vector512.Create(val[p]);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(ra), wa, a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(ra + 16), wa, a1);
        }
        if (rem > 1)
        {
            float* rb = panel + ((nint)col[p + 1] << 5);
            Vector512<float> wb = Vector512.Create(val[p + 1]);
            b0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rb), wb, b0);
            b1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rb + 16), wb, b1);
        }
        if (rem > 2)
        {
            float* rc = panel + ((nint)col[p + 2] << 5);
            Vector512<float> wc = Vector512.Create(val[p + 2]);
            c0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rc), wc, c0);
            c1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(rc + 16), wc, c1);
        }
        Avx512F.Store(dst, Avx512F.Add(Avx512F.Add(a0, b0), Avx512F.Add(c0, d0)));
        Avx512F.Store(dst + 16, Avx512F.Add(Avx512F.Add(a1, b1), Avx512F.Add(c1, d1)));
    }
}
