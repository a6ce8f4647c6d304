using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>Scalar parameters of the attention kernels (plain data, passed by value).</summary>
public struct AttentionParams
{
    /// <summary>Sequences.</summary>
    public int Batch;

    /// <summary>Query heads.</summary>
    public int Heads;

    /// <summary>Key/value heads (Heads is a multiple).</summary>
    public int KvHeads;

    /// <summary>Query positions per sequence.</summary>
    public int QueryLength;

    /// <summary>Key positions per sequence (the cache capacity when ragged).</summary>
    public int KeyLength;

    /// <summary>Features per head, 1..256.</summary>
    public int HeadDim;

    /// <summary>1: causal mask aligned bottom-right; 0: none.</summary>
    public int Causal;

    /// <summary>Sliding window, 0 for none.</summary>
    public int Window;

    /// <summary>1: per-sequence key lengths are read from the lengths view.</summary>
    public int Ragged;

    /// <summary>Key splits (the grid's z extent); 1 writes the output directly, more write partials.</summary>
    public int Splits;

    /// <summary>Keys per shared-memory tile (a multiple of <see cref="AttentionKernels.Lanes"/>).</summary>
    public int TileKeys;

    /// <summary>Factor applied to q·k.</summary>
    public float Scale;
}

/// <summary>
/// Device code of fused attention: flash-style online softmax over key tiles staged in shared memory
/// (the score matrix is never stored), float32 accumulation, with an optional split along the keys
/// whose partial results a second kernel combines exactly.
/// </summary>
/// <remarks>
/// A group of <see cref="GroupSize"/> threads handles <see cref="BlockRows"/> query rows of one
/// (sequence, key/value head): the rows are the flattened (query head of the GQA group, query index)
/// pairs, so heads sharing a K/V head share its tiles (decode with GQA fills the group). Each row has
/// <see cref="Lanes"/> threads; lane t owns features t, t + 32, …, t + 224 (eight guarded registers, so
/// every head dimension 1..256 works), and scores keys t, t + 32, … of each tile.
/// </remarks>
public static class AttentionKernels
{
    /// <summary>Query rows per group.</summary>
    public const int BlockRows = 8;

    /// <summary>Threads per query row.</summary>
    public const int Lanes = 32;

    /// <summary>Threads per group.</summary>
    public const int GroupSize = BlockRows * Lanes;

    /// <summary>Keys per tile for a head dimension (shared memory stays under 48 KB).</summary>
    public static int TileKeysFor(int headDim) => headDim <= 128 ? 64 : 32;

    /// <summary>Row pitch in shared memory: odd, against bank conflicts.</summary>
    public static int PitchFor(int headDim) => (headDim & 1) == 0 ? headDim + 1 : headDim;

    /// <summary>Shared memory the fused kernel uses for a head dimension, in floats: Q rows, one K/V tile, scores and probabilities.</summary>
    public static int SharedFloats(int headDim)
    {
        int pitch = PitchFor(headDim);
        int tile = TileKeysFor(headDim);
        return (BlockRows * pitch) + (tile * pitch) + (2 * BlockRows * tile);
    }

    /// <summary>The largest head dimension <see cref="Forward"/> takes; <see cref="ForwardWide"/> takes the rest.</summary>
    public const int NarrowMaxHeadDim = 64;

    /// <summary>The static shared array of <see cref="Forward"/>: <see cref="SharedFloats"/> of head dimension 64 (22.3 KiB).</summary>
    public const int NarrowSharedFloats = (BlockRows * 65) + (64 * 65) + (2 * BlockRows * 64);

    /// <summary>The static shared array of <see cref="ForwardWide"/>: the largest <see cref="SharedFloats"/>, head dimension 256 (42.2 KiB).</summary>
    public const int WideSharedFloats = (BlockRows * 257) + (32 * 257) + (2 * BlockRows * 32);

    /// <summary>Floats per partial row: D unnormalized accumulators, the running max, the sum of weights.</summary>
    public static int PartialStride(int headDim) => headDim + 2;

    /// <summary>Max that propagates NaN from either side.</summary>
    /// <remarks>
    /// NaN is decided on the bits, never by a float comparison that ILGPU may invert. The obvious
    /// <c>a &gt; b || float.IsNaN(a) ? a : b</c> is if-converted by ILGPU 1.5.3 (depending on what else the
    /// context compiled before) into <c>(a &gt; b) | (!(a &gt; b) &amp; isnan(a))</c>, the negation becoming an
    /// *unordered* <c>a ≤ b</c>, and the OpenCL backend writes every float comparison as ordered C, so
    /// <c>!(NaN &gt; b)</c> came out false and a NaN score row came out as zeros (docs/opencl.md).
    /// </remarks>
    public static float MaxNaN(float a, float b)
    {
        float larger = a > b ? a : b;
        return IsNaNBits(a) | IsNaNBits(b) ? float.NaN : larger;
    }

    /// <summary>Whether <paramref name="x"/> is NaN, by its bits (an integer comparison, exact under any rewriting).</summary>
    public static bool IsNaNBits(float x) => (Interop.FloatAsInt(x) & 0x7FFFFFFFu) > 0x7F800000u;

    /// <summary>
    /// The fused kernel for head dimensions up to <see cref="NarrowMaxHeadDim"/>. Explicitly grouped: grid
    /// (⌈(Heads/KvHeads)·QueryLength / BlockRows⌉, Batch·KvHeads, Splits), group (GroupSize, 1, 1), no
    /// dynamic shared memory.
    /// </summary>
    /// <remarks>
    /// The shared tiles are a static array (<see cref="NarrowSharedFloats"/>), not ILGPU's dynamic shared
    /// memory: ILGPU 1.5.3's OpenCL backend keeps the pointer to the dynamic block in one program-scope
    /// variable that every work-group of the launch overwrites, so on a real OpenCL runtime a group could
    /// read and write another group's tiles (docs/opencl.md).
    /// </remarks>
    /// <param name="io">Where Q, K and V are read from and the output [B, H, Sq, D] goes (written when Splits = 1):
    /// float32, half bits or an int8 KV cache, converted to float32 at the loads.</param>
    /// <param name="partials">[Splits, B, H, Sq, D + 2] partial results (written when Splits &gt; 1).</param>
    /// <param name="lengths">B key lengths when ragged.</param>
    /// <param name="p">Scalar parameters.</param>
    public static void Forward<TIo>(TIo io, ArrayView<float> partials, ArrayView<int> lengths, AttentionParams p)
        where TIo : struct, IAttentionIo =>
        ForwardOn(SharedMemory.Allocate<float>(NarrowSharedFloats), io, partials, lengths, p);

    /// <summary>The fused kernel for every head dimension (1..256), as <see cref="Forward"/> with a <see cref="WideSharedFloats"/> array.</summary>
    /// <param name="io">Inputs and output.</param>
    /// <param name="partials">Split partials.</param>
    /// <param name="lengths">Key lengths when ragged.</param>
    /// <param name="p">Scalar parameters.</param>
    public static void ForwardWide<TIo>(TIo io, ArrayView<float> partials, ArrayView<int> lengths, AttentionParams p)
        where TIo : struct, IAttentionIo =>
        ForwardOn(SharedMemory.Allocate<float>(WideSharedFloats), io, partials, lengths, p);

    private static void ForwardOn<TIo>(ArrayView<float> shared, TIo io, ArrayView<float> partials, ArrayView<int> lengths, AttentionParams p)
        where TIo : struct, IAttentionIo
    {
        int d = p.HeadDim;
        int pitch = PitchFor(d);
        int tileKeys = p.TileKeys;
        ArrayView<float> sQ = shared.SubView(0, BlockRows * pitch);
        ArrayView<float> sKV = shared.SubView(BlockRows * pitch, tileKeys * pitch);
        ArrayView<float> sS = shared.SubView((BlockRows + tileKeys) * pitch, BlockRows * tileKeys);
        ArrayView<float> sP = shared.SubView(((BlockRows + tileKeys) * pitch) + (BlockRows * tileKeys), BlockRows * tileKeys);

        int tid = Group.IdxX;
        int r = tid / Lanes;
        int lane = tid % Lanes;
        int b = Grid.IdxY / p.KvHeads;
        int kvh = Grid.IdxY % p.KvHeads;
        int split = Grid.IdxZ;
        int groupHeads = p.Heads / p.KvHeads;
        int rowsPerKv = groupHeads * p.QueryLength;
        int rowBase = Grid.IdxX * BlockRows;
        int row = rowBase + r;
        bool rowValid = row < rowsPerKv;
        int rowC = rowValid ? row : rowsPerKv - 1;
        int h = (kvh * groupHeads) + (rowC / p.QueryLength);
        int i = rowC % p.QueryLength;

        int len = p.Ragged != 0 ? lengths[b] : p.KeyLength;
        int pos = i + len - p.QueryLength;
        long tokenBase = ((long)b * p.KvHeads + kvh) * p.KeyLength;

        // This split's keys, then the keys any row of the block can see (uniform over the group).
        int chunk = (len + p.Splits - 1) / p.Splits;
        int kStart = XMin(split * chunk, len);
        int kEnd = XMin(kStart + chunk, len);
        int lastRow = XMin(rowBase + BlockRows, rowsPerKv) - 1;
        int minP = int.MaxValue, maxP = int.MinValue;
        for (int rr = rowBase; rr <= lastRow; rr++)
        {
            int pr = (rr % p.QueryLength) + len - p.QueryLength;
            minP = XMin(minP, pr);
            maxP = XMax(maxP, pr);
        }
        bool causal = p.Causal != 0;
        int lo = XMax(kStart, AttentionMask.First(minP, p.Window));
        int hi = XMin(kEnd, AttentionMask.End(maxP, causal, p.Window));
        int rowFirst = AttentionMask.First(pos, p.Window), rowEnd = AttentionMask.End(pos, causal, p.Window);

        // Stage the block's query rows.
        for (int idx = tid; idx < BlockRows * d; idx += GroupSize)
        {
            int rr = idx / d;
            int x = idx - (rr * d);
            int qr = rowBase + rr;
            float value = 0;
            if (qr < rowsPerKv)
            {
                int qh = (kvh * groupHeads) + (qr / p.QueryLength);
                int qi = qr % p.QueryLength;
                value = io.Q(((((long)b * p.Heads + qh) * p.QueryLength) + qi) * d + x);
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
            for (int idx = tid; idx < n * d; idx += GroupSize)
            {
                int j = idx / d;
                int x = idx - (j * d);
                sKV[(j * pitch) + x] = io.K(tokenBase + k0 + j, d, x);
            }
            Group.Barrier();

            // Scores of this lane's keys; invisible keys are −∞ (weight 0).
            for (int j = lane; j < tileKeys; j += Lanes)
            {
                float s = float.NegativeInfinity;
                int key = k0 + j;
                if (rowValid && j < n && key >= rowFirst && key < rowEnd)
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
            float alpha = m == mNew ? 1f : Exp(m - mNew);
            m = mNew;
            lsum *= alpha;
            for (int j = lane; j < tileKeys; j += Lanes)
            {
                float s = sS[rOff + j];
                float w = s == float.NegativeInfinity ? 0f : Exp(s - mNew);
                sP[rOff + j] = w;
                lsum += w;
            }
            for (int idx = tid; idx < n * d; idx += GroupSize)
            {
                int j = idx / d;
                int x = idx - (j * d);
                sKV[(j * pitch) + x] = io.V(tokenBase + k0 + j, d, x);
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
        for (int t = 0; t < Lanes; t++)
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
            if (c0) io.Store(o + lane, a0 * inv);
            if (c1) io.Store(o + lane + 32, a1 * inv);
            if (c2) io.Store(o + lane + 64, a2 * inv);
            if (c3) io.Store(o + lane + 96, a3 * inv);
            if (c4) io.Store(o + lane + 128, a4 * inv);
            if (c5) io.Store(o + lane + 160, a5 * inv);
            if (c6) io.Store(o + lane + 192, a6 * inv);
            if (c7) io.Store(o + lane + 224, a7 * inv);
        }
        else
        {
            long rows = (long)p.Batch * p.Heads * p.QueryLength;
            long o = (((long)split * rows) + outRow) * PartialStride(d);
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
    /// Merges the split partials exactly: out = Σ_s e^(m_s − M)·acc_s / Σ_s e^(m_s − M)·l_s with M the
    /// largest m_s (NaN wins); no visible key in any split: zeros. Implicitly grouped over the output's elements.
    /// </summary>
    /// <param name="index">The output element.</param>
    /// <param name="partials">[Splits, rows, D + 2] partial results.</param>
    /// <param name="io">Where the output [rows, D] goes.</param>
    /// <param name="rows">B·H·Sq.</param>
    /// <param name="headDim">D.</param>
    /// <param name="splits">Splits.</param>
    public static void Combine<TIo>(Index1D index, ArrayView<float> partials, TIo io, long rows, int headDim, int splits)
        where TIo : struct, IAttentionIo
    {
        long e = index;
        long row = e / headDim;
        int x = (int)(e - (row * headDim));
        int stride = PartialStride(headDim);
        float mMax = float.NegativeInfinity;
        for (int s = 0; s < splits; s++)
            mMax = MaxNaN(mMax, partials[(((long)s * rows) + row) * stride + headDim]);
        if (mMax == float.NegativeInfinity)
        {
            io.Store(e, 0);
            return;
        }
        float num = 0, den = 0;
        for (int s = 0; s < splits; s++)
        {
            long o = (((long)s * rows) + row) * stride;
            float ms = partials[o + headDim];
            float w = ms == float.NegativeInfinity ? 0f : Exp(ms - mMax);
            num += w * partials[o + x];
            den += w * partials[o + headDim + 1];
        }
        io.Store(e, num / den);
    }

    private static int XMin(int a, int b) => a < b ? a : b;

    private static int XMax(int a, int b) => a > b ? a : b;

    /// <summary>
    /// e^x in plain float arithmetic (no intrinsic, so PTX and OpenCL need no Algorithms library): x = n·ln2 + r
    /// with |r| ≤ ln2/2 (ln2 in two parts), a degree-7 Taylor polynomial for e^r (truncation error &lt; 1e-8
    /// relative), and 2^n built in the exponent bits. NaN stays NaN, −∞ and x &lt; −87 give 0, x &gt; 88 gives +∞.
    /// </summary>
    public static float Exp(float x)
    {
        if (float.IsNaN(x))
            return x;
        if (x < -87f)
            return 0f;
        if (x > 88f)
            return float.PositiveInfinity;
        float t = x * 1.44269504f;
        int n = t >= 0 ? (int)(t + 0.5f) : (int)(t - 0.5f);
        float r = x - (n * 0.693145752f) - (n * 1.42860677e-6f);
        float e = 1f / 5040f;
        e = (e * r) + (1f / 720f);
        e = (e * r) + (1f / 120f);
        e = (e * r) + (1f / 24f);
        e = (e * r) + (1f / 6f);
        e = (e * r) + 0.5f;
        e = (e * r) + 1f;
        e = (e * r) + 1f;
        return e * Interop.IntAsFloat((uint)(n + 127) << 23);
    }
}
