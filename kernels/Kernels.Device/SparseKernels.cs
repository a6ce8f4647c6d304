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

/// <summary>
/// The arithmetic and the output of a sparse product: how a product of an activation and a weight is
/// accumulated, how partial sums combine, and where a finished sum goes.
/// </summary>
/// <typeparam name="TValue">The value type of X and W.</typeparam>
/// <typeparam name="TAcc">The accumulator type (its default value is the zero sum).</typeparam>
public interface ISparseProduct<TValue, TAcc>
    where TValue : unmanaged
    where TAcc : unmanaged
{
    /// <summary><c>acc + x·w</c>.</summary>
    TAcc MultiplyAdd(TAcc acc, TValue x, TValue w);

    /// <summary><c>a + b</c>.</summary>
    TAcc Add(TAcc a, TAcc b);

    /// <summary>Stores the finished sum of output element (<paramref name="token"/>, <paramref name="row"/>).</summary>
    void Store(int token, int row, TAcc acc);
}

/// <summary>int8 × int8 with exact int32 accumulation, stored through the dense GEMM's epilogue (row = token, col = weight row, batch 0).</summary>
/// <typeparam name="TEpilogue">The epilogue.</typeparam>
public struct Int8Product<TEpilogue> : ISparseProduct<sbyte, int>
    where TEpilogue : struct, IGemmEpilogue
{
    /// <summary>Where the result goes.</summary>
    public TEpilogue Epilogue;

    /// <inheritdoc />
    public readonly int MultiplyAdd(int acc, sbyte x, sbyte w) => acc + x * w;

    /// <inheritdoc />
    public readonly int Add(int a, int b) => a + b;

    /// <inheritdoc />
    public readonly void Store(int token, int row, int acc) => Epilogue.Store(0, token, row, acc);
}

/// <summary>float32 with float32 accumulation: <c>Y[token·Ldy + row] = acc (+ Bias[row])</c>.</summary>
public struct Float32Product : ISparseProduct<float, float>
{
    /// <summary>The output view, m×n row-major.</summary>
    public ArrayView<float> Y;

    /// <summary>Per-output-channel bias; read only when <see cref="HasBias"/> is non-zero.</summary>
    public ArrayView<float> Bias;

    /// <summary>Non-zero when a bias is added.</summary>
    public int HasBias;

    /// <summary>Elements between two rows of Y (n).</summary>
    public int Ldy;

    /// <inheritdoc />
    public readonly float MultiplyAdd(float acc, float x, float w) => acc + x * w;

    /// <inheritdoc />
    public readonly float Add(float a, float b) => a + b;

    /// <inheritdoc />
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
/// (<see cref="ISparseRows{T}"/>) and X dense activations, generic over the arithmetic
/// (<see cref="ISparseProduct{TValue, TAcc}"/>): int8 with int32 accumulation through the dense GEMM's
/// <see cref="IGemmEpilogue"/> (so the dequantized result is bit-identical), and float32.
/// </summary>
/// <remarks>
/// Two shapes of kernel: for general m, X is first transposed to Xᵀ (k×m) and one thread computes one
/// output, the threads of a group taking consecutive tokens of the same weight row, so they read
/// <c>Xᵀ[col, token..]</c> coalesced while the weight values are the same for all (a broadcast). For
/// small m (decode, m ≤ <see cref="SmallM"/>) one group of <see cref="Lanes"/> threads computes one output:
/// the lanes split the row's elements (lane l takes elements l, l + Lanes, …) and lane 0 adds the
/// partial sums in lane order. Float32 summation order: general kernel, the row's elements in storage
/// order starting from 0; small kernel, each lane's elements in storage order from 0, then the lane
/// sums 0, 1, … from 0; the bias last. (GPU compilers may contract a multiply-add to an FMA.)
/// </remarks>
public static class SparseKernels
{
    /// <summary>The largest m that uses the small-m kernel.</summary>
    public const int SmallM = 16;

    /// <summary>Threads per group of the small-m kernel (one output per group).</summary>
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

    /// <summary>General m: one thread per output. Launched implicitly grouped over (m, n).</summary>
    /// <param name="index">(token, weight row).</param>
    /// <param name="w">The sparse weights.</param>
    /// <param name="xt">Xᵀ, k×m.</param>
    /// <param name="m">Tokens.</param>
    /// <param name="product">The arithmetic and where the result goes.</param>
    public static void General<TValue, TAcc, TRows, TProduct>(Index2D index, TRows w, ArrayView<TValue> xt, int m, TProduct product)
        where TValue : unmanaged
        where TAcc : unmanaged
        where TRows : struct, ISparseRows<TValue>
        where TProduct : struct, ISparseProduct<TValue, TAcc>
    {
        int token = index.X;
        int row = index.Y;
        TAcc acc = default;
        int end = w.Limit(row);
        for (int e = w.Begin(row); e < end; e++)
        {
            int col = w.Column(row, e);
            if (col >= 0)
                acc = product.MultiplyAdd(acc, xt[(long)col * m + token], w.Value(row, e));
        }
        product.Store(token, row, acc);
    }

    /// <summary>Small m: one group of <see cref="Lanes"/> threads per output. Grid (n, m), group (Lanes, 1).</summary>
    /// <param name="w">The sparse weights.</param>
    /// <param name="x">X, m×k row-major.</param>
    /// <param name="k">Columns of X.</param>
    /// <param name="product">The arithmetic and where the result goes.</param>
    public static void Small<TValue, TAcc, TRows, TProduct>(TRows w, ArrayView<TValue> x, int k, TProduct product)
        where TValue : unmanaged
        where TAcc : unmanaged
        where TRows : struct, ISparseRows<TValue>
        where TProduct : struct, ISparseProduct<TValue, TAcc>
    {
        var partial = SharedMemory.Allocate<TAcc>(Lanes);
        int lane = Group.IdxX;
        int row = Grid.IdxX;
        int token = Grid.IdxY;
        long xRow = (long)token * k;
        TAcc acc = default;
        int end = w.Limit(row);
        for (int e = w.Begin(row) + lane; e < end; e += Lanes)
        {
            int col = w.Column(row, e);
            if (col >= 0)
                acc = product.MultiplyAdd(acc, x[xRow + col], w.Value(row, e));
        }
        partial[lane] = acc;
        Group.Barrier();
        if (lane == 0)
        {
            TAcc sum = default;
            for (int l = 0; l < Lanes; l++)
                sum = product.Add(sum, partial[l]);
            product.Store(token, row, sum);
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Tiled int8 kernel (general m): groups of four non-zeros × four tokens per dp4a.

    /// <summary>Columns of W per k chunk of the tiled kernel (a local column fits one byte).</summary>
    public const int TileK = 256;

    /// <summary>Token words (four tokens each) per tile of the tiled kernel: one per lane, 128 tokens.</summary>
    public const int TileWords = 32;

    /// <summary>Tokens per tile of the tiled kernel.</summary>
    public const int TileTokens = TileWords * 4;

    /// <summary>Warps per group of the tiled kernel.</summary>
    public const int TileWarps = 8;

    /// <summary>Rows of W per warp of the tiled kernel (rows warp, warp + 8, …, warp + 56 of the tile).</summary>
    public const int RowsPerWarp = 8;

    /// <summary>Rows of W per tile of the tiled kernel.</summary>
    public const int TileRows = TileWarps * RowsPerWarp;

    private const int StagePitch = TileTokens + 1;

    private const int TileSharedInts = TileK * TileWords > TileRows * StagePitch ? TileK * TileWords : TileRows * StagePitch;

    /// <summary>
    /// Packs X (m×k row-major int8) into token words: <c>xt4[col·m4 + t4]</c> holds tokens 4·t4 … 4·t4+3 of
    /// column col, one byte each (zero past m). Launched implicitly grouped over (m4, k).
    /// </summary>
    /// <param name="index">(token word, column).</param>
    /// <param name="x">X, m×k.</param>
    /// <param name="xt4">The packed words, k×m4.</param>
    /// <param name="m">Tokens.</param>
    /// <param name="m4">Token words, ⌈m/4⌉.</param>
    /// <param name="k">Columns of X.</param>
    public static void PackTokenWords(Index2D index, ArrayView<sbyte> x, ArrayView<int> xt4, int m, int m4, int k)
    {
        int t4 = index.X;
        int col = index.Y;
        int word = 0;
        for (int j = 0; j < 4; j++)
        {
            int token = 4 * t4 + j;
            if (token < m)
                word |= (x[(long)token * k + col] & 0xFF) << (8 * j);
        }
        xt4[(long)col * m4 + t4] = word;
    }

    /// <summary>
    /// int8 product for general m on tiles of <see cref="TileRows"/> rows of W × <see cref="TileTokens"/>
    /// tokens. W comes as groups of four non-zeros of one row inside one k chunk of <see cref="TileK"/>
    /// columns (padded with zero weights; see <c>SparseTiles</c> on the host): per group one 64-bit word,
    /// four local columns (a byte each) and four signed weights. Per chunk the group stages the
    /// chunk's X words (<see cref="TileK"/> × <see cref="TileWords"/>) in shared memory; each lane owns four
    /// tokens, reads the four columns' words (conflict-free), transposes the 4×4 bytes with
    /// <see cref="Packed.Permute"/> (<c>prmt</c> on CUDA) and adds four <c>dp4a</c>s. The int32 results are
    /// staged in shared memory again and stored through the epilogue with consecutive threads on
    /// consecutive output columns. Exact int32 sums: the same bits as every other int8 path.
    /// Launched explicitly grouped: grid (⌈m4/32⌉, ⌈n/64⌉), group (32, 8).
    /// </summary>
    /// <param name="groupPointers">Groups of (row, chunk) = [p[row·chunks + chunk], p[row·chunks + chunk + 1]).</param>
    /// <param name="groups">Per group: four local columns (bytes 0–3) in the low word, the four signed weights in the same order in the high word.</param>
    /// <param name="xt4">X as token words (see <see cref="PackTokenWords"/>), k×m4.</param>
    /// <param name="m">Tokens.</param>
    /// <param name="m4">Token words.</param>
    /// <param name="n">Rows of W.</param>
    /// <param name="k">Columns of W.</param>
    /// <param name="chunks">⌈k / <see cref="TileK"/>⌉.</param>
    /// <param name="epilogue">Where the result goes (row = token, column = row of W).</param>
    public static void TiledInt8<TEpilogue>(
        ArrayView<int> groupPointers,
        ArrayView<long> groups,
        ArrayView<int> xt4,
        int m,
        int m4,
        int n,
        int k,
        int chunks,
        TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        var tile = SharedMemory.Allocate<int>(TileSharedInts);
        int lane = Group.IdxX;
        int warp = Group.IdxY;
        int t4 = Grid.IdxX * TileWords + lane;
        int rowBase = Grid.IdxY * TileRows;
        var rows = new TileRowsOfWarp(groupPointers, groups, n, chunks, rowBase + warp);
        ArrayView<int> laneTile = tile.SubView(lane);
        Acc4 a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int chunk = 0; chunk < chunks; chunk++)
        {
            int kBase = chunk * TileK;
            for (int kk = warp; kk < TileK; kk += TileWarps)
            {
                int kg = kBase + kk;
                tile[kk * TileWords + lane] = kg < k && t4 < m4 ? xt4[(long)kg * m4 + t4] : 0;
            }
            Group.Barrier();
            rows.Accumulate(ref a0, 0, chunk, laneTile);
            rows.Accumulate(ref a1, 1, chunk, laneTile);
            rows.Accumulate(ref a2, 2, chunk, laneTile);
            rows.Accumulate(ref a3, 3, chunk, laneTile);
            rows.Accumulate(ref a4, 4, chunk, laneTile);
            rows.Accumulate(ref a5, 5, chunk, laneTile);
            rows.Accumulate(ref a6, 6, chunk, laneTile);
            rows.Accumulate(ref a7, 7, chunk, laneTile);
            Group.Barrier();
        }

        // Stage the 64×128 results (row-major, pitch 129), then store with threads on consecutive rows of W.
        Stage(tile, warp, lane, a0);
        Stage(tile, warp + 8, lane, a1);
        Stage(tile, warp + 16, lane, a2);
        Stage(tile, warp + 24, lane, a3);
        Stage(tile, warp + 32, lane, a4);
        Stage(tile, warp + 40, lane, a5);
        Stage(tile, warp + 48, lane, a6);
        Stage(tile, warp + 56, lane, a7);
        Group.Barrier();
        int tid = warp * TileWords + lane;
        int r = tid % TileRows;
        int row = rowBase + r;
        int tokenBase = Grid.IdxX * TileTokens;
        for (int tt = tid / TileRows; tt < TileTokens; tt += TileWarps * TileWords / TileRows)
        {
            int token = tokenBase + tt;
            if (row < n && token < m)
                epilogue.Store(0, token, row, tile[r * StagePitch + tt]);
        }
    }

    private static void Stage(ArrayView<int> tile, int r, int lane, Acc4 acc)
    {
        int at = r * StagePitch + 4 * lane;
        tile[at] = acc.A;
        tile[at + 1] = acc.B;
        tile[at + 2] = acc.C;
        tile[at + 3] = acc.D;
    }

    /// <summary>Four int32 sums: one per token of a lane's token word.</summary>
    private struct Acc4
    {
        public int A;
        public int B;
        public int C;
        public int D;
    }

    /// <summary>The rows of W one warp of <see cref="TiledInt8"/> works on, and their groups.</summary>
    private readonly struct TileRowsOfWarp(ArrayView<int> pointers, ArrayView<long> groups, int n, int chunks, int firstRow)
    {
        public void Accumulate(ref Acc4 acc, int i, int chunk, ArrayView<int> laneTile)
        {
            int row = firstRow + i * TileWarps;
            if (row >= n)
                return;
            long at = (long)row * chunks + chunk;
            int end = pointers[at + 1];
            var dot = default(Dp4aDot4);
            for (int g = pointers[at]; g < end; g++)
            {
                long group = groups[g];
                int c = (int)group;
                int w = (int)(group >> 32);
                // Column byte j, zero-extended (one prmt), times the words per tile row.
                int x0 = laneTile[Packed.Permute(c, 0, 0x4440) * TileWords];
                int x1 = laneTile[Packed.Permute(c, 0, 0x4441) * TileWords];
                int x2 = laneTile[Packed.Permute(c, 0, 0x4442) * TileWords];
                int x3 = laneTile[Packed.Permute(c, 0, 0x4443) * TileWords];
                // x_i = (token 0..3 of column i); make t_j = (column 0..3 of token j).
                int lo01 = Packed.Permute(x0, x1, 0x5140);
                int hi01 = Packed.Permute(x0, x1, 0x7362);
                int lo23 = Packed.Permute(x2, x3, 0x5140);
                int hi23 = Packed.Permute(x2, x3, 0x7362);
                acc.A = dot.Dot4(Packed.Permute(lo01, lo23, 0x5410), w, acc.A);
                acc.B = dot.Dot4(Packed.Permute(lo01, lo23, 0x7632), w, acc.B);
                acc.C = dot.Dot4(Packed.Permute(hi01, hi23, 0x5410), w, acc.C);
                acc.D = dot.Dot4(Packed.Permute(hi01, hi23, 0x7632), w, acc.D);
            }
        }
    }
}
