namespace Kernels;

/// <summary>Argument validation with messages that name the argument, the expectation and what came.</summary>
internal static class Check
{
    /// <summary>The largest k for which an int32 sum of k products of int8 values cannot overflow (16384·k ≤ 2³¹−1).</summary>
    public const int MaxK = 131071;

    /// <summary>The largest grid extent in y and z that every backend accepts.</summary>
    public const int MaxBatch = 65535;

    public static void Positive(int value, string name)
    {
        if (value < 1)
            throw new ArgumentOutOfRangeException(name, value, $"{name}: expected ≥ 1, got {value}.");
    }

    public static void GemmShape(int m, int n, int k)
    {
        Positive(m, nameof(m));
        Positive(n, nameof(n));
        Positive(k, nameof(k));
        if (k > MaxK)
            throw new ArgumentOutOfRangeException(nameof(k), k,
                $"k: expected ≤ {MaxK} so that int32 accumulation of int8 products (|a·b| ≤ 16384) cannot overflow, got {k}.");
    }

    public static void Batch(int batchCount)
    {
        Positive(batchCount, nameof(batchCount));
        if (batchCount > MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(batchCount), batchCount, $"batchCount: expected ≤ {MaxBatch}, got {batchCount}.");
    }

    /// <remarks>Expected lengths are 128-bit so that products and strided extents of 32- and 64-bit sizes cannot overflow.</remarks>
    public static void ExactLength(long actual, Int128 expected, string name, string formula)
    {
        if (actual != expected)
            throw new ArgumentException($"{name}: expected length {formula} = {expected}, got {actual}.", name);
    }

    public static void MinLength(long actual, Int128 expected, string name, string formula)
    {
        if (actual < expected)
            throw new ArgumentException($"{name}: expected length ≥ {formula} = {expected}, got {actual}.", name);
    }

    public static void Positive(long value, string name)
    {
        if (value < 1)
            throw new ArgumentOutOfRangeException(name, value, $"{name}: expected ≥ 1, got {value}.");
    }

    /// <summary>A length check: exactly <paramref name="expected"/> (host arrays) or at least (device buffers, which may be longer).</summary>
    public static void Length(long actual, Int128 expected, string name, string formula, bool exact)
    {
        if (exact)
            ExactLength(actual, expected, name, formula);
        else
            MinLength(actual, expected, name, formula);
    }

    /// <summary>A normalization epsilon: finite and &gt; 0.</summary>
    public static void Epsilon(float eps, string name)
    {
        if (!float.IsFinite(eps) || eps <= 0)
            throw new ArgumentOutOfRangeException(name, eps, $"{name}: expected a finite value > 0, got {eps}.");
    }

    /// <summary>A rotary head dimension: even, 2..<see cref="RopeShape.MaxHeadDim"/>.</summary>
    public static void HeadDim(int headDim, string name)
    {
        if (headDim < 2 || headDim > RopeShape.MaxHeadDim || (headDim & 1) != 0)
            throw new ArgumentOutOfRangeException(name, headDim, $"{name}: expected an even value in 2..{RopeShape.MaxHeadDim}, got {headDim}.");
    }

    public static void NonNegative(long value, string name)
    {
        if (value < 0)
            throw new ArgumentOutOfRangeException(name, value, $"{name}: expected ≥ 0, got {value}.");
    }

    public static void Finite(ReadOnlySpan<float> values, string name)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                throw new ArgumentException($"{name}: expected finite values, got {values[i]} at index {i}.", name);
        }
    }

    /// <summary>The number of elements m·n as an array length, or a clear error when it cannot be one.</summary>
    public static int ArrayLength(Int128 count, string what)
    {
        if (count > Array.MaxLength)
            throw new ArgumentException($"{what}: the result would hold {count} elements, more than a .NET array can ({Array.MaxLength}); use the device-buffer API.");
        return (int)count;
    }

    /// <summary><see cref="Buffer{T}"/> for each named buffer, in order.</summary>
    public static void Buffers<T>(KernelSession session, params ReadOnlySpan<(DeviceBuffer<T>? Buffer, string Name)> buffers)
        where T : unmanaged
    {
        foreach ((DeviceBuffer<T>? buffer, string name) in buffers)
            Buffer(buffer, session, name);
    }

    public static void Buffer<T>(DeviceBuffer<T>? buffer, KernelSession session, string name)
        where T : unmanaged
    {
        if (buffer is null)
            throw new ArgumentNullException(name, $"{name}: expected a device buffer, got null.");
        if (buffer.IsDisposed)
            throw new ArgumentException($"{name}: expected a live device buffer, got one that was disposed.", name);
        if (!ReferenceEquals(buffer.Session, session))
            throw new ArgumentException($"{name}: expected a buffer of this session ({session.DeviceName}), got one of another session.", name);
    }

    /// <summary>Validates an attention call: shape, options, lengths and (decode) key lengths.</summary>
    public static void Attention(
        AttentionShape shape, AttentionOptions options, long qLength, long kLength, long vLength,
        ReadOnlySpan<int> keyLengths, bool decode)
    {
        Positive(shape.Batch, "shape.Batch");
        Positive(shape.Heads, "shape.Heads");
        Positive(shape.KvHeads, "shape.KvHeads");
        Positive(shape.QueryLength, "shape.QueryLength");
        Positive(shape.KeyLength, "shape.KeyLength");
        if (shape.HeadDim < 1 || shape.HeadDim > AttentionShape.MaxHeadDim)
            throw new ArgumentOutOfRangeException(nameof(shape), shape.HeadDim,
                $"shape.HeadDim: expected 1..{AttentionShape.MaxHeadDim}, got {shape.HeadDim}.");
        if (shape.Heads % shape.KvHeads != 0)
            throw new ArgumentException(
                $"shape: expected Heads to be a multiple of KvHeads, got Heads = {shape.Heads}, KvHeads = {shape.KvHeads}.", nameof(shape));
        if (options.Scale is { } scale && (!float.IsFinite(scale) || scale == 0))
            throw new ArgumentException($"options.Scale: expected a finite, non-zero value, got {scale}.", nameof(options));
        if (options.Window < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Window, $"options.Window: expected ≥ 0 (0: none), got {options.Window}.");
        // In 128 bits: the shape's element counts (64-bit properties) are used only once they are known to fit.
        Int128 queryElements = (Int128)shape.Batch * shape.Heads * shape.QueryLength * shape.HeadDim;
        Int128 keyElements = (Int128)shape.Batch * shape.KvHeads * shape.KeyLength * shape.HeadDim;
        if (queryElements > long.MaxValue || keyElements > long.MaxValue)
            throw new ArgumentException(
                $"shape: expected Batch·Heads·QueryLength·HeadDim and Batch·KvHeads·KeyLength·HeadDim below 2⁶³, got {queryElements} and {keyElements}.", nameof(shape));
        ExactLength(qLength, queryElements, "q", "Batch·Heads·QueryLength·HeadDim");
        ExactLength(kLength, keyElements, "k", "Batch·KvHeads·KeyLength·HeadDim");
        ExactLength(vLength, keyElements, "v", "Batch·KvHeads·KeyLength·HeadDim");
        if (!decode)
            return;
        ExactLength(keyLengths.Length, shape.Batch, "cacheLengths", "Batch");
        for (int b = 0; b < keyLengths.Length; b++)
        {
            if (keyLengths[b] < 0 || keyLengths[b] > shape.KeyLength)
#pragma warning disable CA2208 // Named after the public API's argument, which this helper receives as keyLengths.
                throw new ArgumentOutOfRangeException("cacheLengths", keyLengths[b],
                    $"cacheLengths: expected 0..{shape.KeyLength} (the cache capacity, shape.KeyLength), got {keyLengths[b]} at index {b}.");
#pragma warning restore CA2208
        }
    }

    /// <summary>Key splits of a decode call: 0 (automatic) or more.</summary>
    internal static void Splits(int splits)
    {
        if (splits < 0)
            throw new ArgumentOutOfRangeException(nameof(splits), splits, $"splits: expected ≥ 0 (0: automatic), got {splits}.");
    }

    /// <summary>
    /// The scales and bias of a dequantizing epilogue: <paramref name="rowScale"/> one per output row (m),
    /// <paramref name="columnScale"/> one per output column (n), <paramref name="bias"/> n values or none; all finite.
    /// </summary>
    public static void DequantScales(
        ReadOnlySpan<float> rowScale, string rowName, ReadOnlySpan<float> columnScale, string columnName, ReadOnlySpan<float> bias,
        int m, int n, string nText)
    {
        ExactLength(rowScale.Length, m, rowName, "m");
        ExactLength(columnScale.Length, n, columnName, nText);
        if (!bias.IsEmpty)
            ExactLength(bias.Length, n, "bias", $"{nText} (or 0 for no bias)");
        Finite(rowScale, rowName);
        Finite(columnScale, columnName);
        Finite(bias, "bias");
    }

    /// <summary>
    /// The aliasing rule: an output may not be an input. Device buffers are separate allocations (there
    /// are no views into another buffer), so two buffers overlap exactly when they are the same object.
    /// </summary>
    public static void NotAliased<T>(DeviceBuffer<T> output, string outputName, DeviceBuffer<T>? input, string inputName)
        where T : unmanaged
    {
        if (ReferenceEquals(output, input))
            throw new ArgumentException(
                $"{outputName}: expected a buffer that is not also an input (outputs may not overlap inputs), got the same buffer as {inputName}.",
                outputName);
    }

    /// <summary>The aliasing rule for host memory: an output span may not overlap an input span.</summary>
    public static void NotAliased<T>(ReadOnlySpan<T> output, string outputName, ReadOnlySpan<T> input, string inputName)
    {
        if (output.Overlaps(input))
            throw new ArgumentException(
                $"{outputName}: expected memory that is not also an input (outputs may not overlap inputs), got memory that overlaps {inputName}.",
                outputName);
    }

    /// <summary>The most elements a BSR block may hold (64×1024, 256×256, …): edge blocks are zero-padded, so a block may exceed the matrix, within this.</summary>
    public const int MaxBlockElements = 65536;

    /// <summary>A BSR block shape: both extents ≥ 1 and at most <see cref="MaxBlockElements"/> elements per block.</summary>
    public static void BsrBlock(int blockRows, int blockColumns)
    {
        Positive(blockRows, nameof(blockRows));
        Positive(blockColumns, nameof(blockColumns));
        long elements = (long)blockRows * blockColumns;
        if (elements > MaxBlockElements)
            throw new ArgumentException(
                $"blockRows·blockColumns: expected at most {MaxBlockElements} elements per block, got {blockRows}·{blockColumns} = {elements}.",
                blockRows >= blockColumns ? nameof(blockRows) : nameof(blockColumns));
    }

    /// <summary>
    /// A pruning block: both extents ≥ 1, and not larger than the matrix in both dimensions (such a block
    /// is no tiling of the matrix: the whole matrix would be one block, kept or dropped whole). A block larger
    /// in one dimension is an edge block, as in BSR.
    /// </summary>
    public static void PruningBlock(int blockRows, int blockCols, int rows, int cols)
    {
        Positive(blockRows, nameof(blockRows));
        Positive(blockCols, nameof(blockCols));
        if (blockRows > rows && blockCols > cols)
            throw new ArgumentException(
                $"blockRows, blockCols: expected a block that fits the {rows}×{cols} matrix in at least one dimension (else the whole matrix is one block and nothing is pruned selectively), got {blockRows}×{blockCols}.",
                nameof(blockRows));
    }
}
