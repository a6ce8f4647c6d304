namespace Kernels.Backends.Simd;

/// <summary>
/// The key-split combine of the CPU attention kernels (<see cref="AttentionSimd"/>: scores in base-2
/// units; <see cref="AttentionInt8KvSimd"/>: natural units), written once, generic over
/// <see cref="IUnits"/>. A split's partial result of one row is (m, l or NaN, acc[0..d)).
/// </summary>
internal static unsafe class AttentionSplits
{
    /// <summary>The units of the scores and the arithmetic of the accumulation.</summary>
    internal interface IUnits
    {
        /// <summary>The exponential in the units of the scores (e^x or 2^x).</summary>
        static abstract float Exp(float x);

        /// <summary>o[0..d) += w·v[0..d).</summary>
        static abstract void Axpy(float* o, float w, float* v, int d);

        /// <summary>o[0..d) *= s.</summary>
        static abstract void Scale(float* o, float s, int d);
    }

    /// <summary>
    /// Combines the <paramref name="splits"/> partial results at <paramref name="first"/> (d + 2 apart) of
    /// one row into dst with log-sum-exp rescaling: NaN if any split saw one, zero if none saw a key.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Combine<TUnits>(float* first, int splits, float* dst, int d)
        where TUnits : struct, IUnits
    {
        float max = float.NegativeInfinity;
        bool nan = false;
        for (int s = 0; s < splits; s++)
        {
            float* part = first + s * (d + 2);
            nan |= float.IsNaN(part[1]);
            if (part[0] > max)
                max = part[0];
        }
        if (nan)
        {
            new Span<float>(dst, d).Fill(float.NaN);
            return;
        }
        new Span<float>(dst, d).Clear();
        if (max == float.NegativeInfinity)
            return;
        float sum = 0;
        for (int s = 0; s < splits; s++)
        {
            float* part = first + s * (d + 2);
            if (part[0] == float.NegativeInfinity)
                continue;
            float w = TUnits.Exp(part[0] - max);
            sum += part[1] * w;
            TUnits.Axpy(dst, w, part + 2, d);
        }
        TUnits.Scale(dst, 1f / sum, d);
    }
}
