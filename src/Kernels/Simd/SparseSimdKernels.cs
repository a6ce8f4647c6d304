using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kernels.Simd;

/// <summary>
/// The vectorized inner kernels of <see cref="SparseSimd"/>. Large m: X is transposed once per call into
/// token panels (AVX-VNNI: <see cref="TBV"/> tokens, one 64-byte line of u8 x+128 per k; AVX2:
/// <see cref="TB"/> tokens of int16; float: <see cref="TB"/> floats), and each row of W walks its
/// non-zeros, four (AVX-VNNI) or two (AVX2) at a time: the panel lines of those k are interleaved so that
/// each 32-bit lane holds one token's values, and <c>vpdpbusd</c> / <c>vpmaddwd</c> with the broadcast
/// weights adds them. The token order of the panels is permuted at packing so that the accumulators come
/// out in natural order. Block-structured W (aligned quads) reads an [k/4][tokens][4] panel directly.
/// Eight rows of W form a tile that is transposed (8×8 int32) and stored through the epilogue. Small m:
/// gathered dot products (int8: four tokens per gathered dword, transposed for <c>vpdpbusd</c>).
/// </summary>
internal static unsafe class SparseSimdKernels
{
    /// <summary>Tokens per panel (one accumulator tile row: four vectors of eight int32).</summary>
    internal const int TB = 32;

    /// <summary>Tokens per panel of the AVX-VNNI interleave kernel (two halves of <see cref="TB"/>; one cache line per k).</summary>
    internal const int TBV = 64;

    /// <summary>Rows of W per output tile.</summary>
    internal const int GR = 8;

    /// <summary>
    /// Row groups (of <see cref="GR"/>) computed into one tile before it is stored: 128 output columns, so
    /// that each token's output row gets 512 contiguous bytes (whole lines) per store. With one group per
    /// store, the 64 token rows of a tile got 32-byte half lines n·4 bytes apart (one L1 set when n·4 is a
    /// multiple of 4 KiB): half of a 1024³ call went to those stores.
    /// </summary>
    internal const int StoreGroups = 16;

    // ---------------------------------------------------------------------------------------------
    // Packing.

    /// <summary>Panel position of token t (0..31) for the AVX-VNNI byte interleave.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int PosVnni(int t)
    {
        int j = t >> 3, i = t & 7;
        return 16 * (i >> 2) + 4 * j + (i & 3);
    }

    /// <summary>Panel position of token t (0..31) for the AVX2 int16 pair interleave (two 16-token halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int PosAvx2(int t)
    {
        int h = t >> 4, u = t & 15;
        int j = u >> 3, i = u & 7;
        return 16 * h + 8 * (i >> 2) + 4 * j + (i & 3);
    }

    /// <summary>
    /// AVX-VNNI panel of tokens [t0, t0+64): byte <c>kk·64 + 32h + PosVnni(t)</c> = X[t0+32h+t, kk] + 128 (u8);
    /// tokens past m hold 128 (x = 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackVnni(sbyte* x, int m, int k, int t0, byte* dst) =>
        PackBytes(x, m, k, t0, dst, vnni: true, TBV);

    /// <summary>AVX2 panel: int16 <c>kk·32 + PosAvx2(t)</c> = X[t0+t, kk]; tokens past m hold 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackAvx2(sbyte* x, int m, int k, int t0, short* dst) =>
        PackBytes(x, m, k, t0, (byte*)dst, vnni: false, TB);

    /// <summary>
    /// Transposes 32 token rows into a panel, eight panel positions (eight tokens) by eight k at a time:
    /// an 8×8 byte transpose in SSE registers, then one 8-byte store per k (VNNI: u8, x+128) or one
    /// 16-byte store of the sign-extended int16 (AVX2).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBytes(sbyte* x, int m, int k, int t0, byte* dst, bool vnni, int panelTokens)
    {
        sbyte* zeros = stackalloc sbyte[16];
        Unsafe.InitBlock(zeros, 0, 16);
        sbyte** src = stackalloc sbyte*[8];
        int rowBytes = vnni ? panelTokens : panelTokens * sizeof(short);
        int full = k & ~7;
        Vector128<sbyte> flip = Vector128.Create(unchecked((sbyte)0x80));
        for (int block = 0; block < panelTokens / 8; block++)
        {
            // Source rows of panel positions 8·block .. 8·block+7 (past m: the zero row, read in place).
            for (int j = 0; j < 8; j++)
            {
                int p = 8 * block + j;
                int token = t0 + (vnni ? (p & ~31) + TokenVnni(p & 31) : TokenAvx2(p));
                src[j] = token < m ? x + (long)token * k : null;
            }
            byte* d0 = dst + (vnni ? 8 * block : 16 * block);
            for (int kk = 0; kk < full; kk += 8)
            {
                Vector128<sbyte> r0 = Load8(src[0], zeros, kk), r1 = Load8(src[1], zeros, kk);
                Vector128<sbyte> r2 = Load8(src[2], zeros, kk), r3 = Load8(src[3], zeros, kk);
                Vector128<sbyte> r4 = Load8(src[4], zeros, kk), r5 = Load8(src[5], zeros, kk);
                Vector128<sbyte> r6 = Load8(src[6], zeros, kk), r7 = Load8(src[7], zeros, kk);
                Vector128<short> a01 = Sse2.UnpackLow(r0, r1).AsInt16(), a23 = Sse2.UnpackLow(r2, r3).AsInt16();
                Vector128<short> a45 = Sse2.UnpackLow(r4, r5).AsInt16(), a67 = Sse2.UnpackLow(r6, r7).AsInt16();
                Vector128<int> b0 = Sse2.UnpackLow(a01, a23).AsInt32(), b1 = Sse2.UnpackHigh(a01, a23).AsInt32();
                Vector128<int> b2 = Sse2.UnpackLow(a45, a67).AsInt32(), b3 = Sse2.UnpackHigh(a45, a67).AsInt32();
                // c_i holds k = kk+2i (low 8 bytes) and kk+2i+1 (high 8 bytes) for the 8 positions.
                Vector128<sbyte> c0 = Sse2.UnpackLow(b0, b2).AsSByte(), c1 = Sse2.UnpackHigh(b0, b2).AsSByte();
                Vector128<sbyte> c2 = Sse2.UnpackLow(b1, b3).AsSByte(), c3 = Sse2.UnpackHigh(b1, b3).AsSByte();
                byte* d = d0 + (long)kk * rowBytes;
                if (vnni)
                {
                    Store2x8(Sse2.Xor(c0, flip), d, rowBytes);
                    Store2x8(Sse2.Xor(c1, flip), d + 2 * rowBytes, rowBytes);
                    Store2x8(Sse2.Xor(c2, flip), d + 4 * rowBytes, rowBytes);
                    Store2x8(Sse2.Xor(c3, flip), d + 6 * rowBytes, rowBytes);
                }
                else
                {
                    Store2x16(c0, d, rowBytes);
                    Store2x16(c1, d + 2 * rowBytes, rowBytes);
                    Store2x16(c2, d + 4 * rowBytes, rowBytes);
                    Store2x16(c3, d + 6 * rowBytes, rowBytes);
                }
            }
            for (int kk = full; kk < k; kk++)
            {
                byte* d = d0 + (long)kk * rowBytes;
                for (int j = 0; j < 8; j++)
                {
                    sbyte v = src[j] == null ? (sbyte)0 : src[j][kk];
                    if (vnni)
                        d[j] = (byte)(v ^ unchecked((sbyte)0x80));
                    else
                        ((short*)d)[j] = v;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Load8(sbyte* row, sbyte* zeros, int kk) =>
        Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(row == null ? zeros : row + kk)).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store2x8(Vector128<sbyte> v, byte* d, int pitch)
    {
        Unsafe.WriteUnaligned(d, v.AsInt64().ToScalar());
        Unsafe.WriteUnaligned(d + pitch, v.AsInt64().GetElement(1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store2x16(Vector128<sbyte> v, byte* d, int pitch)
    {
        Sse2.Store((short*)d, Sse41.ConvertToVector128Int16(v));
        Sse2.Store((short*)(d + pitch), Sse41.ConvertToVector128Int16(Sse2.ShiftRightLogical128BitLane(v, 8)));
    }

    /// <summary>The token at VNNI panel position p (inverse of <see cref="PosVnni"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int TokenVnni(int p)
    {
        int l = p >> 4, j = (p >> 2) & 3, ii = p & 3;
        return 8 * j + 4 * l + ii;
    }

    /// <summary>The token at AVX2 panel position p (inverse of <see cref="PosAvx2"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int TokenAvx2(int p)
    {
        int h = p >> 4, l = (p >> 3) & 1, j = (p >> 2) & 1, ii = p & 3;
        return 16 * h + 8 * j + 4 * l + ii;
    }

    /// <summary>
    /// Aligned-quad panel (AVX-VNNI): int <c>q·64 + t</c> = the four bytes X[t0+t, 4q..4q+3] + 128 for the
    /// 64 tokens of a <see cref="TBV"/> block, k padded with 128 (x = 0); tokens past m hold 128.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackQuads(sbyte* x, int m, int k, int t0, byte* dst)
    {
        int quads = (k + 3) >> 2;
        int full = k >> 2;
        for (int t = 0; t < TBV; t++)
        {
            uint* d = (uint*)dst + t;
            int token = t0 + t;
            if (token >= m)
            {
                for (int q = 0; q < quads; q++)
                    d[q * TBV] = 0x80808080u;
                continue;
            }
            sbyte* s = x + (long)token * k;
            for (int q = 0; q < full; q++)
                d[q * TBV] = Unsafe.ReadUnaligned<uint>(s + 4 * q) ^ 0x80808080u;
            if (full < quads)
            {
                uint v = 0x80808080u;
                for (int j = 0; j < (k & 3); j++)
                    v ^= (uint)(byte)s[4 * full + j] << (8 * j);
                d[full * TBV] = v;
            }
        }
    }

    /// <summary>Float panel: <c>kk·32 + t</c> = X[t0+t, kk] (natural order); tokens past m hold 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackFloat(float* x, int m, int k, int t0, float* dst)
    {
        byte* oRaw = stackalloc byte[9 * 32];
        var o = (Vector256<int>*)(((nint)oRaw + 31) & ~(nint)31);
        int full = k & ~7;
        for (int g = 0; g < TB; g += 8)
        {
            int tokens = Math.Min(8, m - (t0 + g));
            float* d0 = dst + g;
            if (tokens == 8)
            {
                float* s0 = x + (long)(t0 + g) * k;
                for (int kk = 0; kk < full; kk += 8)
                {
                    TransposePitch((int*)(s0 + kk), k, o);
                    float* d = d0 + (long)kk * TB;
                    for (int j = 0; j < 8; j++)
                        Avx.Store(d + j * TB, o[j].AsSingle());
                }
            }
            for (int kk = tokens == 8 ? full : 0; kk < k; kk++)
            {
                float* d = d0 + (long)kk * TB;
                for (int j = 0; j < 8; j++)
                    d[j] = j < tokens ? x[(long)(t0 + g + j) * k + kk] : 0f;
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Row kernels: one row of W against one panel, 32 int32/float results (token order) to dst.

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

    // ---------------------------------------------------------------------------------------------
    // Small m: dot products with gathers.

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

    /// <summary>
    /// Small m, AVX-VNNI: Σ (x+128)·w over [p0, p1) for the four tokens of a <see cref="PackFour"/> panel,
    /// eight non-zeros per gather: the gathered dwords (four tokens each) are transposed 4×4 per 128-bit
    /// lane with <c>vpshufb</c>, so that one <c>vpdpbusd</c> with the matching weight quads adds four
    /// products for each token; a second <c>vpdpbusd</c> of ones sums the weights for the −128·Σw
    /// correction. Results (exact): dst[0..3].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotFour(uint* x4, int* col, sbyte* val, int p0, int p1, int* dst)
    {
        Vector256<sbyte> tx = Vector256.Create(
            (sbyte)0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
            0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        Vector256<sbyte> tw = Vector256.Create(
            (sbyte)0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
            4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero;
        Vector256<int> sum0 = Vector256<int>.Zero, sum1 = Vector256<int>.Zero;
        Vector256<byte> ones = Vector256.Create((byte)1);
        var xi = (int*)x4;
        int* idx = stackalloc int[8];
        int p = p0;
        for (; p + 16 <= p1; p += 16)
        {
            Vector256<byte> g0 = Avx2.GatherVector256(xi, Avx.LoadVector256(col + p), 4).AsByte();
            Vector256<byte> g1 = Avx2.GatherVector256(xi, Avx.LoadVector256(col + p + 8), 4).AsByte();
            Vector256<sbyte> w0 = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<long>(val + p)).AsSByte(), tw);
            Vector256<sbyte> w1 = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<long>(val + p + 8)).AsSByte(), tw);
            acc0 = AvxVnni.MultiplyWideningAndAdd(acc0, Avx2.Shuffle(g0, tx.AsByte()), w0);
            acc1 = AvxVnni.MultiplyWideningAndAdd(acc1, Avx2.Shuffle(g1, tx.AsByte()), w1);
            sum0 = AvxVnni.MultiplyWideningAndAdd(sum0, ones, w0);
            sum1 = AvxVnni.MultiplyWideningAndAdd(sum1, ones, w1);
        }
        while (p < p1)
        {
            // 8 at a time; the last group repeats its last column with weight 0.
            int rem = Math.Min(8, p1 - p);
            long wq = 0;
            for (int j = 0; j < 8; j++)
            {
                int q = p + Math.Min(j, rem - 1);
                idx[j] = col[q];
                if (j < rem)
                    wq |= (long)(byte)val[p + j] << (8 * j);
            }
            Vector256<byte> g0 = Avx2.GatherVector256(xi, Avx.LoadVector256(idx), 4).AsByte();
            Vector256<sbyte> w0 = Avx2.Shuffle(Vector256.Create(wq).AsSByte(), tw);
            acc0 = AvxVnni.MultiplyWideningAndAdd(acc0, Avx2.Shuffle(g0, tx.AsByte()), w0);
            sum0 = AvxVnni.MultiplyWideningAndAdd(sum0, ones, w0);
            p += rem;
        }
        // Every lane of a half holds that half's Σw: subtract 128·Σw, then add the halves.
        Vector256<int> acc = Avx2.Subtract(Avx2.Add(acc0, acc1), Avx2.ShiftLeftLogical(Avx2.Add(sum0, sum1), 7));
        Sse2.Store(dst, Sse2.Add(acc.GetLower(), acc.GetUpper()));
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
        Vector256<byte> ones = Vector256.Create((byte)1);
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero, sum = Vector256<int>.Zero;
        int* tailCol = stackalloc int[4];
        int p = p0;
        for (; p + 8 <= p1; p += 8)
        {
            Vector256<sbyte> w0 = Vector256.Create(Unsafe.ReadUnaligned<int>(val + p)).AsSByte();
            Vector256<sbyte> w1 = Vector256.Create(Unsafe.ReadUnaligned<int>(val + p + 4)).AsSByte();
            acc0 = AvxVnni.MultiplyWideningAndAdd(acc0, Avx512Vbmi.VL.PermuteVar32x8(Rows4(panel, col + p), order), w0);
            acc1 = AvxVnni.MultiplyWideningAndAdd(acc1, Avx512Vbmi.VL.PermuteVar32x8(Rows4(panel, col + p + 4), order), w1);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w0);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w1);
        }
        for (; p < p1; p += 4)
        {
            Vector256<sbyte> w = Vector256.Create(TailQuad(col, val, p, p1, tailCol)).AsSByte();
            acc0 = AvxVnni.MultiplyWideningAndAdd(acc0, Avx512Vbmi.VL.PermuteVar32x8(Rows4(panel, tailCol), order), w);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w);
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
        Vector256<byte> ones = Vector256.Create((byte)1);
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
            lo0 = AvxVnni.MultiplyWideningAndAdd(lo0, t0.GetLower(), w0);
            hi0 = AvxVnni.MultiplyWideningAndAdd(hi0, t0.GetUpper(), w0);
            lo1 = AvxVnni.MultiplyWideningAndAdd(lo1, t1.GetLower(), w1);
            hi1 = AvxVnni.MultiplyWideningAndAdd(hi1, t1.GetUpper(), w1);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w0);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w1);
        }
        for (; p < p1; p += 4)
        {
            Vector256<sbyte> w = Vector256.Create(TailQuad(col, val, p, p1, tailCol)).AsSByte();
            Vector512<byte> t0 = Avx512Vbmi.PermuteVar64x8(Rows4Wide(panel, tailCol), order);
            lo0 = AvxVnni.MultiplyWideningAndAdd(lo0, t0.GetLower(), w);
            hi0 = AvxVnni.MultiplyWideningAndAdd(hi0, t0.GetUpper(), w);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w);
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void DotFourPermuted(uint* x4, int* col, sbyte* val, int p0, int p1, int* dst)
    {
        // Input dword j = tokens 0..3 of column j; output lane 4h + t = (column 4h..4h+3 of token t).
        Vector256<byte> order = Vector256.Create(
            (byte)0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
            16, 20, 24, 28, 17, 21, 25, 29, 18, 22, 26, 30, 19, 23, 27, 31);
        Vector256<sbyte> spread = Vector256.Create(
            (sbyte)0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3,
            4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
        Vector256<byte> ones = Vector256.Create((byte)1);
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero, sum = Vector256<int>.Zero;
        var xi = (int*)x4;
        int* tailCol = stackalloc int[8];
        int p = p0;
        for (; p + 16 <= p1; p += 16)
        {
            Vector256<sbyte> w0 = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<long>(val + p)).AsSByte(), spread);
            Vector256<sbyte> w1 = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<long>(val + p + 8)).AsSByte(), spread);
            acc0 = AvxVnni.MultiplyWideningAndAdd(acc0, Avx512Vbmi.VL.PermuteVar32x8(Columns8(xi, col + p), order), w0);
            acc1 = AvxVnni.MultiplyWideningAndAdd(acc1, Avx512Vbmi.VL.PermuteVar32x8(Columns8(xi, col + p + 8), order), w1);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w0);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w1);
        }
        for (; p < p1; p += 8)
        {
            // Eight at a time; the last group repeats its last column with weight 0.
            int rem = Math.Min(8, p1 - p);
            long weights = 0;
            for (int j = 0; j < 8; j++)
            {
                tailCol[j] = col[p + Math.Min(j, rem - 1)];
                if (j < rem)
                    weights |= (long)(byte)val[p + j] << (8 * j);
            }
            Vector256<sbyte> w = Avx2.Shuffle(Vector256.Create(weights).AsSByte(), spread);
            acc0 = AvxVnni.MultiplyWideningAndAdd(acc0, Avx512Vbmi.VL.PermuteVar32x8(Columns8(xi, tailCol), order), w);
            sum = AvxVnni.MultiplyWideningAndAdd(sum, ones, w);
        }
        // Lanes 0–3 and 4–7 hold the two halves of each token's sum (and of Σw).
        Vector256<int> acc = Avx2.Subtract(Avx2.Add(acc0, acc1), Avx2.ShiftLeftLogical(sum, 7));
        Sse2.Store(dst, Sse2.Add(acc.GetLower(), acc.GetUpper()));
    }

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

    // ---------------------------------------------------------------------------------------------
    // Stores.

    /// <summary>o[t] = (src[0·pitch + t], …, src[7·pitch + t]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposePitch(int* src, long pitch, Vector256<int>* o) =>
        Transpose8x8(src, pitch, out o[0], out o[1], out o[2], out o[3], out o[4], out o[5], out o[6], out o[7]);

    /// <summary>The 8×8 int32 block at src (rows pitch apart), transposed in registers: o_t = column t.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(
        int* src, long pitch, out Vector256<int> o0, out Vector256<int> o1, out Vector256<int> o2, out Vector256<int> o3,
        out Vector256<int> o4, out Vector256<int> o5, out Vector256<int> o6, out Vector256<int> o7)
    {
        Vector256<int> r0 = Avx.LoadVector256(src);
        Vector256<int> r1 = Avx.LoadVector256(src + pitch);
        Vector256<int> r2 = Avx.LoadVector256(src + 2 * pitch);
        Vector256<int> r3 = Avx.LoadVector256(src + 3 * pitch);
        Vector256<int> r4 = Avx.LoadVector256(src + 4 * pitch);
        Vector256<int> r5 = Avx.LoadVector256(src + 5 * pitch);
        Vector256<int> r6 = Avx.LoadVector256(src + 6 * pitch);
        Vector256<int> r7 = Avx.LoadVector256(src + 7 * pitch);
        Vector256<int> t0 = Avx2.UnpackLow(r0, r1), t1 = Avx2.UnpackHigh(r0, r1);
        Vector256<int> t2 = Avx2.UnpackLow(r2, r3), t3 = Avx2.UnpackHigh(r2, r3);
        Vector256<int> t4 = Avx2.UnpackLow(r4, r5), t5 = Avx2.UnpackHigh(r4, r5);
        Vector256<int> t6 = Avx2.UnpackLow(r6, r7), t7 = Avx2.UnpackHigh(r6, r7);
        Vector256<int> u0 = Avx2.UnpackLow(t0.AsInt64(), t2.AsInt64()).AsInt32();
        Vector256<int> u1 = Avx2.UnpackHigh(t0.AsInt64(), t2.AsInt64()).AsInt32();
        Vector256<int> u2 = Avx2.UnpackLow(t1.AsInt64(), t3.AsInt64()).AsInt32();
        Vector256<int> u3 = Avx2.UnpackHigh(t1.AsInt64(), t3.AsInt64()).AsInt32();
        Vector256<int> u4 = Avx2.UnpackLow(t4.AsInt64(), t6.AsInt64()).AsInt32();
        Vector256<int> u5 = Avx2.UnpackHigh(t4.AsInt64(), t6.AsInt64()).AsInt32();
        Vector256<int> u6 = Avx2.UnpackLow(t5.AsInt64(), t7.AsInt64()).AsInt32();
        Vector256<int> u7 = Avx2.UnpackHigh(t5.AsInt64(), t7.AsInt64()).AsInt32();
        o0 = Avx2.Permute2x128(u0, u4, 0x20);
        o1 = Avx2.Permute2x128(u1, u5, 0x20);
        o2 = Avx2.Permute2x128(u2, u6, 0x20);
        o3 = Avx2.Permute2x128(u3, u7, 0x20);
        o4 = Avx2.Permute2x128(u0, u4, 0x31);
        o5 = Avx2.Permute2x128(u1, u5, 0x31);
        o6 = Avx2.Permute2x128(u2, u6, 0x31);
        o7 = Avx2.Permute2x128(u3, u7, 0x31);
    }

    /// <summary>
    /// Stores an int8 tile (up to <see cref="StoreGroups"/> × <see cref="GR"/> rows of W × <paramref name="pitch"/>
    /// tokens, int32, rows pitch apart) for tokens [t0, t0+tokens) and columns [r0, r0+cols), minus
    /// <paramref name="corr"/>[c] (entries up to the next multiple of 8, zero past cols), through the epilogue: Y[t, r0+c] = (float)(acc − corr)·aScale[t]·bScale (+ bias).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    [SkipLocalsInit]
    internal static void StoreInt8(int* tile, int pitch, int* corr, int t0, int tokens, int r0, int cols, int n, in SimdEpilogue ep)
    {
        int s = 0;
        if (cols > GR && cols % GR == 0 && !ep.IsDequant)
        {
            // Several whole 8-row groups: for each 8-token block, the groups side by side, so that each
            // output row gets whole 64-byte lines at once. One group at a time wrote half lines 64 rows
            // (n·4 bytes) apart; with n·4 a multiple of 4 KiB those all fall into one L1 set.
            int* c = ep.C + (long)t0 * n + r0;
            for (; s + 8 <= tokens; s += 8)
            {
                for (int h = 0; h < cols; h += GR)
                    Store8x8(tile + (long)h * pitch + s, pitch, Avx.LoadVector256(corr + h), c + (long)s * n + h, n);
            }
            if (s >= tokens)
                return;
        }
        for (int h = 0; h < cols; h += GR)
            StoreInt8Group(tile + (long)h * pitch + s, pitch, corr + h, t0 + s, tokens - s, r0 + h, Math.Min(GR, cols - h), n, ep);
    }

    /// <summary>One 8×8 int32 block of the tile (8 rows of W × 8 tokens, pitch apart), transposed, minus k, to d (rows n apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store8x8(int* src, int pitch, Vector256<int> k, int* d, int n)
    {
        Transpose8x8(src, pitch, out Vector256<int> o0, out Vector256<int> o1, out Vector256<int> o2, out Vector256<int> o3,
            out Vector256<int> o4, out Vector256<int> o5, out Vector256<int> o6, out Vector256<int> o7);
        Avx.Store(d, Avx2.Subtract(o0, k));
        Avx.Store(d + n, Avx2.Subtract(o1, k));
        Avx.Store(d + 2L * n, Avx2.Subtract(o2, k));
        Avx.Store(d + 3L * n, Avx2.Subtract(o3, k));
        Avx.Store(d + 4L * n, Avx2.Subtract(o4, k));
        Avx.Store(d + 5L * n, Avx2.Subtract(o5, k));
        Avx.Store(d + 6L * n, Avx2.Subtract(o6, k));
        Avx.Store(d + 7L * n, Avx2.Subtract(o7, k));
    }

    /// <summary>As <see cref="StoreInt8"/> for one group of at most <see cref="GR"/> rows of W.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StoreInt8Group(int* tile, int pitch, int* corr, int t0, int tokens, int r0, int cols, int n, in SimdEpilogue ep)
    {
        Vector256<int> k = Avx.LoadVector256(corr);
        int s = 0;
        if (cols == GR && !ep.IsDequant)
        {
            // The common case: whole 8×8 blocks to int32, transposed in registers.
            int* c = ep.C + (long)t0 * n + r0;
            for (; s + 8 <= tokens; s += 8)
                Store8x8(tile + s, pitch, k, c + (long)s * n, n);
            if (s >= tokens)
                return;
        }
        byte* oRaw = stackalloc byte[9 * 32];
        var o = (Vector256<int>*)(((nint)oRaw + 31) & ~(nint)31);
        bool full = cols == GR;
        for (; s < tokens; s += 8)
        {
            TransposePitch(tile + s, pitch, o);
            int count = Math.Min(8, tokens - s);
            for (int t = 0; t < count; t++)
            {
                int row = t0 + s + t;
                Vector256<int> v = Avx2.Subtract(o[t], k);
                if (!ep.IsDequant)
                {
                    int* c = ep.C + (long)row * n + r0;
                    if (full)
                    {
                        Avx.Store(c, v);
                    }
                    else
                    {
                        for (int j = 0; j < cols; j++)
                            c[j] = v.GetElement(j);
                    }
                    continue;
                }
                float* y = ep.Y + (long)row * n + r0;
                float sa = ep.AScale[row];
                if (full)
                {
                    Vector256<float> f = Avx.Multiply(Avx.Multiply(Avx.ConvertToVector256Single(v), Vector256.Create(sa)),
                        Avx.LoadVector256(ep.BScale + r0));
                    if (ep.Bias != null)
                        f = Avx.Add(f, Avx.LoadVector256(ep.Bias + r0));
                    Avx.Store(y, f);
                }
                else
                {
                    for (int j = 0; j < cols; j++)
                        y[j] = Int8GemmSimd.Dequant(v.GetElement(j), sa, ep.BScale[r0 + j], ep.Bias == null ? 0f : ep.Bias[r0 + j], ep.Bias != null);
                }
            }
        }
    }

    /// <summary>Stores a float tile: Y[t, r0+c] = acc (+ bias[r0+c]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void StoreFloat(float* tile, int t0, int tokens, int r0, int cols, int n, float* y, float* bias)
    {
        // For each 8-token block, all groups side by side: each output row gets cols·4 contiguous bytes
        // at once. Group by group, the 32 token rows got 32-byte pieces n·4 bytes apart (one L1 set when
        // n·4 is a multiple of 4 KiB), as the int8 store did before (see StoreGroups).
        byte* oRaw = stackalloc byte[9 * 32];
        var o = (Vector256<int>*)(((nint)oRaw + 31) & ~(nint)31);
        for (int s = 0; s < tokens; s += 8)
        {
            int count = Math.Min(8, tokens - s);
            for (int h = 0; h < cols; h += GR)
                StoreFloatBlock(tile + (long)h * TB + s, o, t0 + s, count, r0 + h, Math.Min(GR, cols - h), n, y, bias);
        }
    }

    /// <summary>One block of 8 rows of W × <paramref name="count"/> tokens of the tile (pitch TB), transposed, plus the bias, to Y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFloatBlock(float* block, Vector256<int>* o, int t0, int count, int r0, int cols, int n, float* y, float* bias)
    {
        TransposePitch((int*)block, TB, o);
        bool full = cols == GR;
        Vector256<float> bv = bias != null && full ? Avx.LoadVector256(bias + r0) : Vector256<float>.Zero;
        for (int t = 0; t < count; t++)
        {
            float* yr = y + (long)(t0 + t) * n + r0;
            Vector256<float> v = o[t].AsSingle();
            if (full)
            {
                Avx.Store(yr, bias == null ? v : Avx.Add(v, bv));
            }
            else
            {
                for (int j = 0; j < cols; j++)
                    yr[j] = bias == null ? v.GetElement(j) : v.GetElement(j) + bias[r0 + j];
            }
        }
    }
}
