namespace Kernels;

/// <summary>The per-row int8 quantization of a float64 reference: values, scales and the exact quotients y/scale.</summary>
/// <param name="Values">q [rows, n]: clamp(round_half_even(y/scale), −127, 127), 0 in all-zero rows.</param>
/// <param name="Scales">scale [rows] = max|y|/127 in float64.</param>
/// <param name="Quotients">y/scale [rows, n] in float64 (0 in all-zero rows): how near each value is to a rounding tie.</param>
public sealed record QuantizedReference(sbyte[] Values, double[] Scales, double[] Quotients);

/// <summary>The float64 result of a RoPE + KV-cache write: q and both caches (the inputs' caches with the new positions written).</summary>
/// <param name="Q">q [Batch, Heads, Tokens, HeadDim].</param>
/// <param name="KCache">kCache [Batch, KvHeads, Capacity, HeadDim].</param>
/// <param name="VCache">vCache [Batch, KvHeads, Capacity, HeadDim].</param>
public sealed record RopeReference(double[] Q, double[] KCache, double[] VCache);

public static partial class HostReference
{
    /// <summary>RMSNorm in float64: <c>y = x / √(Σx²/n + eps) · weight</c> per row.</summary>
    public static double[] RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int rows, int n, double eps)
    {
        Check.ExactLength(x.Length, (long)rows * n, nameof(x), "rows·n");
        Check.ExactLength(weight.Length, n, nameof(weight), "n");
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int c = 0; c < n; c++)
                sum += (double)x[r * n + c] * x[r * n + c];
            double factor = 1 / Math.Sqrt(sum / n + eps);
            for (int c = 0; c < n; c++)
                y[r * n + c] = x[r * n + c] * factor * weight[c];
        }
        return y;
    }

    /// <summary>SwiGLU in float64: <c>y[r, j] = g / (1 + e^−g) · u</c>, g = gateUp[r, j], u = gateUp[r, f + j].</summary>
    public static double[] SwiGlu(ReadOnlySpan<float> gateUp, int rows, int f)
    {
        Check.ExactLength(gateUp.Length, (long)rows * 2 * f, nameof(gateUp), "rows·2f");
        var y = new double[(long)rows * f];
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < f; j++)
            {
                double g = gateUp[r * 2 * f + j];
                y[r * f + j] = g / (1 + Math.Exp(-g)) * gateUp[r * 2 * f + f + j];
            }
        }
        return y;
    }

    /// <summary>Head-major x [heads, rows, n/heads] as token-major rows [rows, n] (heads = 1: x itself).</summary>
    public static double[] MergeHeads(ReadOnlySpan<float> x, int rows, int n, int heads)
    {
        Check.ExactLength(x.Length, (long)rows * n, nameof(x), "rows·n");
        int d = n / heads;
        var y = new double[x.Length];
        for (int h = 0; h < heads; h++)
        {
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < d; c++)
                    y[r * n + h * d + c] = x[(h * rows + r) * d + c];
            }
        }
        return y;
    }

    /// <summary>The quantization rule of <see cref="Quantization"/> per row of a float64 matrix, in float64.</summary>
    public static QuantizedReference QuantizeRows(ReadOnlySpan<double> y, int rows, int n)
    {
        Check.ExactLength(y.Length, (long)rows * n, nameof(y), "rows·n");
        var q = new sbyte[y.Length];
        var scales = new double[rows];
        var quotients = new double[y.Length];
        for (int r = 0; r < rows; r++)
        {
            double max = 0;
            for (int c = 0; c < n; c++)
                max = Math.Max(max, Math.Abs(y[r * n + c]));
            double scale = max / Quantization.MaxQuantized;
            scales[r] = scale;
            for (int c = 0; c < n; c++)
            {
                double t = scale == 0 ? 0 : y[r * n + c] / scale;
                quotients[r * n + c] = t;
                q[r * n + c] = (sbyte)Math.Clamp(Math.Round(t, MidpointRounding.ToEven), -Quantization.MaxQuantized, Quantization.MaxQuantized);
            }
        }
        return new QuantizedReference(q, scales, quotients);
    }

    /// <summary>x + y in float64.</summary>
    public static double[] Add(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        Check.ExactLength(y.Length, x.Length, nameof(y), "x.Length");
        var sum = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
            sum[i] = (double)x[i] + y[i];
        return sum;
    }

    /// <summary>The int8 embedding lookup in float64: <c>y[r, :] = table[tokens[r], :] · rowScale[tokens[r]]</c>.</summary>
    public static double[] EmbedInt8(ReadOnlySpan<sbyte> table, ReadOnlySpan<float> rowScale, ReadOnlySpan<int> tokens, int n)
    {
        var y = new double[(long)tokens.Length * n];
        for (int r = 0; r < tokens.Length; r++)
        {
            for (int c = 0; c < n; c++)
                y[r * n + c] = table[tokens[r] * n + c] * (double)rowScale[tokens[r]];
        }
        return y;
    }

    /// <summary>
    /// RoPE with the KV-cache write in float64, with the float cos/sin of <paramref name="table"/>
    /// (<see cref="RopeTable.Compute"/>): the caches are copies of the inputs with positions Start .. Start + Tokens − 1 written.
    /// </summary>
    public static RopeReference RopeKvCache(ReadOnlySpan<float> qkv, ReadOnlySpan<float> table, ReadOnlySpan<float> kCache, ReadOnlySpan<float> vCache, RopeShape shape)
    {
        (int batch, int tokens, int heads, int kvHeads, int d, int capacity, int start) = shape;
        int slots = heads + 2 * kvHeads;
        Check.ExactLength(qkv.Length, (long)batch * tokens * slots * d, nameof(qkv), "Batch·Tokens·(Heads + 2·KvHeads)·HeadDim");
        var q = new double[(long)batch * heads * tokens * d];
        double[] k = [.. kCache.ToArray().Select(v => (double)v)];
        double[] v = [.. vCache.ToArray().Select(x => (double)x)];
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < tokens; t++)
            {
                int p = start + t;
                for (int h = 0; h < slots; h++)
                {
                    for (int i = 0; i < d / 2; i++)
                    {
                        double a = qkv[((b * tokens + t) * slots + h) * d + 2 * i];
                        double c = qkv[((b * tokens + t) * slots + h) * d + 2 * i + 1];
                        double cos = table[(p * (d / 2) + i) * 2], sin = table[(p * (d / 2) + i) * 2 + 1];
                        double first = a * cos - c * sin, second = a * sin + c * cos;
                        if (h < heads)
                        {
                            q[((b * heads + h) * tokens + t) * d + 2 * i] = first;
                            q[((b * heads + h) * tokens + t) * d + 2 * i + 1] = second;
                        }
                        else if (h < heads + kvHeads)
                        {
                            k[((b * kvHeads + h - heads) * capacity + p) * d + 2 * i] = first;
                            k[((b * kvHeads + h - heads) * capacity + p) * d + 2 * i + 1] = second;
                        }
                        else
                        {
                            v[((b * kvHeads + h - heads - kvHeads) * capacity + p) * d + 2 * i] = a;
                            v[((b * kvHeads + h - heads - kvHeads) * capacity + p) * d + 2 * i + 1] = c;
                        }
                    }
                }
            }
        }
        return new RopeReference(q, k, v);
    }
}
