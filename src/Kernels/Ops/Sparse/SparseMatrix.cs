using System.Numerics;
using System.Runtime.InteropServices;
using Kernels.Backends.Simd;
using Kernels.Simd;

namespace Kernels;

/// <summary>
/// An immutable sparse weight matrix (rows = output channels n, columns = k, the layout of a linear
/// layer) in one of the <see cref="SparseFormat"/> layouts, on the host. Build it with the static
/// methods of <see cref="SparseMatrix"/> (int8 values) or <see cref="SparseMatrixF32"/> (float32 values).
/// </summary>
/// <typeparam name="T">The value type: <see cref="sbyte"/> or <see cref="float"/>.</typeparam>
public abstract class SparseMatrix<T>
    where T : unmanaged, INumberBase<T>
{
    private protected SparseMatrix(SparseParts<T> parts)
    {
        Parts = parts;
        int nonZeros = 0;
        SparseLayout.ForEach(parts, (_, _, v) => nonZeros += T.IsZero(v) ? 0 : 1);
        NonZeros = nonZeros;
    }

    private SparseSimdPlanCache? _simdPlans;

    /// <summary>The storage layout.</summary>
    public SparseFormat Format => Parts.Format;

    /// <summary>Rows (n, output channels).</summary>
    public int Rows => Parts.Rows;

    /// <summary>Columns (k, input features).</summary>
    public int Columns => Parts.Columns;

    /// <summary>Number of stored values that are not zero (padding and explicit zeros excluded).</summary>
    public int NonZeros { get; }

    /// <summary>Number of stored values (<see cref="Values"/>.Length), zeros and padding included.</summary>
    public int StoredValues => Parts.Values.Length;

    /// <summary>BSR block height; 1 for the other formats.</summary>
    public int BlockRows => Parts.BlockRows;

    /// <summary>BSR block width; 1 for the other formats.</summary>
    public int BlockColumns => Parts.BlockColumns;

    /// <summary>CSR: Rows + 1 pointers; BSR: ceil(Rows/BlockRows) + 1 pointers; 2:4: empty.</summary>
    public ReadOnlySpan<int> RowPointers => Parts.RowPointers;

    /// <summary>CSR: the column of each value; BSR: the block column of each block; 2:4: empty.</summary>
    public ReadOnlySpan<int> ColumnIndices => Parts.ColumnIndices;

    /// <summary>The stored values in the layout of <see cref="Format"/> (see <see cref="SparseFormat"/>).</summary>
    public ReadOnlySpan<T> Values => Parts.Values;

    /// <summary>2:4: one metadata byte per group of 4 columns of a row (positions of the kept values); empty otherwise.</summary>
    public ReadOnlySpan<byte> Meta => Parts.Meta;

    internal SparseParts<T> Parts { get; }

    /// <summary>The matrix as a dense row-major Rows×Columns array.</summary>
    public T[] ToDense() => SparseLayout.ToDense(Parts);

    /// <summary>
    /// The matrix as raw pointers for the CPU kernels. The arrays are on the pinned object heap: the
    /// pointers stay valid while this object is alive (keep it alive across the call, e.g. with
    /// <see cref="GC.KeepAlive"/>).
    /// </summary>
    internal unsafe SparseWeights Weights => SparseLayout.Weights(
        Format, Rows, Columns, BlockRows, BlockColumns,
        Address(Parts.RowPointers), Address(Parts.ColumnIndices), Address(Parts.Values), Address(Parts.Meta));

    /// <summary>
    /// The prepared CPU plan of this matrix for <paramref name="level"/> (made once, kept with the matrix,
    /// freed when it is collected). Keep the matrix alive while the plan is used.
    /// </summary>
    internal SparseSimdPlan SimdPlan(SimdLevel level) =>
        LazyInitializer.EnsureInitialized(ref _simdPlans).Get(Weights, level, typeof(T) == typeof(float));

    private static unsafe void* Address<TElement>(TElement[] pinned)
        where TElement : unmanaged =>
        Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));
}

/// <summary>
/// A sparse int8 weight matrix (e.g. pruned with <see cref="Pruning"/> and quantized with
/// <see cref="Pruning.QuantizePerChannel"/>), for <see cref="KernelSession.SparseInt8Gemm(SparseMatrix, ReadOnlySpan{sbyte}, int)"/>.
/// Immutable: the factories copy their input.
/// </summary>
public sealed class SparseMatrix : SparseMatrix<sbyte>
{
    private SparseMatrix(SparseParts<sbyte> parts)
        : base(parts)
    {
    }

    /// <summary>
    /// Compresses a dense row-major rows×cols matrix: CSR stores every non-zero; BSR stores every
    /// 4×4 block holding a non-zero (see the overload for other block shapes); 2:4 requires at most
    /// 2 non-zeros in every group of 4 columns (prune with <see cref="Pruning.TwoFour"/>) and stores
    /// them, padded with zeros at the lowest free positions.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, the length does not match, or (2:4) a group holds more than 2 non-zeros.</exception>
    public static SparseMatrix FromDense(ReadOnlySpan<sbyte> w, int rows, int cols, SparseFormat format) =>
        FromDense(w, rows, cols, format, Block(format), Block(format));

    /// <summary>As <see cref="FromDense(ReadOnlySpan{sbyte}, int, int, SparseFormat)"/> with the BSR block shape given (1×1 for the other formats).</summary>
    public static SparseMatrix FromDense(ReadOnlySpan<sbyte> w, int rows, int cols, SparseFormat format, int blockRows, int blockColumns) =>
        new(SparseLayout.FromDense(w, rows, cols, format, blockRows, blockColumns));

    /// <summary>A CSR matrix from its arrays (copied), validated: see <see cref="SparseFormat.Csr"/>.</summary>
    /// <exception cref="ArgumentException">The structure is malformed; the message names the array, the position, what was expected and what came.</exception>
    public static SparseMatrix FromCsr(int rows, int cols, int[] rowPointers, int[] columnIndices, sbyte[] values) =>
        new(SparseLayout.FromCsr(rows, cols, rowPointers, columnIndices, values));

    /// <summary>A BSR matrix from its arrays (copied), validated: see <see cref="SparseFormat.Bsr"/> (padding of edge blocks must be zero).</summary>
    /// <exception cref="ArgumentException">The structure is malformed.</exception>
    public static SparseMatrix FromBsr(int rows, int cols, int blockRows, int blockColumns, int[] rowPointers, int[] columnIndices, sbyte[] values) =>
        new(SparseLayout.FromBsr(rows, cols, blockRows, blockColumns, rowPointers, columnIndices, values));

    /// <summary>A 2:4 matrix from its arrays (copied), validated: see <see cref="SparseFormat.TwoFour"/> (values at positions beyond the last column must be zero).</summary>
    /// <exception cref="ArgumentException">The structure is malformed.</exception>
    public static SparseMatrix FromTwoFour(int rows, int cols, sbyte[] values, byte[] meta) =>
        new(SparseLayout.FromTwoFour(rows, cols, values, meta));

    /// <summary>The same matrix in another format (through the dense matrix; BSR gets 4×4 blocks).</summary>
    public SparseMatrix ConvertTo(SparseFormat format) => FromDense(ToDense(), Rows, Columns, format);

    /// <summary>The same matrix in another format with a block shape (BSR; 1×1 for the others).</summary>
    public SparseMatrix ConvertTo(SparseFormat format, int blockRows, int blockColumns) =>
        FromDense(ToDense(), Rows, Columns, format, blockRows, blockColumns);

    internal static int Block(SparseFormat format) => format == SparseFormat.Bsr ? SparseLayout.DefaultBlock : 1;
}

/// <summary>
/// A sparse float32 weight matrix (e.g. pruned with <see cref="Pruning"/>), for
/// <see cref="KernelSession.SparseGemm(SparseMatrixF32, ReadOnlySpan{float}, int, ReadOnlySpan{float})"/>.
/// Immutable: the factories copy their input. Values must be finite.
/// </summary>
public sealed class SparseMatrixF32 : SparseMatrix<float>
{
    private SparseMatrixF32(SparseParts<float> parts)
        : base(parts)
    {
    }

    /// <summary>As <see cref="SparseMatrix.FromDense(ReadOnlySpan{sbyte}, int, int, SparseFormat)"/>, for float32 values (±0 are zeros).</summary>
    public static SparseMatrixF32 FromDense(ReadOnlySpan<float> w, int rows, int cols, SparseFormat format) =>
        FromDense(w, rows, cols, format, SparseMatrix.Block(format), SparseMatrix.Block(format));

    /// <summary>As <see cref="FromDense(ReadOnlySpan{float}, int, int, SparseFormat)"/> with the BSR block shape given (1×1 for the other formats).</summary>
    public static SparseMatrixF32 FromDense(ReadOnlySpan<float> w, int rows, int cols, SparseFormat format, int blockRows, int blockColumns) =>
        new(SparseLayout.FromDense(w, rows, cols, format, blockRows, blockColumns));

    /// <summary>A CSR matrix from its arrays (copied), validated.</summary>
    public static SparseMatrixF32 FromCsr(int rows, int cols, int[] rowPointers, int[] columnIndices, float[] values) =>
        new(SparseLayout.FromCsr(rows, cols, rowPointers, columnIndices, values));

    /// <summary>A BSR matrix from its arrays (copied), validated.</summary>
    public static SparseMatrixF32 FromBsr(int rows, int cols, int blockRows, int blockColumns, int[] rowPointers, int[] columnIndices, float[] values) =>
        new(SparseLayout.FromBsr(rows, cols, blockRows, blockColumns, rowPointers, columnIndices, values));

    /// <summary>A 2:4 matrix from its arrays (copied), validated.</summary>
    public static SparseMatrixF32 FromTwoFour(int rows, int cols, float[] values, byte[] meta) =>
        new(SparseLayout.FromTwoFour(rows, cols, values, meta));

    /// <summary>The same matrix in another format (through the dense matrix; BSR gets 4×4 blocks).</summary>
    public SparseMatrixF32 ConvertTo(SparseFormat format) => FromDense(ToDense(), Rows, Columns, format);

    /// <summary>The same matrix in another format with a block shape (BSR; 1×1 for the others).</summary>
    public SparseMatrixF32 ConvertTo(SparseFormat format, int blockRows, int blockColumns) =>
        FromDense(ToDense(), Rows, Columns, format, blockRows, blockColumns);
}
