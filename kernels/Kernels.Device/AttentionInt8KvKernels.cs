using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// Device code of decode attention over an int8 KV cache: the tiling, online softmax and partial layout of
/// <see cref="AttentionKernels.Forward"/> (so <see cref="AttentionKernels.Combine"/> merges its splits), with
/// K and V read as sbyte [B, KvH, Sk, D] and dequantized (× the token's float scale, [B, KvH, Sk]) while
/// they are staged into the shared tile.
/// </summary>
public static class AttentionInt8KvKernels
{
    /// <summary>
    /// The fused kernel. Explicitly grouped: grid (⌈(Heads/KvHeads)·QueryLength / BlockRows⌉, Batch·KvHeads, Splits),
    /// group (GroupSize, 1, 1), dynamic shared memory of <see cref="AttentionKernels.SharedFloats"/> floats.
    /// </summary>
    /// <param name="q">Q [B, H, Sq, D].</param>
    /// <param name="k">K [B, KvH, Sk, D], int8.</param>
    /// <param name="kScale">K scales [B, KvH, Sk].</param>
    /// <param name="v">V [B, KvH, Sk, D], int8.</param>
    /// <param name="vScale">V scales [B, KvH, Sk].</param>
    /// <param name="output">The output [B, H, Sq, D] (written when Splits = 1).</param>
    /// <param name="partials">[Splits, B, H, Sq, D + 2] partial results (written when Splits &gt; 1).</param>
    /// <param name="lengths">B key lengths when ragged.</param>
    /// <param name="p">Scalar parameters.</param>
    public static void Forward(
        ArrayView<float> q, ArrayView<sbyte> k, ArrayView<float> kScale, ArrayView<sbyte> v, ArrayView<float> vScale,
        ArrayView<float> output, ArrayView<float> partials, ArrayView<int> lengths, AttentionParams p)
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
        long tokenBase = ((long)b * p.KvHeads + kvh) * p.KeyLength;
        long kBase = tokenBase * d;

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
                value = q[((((long)b * p.Heads + qh) * p.QueryLength) + qi) * d + x];
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
                sKV[(j * pitch) + x] = k[kBase + ((long)(k0 + j) * d) + x] * kScale[tokenBase + k0 + j];
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
                sKV[(j * pitch) + x] = v[kBase + ((long)(k0 + j) * d) + x] * vScale[tokenBase + k0 + j];
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
            if (c0) output[o + lane] = a0 * inv;
            if (c1) output[o + lane + 32] = a1 * inv;
            if (c2) output[o + lane + 64] = a2 * inv;
            if (c3) output[o + lane + 96] = a3 * inv;
            if (c4) output[o + lane + 128] = a4 * inv;
            if (c5) output[o + lane + 160] = a5 * inv;
            if (c6) output[o + lane + 192] = a6 * inv;
            if (c7) output[o + lane + 224] = a7 * inv;
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
