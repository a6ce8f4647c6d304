using Kernels.DeviceCode.Ptx;

namespace Kernels.Backends.CudaPtx;

/// <summary>
/// The weights of a 2:4 matrix rearranged once, at upload, into the register fragments of the sparse
/// A operand of <c>mma.sp …m16n8k64…s8</c> (see <see cref="Kernels.DeviceCode.Ptx.SparseTensorCorePtx"/> for the layout and its sources).
/// </summary>
/// <param name="Values">Per 16-row tile and 64-column k step, 32 lanes × 16 bytes (the lane's four A registers).</param>
/// <param name="Meta">Per 16-row tile and k step, 32 lanes × one 32-bit metadata register.</param>
/// <param name="RowTiles">⌈rows/16⌉.</param>
/// <param name="KSteps">⌈cols/64⌉ (the last step padded with zero values at positions (0, 1)).</param>
internal sealed record SparseTensorCorePacked(byte[] Values, uint[] Meta, int RowTiles, int KSteps)
{
    /// <summary>Bytes of <see cref="Values"/> per (row tile, k step).</summary>
    public const int ValueBytesPerStep = 512;

    /// <summary>Metadata words per (row tile, k step).</summary>
    public const int MetaWordsPerStep = 32;

    /// <summary>The metadata nibble of a padding group: kept positions 0 and 1 (0b0100), with zero values.</summary>
    public const uint PaddingNibble = 0x4;

    /// <summary>
    /// Packs a 2:4 matrix given as the 2:4 arrays of <c>SparseFormat.TwoFour</c>: <paramref name="values"/>
    /// [rows·groups·2] and <paramref name="meta"/> [rows·groups] (bits 0-1 first kept position, bits 2-3
    /// the second, first &lt; second), groups = ⌈cols/4⌉.
    /// </summary>
    /// <exception cref="ArgumentException">Lengths do not match, or a metadata byte is not first &lt; second.</exception>
    public static SparseTensorCorePacked Pack(int rows, int cols, ReadOnlySpan<sbyte> values, ReadOnlySpan<byte> meta)
    {
        if (rows < 0 || cols < 0)
            throw new ArgumentException($"rows and cols must be ≥ 0, got {rows}×{cols}", nameof(rows));
        int groups = (cols + 3) / 4;
        if (values.Length != (long)rows * groups * 2)
            throw new ArgumentException($"values: expected rows·groups·2 = {(long)rows * groups * 2}, got {values.Length}", nameof(values));
        if (meta.Length != (long)rows * groups)
            throw new ArgumentException($"meta: expected rows·groups = {(long)rows * groups}, got {meta.Length}", nameof(meta));
        int rowTiles = (rows + 15) / 16, kSteps = Math.Max(1, (cols + 63) / 64);
        var packedValues = new byte[checked((long)rowTiles * kSteps * ValueBytesPerStep)];
        var packedMeta = new uint[checked((long)rowTiles * kSteps * MetaWordsPerStep)];

        // The group of row r at mma chunk position c (0..15) of k step s, as (value0, value1, nibble).
        (sbyte V0, sbyte V1, uint Nibble) Group(int r, int s, int c, ReadOnlySpan<sbyte> v, ReadOnlySpan<byte> m)
        {
            int group = 16 * s + SparseTensorCorePtx.ActualChunk(c);
            if (r >= rows || group >= groups)
                return (0, 0, PaddingNibble);
            long at = (long)r * groups + group;
            byte b = m[(int)at];
            int first = b & 3, second = (b >> 2) & 3;
            if (first >= second || (b & 0xF0) != 0)
                throw new ArgumentException($"meta: expected first < second, got 0x{b:X2} at row {r}, group {group}", nameof(meta));
            return (v[(int)(2 * at)], v[(int)(2 * at + 1)], (uint)(b & 0xF));
        }

        for (int rt = 0; rt < rowTiles; rt++)
        {
            for (int s = 0; s < kSteps; s++)
            {
                long step = (long)rt * kSteps + s;
                for (int lane = 0; lane < 32; lane++)
                {
                    int g = lane >> 2, t = lane & 3;
                    // Values: register q holds row g + 8(q & 1), mma chunks 2t, 2t+1 (+ 8 when q ≥ 2).
                    for (int q = 0; q < 4; q++)
                    {
                        int row = 16 * rt + g + 8 * (q & 1);
                        int chunk = 2 * t + 8 * (q >> 1);
                        long at = step * ValueBytesPerStep + 16 * lane + 4 * q;
                        for (int h = 0; h < 2; h++)
                        {
                            (sbyte v0, sbyte v1, _) = Group(row, s, chunk + h, values, meta);
                            packedValues[at + 2 * h] = (byte)v0;
                            packedValues[at + 2 * h + 1] = (byte)v1;
                        }
                    }
                    // Metadata: row g + 8(t & 1), mma chunks 8(t >> 1) .. +7, chunk i in bits 4i..4i+3.
                    {
                        int row = 16 * rt + g + 8 * (t & 1);
                        int chunk0 = 8 * (t >> 1);
                        uint word = 0;
                        for (int i = 0; i < 8; i++)
                            word |= Group(row, s, chunk0 + i, values, meta).Nibble << (4 * i);
                        packedMeta[step * MetaWordsPerStep + lane] = word;
                    }
                }
            }
        }
        return new SparseTensorCorePacked(packedValues, packedMeta, rowTiles, kSteps);
    }
}
