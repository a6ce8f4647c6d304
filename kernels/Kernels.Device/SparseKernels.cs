using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// The stored elements of one row of a sparse weight matrix, whatever the layout: a row's elements are
/// the indices <c>[Begin(row), Limit(row))</c>, each with a column (or −1 for padding outside the matrix,
/// which the kernels skip) and a value. Elements come in storage order: increasing column for CSR;
/// block after block, then increasing column inside the block for BSR; group after group, first then
/// second kept value for 2:4.
/// </summary>
/// <typeparam name="T">The value type (sbyte or float).</typeparam>
public interface ISparseRows<T>
    where T : unmanaged
{
    /// <summary>The first element of <paramref name="row"/>.</summary>
    int Begin(int row);

    /// <summary>One past the last element of <paramref name="row"/>.</summary>
    int Limit(int row);

    /// <summary>The column of element <paramref name="e"/> of <paramref name="row"/>, or −1 for padding.</summary>
    int Column(int row, int e);

    /// <summary>The value of element <paramref name="e"/> of <paramref name="row"/>.</summary>
    T Value(int row, int e);
}

/// <summary>CSR rows: <c>RowPointers[rows+1]</c>, <c>ColumnIndices[nnz]</c>, <c>Values[nnz]</c>.</summary>
/// <typeparam name="T">The value type.</typeparam>
public struct CsrRows<T> : ISparseRows<T>
    where T : unmanaged
{
    /// <summary>Row pointers.</summary>
    public ArrayView<int> RowPointers;

    /// <summary>Column of each value.</summary>
    public ArrayView<int> ColumnIndices;

    /// <summary>The values.</summary>
    public ArrayView<T> Values;

    /// <inheritdoc />
    public readonly int Begin(int row) => RowPointers[row];

    /// <inheritdoc />
    public readonly int Limit(int row) => RowPointers[row + 1];

    /// <inheritdoc />
    public readonly int Column(int row, int e) => ColumnIndices[e];

    /// <inheritdoc />
    public readonly T Value(int row, int e) => Values[e];
}

/// <summary>
/// BSR rows: row r lies in block row r / BlockRows; its elements are the BlockColumns values of its line
/// in each block of that block row (element e: block RowPointers-relative e / BlockColumns, column e % BlockColumns).
/// </summary>
/// <typeparam name="T">The value type.</typeparam>
public struct BsrRows<T> : ISparseRows<T>
    where T : unmanaged
{
    /// <summary>Block-row pointers (ceil(rows/BlockRows) + 1).</summary>
    public ArrayView<int> RowPointers;

    /// <summary>Block column of each block.</summary>
    public ArrayView<int> ColumnIndices;

    /// <summary>Blocks of BlockRows×BlockColumns values, row-major inside a block.</summary>
    public ArrayView<T> Values;

    /// <summary>Block height.</summary>
    public int BlockRows;

    /// <summary>Block width.</summary>
    public int BlockColumns;

    /// <summary>Columns of the matrix (padding beyond is skipped).</summary>
    public int Columns;

    /// <inheritdoc />
    public readonly int Begin(int row) => RowPointers[row / BlockRows] * BlockColumns;

    /// <inheritdoc />
    public readonly int Limit(int row) => RowPointers[row / BlockRows + 1] * BlockColumns;

    /// <inheritdoc />
    public readonly int Column(int row, int e)
    {
        int col = ColumnIndices[e / BlockColumns] * BlockColumns + e % BlockColumns;
        return col < Columns ? col : -1;
    }

    /// <inheritdoc />
    public readonly T Value(int row, int e)
    {
        int block = e / BlockColumns;
        return Values[((long)block * BlockRows + row % BlockRows) * BlockColumns + e % BlockColumns];
    }
}

/// <summary>2:4 rows: <c>Values[rows·groups·2]</c> and <c>Meta[rows·groups]</c> (bits 0-1 first position, 2-3 second).</summary>
/// <typeparam name="T">The value type.</typeparam>
public struct TwoFourRows<T> : ISparseRows<T>
    where T : unmanaged
{
    /// <summary>Two kept values per group.</summary>
    public ArrayView<T> Values;

    /// <summary>One metadata byte per group.</summary>
    public ArrayView<byte> Meta;

    /// <summary>Groups of 4 columns per row, ceil(Columns/4).</summary>
    public int Groups;

    /// <summary>Columns of the matrix (positions beyond are skipped).</summary>
    public int Columns;

    /// <inheritdoc />
    public readonly int Begin(int row) => row * Groups * 2;

    /// <inheritdoc />
    public readonly int Limit(int row) => (row + 1) * Groups * 2;

    /// <inheritdoc />
    public readonly int Column(int row, int e)
    {
        int at = e >> 1;
        int meta = Meta[at];
        int position = (e & 1) == 0 ? meta & 3 : (meta >> 2) & 3;
        int col = (at - row * Groups) * 4 + position;
        return col < Columns ? col : -1;
    }

    /// <inheritdoc />
    public readonly T Value(int row, int e) => Values[e];
}

/// <summary>The float32 output of the sparse GEMM: <c>Y[token·Ldy + row] = acc (+ Bias[row])</c>.</summary>
public struct SparseFloatOutput
{
    /// <summary>The output view, m×n row-major.</summary>
    public ArrayView<float> Y;

    /// <summary>Per-output-channel bias; read only when <see cref="HasBias"/> is non-zero.</summary>
    public ArrayView<float> Bias;

    /// <summary>Non-zero when a bias is added.</summary>
    public int HasBias;

    /// <summary>Elements between two rows of Y (n).</summary>
    public int Ldy;

    /// <summary>Stores output element (<paramref name="token"/>, <paramref name="row"/>).</summary>
    public readonly void Store(int token, int row, float acc)
    {
        float value = acc;
        if (HasBias != 0)
            value += Bias[row];
        Y[(long)token * Ldy + row] = value;
    }
}

/// <summary>
/// Device code of the sparse × dense products <c>Y[m, n] = Σ_k X[m, k]·W[n, k]</c> with W sparse
/// (<see cref="ISparseRows{T}"/>) and X dense activations: int8 with int32 accumulation through the dense
/// GEMM's <see cref="IGemmEpilogue"/> (so the dequantized result is bit-identical), and float32.
/// </summary>
/// <remarks>
/// Two shapes of kernel: for general m, X is first transposed to Xᵀ (k×m) and one thread computes one
/// output, the threads of a group taking consecutive tokens of the same weight row, so they read
/// <c>Xᵀ[col, token..]</c> coalesced while the weight values are the same for all (a broadcast). For
/// small m (decode, m ≤ <see cref="SmallM"/>) one group of <see cref="Lanes"/> threads computes one output:
/// the lanes split the row's elements (lane l takes elements l, l + Lanes, …) and lane 0 adds the
/// partial sums in lane order. Float32 summation order: general kernel, the row's elements in storage
/// order from 0; small kernel, each lane's elements in storage order, then the lanes 0, 1, …; the bias last.
/// </remarks>
public static class SparseKernels
{
    /// <summary>The largest m that uses the small-m kernels.</summary>
    public const int SmallM = 16;

    /// <summary>Threads per group of the small-m kernels (one output per group).</summary>
    public const int Lanes = 32;

    /// <summary>
    /// <c>xt[col·m + token] = x[token·k + col]</c>. Launched implicitly grouped over (m, k).
    /// </summary>
    /// <param name="index">(token, column).</param>
    /// <param name="x">X, m×k row-major.</param>
    /// <param name="xt">Xᵀ, k×m row-major.</param>
    /// <param name="m">Rows of X.</param>
    /// <param name="k">Columns of X.</param>
    public static void Transpose<T>(Index2D index, ArrayView<T> x, ArrayView<T> xt, int m, int k)
        where T : unmanaged =>
        xt[(long)index.Y * m + index.X] = x[(long)index.X * k + index.Y];

    /// <summary>int8, general m: one thread per output. Launched implicitly grouped over (m, n).</summary>
    /// <param name="index">(token, weight row).</param>
    /// <param name="w">The sparse weights.</param>
    /// <param name="xt">Xᵀ, k×m.</param>
    /// <param name="m">Tokens.</param>
    /// <param name="epilogue">Where the result goes (row = token, col = weight row, batch 0).</param>
    public static void Int8General<TRows, TEpilogue>(Index2D index, TRows w, ArrayView<sbyte> xt, int m, TEpilogue epilogue)
        where TRows : struct, ISparseRows<sbyte>
        where TEpilogue : struct, IGemmEpilogue
    {
        int token = index.X;
        int row = index.Y;
        int acc = 0;
        int end = w.Limit(row);
        for (int e = w.Begin(row); e < end; e++)
        {
            int col = w.Column(row, e);
            if (col >= 0)
                acc += xt[(long)col * m + token] * w.Value(row, e);
        }
        epilogue.Store(0, token, row, acc);
    }

    /// <summary>float32, general m: one thread per output. Launched implicitly grouped over (m, n).</summary>
    /// <param name="index">(token, weight row).</param>
    /// <param name="w">The sparse weights.</param>
    /// <param name="xt">Xᵀ, k×m.</param>
    /// <param name="m">Tokens.</param>
    /// <param name="output">Where the result goes.</param>
    public static void Float32General<TRows>(Index2D index, TRows w, ArrayView<float> xt, int m, SparseFloatOutput output)
        where TRows : struct, ISparseRows<float>
    {
        int token = index.X;
        int row = index.Y;
        float acc = 0;
        int end = w.Limit(row);
        for (int e = w.Begin(row); e < end; e++)
        {
            int col = w.Column(row, e);
            if (col >= 0)
                acc += xt[(long)col * m + token] * w.Value(row, e);
        }
        output.Store(token, row, acc);
    }

    /// <summary>int8, small m: one group of <see cref="Lanes"/> threads per output. Grid (n, m), group (Lanes, 1).</summary>
    /// <param name="w">The sparse weights.</param>
    /// <param name="x">X, m×k row-major.</param>
    /// <param name="k">Columns of X.</param>
    /// <param name="epilogue">Where the result goes (row = token, col = weight row, batch 0).</param>
    public static void Int8Small<TRows, TEpilogue>(TRows w, ArrayView<sbyte> x, int k, TEpilogue epilogue)
        where TRows : struct, ISparseRows<sbyte>
        where TEpilogue : struct, IGemmEpilogue
    {
        var partial = SharedMemory.Allocate<int>(Lanes);
        int lane = Group.IdxX;
        int row = Grid.IdxX;
        int token = Grid.IdxY;
        long xRow = (long)token * k;
        int acc = 0;
        int end = w.Limit(row);
        for (int e = w.Begin(row) + lane; e < end; e += Lanes)
        {
            int col = w.Column(row, e);
            if (col >= 0)
                acc += x[xRow + col] * w.Value(row, e);
        }
        partial[lane] = acc;
        Group.Barrier();
        if (lane == 0)
        {
            int sum = 0;
            for (int l = 0; l < Lanes; l++)
                sum += partial[l];
            epilogue.Store(0, token, row, sum);
        }
    }

    /// <summary>float32, small m: one group of <see cref="Lanes"/> threads per output. Grid (n, m), group (Lanes, 1).</summary>
    /// <param name="w">The sparse weights.</param>
    /// <param name="x">X, m×k row-major.</param>
    /// <param name="k">Columns of X.</param>
    /// <param name="output">Where the result goes.</param>
    public static void Float32Small<TRows>(TRows w, ArrayView<float> x, int k, SparseFloatOutput output)
        where TRows : struct, ISparseRows<float>
    {
        var partial = SharedMemory.Allocate<float>(Lanes);
        int lane = Group.IdxX;
        int row = Grid.IdxX;
        int token = Grid.IdxY;
        long xRow = (long)token * k;
        float acc = 0;
        int end = w.Limit(row);
        for (int e = w.Begin(row) + lane; e < end; e += Lanes)
        {
            int col = w.Column(row, e);
            if (col >= 0)
                acc += x[xRow + col] * w.Value(row, e);
        }
        partial[lane] = acc;
        Group.Barrier();
        if (lane == 0)
        {
            float sum = 0;
            for (int l = 0; l < Lanes; l++)
                sum += partial[l];
            output.Store(token, row, sum);
        }
    }
}
