using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// Device code of half-precision attention: the tiling, online softmax and partial layout of
/// <see cref="AttentionKernels.Forward"/>, with Q, K and V read as IEEE binary16 bits (ushort, so no fp16
/// capability is needed on OpenCL) and converted to float32 while they are staged into the shared tiles;
/// scores, softmax and accumulators stay float32 and the output is rounded to half once (nearest even).
/// </summary>
public static class AttentionHalfKernels
{
    /// <summary>
    /// The fused kernel. Explicitly grouped: grid (⌈(Heads/KvHeads)·QueryLength / BlockRows⌉, Batch·KvHeads, Splits),
    /// group (GroupSize, 1, 1), dynamic shared memory of <see cref="AttentionKernels.SharedFloats"/> floats.
    /// </summary>
    /// <param name="q">Q [B, H, Sq, D], half bits.</param>
    /// <param name="k">K [B, KvH, Sk, D], half bits.</param>
    /// <param name="v">V [B, KvH, Sk, D], half bits.</param>
    /// <param name="output">The output [B, H, Sq, D] as half bits (written when Splits = 1).</param>
    /// <param name="partials">[Splits, B, H, Sq, D + 2] float partial results (written when Splits &gt; 1; <see cref="Combine"/> merges them).</param>
    /// <param name="lengths">B key lengths when ragged.</param>
    /// <param name="p">Scalar parameters.</param>
    public static void Forward(
        ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v,
        ArrayView<ushort> output, ArrayView<float> partials, ArrayView<int> lengths, AttentionParams p)
    {
        int d = p.HeadDim;
        int pitch = AttentionKernels.PitchFor(d);
        int tileKeys = p.TileKeys;
        ArrayView<float> shared = SharedMemory.GetDynamic<float>();
        ArrayView<float> sQ = shared.SubView(0, AttentionKernels.BlockRows * pitch);
        ArrayView<float> sKV = shared.SubView(AttentionKernels.BlockRows * pitch, tileKeys * pitch);
        ArrayView<float> sS = shared.SubView((AttentionKernels.BlockRows + tileKeys) * pitch, AttentionKernels.BlockRows * tileKeys);
        ArrayView<float> sP = shared.SubView(((AttentionKernels.BlockRows + tileKeys) * pitch) + (AttentionKernels.BlockRows * tileKeys), AttentionKernels.BlockRows * tileKeys);

        int tid = Group.IdxX;
        int r = tid / AttentionKernels.Lanes;
        int lane = tid % AttentionKernels.Lanes;
        int b = Grid.IdxY / p.KvHeads;
        int kvh = Grid.IdxY % p.KvHeads;
        int split = Grid.IdxZ;
        int groupHeads = p.Heads / p.KvHeads;
        int rowsPerKv = groupHeads * p.QueryLength;
        int rowBase = Grid.IdxX * AttentionKernels.BlockRows;
        int row = rowBase + r;
        bool rowValid = row < rowsPerKv;
        int rowC = rowValid ? row : rowsPerKv - 1;
        int h = (kvh * groupHeads) + (rowC / p.QueryLength);
        int i = rowC % p.QueryLength;

        int len = p.Ragged != 0 ? lengths[b] : p.KeyLength;
        int pos = i + len - p.QueryLength;
        long kBase = ((long)b * p.KvHeads + kvh) * p.KeyLength * d;

        // This split's keys, then the keys any row of the block can see (uniform over the group).
        int chunk = (len + p.Splits - 1) / p.Splits;
        int kStart = XMin(split * chunk, len);
        int kEnd = XMin(kStart + chunk, len);
        int lastRow = XMin(rowBase + AttentionKernels.BlockRows, rowsPerKv) - 1;
        int minP = int.MaxValue, maxP = int.MinValue;
        for (int rr = rowBase; rr <= lastRow; rr++)
        {
            int pr = (rr % p.QueryLength) + len - p.QueryLength;
            minP = XMin(minP, pr);
            maxP = XMax(maxP, pr);
        }
        int lo = kStart, hi = kEnd;
        if (p.Causal != 0)
            hi = XMin(hi, maxP + 1);
        if (p.Window > 0)
        {
            lo = XMax(lo, minP - p.Window + 1);
            if (p.Causal == 0)
                hi = XMin(hi, maxP + p.Window);
        }

        // Stage the block's query rows.
        for (int idx = tid; idx < AttentionKernels.BlockRows * d; idx += AttentionKernels.GroupSize)
        {
            int rr = idx / d;
            int x = idx - (rr * d);
            int qr = rowBase + rr;
            float value = 0;
            if (qr < rowsPerKv)
            {
                int qh = (kvh * groupHeads) + (qr / p.QueryLength);
                int qi = qr % p.QueryLength;
                value = HalfToFloat(q[((((long)b * p.Heads + qh) * p.QueryLength) + qi) * d + x]);
            }
            sQ[(rr * pitch) + x] = value;
        }

        bool c0 = lane < d, c1 = lane + 32 < d, c2 = lane + 64 < d, c3 = lane + 96 < d;
        bool c4 = lane + 128 < d, c5 = lane + 160 < d, c6 = lane + 192 < d, c7 = lane + 224 < d;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
        float m = float.NegativeInfinity;
        float lsum = 0; // this lane's share of the row's sum of weights
        int qOff = r * pitch;
        int rOff = r * tileKeys;

        for (int k0 = lo; k0 < hi; k0 += tileKeys)
        {
            int n = XMin(tileKeys, hi - k0);
            Group.Barrier(); // the previous tile's V and probabilities are consumed
            for (int idx = tid; idx < n * d; idx += AttentionKernels.GroupSize)
            {
                int j = idx / d;
                int x = idx - (j * d);
                sKV[(j * pitch) + x] = HalfToFloat(k[kBase + ((long)(k0 + j) * d) + x]);
            }
            Group.Barrier();

            // Scores of this lane's keys; invisible keys are −∞ (weight 0).
            for (int j = lane; j < tileKeys; j += AttentionKernels.Lanes)
            {
                float s = float.NegativeInfinity;
                int key = k0 + j;
                if (rowValid && j < n && Visible(key, pos, p.Causal != 0, p.Window))
                {
                    float dot = 0;
                    int kOff = j * pitch;
                    for (int x = 0; x < d; x++)
                        dot += sQ[qOff + x] * sKV[kOff + x];
                    s = dot * p.Scale;
                }
                sS[rOff + j] = s;
            }
            Group.Barrier();

            // Online softmax update (every lane of a row computes the same max and rescale factor).
            float mt = float.NegativeInfinity;
            for (int j = 0; j < tileKeys; j++)
                mt = MaxNaN(mt, sS[rOff + j]);
            float mNew = MaxNaN(m, mt);
            float alpha = m == mNew ? 1f : AttentionKernels.Exp(m - mNew);
            m = mNew;
            lsum *= alpha;
            for (int j = lane; j < tileKeys; j += AttentionKernels.Lanes)
            {
                float s = sS[rOff + j];
                float w = s == float.NegativeInfinity ? 0f : AttentionKernels.Exp(s - mNew);
                sP[rOff + j] = w;
                lsum += w;
            }
            for (int idx = tid; idx < n * d; idx += AttentionKernels.GroupSize)
            {
                int j = idx / d;
                int x = idx - (j * d);
                sKV[(j * pitch) + x] = HalfToFloat(v[kBase + ((long)(k0 + j) * d) + x]);
            }
            a0 *= alpha; a1 *= alpha; a2 *= alpha; a3 *= alpha;
            a4 *= alpha; a5 *= alpha; a6 *= alpha; a7 *= alpha;
            Group.Barrier();

            for (int j = 0; j < n; j++)
            {
                float w = sP[rOff + j];
                int vb = (j * pitch) + lane;
                if (c0) a0 += w * sKV[vb];
                if (c1) a1 += w * sKV[vb + 32];
                if (c2) a2 += w * sKV[vb + 64];
                if (c3) a3 += w * sKV[vb + 96];
                if (c4) a4 += w * sKV[vb + 128];
                if (c5) a5 += w * sKV[vb + 160];
                if (c6) a6 += w * sKV[vb + 192];
                if (c7) a7 += w * sKV[vb + 224];
            }
        }

        // The row's sum of weights: lanes' shares through shared memory, summed in one order by every lane.
        Group.Barrier();
        sS[rOff + lane] = lsum;
        Group.Barrier();
        float l = 0;
        for (int t = 0; t < AttentionKernels.Lanes; t++)
            l += sS[rOff + t];
        if (!rowValid)
            return;

        long outRow = (((long)b * p.Heads + h) * p.QueryLength) + i;
        if (p.Splits == 1)
        {
            // No visible key: l = 0 → zeros. NaN anywhere reaches l and the accumulators.
            float inv = l == 0 ? 0f : 1f / l;
            long o = outRow * d;
            if (l == 0)
            {
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0;
                inv = 1;
            }
            if (c0) output[o + lane] = FloatToHalf(a0 * inv);
            if (c1) output[o + lane + 32] = FloatToHalf(a1 * inv);
            if (c2) output[o + lane + 64] = FloatToHalf(a2 * inv);
            if (c3) output[o + lane + 96] = FloatToHalf(a3 * inv);
            if (c4) output[o + lane + 128] = FloatToHalf(a4 * inv);
            if (c5) output[o + lane + 160] = FloatToHalf(a5 * inv);
            if (c6) output[o + lane + 192] = FloatToHalf(a6 * inv);
            if (c7) output[o + lane + 224] = FloatToHalf(a7 * inv);
        }
        else
        {
            long rows = (long)p.Batch * p.Heads * p.QueryLength;
            long o = (((long)split * rows) + outRow) * AttentionKernels.PartialStride(d);
            if (c0) partials[o + lane] = a0;
            if (c1) partials[o + lane + 32] = a1;
            if (c2) partials[o + lane + 64] = a2;
            if (c3) partials[o + lane + 96] = a3;
            if (c4) partials[o + lane + 128] = a4;
            if (c5) partials[o + lane + 160] = a5;
            if (c6) partials[o + lane + 192] = a6;
            if (c7) partials[o + lane + 224] = a7;
            if (lane == 0)
            {
                partials[o + d] = m;
                partials[o + d + 1] = l;
            }
        }
    }

    /// <summary>
    /// Merges the split partials like <see cref="AttentionKernels.Combine"/> and writes the result as half bits
    /// (round to nearest even). Implicitly grouped over the Batch·Heads·QueryLength·HeadDim outputs.
    /// </summary>
    /// <param name="index">The output element.</param>
    /// <param name="partials">[Splits, rows, D + 2] partial results.</param>
    /// <param name="output">The output [rows, D] as IEEE binary16 bits.</param>
    /// <param name="rows">Batch·Heads·QueryLength.</param>
    /// <param name="headDim">D.</param>
    /// <param name="splits">The number of splits.</param>
    public static void Combine(Index1D index, ArrayView<float> partials, ArrayView<ushort> output, long rows, int headDim, int splits)
    {
        long e = index;
        long row = e / headDim;
        int x = (int)(e - (row * headDim));
        int stride = AttentionKernels.PartialStride(headDim);
        float mMax = float.NegativeInfinity;
        for (int s = 0; s < splits; s++)
            mMax = MaxNaN(mMax, partials[(((long)s * rows) + row) * stride + headDim]);
        if (mMax == float.NegativeInfinity)
        {
            output[e] = 0;
            return;
        }
        float num = 0, den = 0;
        for (int s = 0; s < splits; s++)
        {
            long o = (((long)s * rows) + row) * stride;
            float ms = partials[o + headDim];
            float w = ms == float.NegativeInfinity ? 0f : AttentionKernels.Exp(ms - mMax);
            num += w * partials[o + x];
            den += w * partials[o + headDim + 1];
        }
        output[e] = FloatToHalf(num / den);
    }

    /// <summary>IEEE binary16 bits to float (exact: every half is a float), including subnormals, ±∞ and NaN.</summary>
    /// <param name="h">The half's bits.</param>
    /// <returns>The value as a float.</returns>
    public static float HalfToFloat(ushort h)
    {
        int exponent = (h >> 10) & 0x1F;
        int mantissa = h & 0x3FF;
        bool negative = (h & 0x8000) != 0;
        if (exponent == 0)
        {
            // Zero or subnormal: mantissa · 2^-24, exact in float.
            float value = mantissa * 5.9604644775390625e-8f;
            return negative ? -value : value;
        }
        uint sign = negative ? 0x80000000u : 0u;
        uint bits = exponent == 0x1F
            ? sign | 0x7F800000u | ((uint)mantissa << 13)
            : sign | ((uint)(exponent + 112) << 23) | ((uint)mantissa << 13);
        return Interop.IntAsFloat(bits);
    }

    /// <summary>
    /// Float to IEEE binary16 bits, rounding to nearest even like <c>(System.Half)f</c>: overflow (|f| ≥ 65520) to ±∞,
    /// subnormal results rounded, NaN to a quiet NaN.
    /// </summary>
    /// <param name="f">The value.</param>
    /// <returns>The half's bits.</returns>
    public static ushort FloatToHalf(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000u;
        uint ax = x & 0x7FFFFFFFu;
        if (ax > 0x7F800000u)
            return (ushort)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu)); // NaN stays NaN (quiet, payload kept where it fits)
        if (ax >= 0x477FF000u)
            return (ushort)(sign | 0x7C00u); // ±∞ and |f| ≥ 65520 (rounds past the largest half)
        if (ax < 0x38800000u)
        {
            // |f| < 2^-14: a subnormal half; adding 0.5 (ulp 2^-24) rounds to nearest even at the half's ulp.
            float rounded = Interop.IntAsFloat(ax) + 0.5f;
            return (ushort)(sign | (Interop.FloatAsInt(rounded) - 0x3F000000u));
        }
        uint odd = (ax >> 13) & 1u;
        ax += 0xC8000FFFu + odd; // rebias the exponent (−112 · 2^23) and round to nearest even
        return (ushort)(sign | (ax >> 13));
    }

    /// <summary>Max that propagates NaN from either side.</summary>
    private static float MaxNaN(float a, float b) => a > b || float.IsNaN(a) ? a : b;

    private static bool Visible(int j, int pos, bool causal, int window)
    {
        if (causal && j > pos)
            return false;
        if (window > 0)
        {
            if (j <= pos - window)
                return false;
            if (!causal && j >= pos + window)
                return false;
        }
        return true;
    }

    private static int XMin(int a, int b) => a < b ? a : b;

    private static int XMax(int a, int b) => a > b ? a : b;
}
