namespace Kernels;

/// <summary>How a pruned weight matrix (rows = output channels n, columns = k) is stored.</summary>
public enum SparseFormat
{
    /// <summary>
    /// Compressed sparse rows: <c>RowPointers[rows+1]</c> (monotone, from 0 to nnz), then for each stored
    /// value its column (<c>ColumnIndices[nnz]</c>, strictly increasing within a row) and the value.
    /// </summary>
    Csr,

    /// <summary>
    /// Block-sparse rows: dense blocks of <c>BlockRows × BlockColumns</c> (row-major inside the block) at
    /// block coordinates given CSR-style over block rows (<c>RowPointers[ceil(rows/BlockRows)+1]</c>,
    /// <c>ColumnIndices[blocks]</c> = block column). Edge blocks are stored whole; their part outside the
    /// matrix holds zeros.
    /// </summary>
    Bsr,

    /// <summary>
    /// 2:4 semi-structured: in every group of 4 consecutive columns of a row at most 2 values are
    /// non-zero. Stored as 2 values per group (<c>Values[rows·groups·2]</c>, groups = ceil(cols/4)) and
    /// one metadata byte per group (<c>Meta[rows·groups]</c>: bits 0-1 the position of the first kept
    /// value, bits 2-3 the position of the second, first &lt; second).
    /// </summary>
    TwoFour,
}
