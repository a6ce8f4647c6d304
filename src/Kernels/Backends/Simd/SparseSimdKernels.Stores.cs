namespace Kernels.Backends.Simd;

// Stores: tiles transposed in registers and written through the epilogue.
internal static unsafe partial class SparseSimdKernels
{
    /// <summary>o[t] = (src[0·pitch + t], …, src[7·pitch + t]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposePitch(int* src, long pitch, Vector256<int>* o) =>
        SimdOps.Transpose8x8((byte*)src, pitch * sizeof(int), out o[0], out o[1], out o[2], out o[3], out o[4], out o[5], out o[6], out o[7]);

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
        SimdOps.Transpose8x8((byte*)src, (long)pitch * sizeof(int), out Vector256<int> o0, out Vector256<int> o1, out Vector256<int> o2, out Vector256<int> o3,
            out Vector256<int> o4, out Vector256<int> o5, out Vector256<int> o6, out Vector256<int> o7);
        SimdOps.Store8(d, n, Avx2.Subtract(o0, k), Avx2.Subtract(o1, k), Avx2.Subtract(o2, k), Avx2.Subtract(o3, k),
            Avx2.Subtract(o4, k), Avx2.Subtract(o5, k), Avx2.Subtract(o6, k), Avx2.Subtract(o7, k));
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
