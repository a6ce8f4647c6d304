using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels.Backends.Simd;

/// <summary>
/// Where and how <see cref="Int8GemmSimd"/> writes its results: either the raw int32 accumulators
/// (<c>C[bt·StrideC + row·n + col] = acc</c>) or the fused dequantization
/// (<c>Y[bt·StrideY + row·n + col] = acc·AScale[bt·StrideAScale + row]·BScale[bt·StrideBScale + col] (+ Bias[bt·StrideBScale + col])</c>,
/// in float32, in that order, without FMA contraction: bit-identical to the device kernels' <c>DequantEpilogue</c>).
/// All pointers refer to native (pinned or unmanaged) memory that stays valid during the call.
/// </summary>
internal readonly unsafe struct SimdEpilogue
{
    private SimdEpilogue(int* c, long strideC, float* y, long strideY, float* aScale, long strideAScale,
        float* bScale, float* bias, long strideBScale)
    {
        C = c;
        StrideC = strideC;
        Y = y;
        StrideY = strideY;
        AScale = aScale;
        StrideAScale = strideAScale;
        BScale = bScale;
        Bias = bias;
        StrideBScale = strideBScale;
    }

    /// <summary>int32 output (null for the dequantizing epilogue).</summary>
    public int* C { get; }

    /// <summary>Elements of C between consecutive GEMMs of a batch.</summary>
    public long StrideC { get; }

    /// <summary>float32 output of the dequantizing epilogue (null for int32 output).</summary>
    public float* Y { get; }

    /// <summary>Elements of Y between consecutive GEMMs of a batch.</summary>
    public long StrideY { get; }

    /// <summary>Per-row activation scales.</summary>
    public float* AScale { get; }

    /// <summary>Elements of AScale between consecutive GEMMs (0: shared).</summary>
    public long StrideAScale { get; }

    /// <summary>Per-column weight scales.</summary>
    public float* BScale { get; }

    /// <summary>Per-column bias, or null for none.</summary>
    public float* Bias { get; }

    /// <summary>Elements of BScale and Bias between consecutive GEMMs (0: shared).</summary>
    public long StrideBScale { get; }

    /// <summary>True for the dequantizing epilogue.</summary>
    public bool IsDequant => Y != null;

    /// <summary>Raw int32 output.</summary>
    public static SimdEpilogue Int32(int* c, long strideC) =>
        new(c, strideC, null, 0, null, 0, null, null, 0);

    /// <summary>
    /// The one translation of a device epilogue (<see cref="Int32Epilogue"/>, <see cref="DequantEpilogue"/>)
    /// on host-memory views (ILGPU's CPU accelerator) into the SIMD path's pointers.
    /// </summary>
    public static SimdEpilogue Of<TEpilogue>(TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue => epilogue switch
        {
            Int32Epilogue c => Int32((int*)c.C.LoadEffectiveAddressAsPtr(), c.BatchStride),
            DequantEpilogue d => Dequant(
                (float*)d.Y.LoadEffectiveAddressAsPtr(), d.YBatchStride,
                (float*)d.AScale.LoadEffectiveAddressAsPtr(), d.AScaleBatchStride,
                (float*)d.BScale.LoadEffectiveAddressAsPtr(),
                d.HasBias != 0 ? (float*)d.Bias.LoadEffectiveAddressAsPtr() : null,
                d.BScaleBatchStride),
            _ => throw new NotSupportedException($"The SIMD path has no epilogue {typeof(TEpilogue).Name}."),
        };

    /// <summary>The dequantizing float32 output (<paramref name="bias"/> may be null).</summary>
    public static SimdEpilogue Dequant(float* y, long strideY, float* aScale, long strideAScale, float* bScale,
        float* bias, long strideBScale) =>
        new(null, 0, y, strideY, aScale, strideAScale, bScale, bias, strideBScale);
}
