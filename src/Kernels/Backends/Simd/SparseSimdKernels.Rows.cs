namespace Kernels.Backends.Simd;

// Row kernels: one row of W against one panel, 32 int32/float results (token order) to dst.
internal static unsafe partial class SparseSimdKernels
{
    /// <summary>
    /// AVX-VNNI: Σ (x+128)·w over the row's (column, value) pairs [p0, p1), four at a time, for the 64
    /// tokens of a <see cref="TBV"/> panel (two 32-token halves of the same interleave). A row whose count
    /// is not a multiple of 4 ends with one quad that repeats its last column with weight 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RowVnni<TIndex>(byte* panel, TIndex* col, sbyte* val, int p0, int p1, int* dst)
        where TIndex : unmanaged =>
        RowVnni<TIndex, Interleave512>(panel, col, val, p0, p1, dst);

    /// <summary>As <see cref="RowVnni{TIndex}(byte*, TIndex*, sbyte*, int, int, int*)"/> without AVX-512BW: the same interleave in two 256-bit halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RowVnni256(byte* panel, int* col, sbyte* val, int p0, int p1, int* dst) =>
        RowVnni<int, Interleave256>(panel, col, val, p0, p1, dst);

    /// <summary>The one loop of both forms: the interleave of four panel rows, eight <c>vpdpbusd</c> per quad.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    [SkipLocalsInit]
    private static void RowVnni<TIndex, TInterleave>(byte* panel, TIndex* col, sbyte* val, int p0, int p1, int* dst)
        where TIndex : unmanaged
        where TInterleave : struct, IInterleave4
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
                TInterleave.Interleave(panel + (Index(cp, 0) << 6), panel + (Index(cp, 1) << 6), panel + (Index(cp, 2) << 6),
                    panel + (Index(cp, 3) << 6), out Vector256<byte> v0, out Vector256<byte> v1, out Vector256<byte> v2,
                    out Vector256<byte> v3, out Vector256<byte> v4, out Vector256<byte> v5, out Vector256<byte> v6, out Vector256<byte> v7);
                c0 = AvxVnni.MultiplyWideningAndAdd(c0, v0, w);
                c1 = AvxVnni.MultiplyWideningAndAdd(c1, v1, w);
                c2 = AvxVnni.MultiplyWideningAndAdd(c2, v2, w);
                c3 = AvxVnni.MultiplyWideningAndAdd(c3, v3, w);
                c4 = AvxVnni.MultiplyWideningAndAdd(c4, v4, w);
                c5 = AvxVnni.MultiplyWideningAndAdd(c5, v5, w);
                c6 = AvxVnni.MultiplyWideningAndAdd(c6, v6, w);
                c7 = AvxVnni.MultiplyWideningAndAdd(c7, v7, w);
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
        SimdOps.Store4(dst, c0, c1, c2, c3);
        SimdOps.Store4(dst + 32, c4, c5, c6, c7);
    }

    /// <summary>Column <paramref name="i"/> of an int or ushort index array, as a native integer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nint Index<TIndex>(TIndex* p, int i)
        where TIndex : unmanaged =>
        typeof(TIndex) == typeof(ushort) ? ((ushort*)p)[i] : ((int*)p)[i];

    /// <summary>
    /// The byte interleave of four 64-byte panel rows a, b, c, d: v0..v3 the 32-bit lanes (a, b, c, d
    /// byte by byte) of tokens 0–31, v4..v7 those of tokens 32–63.
    /// </summary>
    internal interface IInterleave4
    {
        static abstract void Interleave(byte* a, byte* b, byte* c, byte* d,
            out Vector256<byte> v0, out Vector256<byte> v1, out Vector256<byte> v2, out Vector256<byte> v3,
            out Vector256<byte> v4, out Vector256<byte> v5, out Vector256<byte> v6, out Vector256<byte> v7);
    }

    /// <summary>AVX-512BW: one 64-byte load per row; the 512-bit unpacks interleave both halves at once.</summary>
    internal struct Interleave512 : IInterleave4
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Interleave(byte* a, byte* b, byte* c, byte* d,
            out Vector256<byte> v0, out Vector256<byte> v1, out Vector256<byte> v2, out Vector256<byte> v3,
            out Vector256<byte> v4, out Vector256<byte> v5, out Vector256<byte> v6, out Vector256<byte> v7)
        {
            Vector512<byte> ra = Avx512F.LoadVector512(a), rb = Avx512F.LoadVector512(b);
            Vector512<byte> rc = Avx512F.LoadVector512(c), rd = Avx512F.LoadVector512(d);
            Vector512<short> abLo = Avx512BW.UnpackLow(ra, rb).AsInt16();
            Vector512<short> abHi = Avx512BW.UnpackHigh(ra, rb).AsInt16();
            Vector512<short> cdLo = Avx512BW.UnpackLow(rc, rd).AsInt16();
            Vector512<short> cdHi = Avx512BW.UnpackHigh(rc, rd).AsInt16();
            Vector512<byte> x0 = Avx512BW.UnpackLow(abLo, cdLo).AsByte();
            Vector512<byte> x1 = Avx512BW.UnpackHigh(abLo, cdLo).AsByte();
            Vector512<byte> x2 = Avx512BW.UnpackLow(abHi, cdHi).AsByte();
            Vector512<byte> x3 = Avx512BW.UnpackHigh(abHi, cdHi).AsByte();
            v0 = x0.GetLower(); v1 = x1.GetLower(); v2 = x2.GetLower(); v3 = x3.GetLower();
            v4 = x0.GetUpper(); v5 = x1.GetUpper(); v6 = x2.GetUpper(); v7 = x3.GetUpper();
        }
    }

    /// <summary>AVX2: the same interleave on each 32-byte half of the rows.</summary>
    internal struct Interleave256 : IInterleave4
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Interleave(byte* a, byte* b, byte* c, byte* d,
            out Vector256<byte> v0, out Vector256<byte> v1, out Vector256<byte> v2, out Vector256<byte> v3,
            out Vector256<byte> v4, out Vector256<byte> v5, out Vector256<byte> v6, out Vector256<byte> v7)
        {
            Half(a, b, c, d, out v0, out v1, out v2, out v3);
            Half(a + 32, b + 32, c + 32, d + 32, out v4, out v5, out v6, out v7);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Half(byte* a, byte* b, byte* c, byte* d,
            out Vector256<byte> v0, out Vector256<byte> v1, out Vector256<byte> v2, out Vector256<byte> v3)
        {
            Vector256<byte> ra = Avx.LoadVector256(a), rb = Avx.LoadVector256(b);
            Vector256<byte> rc = Avx.LoadVector256(c), rd = Avx.LoadVector256(d);
            Vector256<short> abLo = Avx2.UnpackLow(ra, rb).AsInt16();
            Vector256<short> abHi = Avx2.UnpackHigh(ra, rb).AsInt16();
            Vector256<short> cdLo = Avx2.UnpackLow(rc, rd).AsInt16();
            Vector256<short> cdHi = Avx2.UnpackHigh(rc, rd).AsInt16();
            v0 = Avx2.UnpackLow(abLo, cdLo).AsByte();
            v1 = Avx2.UnpackHigh(abLo, cdLo).AsByte();
            v2 = Avx2.UnpackLow(abHi, cdHi).AsByte();
            v3 = Avx2.UnpackHigh(abHi, cdHi).AsByte();
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
        SimdOps.Store4(dst, c0, c1, c2, c3);
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
        SimdOps.Store4(dst, c0, c1, c2, c3);
        SimdOps.Store4(dst + 32, c4, c5, c6, c7);
    }

    /// <summary>
    /// Float: Σ x·w over [p0, p1) against the float panel (32 tokens), with FMA where available. The
    /// non-zeros go round-robin into four partial sums (non-zero p into sum (p − p0) mod 4), each summed in
    /// storage order from 0, then added as (s0 + s1) + (s2 + s3): eight independent FMA chains instead
    /// of four, which the FMA latency had bound (one non-zero per 4 cycles). The order is fixed, so the
    /// result does not depend on the thread split or the level's vector width.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RowFloat(float* panel, int* col, float* val, int p0, int p1, float* dst, bool wide)
    {
        // 512-bit: two vectors per 32-token row (the AVX-VNNI level on AVX-512 CPUs); 256-bit: four (16
        // accumulators: AVX-512 CPUs have the registers; on AVX2-only ones some live in memory). The
        // order of additions is the same.
        if (wide && Avx512F.IsSupported)
            RowFloat<Vector512<float>, Float512>(panel, col, val, p0, p1, dst);
        else
            RowFloat<Vector256<float>, Float256>(panel, col, val, p0, p1, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowFloat<TVector, TWidth>(float* panel, int* col, float* val, int p0, int p1, float* dst)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        // Four partial sums of 32 tokens (a, b, c, d), 32 / Count vectors each.
        TVector a0 = default, a1 = default, a2 = default, a3 = default;
        TVector b0 = default, b1 = default, b2 = default, b3 = default;
        TVector c0 = default, c1 = default, c2 = default, c3 = default;
        TVector d0 = default, d1 = default, d2 = default, d3 = default;
        int p = p0;
        for (; p + 4 <= p1; p += 4)
        {
            AddRow<TVector, TWidth>(ref a0, ref a1, ref a2, ref a3, panel + ((nint)col[p] << 5), val[p]);
            AddRow<TVector, TWidth>(ref b0, ref b1, ref b2, ref b3, panel + ((nint)col[p + 1] << 5), val[p + 1]);
            AddRow<TVector, TWidth>(ref c0, ref c1, ref c2, ref c3, panel + ((nint)col[p + 2] << 5), val[p + 2]);
            AddRow<TVector, TWidth>(ref d0, ref d1, ref d2, ref d3, panel + ((nint)col[p + 3] << 5), val[p + 3]);
        }
        int rem = p1 - p;
        if (rem > 0)
            AddRow<TVector, TWidth>(ref a0, ref a1, ref a2, ref a3, panel + ((nint)col[p] << 5), val[p]);
        if (rem > 1)
            AddRow<TVector, TWidth>(ref b0, ref b1, ref b2, ref b3, panel + ((nint)col[p + 1] << 5), val[p + 1]);
        if (rem > 2)
            AddRow<TVector, TWidth>(ref c0, ref c1, ref c2, ref c3, panel + ((nint)col[p + 2] << 5), val[p + 2]);
        int n = TWidth.Count;
        TWidth.Store(TWidth.Add(TWidth.Add(a0, b0), TWidth.Add(c0, d0)), dst);
        TWidth.Store(TWidth.Add(TWidth.Add(a1, b1), TWidth.Add(c1, d1)), dst + n);
        if (n < 16)
        {
            TWidth.Store(TWidth.Add(TWidth.Add(a2, b2), TWidth.Add(c2, d2)), dst + 2 * n);
            TWidth.Store(TWidth.Add(TWidth.Add(a3, b3), TWidth.Add(c3, d3)), dst + 3 * n);
        }
    }

    /// <summary>s += row a (32 floats) · weight, 32 / Count vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow<TVector, TWidth>(ref TVector s0, ref TVector s1, ref TVector s2, ref TVector s3, float* a, float weight)
        where TVector : unmanaged
        where TWidth : struct, IFloatWidth<TVector>
    {
        int n = TWidth.Count;
        TVector w = TWidth.Create(weight);
        s0 = TWidth.MultiplyAdd(TWidth.Load(a), w, s0);
        s1 = TWidth.MultiplyAdd(TWidth.Load(a + n), w, s1);
        if (n < 16)
        {
            s2 = TWidth.MultiplyAdd(TWidth.Load(a + 2 * n), w, s2);
            s3 = TWidth.MultiplyAdd(TWidth.Load(a + 3 * n), w, s3);
        }
    }
}
