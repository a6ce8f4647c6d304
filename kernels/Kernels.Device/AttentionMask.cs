using System.Runtime.CompilerServices;

namespace Kernels.DeviceCode;

/// <summary>
/// The one attention visibility rule, used by the float64 reference, the SIMD kernels and the ILGPU
/// kernels alike. Query position <c>pos</c> sees the keys of one contiguous range
/// [<see cref="First"/>, <see cref="End"/>): a sliding window of <c>window</c> keys ending at
/// <c>pos</c> (no left limit when <c>window</c> is 0), and on the right either nothing after
/// <c>pos</c> (causal) or the mirror of the window (<c>pos + window</c>, no limit when 0). As in
/// FlashAttention's <c>mask.h</c>, causal is a window whose right extent is 0: one rule, not two.
/// </summary>
/// <remarks>
/// The bounds are computed in 64 bits and clamped to the int range, so any window (up to
/// <see cref="int.MaxValue"/>) and any position give the mathematically right range. Both bounds grow
/// with <c>pos</c>, so the keys any of several rows can see are [First(min pos), End(max pos)).
/// Callers intersect the range with the keys they hold (the sequence length, a split, a tile). Keys
/// are indices into a sequence of at most <see cref="int.MaxValue"/> keys (0 ≤ key &lt; int.MaxValue);
/// positions may be negative (queries before the first key when QueryLength &gt; KeyLength).
/// </remarks>
public static class AttentionMask
{
    /// <summary>The first key visible from query position <paramref name="pos"/> (may be below 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int First(int pos, int window) =>
        window > 0 ? ClampToInt((long)pos - window + 1) : int.MinValue;

    /// <summary>One past the last key visible from query position <paramref name="pos"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int End(int pos, bool causal, int window) =>
        causal ? ClampToInt((long)pos + 1)
        : window > 0 ? ClampToInt((long)pos + window)
        : int.MaxValue;

    /// <summary>Whether key <paramref name="key"/> is visible from query position <paramref name="pos"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Visible(int key, int pos, bool causal, int window) =>
        key >= First(pos, window) && key < End(pos, causal, window);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ClampToInt(long value) =>
        value < int.MinValue ? int.MinValue : value > int.MaxValue ? int.MaxValue : (int)value;
}
