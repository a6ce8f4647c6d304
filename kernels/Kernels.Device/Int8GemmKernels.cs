using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// Device code of the int8 GEMM <c>C[m,n] = Σ_k A[m,k]·B[n,k]</c> (A row-major m×k, B row-major n×k,
/// int32 accumulation), batched by the z dimension of the grid.
/// </summary>
public static class Int8GemmKernels
{
    /// <summary>Output rows per thread group of the tiled kernel.</summary>
    public const int TileM = 64;

    /// <summary>Output columns per thread group of the tiled kernel.</summary>
    public const int TileN = 64;

    /// <summary>Packed 4-byte words of k per shared-memory stage (32 bytes of k).</summary>
    public const int TileKWords = 8;

    /// <summary>Threads per group along x (columns) and y (rows).</summary>
    public const int GroupDim = 16;

    /// <summary>Row pitch of a shared tile in words (one word of padding against bank conflicts).</summary>
    public const int TilePitch = TileKWords + 1;

    /// <summary>
    /// Reference kernel: one thread per output element, a plain loop over k on unpacked bytes.
    /// Launched implicitly grouped over (n, m, batch).
    /// </summary>
    /// <param name="index">(column, row, batch) of the output element.</param>
    /// <param name="a">A of every batch, m×k row-major per batch.</param>
    /// <param name="b">B of every batch, n×k row-major per batch.</param>
    /// <param name="k">The reduction length.</param>
    /// <param name="strideA">Elements of A between consecutive batches.</param>
    /// <param name="strideB">Elements of B between consecutive batches (0: shared weights).</param>
    /// <param name="epilogue">Where the result goes.</param>
    public static void Reference<TEpilogue>(
        Index3D index,
        ArrayView<sbyte> a,
        ArrayView<sbyte> b,
        int k,
        long strideA,
        long strideB,
        TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        int col = index.X;
        int row = index.Y;
        int batch = index.Z;
        long aRow = batch * strideA + (long)row * k;
        long bRow = batch * strideB + (long)col * k;
        int acc = 0;
        for (int kk = 0; kk < k; kk++)
            acc += a[aRow + kk] * b[bRow + kk];
        epilogue.Store(batch, row, col, acc);
    }

    /// <summary>
    /// Tiled kernel: a 16×16 group computes a 64×64 output tile, 4×4 outputs per thread, staging
    /// 64×32-byte panels of A and B in shared memory with packed 4-byte loads. Rows of A and B must
    /// be padded to whole words (<paramref name="kWords"/> words, zero beyond k); the host does that.
    /// Launched explicitly grouped: grid (⌈n/64⌉, ⌈m/64⌉, batch), group (16, 16, 1).
    /// </summary>
    /// <param name="a">Packed A, m rows of <paramref name="kWords"/> words per batch.</param>
    /// <param name="b">Packed B, n rows of <paramref name="kWords"/> words per batch.</param>
    /// <param name="m">Rows of A and of the output.</param>
    /// <param name="n">Rows of B, columns of the output.</param>
    /// <param name="kWords">Words per packed row (⌈k/4⌉ or more).</param>
    /// <param name="strideAWords">Words of A between consecutive batches.</param>
    /// <param name="strideBWords">Words of B between consecutive batches (0: shared weights).</param>
    /// <param name="epilogue">Where the result goes.</param>
    public static void Tiled<TDot, TEpilogue>(
        ArrayView<int> a,
        ArrayView<int> b,
        int m,
        int n,
        int kWords,
        long strideAWords,
        long strideBWords,
        TEpilogue epilogue)
        where TDot : struct, IDot4
        where TEpilogue : struct, IGemmEpilogue
    {
        var tileA = SharedMemory.Allocate<int>(TileM * TilePitch);
        var tileB = SharedMemory.Allocate<int>(TileN * TilePitch);
        var dot = default(TDot);

        int tx = Group.IdxX;
        int ty = Group.IdxY;
        int tid = ty * GroupDim + tx;
        int colBase = Grid.IdxX * TileN;
        int rowBase = Grid.IdxY * TileM;
        int batch = Grid.IdxZ;
        long aBase = batch * strideAWords;
        long bBase = batch * strideBWords;

        int c00 = 0, c01 = 0, c02 = 0, c03 = 0;
        int c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        int c20 = 0, c21 = 0, c22 = 0, c23 = 0;
        int c30 = 0, c31 = 0, c32 = 0, c33 = 0;

        // Each of the 256 threads loads two words of each 64×8-word panel.
        int loadRow0 = tid / TileKWords;
        int loadWord = tid % TileKWords;
        int loadRow1 = loadRow0 + GroupDim * GroupDim / TileKWords;

        for (int k0 = 0; k0 < kWords; k0 += TileKWords)
        {
            int gk = k0 + loadWord;
            bool kIn = gk < kWords;

            int r = rowBase + loadRow0;
            tileA[loadRow0 * TilePitch + loadWord] = kIn && r < m ? a[aBase + (long)r * kWords + gk] : 0;
            r = rowBase + loadRow1;
            tileA[loadRow1 * TilePitch + loadWord] = kIn && r < m ? a[aBase + (long)r * kWords + gk] : 0;

            int c = colBase + loadRow0;
            tileB[loadRow0 * TilePitch + loadWord] = kIn && c < n ? b[bBase + (long)c * kWords + gk] : 0;
            c = colBase + loadRow1;
            tileB[loadRow1 * TilePitch + loadWord] = kIn && c < n ? b[bBase + (long)c * kWords + gk] : 0;

            Group.Barrier();

            for (int w = 0; w < TileKWords; w++)
            {
                int a0 = tileA[ty * TilePitch + w];
                int a1 = tileA[(ty + 16) * TilePitch + w];
                int a2 = tileA[(ty + 32) * TilePitch + w];
                int a3 = tileA[(ty + 48) * TilePitch + w];
                int b0 = tileB[tx * TilePitch + w];
                int b1 = tileB[(tx + 16) * TilePitch + w];
                int b2 = tileB[(tx + 32) * TilePitch + w];
                int b3 = tileB[(tx + 48) * TilePitch + w];

                c00 = dot.Dot4(a0, b0, c00); c01 = dot.Dot4(a0, b1, c01);
                c02 = dot.Dot4(a0, b2, c02); c03 = dot.Dot4(a0, b3, c03);
                c10 = dot.Dot4(a1, b0, c10); c11 = dot.Dot4(a1, b1, c11);
                c12 = dot.Dot4(a1, b2, c12); c13 = dot.Dot4(a1, b3, c13);
                c20 = dot.Dot4(a2, b0, c20); c21 = dot.Dot4(a2, b1, c21);
                c22 = dot.Dot4(a2, b2, c22); c23 = dot.Dot4(a2, b3, c23);
                c30 = dot.Dot4(a3, b0, c30); c31 = dot.Dot4(a3, b1, c31);
                c32 = dot.Dot4(a3, b2, c32); c33 = dot.Dot4(a3, b3, c33);
            }

            Group.Barrier();
        }

        StoreRow(ref epilogue, batch, rowBase + ty, colBase + tx, m, n, c00, c01, c02, c03);
        StoreRow(ref epilogue, batch, rowBase + ty + 16, colBase + tx, m, n, c10, c11, c12, c13);
        StoreRow(ref epilogue, batch, rowBase + ty + 32, colBase + tx, m, n, c20, c21, c22, c23);
        StoreRow(ref epilogue, batch, rowBase + ty + 48, colBase + tx, m, n, c30, c31, c32, c33);
    }

    private static void StoreRow<TEpilogue>(
        ref TEpilogue epilogue, int batch, int row, int col, int m, int n, int v0, int v1, int v2, int v3)
        where TEpilogue : struct, IGemmEpilogue
    {
        if (row >= m)
            return;
        if (col < n)
            epilogue.Store(batch, row, col, v0);
        if (col + 16 < n)
            epilogue.Store(batch, row, col + 16, v1);
        if (col + 32 < n)
            epilogue.Store(batch, row, col + 32, v2);
        if (col + 48 < n)
            epilogue.Store(batch, row, col + 48, v3);
    }

    /// <summary>
    /// Packs rows of signed bytes into rows of whole 4-byte words, zero-filled beyond k, so the tiled
    /// kernel can use packed loads for any k. Launched implicitly grouped over (kWords, rows, batch).
    /// </summary>
    /// <param name="index">(word, row, batch).</param>
    /// <param name="source">Rows of k bytes, <paramref name="sourceBatchStride"/> bytes between batches.</param>
    /// <param name="destination">Rows of <paramref name="kWords"/> words, rows·kWords words per batch.</param>
    /// <param name="rows">Rows per batch.</param>
    /// <param name="k">Bytes per source row.</param>
    /// <param name="kWords">Words per destination row.</param>
    /// <param name="sourceBatchStride">Bytes of the source between consecutive batches.</param>
    public static void PackRows(
        Index3D index,
        ArrayView<sbyte> source,
        ArrayView<int> destination,
        int rows,
        int k,
        int kWords,
        long sourceBatchStride)
    {
        int word = index.X;
        int row = index.Y;
        int batch = index.Z;
        long src = batch * sourceBatchStride + (long)row * k;
        int k0 = word * 4;
        int packed = 0;
        for (int j = 0; j < 4; j++)
        {
            if (k0 + j < k)
                packed |= (source[src + k0 + j] & 0xFF) << (8 * j);
        }
        destination[((long)batch * rows + row) * kWords + word] = packed;
    }
}
