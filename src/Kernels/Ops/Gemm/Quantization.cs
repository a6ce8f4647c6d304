namespace Kernels;

/// <summary>Which values share one scale.</summary>
public enum QuantizationGranularity
{
    /// <summary>One scale for the whole matrix.</summary>
    PerTensor,

    /// <summary>One scale per row (per token for activations).</summary>
    PerRow,

    /// <summary>One scale per column (per input feature).</summary>
    PerColumn,
}

/// <summary>A symmetrically quantized int8 matrix: <c>value ≈ Values[i] · scale</c>.</summary>
/// <param name="Values">rows×columns int8 values, row-major, in [-127, 127].</param>
/// <param name="Scales">1, rows or columns scales (by <paramref name="Granularity"/>).</param>
/// <param name="Rows">Rows.</param>
/// <param name="Columns">Columns.</param>
/// <param name="Granularity">Which values share a scale.</param>
public sealed record QuantizedMatrix(sbyte[] Values, float[] Scales, int Rows, int Columns, QuantizationGranularity Granularity)
{
    /// <summary>The scale of element (<paramref name="row"/>, <paramref name="column"/>).</summary>
    public float ScaleAt(int row, int column) => Granularity switch
    {
        QuantizationGranularity.PerTensor => Scales[0],
        QuantizationGranularity.PerRow => Scales[row],
        _ => Scales[column],
    };
}

/// <summary>
/// Symmetric int8 quantization: <c>scale = max|x| / 127</c> over each group, <c>q = clamp(round_half_even(x / scale), −127, 127)</c>.
/// A group whose values are all zero gets scale 0 and values 0, so it dequantizes to exact zeros.
/// </summary>
public static class Quantization
{
    /// <summary>The largest quantized magnitude (−128 is not used, so the range is symmetric).</summary>
    public const int MaxQuantized = DeviceCode.LayerMath.MaxQuantized;

    /// <summary>Quantizes a row-major rows×columns float32 matrix.</summary>
    /// <exception cref="ArgumentException">A size is not positive, the length does not match, or a value is not finite.</exception>
    public static QuantizedMatrix Quantize(ReadOnlySpan<float> x, int rows, int columns, QuantizationGranularity granularity)
    {
        Check.Positive(rows, nameof(rows));
        Check.Positive(columns, nameof(columns));
        Check.ExactLength(x.Length, (long)rows * columns, nameof(x), $"rows·columns = {rows}·{columns}");
        Check.Finite(x, nameof(x));

        int groups = granularity switch
        {
            QuantizationGranularity.PerTensor => 1,
            QuantizationGranularity.PerRow => rows,
            QuantizationGranularity.PerColumn => columns,
            _ => throw new ArgumentOutOfRangeException(nameof(granularity), granularity, "granularity: unknown value."),
        };
        var maxAbs = new float[groups];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < columns; c++)
            {
                int g = Group(granularity, r, c);
                maxAbs[g] = Math.Max(maxAbs[g], Math.Abs(x[r * columns + c]));
            }
        }

        var scales = new float[groups];
        for (int g = 0; g < groups; g++)
            scales[g] = maxAbs[g] / MaxQuantized;

        var values = new sbyte[x.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < columns; c++)
                values[r * columns + c] = QuantizeValue(x[r * columns + c], scales[Group(granularity, r, c)]);
        }
        return new QuantizedMatrix(values, scales, rows, columns, granularity);
    }

    /// <summary>Quantizes one value with a given scale (0 for an all-zero group).</summary>
    public static sbyte QuantizeValue(float value, float scale)
    {
        if (scale == 0)
            return 0;
        double q = Math.Round(value / (double)scale, MidpointRounding.ToEven);
        return (sbyte)Math.Clamp(q, -MaxQuantized, MaxQuantized);
    }

    /// <summary>Dequantizes back to float32: <c>Values[i] · scale</c>.</summary>
    /// <exception cref="ArgumentException">The matrix is inconsistent: null arrays, sizes not positive, or lengths that do not match its shape and granularity.</exception>
    public static float[] Dequantize(QuantizedMatrix q)
    {
        ArgumentNullException.ThrowIfNull(q);
        if (q.Values is null || q.Scales is null)
            throw new ArgumentException($"q: expected Values and Scales arrays, got {(q.Values is null ? "null Values" : "null Scales")}.", nameof(q));
        if (q.Rows < 1 || q.Columns < 1)
            throw new ArgumentException($"q: expected Rows and Columns ≥ 1, got {q.Rows}×{q.Columns}.", nameof(q));
        if (q.Values.Length != (long)q.Rows * q.Columns)
            throw new ArgumentException($"q: expected Values.Length = Rows·Columns = {(long)q.Rows * q.Columns}, got {q.Values.Length}.", nameof(q));
        long scales = q.Granularity switch
        {
            QuantizationGranularity.PerTensor => 1,
            QuantizationGranularity.PerRow => q.Rows,
            QuantizationGranularity.PerColumn => q.Columns,
            _ => throw new ArgumentException($"q: expected a QuantizationGranularity value, got {(int)q.Granularity}.", nameof(q)),
        };
        if (q.Scales.Length != scales)
            throw new ArgumentException($"q: expected Scales.Length = {scales} for {q.Granularity} scales of a {q.Rows}×{q.Columns} matrix, got {q.Scales.Length}.", nameof(q));
        var x = new float[q.Values.Length];
        for (int r = 0; r < q.Rows; r++)
        {
            for (int c = 0; c < q.Columns; c++)
                x[r * q.Columns + c] = q.Values[r * q.Columns + c] * q.ScaleAt(r, c);
        }
        return x;
    }

    private static int Group(QuantizationGranularity granularity, int row, int column) => granularity switch
    {
        QuantizationGranularity.PerTensor => 0,
        QuantizationGranularity.PerRow => row,
        _ => column,
    };
}
