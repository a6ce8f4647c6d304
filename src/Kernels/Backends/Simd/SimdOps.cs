namespace Kernels.Backends.Simd;

/// <summary>
/// The per-instruction-set operators of the SIMD kernels (the pattern of
/// <c>System.Numerics.Tensors.TensorPrimitives</c> and of <c>IDot4</c> in the device code): a kernel
/// is written once, generic over an operator struct, and the JIT compiles one specialized copy per
/// struct (no boxing, no interface dispatch; the tiny operator methods inline).
/// </summary>
internal static unsafe class SimdOps
{
    /// <summary>Stores four vectors to dst, dst + Count, dst + 2·Count and dst + 3·Count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store4<T>(T* dst, Vector256<T> v0, Vector256<T> v1, Vector256<T> v2, Vector256<T> v3)
        where T : unmanaged
    {
        int n = Vector256<T>.Count;
        v0.Store(dst);
        v1.Store(dst + n);
        v2.Store(dst + 2 * n);
        v3.Store(dst + 3 * n);
    }

    /// <summary>Stores eight vectors <paramref name="pitch"/> elements apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store8<T>(T* dst, long pitch, Vector256<T> v0, Vector256<T> v1, Vector256<T> v2, Vector256<T> v3,
        Vector256<T> v4, Vector256<T> v5, Vector256<T> v6, Vector256<T> v7)
        where T : unmanaged
    {
        v0.Store(dst);
        v1.Store(dst + pitch);
        v2.Store(dst + 2 * pitch);
        v3.Store(dst + 3 * pitch);
        v4.Store(dst + 4 * pitch);
        v5.Store(dst + 5 * pitch);
        v6.Store(dst + 6 * pitch);
        v7.Store(dst + 7 * pitch);
    }

    /// <summary>
    /// The 8×8 dword block at src (rows <paramref name="pitch"/> bytes apart), transposed in registers:
    /// o_t = dword column t.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose8x8(
        byte* src, long pitch, out Vector256<int> o0, out Vector256<int> o1, out Vector256<int> o2, out Vector256<int> o3,
        out Vector256<int> o4, out Vector256<int> o5, out Vector256<int> o6, out Vector256<int> o7)
    {
        Vector256<int> r0 = Avx.LoadVector256((int*)src);
        Vector256<int> r1 = Avx.LoadVector256((int*)(src + pitch));
        Vector256<int> r2 = Avx.LoadVector256((int*)(src + 2 * pitch));
        Vector256<int> r3 = Avx.LoadVector256((int*)(src + 3 * pitch));
        Vector256<int> r4 = Avx.LoadVector256((int*)(src + 4 * pitch));
        Vector256<int> r5 = Avx.LoadVector256((int*)(src + 5 * pitch));
        Vector256<int> r6 = Avx.LoadVector256((int*)(src + 6 * pitch));
        Vector256<int> r7 = Avx.LoadVector256((int*)(src + 7 * pitch));
        Vector256<int> t0 = Avx2.UnpackLow(r0, r1), t1 = Avx2.UnpackHigh(r0, r1);
        Vector256<int> t2 = Avx2.UnpackLow(r2, r3), t3 = Avx2.UnpackHigh(r2, r3);
        Vector256<int> t4 = Avx2.UnpackLow(r4, r5), t5 = Avx2.UnpackHigh(r4, r5);
        Vector256<int> t6 = Avx2.UnpackLow(r6, r7), t7 = Avx2.UnpackHigh(r6, r7);
        Vector256<int> u0 = Avx2.UnpackLow(t0.AsInt64(), t2.AsInt64()).AsInt32();
        Vector256<int> u1 = Avx2.UnpackHigh(t0.AsInt64(), t2.AsInt64()).AsInt32();
        Vector256<int> u2 = Avx2.UnpackLow(t1.AsInt64(), t3.AsInt64()).AsInt32();
        Vector256<int> u3 = Avx2.UnpackHigh(t1.AsInt64(), t3.AsInt64()).AsInt32();
        Vector256<int> u4 = Avx2.UnpackLow(t4.AsInt64(), t6.AsInt64()).AsInt32();
        Vector256<int> u5 = Avx2.UnpackHigh(t4.AsInt64(), t6.AsInt64()).AsInt32();
        Vector256<int> u6 = Avx2.UnpackLow(t5.AsInt64(), t7.AsInt64()).AsInt32();
        Vector256<int> u7 = Avx2.UnpackHigh(t5.AsInt64(), t7.AsInt64()).AsInt32();
        o0 = Avx2.Permute2x128(u0, u4, 0x20);
        o1 = Avx2.Permute2x128(u1, u5, 0x20);
        o2 = Avx2.Permute2x128(u2, u6, 0x20);
        o3 = Avx2.Permute2x128(u3, u7, 0x20);
        o4 = Avx2.Permute2x128(u0, u4, 0x31);
        o5 = Avx2.Permute2x128(u1, u5, 0x31);
        o6 = Avx2.Permute2x128(u2, u6, 0x31);
        o7 = Avx2.Permute2x128(u3, u7, 0x31);
    }
}

/// <summary>
/// One int8 dot-product step on 256-bit int32 accumulators: acc + the dot products of the four bytes
/// (VNNI, u8×s8) or the two int16 (AVX2, <c>vpmaddwd</c>) in each 32-bit lane of a and b.
/// </summary>
internal interface IInt8Dot
{
    /// <summary>acc + Σ over each lane's group of a·b (a is the broadcast A group, b the B group).</summary>
    static abstract Vector256<int> Accumulate(Vector256<int> acc, Vector256<int> a, Vector256<int> b);
}

/// <summary>AVX-VNNI <c>vpdpbusd</c>: u8 a × s8 b, four per lane.</summary>
internal struct VnniDot : IInt8Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Accumulate(Vector256<int> acc, Vector256<int> a, Vector256<int> b) =>
        Vnni256.DotAdd(acc, a.AsByte(), b.AsSByte());
}

/// <summary>The 256-bit <c>vpdpbusd</c> on every AVX2 CPU.</summary>
internal static class Vnni256
{
    /// <summary>
    /// acc + Σ of the four u8 a × s8 b products in each 32-bit lane, wrapping like <c>vpdpbusd</c>: the
    /// instruction where AVX-VNNI exists, else the same sums exactly from AVX2 (bytes 0 and 2, and bytes 1 and 3,
    /// widened to int16 and paired by <c>vpmaddwd</c>: |a·b| ≤ 255·128, so no step saturates). .NET 10 has no
    /// intrinsic for the AVX-512 VNNI form, so CPUs with AVX512_VNNI but not AVX-VNNI take the AVX2 form.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> DotAdd(Vector256<int> acc, Vector256<byte> a, Vector256<sbyte> b) =>
        AvxVnni.IsSupported ? AvxVnni.MultiplyWideningAndAdd(acc, a, b) : DotAddAvx2(acc, a, b);

    /// <summary>
    /// acc + the sum of each lane's four s8 bytes: <c>vpdpbusd</c> with ones where AVX-VNNI exists, else the AVX2
    /// <c>vpmaddubsw</c> of ones (pairs, |sum| ≤ 256, exact in int16) + <c>vpmaddwd</c> with ones (the same sums,
    /// two instructions instead of <see cref="DotAddAvx2"/>'s general form).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> QuadSums(Vector256<int> acc, Vector256<sbyte> v) =>
        AvxVnni.IsSupported
            ? AvxVnni.MultiplyWideningAndAdd(acc, Vector256.Create((byte)1), v)
            : Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.Create((byte)1), v), Vector256.Create((short)1)));

    /// <summary>The AVX2 form of <see cref="DotAdd"/> (internal for the tests on CPUs with AVX-VNNI).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> DotAddAvx2(Vector256<int> acc, Vector256<byte> a, Vector256<sbyte> b)
    {
        Vector256<short> aw = a.AsInt16(), bw = b.AsInt16();
        Vector256<short> aEven = Avx2.And(aw, Vector256.Create((short)0xFF));
        Vector256<short> aOdd = Avx2.ShiftRightLogical(aw, 8);
        Vector256<short> bEven = Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogical(bw, 8), 8);
        Vector256<short> bOdd = Avx2.ShiftRightArithmetic(bw, 8);
        return Avx2.Add(acc, Avx2.Add(Avx2.MultiplyAddAdjacent(aEven, bEven), Avx2.MultiplyAddAdjacent(aOdd, bOdd)));
    }
}

/// <summary>AVX2 <c>vpmaddwd</c> + <c>vpaddd</c>: int16 pairs.</summary>
internal struct Avx2Dot : IInt8Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Accumulate(Vector256<int> acc, Vector256<int> a, Vector256<int> b) =>
        Avx2.Add(acc, Avx2.MultiplyAddAdjacent(a.AsInt16(), b.AsInt16()));
}

/// <summary>
/// The float vector operations of one width (<typeparamref name="TVector"/>: Vector512 or Vector256 of
/// float), so that a float kernel is written once for both widths.
/// </summary>
internal unsafe interface IFloatWidth<TVector>
    where TVector : unmanaged
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }

    /// <summary>
    /// Whether a 4 × 4-vector block of accumulators fits the register file (AVX-512: 32 registers);
    /// the 256-bit kernels keep their smaller blocks for AVX2-only CPUs (16 registers).
    /// </summary>
    static abstract bool Block4x4 { get; }

    static abstract TVector Load(float* p);
    static abstract void Store(TVector v, float* p);
    static abstract TVector Create(float x);
    static abstract TVector Add(TVector a, TVector b);
    static abstract TVector Subtract(TVector a, TVector b);
    static abstract TVector Multiply(TVector a, TVector b);
    static abstract TVector Multiply(TVector a, float b);

    /// <summary>a·b + c with one rounding (where the CPU has no FMA, the 256-bit form multiplies and adds).</summary>
    static abstract TVector MultiplyAdd(TVector a, TVector b, TVector c);
    static abstract TVector MaxNative(TVector a, TVector b);
    static abstract TVector MinNative(TVector a, TVector b);
    static abstract TVector Round(TVector x);
    static abstract TVector LessThan(TVector a, TVector b);

    /// <summary>All bits set in the lanes that are not NaN.</summary>
    static abstract TVector NotNaN(TVector x);
    static abstract TVector And(TVector a, TVector b);
    static abstract TVector AndNot(TVector a, TVector b);

    /// <summary>Lane by lane: a where <paramref name="mask"/>'s lane has all bits set, else b (mask lanes are all or nothing).</summary>
    static abstract TVector Select(TVector mask, TVector a, TVector b);
    static abstract bool AllBitsSet(TVector x);
    static abstract float Sum(TVector x);

    /// <summary>The largest lane, by a tree of <c>MaxNative</c> (which NaN wins is unspecified: callers check NaN apart).</summary>
    static abstract float MaxAcross(TVector x);
    static abstract float GetElement(TVector x, int i);

    /// <summary>p·2^n for integral n in [−126, 127] (AVX-512: one vscalefps; AVX2: 2^n built in the exponent bits).</summary>
    static abstract TVector ScaleByPow2(TVector p, TVector n);

    /// <summary>a / b, correctly rounded.</summary>
    static abstract TVector Divide(TVector a, TVector b);

    /// <summary>e^x (the runtime's vectorized exp).</summary>
    static abstract TVector Exp(TVector x);

    /// <summary><see cref="Count"/> int8 values widened to float.</summary>
    static abstract TVector LoadInt8(sbyte* p);

    /// <summary>Stores integral values in [−128, 127] as <see cref="Count"/> int8 values.</summary>
    static abstract void StoreInt8(TVector integral, sbyte* p);

    /// <summary>
    /// Rotates adjacent pairs (a, b) of <paramref name="x"/> by the (cos, sin) pairs of <paramref name="cs"/>:
    /// (a·cos − b·sin, a·sin + b·cos), each product rounded, then the sum (no FMA), as <c>LayerMath.RotateFirst</c>/<c>RotateSecond</c>.
    /// </summary>
    static abstract TVector RotatePairs(TVector x, TVector cs);
}

/// <summary>512-bit float vectors (AVX-512F).</summary>
internal unsafe struct Float512 : IFloatWidth<Vector512<float>>
{
    public static int Count => 16;
    public static bool Block4x4 => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Create(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, float b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MaxNative(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MinNative(Vector512<float> a, Vector512<float> b) => Vector512.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Round(Vector512<float> x) => Vector512.Round(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> LessThan(Vector512<float> a, Vector512<float> b) => Vector512.LessThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> NotNaN(Vector512<float> x) => Vector512.Equals(x, x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> And(Vector512<float> a, Vector512<float> b) => a & b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> AndNot(Vector512<float> a, Vector512<float> b) => Vector512.AndNot(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Select(Vector512<float> mask, Vector512<float> a, Vector512<float> b) => Vector512.ConditionalSelect(mask, a, b);
    // As integers: AllBitsSet is a NaN as float.
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AllBitsSet(Vector512<float> x) => x.AsUInt32() == Vector512<uint>.AllBitsSet;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> x) => Vector512.Sum(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> x) => Float256.MaxAcross(Vector256.MaxNative(x.GetLower(), x.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GetElement(Vector512<float> x, int i) => x.GetElement(i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ScaleByPow2(Vector512<float> p, Vector512<float> n) => Avx512F.Scale(p, n);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Exp(Vector512<float> x) => Vector512.Exp(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> LoadInt8(sbyte* p) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(p)));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreInt8(Vector512<float> integral, sbyte* p) => Avx512F.ConvertToVector128SByte(Vector512.ConvertToInt32(integral)).Store(p);

    // Even lanes a·c + (−1)·(b·s): negating a product is exact, so this is a·c − b·s rounded as the scalar form.
    private static readonly Vector512<float> PairSign = Vector512.Create(-1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> RotatePairs(Vector512<float> x, Vector512<float> cs) =>
        (x * Avx512F.DuplicateEvenIndexed(cs)) + (Avx512F.Shuffle(x, x, 0b10_11_00_01) * Avx512F.DuplicateOddIndexed(cs) * PairSign);
}

/// <summary>256-bit float vectors (AVX2, FMA where the CPU has it).</summary>
internal unsafe struct Float256 : IFloatWidth<Vector256<float>>
{
    public static int Count => 8;
    public static bool Block4x4 => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Create(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, float b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : Avx.Add(c, Avx.Multiply(a, b));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MaxNative(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MinNative(Vector256<float> a, Vector256<float> b) => Vector256.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Round(Vector256<float> x) => Vector256.Round(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> LessThan(Vector256<float> a, Vector256<float> b) => Vector256.LessThan(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> NotNaN(Vector256<float> x) => Vector256.Equals(x, x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> And(Vector256<float> a, Vector256<float> b) => a & b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> AndNot(Vector256<float> a, Vector256<float> b) => Vector256.AndNot(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Select(Vector256<float> mask, Vector256<float> a, Vector256<float> b) => Vector256.ConditionalSelect(mask, a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AllBitsSet(Vector256<float> x) => x.AsUInt32() == Vector256<uint>.AllBitsSet;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> x) => Vector256.Sum(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> x)
    {
        Vector128<float> q = Vector128.MaxNative(x.GetLower(), x.GetUpper());
        q = Vector128.MaxNative(q, Vector128.Shuffle(q, Vector128.Create(2, 3, 0, 1)));
        q = Vector128.MaxNative(q, Vector128.Shuffle(q, Vector128.Create(1, 0, 3, 2)));
        return q.ToScalar();
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float GetElement(Vector256<float> x, int i) => x.GetElement(i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ScaleByPow2(Vector256<float> p, Vector256<float> n) =>
        p * Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Exp(Vector256<float> x) => Vector256.Exp(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LoadInt8(sbyte* p) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreInt8(Vector256<float> integral, sbyte* p)
    {
        Vector256<int> i = Vector256.ConvertToInt32(integral);
        Vector128<short> s = Vector128.Narrow(i.GetLower(), i.GetUpper());
        *(long*)p = Vector128.Narrow(s, s).AsInt64().ToScalar();
    }

    // addsubps: even lanes a·c − b·s, odd lanes a·c' + b·s' (products rounded first, no FMA).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> RotatePairs(Vector256<float> x, Vector256<float> cs) =>
        Avx.AddSubtract(Avx.Multiply(x, Avx.DuplicateEvenIndexed(cs)), Avx.Multiply(Avx.Shuffle(x, x, 0b10_11_00_01), Avx.DuplicateOddIndexed(cs)));
}
