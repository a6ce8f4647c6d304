namespace Kernels;

/// <summary>
/// The sizes and positions of one <see cref="KernelSession.RopeKvCache(DeviceBuffer{float}, RopeTable, DeviceBuffer{float}, DeviceBuffer{float}, DeviceBuffer{float}, RopeShape)"/> call.
/// </summary>
/// <param name="Batch">Sequences.</param>
/// <param name="Tokens">New tokens per sequence (1 in decode).</param>
/// <param name="Heads">Query heads (a multiple of <paramref name="KvHeads"/>).</param>
/// <param name="KvHeads">Key/value heads.</param>
/// <param name="HeadDim">Features per head: even, 2..256.</param>
/// <param name="Capacity">Positions per sequence in the KV caches.</param>
/// <param name="Start">Position of the first new token: positions Start .. Start + Tokens − 1 are written.</param>
public readonly record struct RopeShape(int Batch, int Tokens, int Heads, int KvHeads, int HeadDim, int Capacity, int Start)
{
    /// <summary>The largest head dimension (as attention's).</summary>
    public const int MaxHeadDim = AttentionShape.MaxHeadDim;

    /// <summary>Elements of qkv: Batch·Tokens·(Heads + 2·KvHeads)·HeadDim.</summary>
    public Int128 QkvElements => (Int128)Batch * Tokens * ((long)Heads + (2L * KvHeads)) * HeadDim;

    /// <summary>Elements of q: Batch·Heads·Tokens·HeadDim.</summary>
    public Int128 QueryElements => (Int128)Batch * Heads * Tokens * HeadDim;

    /// <summary>Elements of each cache: Batch·KvHeads·Capacity·HeadDim.</summary>
    public Int128 CacheElements => (Int128)Batch * KvHeads * Capacity * HeadDim;
}

/// <summary>
/// A RoPE table on the device: [MaxPositions, HeadDim/2, 2] floats, (cos, sin) of p·Theta^(−2i/HeadDim) at
/// position p, pair i, computed in float64 on the host and rounded to float once (<see cref="Compute"/>), so
/// every backend rotates with the same values. It records its sizes so that calls can be validated against them.
/// Create it with <see cref="KernelSession.CreateRopeTable"/>; dispose it when done.
/// </summary>
public sealed class RopeTable : IDisposable
{
    internal RopeTable(DeviceBuffer<float> buffer, int maxPositions, int headDim, double theta)
    {
        Buffer = buffer;
        MaxPositions = maxPositions;
        HeadDim = headDim;
        Theta = theta;
    }

    /// <summary>The table's device buffer (MaxPositions·HeadDim floats).</summary>
    public DeviceBuffer<float> Buffer { get; }

    /// <summary>Positions 0 .. MaxPositions − 1 are in the table.</summary>
    public int MaxPositions { get; }

    /// <summary>The head dimension it was made for.</summary>
    public int HeadDim { get; }

    /// <summary>The base of the frequencies (10000 in Llama 2, 500000 in Llama 3).</summary>
    public double Theta { get; }

    /// <summary>The table's values on the host: element (p, i) is (cos, sin) of p·θ^(−2i/headDim) in float64, rounded to float.</summary>
    /// <exception cref="ArgumentException">maxPositions &lt; 1, headDim not even in 2..256, theta not finite and &gt; 0, or a table too large for an array.</exception>
    public static float[] Compute(int maxPositions, int headDim, double theta)
    {
        Validate(maxPositions, headDim, theta);
        int half = headDim / 2;
        var table = new float[Check.ArrayLength((Int128)maxPositions * headDim, "maxPositions·headDim")];
        for (int i = 0; i < half; i++)
        {
            double frequency = Math.Pow(theta, -2.0 * i / headDim);
            for (int p = 0; p < maxPositions; p++)
            {
                double angle = p * frequency;
                long at = (((long)p * half) + i) * 2;
                table[at] = (float)Math.Cos(angle);
                table[at + 1] = (float)Math.Sin(angle);
            }
        }
        return table;
    }

    /// <summary>Releases the device buffer.</summary>
    public void Dispose() => Buffer.Dispose();

    internal static void Validate(int maxPositions, int headDim, double theta)
    {
        Check.Positive(maxPositions, nameof(maxPositions));
        Check.HeadDim(headDim, nameof(headDim));
        if (!double.IsFinite(theta) || theta <= 0)
            throw new ArgumentOutOfRangeException(nameof(theta), theta, $"theta: expected a finite value > 0, got {theta}.");
    }
}
