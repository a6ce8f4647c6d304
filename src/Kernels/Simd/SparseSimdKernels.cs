namespace Kernels.Simd;

/// <summary>
/// The vectorized inner kernels of <see cref="SparseSimd"/>. Large m: X is transposed once per call into
/// token panels (AVX-VNNI: <see cref="TBV"/> tokens, one 64-byte line of u8 x+128 per k; AVX2:
/// <see cref="TB"/> tokens of int16; float: <see cref="TB"/> floats), and each row of W walks its
/// non-zeros, four (AVX-VNNI) or two (AVX2) at a time: the panel lines of those k are interleaved so that
/// each 32-bit lane holds one token's values, and <c>vpdpbusd</c> / <c>vpmaddwd</c> with the broadcast
/// weights adds them. The token order of the panels is permuted at packing so that the accumulators come
/// out in natural order. Block-structured W (aligned quads) reads an [k/4][tokens][4] panel directly.
/// Eight rows of W form a tile that is transposed (8×8 int32) and stored through the epilogue. Small m:
/// gathered dot products (int8: four tokens per gathered dword, transposed for <c>vpdpbusd</c>).
/// One file per job: <c>.Packing</c>, <c>.Rows</c>, <c>.SmallM</c>, <c>.Stores</c>.
/// </summary>
internal static unsafe partial class SparseSimdKernels
{
    /// <summary>Tokens per panel (one accumulator tile row: four vectors of eight int32).</summary>
    internal const int TB = 32;

    /// <summary>Tokens per panel of the AVX-VNNI interleave kernel (two halves of <see cref="TB"/>; one cache line per k).</summary>
    internal const int TBV = 64;

    /// <summary>Rows of W per output tile.</summary>
    internal const int GR = 8;

    /// <summary>
    /// Row groups (of <see cref="GR"/>) computed into one tile before it is stored: 128 output columns, so
    /// that each token's output row gets 512 contiguous bytes (whole lines) per store. With one group per
    /// store, the 64 token rows of a tile got 32-byte half lines n·4 bytes apart (one L1 set when n·4 is a
    /// multiple of 4 KiB): half of a 1024³ call went to those stores.
    /// </summary>
    internal const int StoreGroups = 16;
}
