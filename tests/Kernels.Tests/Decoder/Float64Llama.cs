using Kernels.Decoder;

namespace Kernels.Tests.Decoder;

/// <summary>
/// A float64 reference forward pass of the Llama network <see cref="SyntheticWeights"/> describes, on the host:
/// weights dequantized exactly (<c>W[r, c] = Values[r·Columns + c]·RowScales[r]</c>), activations in double, no
/// activation quantization. Per layer: RMSNorm (eps = NormEps) → q/k/v → RoPE on adjacent pairs (theta = RopeTheta,
/// no scaling) → causal grouped-query attention (query head h reads KV head h / (Heads / KvHeads), scale 1/√HeadDim)
/// → attn_output → residual → RMSNorm → silu(gate)·up → ffn_down → residual; then the final RMSNorm and the untied head.
/// With <c>quantizeActivations</c>, every projection's input row is first rounded as Kernels.Decoder does (per token,
/// <c>scale = max|x|/127</c>, <c>q = round_half_even(x/scale)</c>, the library's one rule), in double.
/// </summary>
public static class Float64Llama
{
    /// <summary>The last token's logits (Vocab values) after running <paramref name="tokens"/> from position 0.</summary>
    public static double[] Logits(SyntheticWeights w, int[] tokens, bool quantizeActivations = false)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Length == 0)
            throw new ArgumentException("tokens: expected at least one token.", nameof(tokens));
        LlamaConfig c = w.Config;
        c.Validate();
        int n = tokens.Length, d = c.HeadDim, group = c.Heads / c.KvHeads;
        double[] In(double[] row) => quantizeActivations ? QuantizeRow(row) : row;

        Int8Weight embedding = w.Embedding();
        var x = new double[n][];
        for (int t = 0; t < n; t++)
        {
            if ((uint)tokens[t] >= (uint)c.Vocab)
                throw new ArgumentException($"tokens[{t}]: expected an id in [0, {c.Vocab}), got {tokens[t]}.", nameof(tokens));
            x[t] = new double[c.Hidden];
            for (int i = 0; i < c.Hidden; i++)
                x[t][i] = embedding.Values[tokens[t] * c.Hidden + i] * (double)embedding.RowScales[tokens[t]];
        }

        // RoPE angles: position p, pair i rotates by p·θ^(−2i/d).
        var inverseFrequency = new double[d / 2];
        for (int i = 0; i < d / 2; i++)
            inverseFrequency[i] = Math.Pow(c.RopeTheta, -2.0 * i / d);

        for (int l = 0; l < c.Layers; l++)
        {
            LayerWeights lw = w.Layer(l);
            var q = new double[n][];
            var k = new double[n][];
            var v = new double[n][];
            for (int t = 0; t < n; t++)
            {
                double[] h = In(RmsNorm(x[t], lw.AttnNorm, c.NormEps));
                q[t] = MatVec(lw.Q, h);
                k[t] = MatVec(lw.K, h);
                v[t] = MatVec(lw.V, h);
                Rope(q[t], c.Heads, d, t, inverseFrequency);
                Rope(k[t], c.KvHeads, d, t, inverseFrequency);
            }
            double scale = 1.0 / Math.Sqrt(d);
            for (int t = 0; t < n; t++)
            {
                var attention = new double[c.QueryFeatures];
                var scores = new double[t + 1];
                for (int head = 0; head < c.Heads; head++)
                {
                    int kvHead = head / group;
                    double max = double.NegativeInfinity;
                    for (int s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (int i = 0; i < d; i++)
                            dot += q[t][head * d + i] * k[s][kvHead * d + i];
                        scores[s] = dot * scale;
                        max = Math.Max(max, scores[s]);
                    }
                    double sum = 0;
                    for (int s = 0; s <= t; s++)
                        sum += scores[s] = Math.Exp(scores[s] - max);
                    for (int s = 0; s <= t; s++)
                    {
                        double p = scores[s] / sum;
                        for (int i = 0; i < d; i++)
                            attention[head * d + i] += p * v[s][kvHead * d + i];
                    }
                }
                double[] o = MatVec(lw.O, In(attention));
                for (int i = 0; i < c.Hidden; i++)
                    x[t][i] += o[i];

                double[] h2 = In(RmsNorm(x[t], lw.FfnNorm, c.NormEps));
                double[] gate = MatVec(lw.Gate, h2);
                double[] up = MatVec(lw.Up, h2);
                for (int i = 0; i < gate.Length; i++)
                    gate[i] = gate[i] / (1 + Math.Exp(-gate[i])) * up[i];
                double[] down = MatVec(lw.Down, In(gate));
                for (int i = 0; i < c.Hidden; i++)
                    x[t][i] += down[i];
            }
        }
        return MatVec(w.Output(), In(RmsNorm(x[n - 1], w.OutputNorm(), c.NormEps)));
    }

    /// <summary>One row rounded to int8 with one scale and back: <c>round_half_even(x/scale)·scale</c>, <c>scale = max|x|/127</c>.</summary>
    public static double[] QuantizeRow(double[] x)
    {
        ArgumentNullException.ThrowIfNull(x);
        double max = 0;
        foreach (double value in x)
            max = Math.Max(max, Math.Abs(value));
        var y = new double[x.Length];
        if (max == 0)
            return y;
        double scale = max / Quantization.MaxQuantized;
        for (int i = 0; i < x.Length; i++)
            y[i] = Math.Clamp(Math.Round(x[i] / scale, MidpointRounding.ToEven), -Quantization.MaxQuantized, Quantization.MaxQuantized) * scale;
        return y;
    }

    /// <summary>x / √(mean(x²) + eps) · weight.</summary>
    public static double[] RmsNorm(double[] x, float[] weight, double eps)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        double sumSquares = 0;
        foreach (double value in x)
            sumSquares += value * value;
        double r = 1 / Math.Sqrt(sumSquares / x.Length + eps);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
            y[i] = x[i] * r * weight[i];
        return y;
    }

    /// <summary>W·x with W dequantized: y[r] = RowScales[r]·Σ Values[r, c]·x[c].</summary>
    public static double[] MatVec(Int8Weight w, double[] x)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(x);
        if (x.Length != w.Columns)
            throw new ArgumentException($"x: expected {w.Columns} values, got {x.Length}.", nameof(x));
        var y = new double[w.Rows];
        for (int r = 0; r < w.Rows; r++)
        {
            ReadOnlySpan<sbyte> row = w.Values.AsSpan(r * w.Columns, w.Columns);
            double dot = 0;
            for (int c = 0; c < row.Length; c++)
                dot += row[c] * x[c];
            y[r] = dot * w.RowScales[r];
        }
        return y;
    }

    /// <summary>Rotates each head's adjacent pairs (2i, 2i+1) by position·inverseFrequency[i].</summary>
    private static void Rope(double[] x, int heads, int d, int position, double[] inverseFrequency)
    {
        for (int head = 0; head < heads; head++)
        {
            for (int i = 0; i < d / 2; i++)
            {
                double angle = position * inverseFrequency[i];
                double cos = Math.Cos(angle), sin = Math.Sin(angle);
                int a = head * d + 2 * i;
                double x0 = x[a], x1 = x[a + 1];
                x[a] = x0 * cos - x1 * sin;
                x[a + 1] = x0 * sin + x1 * cos;
            }
        }
    }
}
