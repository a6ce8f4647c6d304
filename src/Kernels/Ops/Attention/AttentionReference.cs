namespace Kernels;

public static partial class HostReference
{
    /// <summary>
    /// Attention in float64, the semantics every attention kernel follows: for sequence b, query head h
    /// (key/value head h / (Heads / KvHeads)) and query i at position p = i + (len_b − QueryLength), with
    /// len_b = keyLengths[b] (or KeyLength), the visible keys are j &lt; len_b with j ≤ p when causal,
    /// p − Window &lt; j when Window &gt; 0, and also j &lt; p + Window when Window &gt; 0 and not causal.
    /// out = Σ_j softmax_j(scale·q·k_j)·v_j. A query with no visible key outputs zeros. NaN inputs
    /// propagate to the rows they reach.
    /// </summary>
    public static double[] Attention(
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape,
        AttentionOptions? options = null, ReadOnlySpan<int> keyLengths = default)
    {
        options ??= AttentionOptions.Default;
        Check.Attention(shape, options, q.Length, k.Length, v.Length, keyLengths, decode: !keyLengths.IsEmpty);
        var output = new double[shape.QueryElements];
        for (int b = 0; b < shape.Batch; b++)
        {
            for (int h = 0; h < shape.Heads; h++)
            {
                for (int i = 0; i < shape.QueryLength; i++)
                {
                    AttentionRow(q, k, v, shape, options, keyLengths, b, h, i)
                        .CopyTo(output.AsSpan((int)((((long)b * shape.Heads + h) * shape.QueryLength + i) * shape.HeadDim)));
                }
            }
        }
        return output;
    }

    /// <summary>
    /// One output row (sequence <paramref name="b"/>, head <paramref name="h"/>, query <paramref name="i"/>) of
    /// <see cref="Attention"/>, for checking large problems on a sample of rows. Arguments are not validated.
    /// </summary>
    public static double[] AttentionRow(
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape,
        AttentionOptions options, ReadOnlySpan<int> keyLengths, int b, int h, int i)
    {
        ArgumentNullException.ThrowIfNull(options);
        int d = shape.HeadDim, sq = shape.QueryLength, sk = shape.KeyLength, group = shape.Heads / shape.KvHeads;
        double scale = options.Scale ?? 1.0 / Math.Sqrt(d);
        int len = keyLengths.IsEmpty ? sk : keyLengths[b];
        long kBase = ((long)b * shape.KvHeads + h / group) * sk * d;
        long qBase = (((long)b * shape.Heads + h) * sq + i) * d;
        int p = i + len - sq;
        var row = new double[d];
        var scores = new double[len];
        double max = double.NegativeInfinity;
        bool any = false, nan = false;
        for (int j = 0; j < len; j++)
        {
            if (!Visible(j, p, shape.Causal, options.Window))
                continue;
            double s = 0;
            for (int x = 0; x < d; x++)
                s += (double)q[(int)(qBase + x)] * k[(int)(kBase + (long)j * d + x)];
            s *= scale;
            scores[j] = s;
            nan |= double.IsNaN(s);
            max = Math.Max(max, s);
            any = true;
        }
        if (!any)
            return row; // zeros
        double sum = 0;
        for (int j = 0; j < len; j++)
        {
            if (!Visible(j, p, shape.Causal, options.Window))
                continue;
            double w = nan ? double.NaN : Math.Exp(scores[j] - max);
            sum += w;
            for (int x = 0; x < d; x++)
                row[x] += w * v[(int)(kBase + (long)j * d + x)];
        }
        for (int x = 0; x < d; x++)
            row[x] /= sum;
        return row;
    }

    /// <summary>Whether key <paramref name="j"/> is visible from query position <paramref name="p"/>.</summary>
    /// <remarks>The library's one visibility rule, <see cref="Kernels.DeviceCode.AttentionMask"/>.</remarks>
    public static bool Visible(int j, int p, bool causal, int window) =>
        Kernels.DeviceCode.AttentionMask.Visible(j, p, causal, window);
}
