namespace Kernels.DeviceCode.Ptx;

/// <summary>What a generated kernel writes: the raw int32 sums or the dequantized float32 values.</summary>
public enum PtxEpilogue
{
    /// <summary><c>C[row, col] = acc</c> (int32, ldc).</summary>
    Raw,

    /// <summary><c>Y[row, col] = (float)acc · aScale[row] · bScale[col] (+ bias[col])</c>, no FMA, same order as <see cref="DequantEpilogue"/>.</summary>
    Dequant,
}

/// <summary>
/// The shape of the tensor-core GEMM kernel: a block computes a <see cref="BlockM"/>×<see cref="BlockN"/>
/// output tile with <see cref="WarpsM"/>×<see cref="WarpsN"/> warps, reading k in steps of
/// <see cref="BlockK"/> bytes through a <see cref="Stages"/>-deep cp.async pipeline in shared memory.
/// </summary>
/// <param name="BlockM">Rows of the block tile (multiple of 16·WarpsM).</param>
/// <param name="BlockN">Columns of the block tile (multiple of 16·WarpsN).</param>
/// <param name="BlockK">Bytes of k per pipeline stage: 32, 64 or 128.</param>
/// <param name="WarpsM">Warps along m.</param>
/// <param name="WarpsN">Warps along n.</param>
/// <param name="Stages">Pipeline depth (2..8).</param>
public sealed record TensorCoreTile(int BlockM, int BlockN, int BlockK, int WarpsM, int WarpsN, int Stages)
{
    /// <summary>Static shared memory a kernel may declare (48 KiB): the kernels need no opt-in attribute.</summary>
    public const int MaxSharedBytes = 48 * 1024;

    /// <summary>Threads per block.</summary>
    public int Threads => 32 * WarpsM * WarpsN;

    /// <summary>Rows of the output one warp computes.</summary>
    public int WarpTileM => BlockM / WarpsM;

    /// <summary>Columns of the output one warp computes.</summary>
    public int WarpTileN => BlockN / WarpsN;

    /// <summary>m16 fragments per warp.</summary>
    public int FragmentsM => WarpTileM / 16;

    /// <summary>n8 fragments per warp.</summary>
    public int FragmentsN => WarpTileN / 8;

    /// <summary>16-byte chunks in one row of a stage (BlockK / 16).</summary>
    public int ChunksPerRow => BlockK / 16;

    /// <summary>Shared memory of the pipeline in bytes.</summary>
    public int SharedBytes => Stages * (BlockM + BlockN) * BlockK;

    /// <summary>int32 accumulators per thread.</summary>
    public int AccumulatorsPerThread => FragmentsM * FragmentsN * 4;

    /// <summary>A short name: <c>tc{BlockM}x{BlockN}x{BlockK}_w{WarpsM}x{WarpsN}_s{Stages}</c>.</summary>
    public string Name => $"tc{BlockM}x{BlockN}x{BlockK}_w{WarpsM}x{WarpsN}_s{Stages}";

    /// <summary>Throws <see cref="ArgumentException"/> when the generator cannot build this shape.</summary>
    public void Validate()
    {
        static void Require(bool condition, string message)
        {
            if (!condition)
                throw new ArgumentException($"tile: {message}", "tile");
        }

        Require(BlockK is 32 or 64 or 128, $"BlockK must be 32, 64 or 128, got {BlockK}");
        Require(WarpsM >= 1 && WarpsN >= 1 && WarpsM * WarpsN <= 16, $"1..16 warps, got {WarpsM}×{WarpsN}");
        Require(BlockM > 0 && BlockM % (16 * WarpsM) == 0, $"BlockM {BlockM} must be a positive multiple of 16·WarpsM");
        Require(BlockN > 0 && BlockN % (16 * WarpsN) == 0, $"BlockN {BlockN} must be a positive multiple of 16·WarpsN");
        Require(Stages is >= 2 and <= 8, $"Stages must be 2..8, got {Stages}");
        Require(SharedBytes <= MaxSharedBytes, $"{SharedBytes} bytes of shared memory exceed {MaxSharedBytes}");
        // Every thread copies whole rows' worth of chunks with the same swizzle (see the generator).
        Require(Threads % ChunksPerRow == 0 && Threads / ChunksPerRow % 8 == 0, "threads per row group must be a multiple of 8");
        Require(BlockM * ChunksPerRow % Threads == 0, "A tile chunks must divide evenly among the threads");
        Require(BlockN * ChunksPerRow % Threads == 0, "B tile chunks must divide evenly among the threads");
    }
}

/// <summary>
/// The shape of the decode kernel for few rows of A (tokens): a block streams 16 rows of B (weights)
/// once, its <see cref="Warps"/> warps splitting k between them, and multiplies them with up to
/// 8·<see cref="TokenTiles"/> tokens; the warps' partial sums meet in shared memory.
/// </summary>
/// <param name="TokenTiles">n8 tiles of tokens (1..4): handles m ≤ 8·TokenTiles.</param>
/// <param name="Warps">Warps per block, each taking every Warps-th group of k (1..16).</param>
/// <param name="KUnroll">64-byte k steps loaded before the first mma of a loop iteration (loads in flight).</param>
public sealed record DecodeTile(int TokenTiles, int Warps, int KUnroll)
{
    /// <summary>The most tokens this kernel takes.</summary>
    public int MaxTokens => 8 * TokenTiles;

    /// <summary>Threads per block.</summary>
    public int Threads => 32 * Warps;

    /// <summary>Weight rows (output columns) per block.</summary>
    public const int RowsPerBlock = 16;

    /// <summary>Shared memory for the partial sums of warps 1.. (warp 0 adds them up).</summary>
    public int SharedBytes => (Warps - 1) * TokenTiles * 4 * 32 * 4;

    /// <summary>A short name: <c>decode_t{MaxTokens}_w{Warps}_u{KUnroll}</c>.</summary>
    public string Name => $"decode_t{MaxTokens}_w{Warps}_u{KUnroll}";

    /// <summary>Throws <see cref="ArgumentException"/> when the generator cannot build this shape.</summary>
    public void Validate()
    {
        if (TokenTiles is < 1 or > 4)
            throw new ArgumentException($"tile: TokenTiles must be 1..4, got {TokenTiles}", "tile");
        if (Warps is < 1 or > 16)
            throw new ArgumentException($"tile: Warps must be 1..16, got {Warps}", "tile");
        if (KUnroll is < 1 or > 8)
            throw new ArgumentException($"tile: KUnroll must be 1..8, got {KUnroll}", "tile");
    }
}
