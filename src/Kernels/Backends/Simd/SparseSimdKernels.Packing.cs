namespace Kernels.Backends.Simd;

// Packing: X into token panels for the row kernels.
internal static unsafe partial class SparseSimdKernels
{
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
}
