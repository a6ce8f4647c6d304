using ILGPU;

namespace Kernels.DeviceCode;

/// <summary>
/// Writes one finished int32 accumulator of a GEMM. Kernels call <see cref="Store"/> only for
/// in-bounds elements (row &lt; m, col &lt; n), exactly once per element.
/// </summary>
public interface IGemmEpilogue
{
    /// <summary>Stores the accumulator of output element (<paramref name="row"/>, <paramref name="col"/>) of GEMM <paramref name="batch"/>.</summary>
    /// <param name="batch">Index of the GEMM in a strided batch (0 for a single GEMM).</param>
    /// <param name="row">Output row, in [0, m).</param>
    /// <param name="col">Output column, in [0, n).</param>
    /// <param name="acc">The exact int32 sum over k.</param>
    void Store(int batch, int row, int col, int acc);
}

/// <summary>Stores the raw int32 accumulators: <c>C[batch·BatchStride + row·Ldc + col] = acc</c>.</summary>
public struct Int32Epilogue : IGemmEpilogue
{
    /// <summary>The output view.</summary>
    public ArrayView<int> C;

    /// <summary>Elements between two consecutive GEMMs of a batch.</summary>
    public long BatchStride;

    /// <summary>Elements between two consecutive rows (n for a dense output).</summary>
    public int Ldc;

    /// <inheritdoc />
    public readonly void Store(int batch, int row, int col, int acc) =>
        C[batch * BatchStride + (long)row * Ldc + col] = acc;
}

/// <summary>
/// The fused dequantizing epilogue: <c>Y[row, col] = acc · AScale[row] · BScale[col] + Bias[col]</c>
/// in float32, evaluated in that order (product left to right, then the bias).
/// </summary>
public struct DequantEpilogue : IGemmEpilogue
{
    /// <summary>The float32 output view.</summary>
    public ArrayView<float> Y;

    /// <summary>Per-row (per-token) activation scales.</summary>
    public ArrayView<float> AScale;

    /// <summary>Per-column (per-output-channel) weight scales.</summary>
    public ArrayView<float> BScale;

    /// <summary>Per-column bias; read only when <see cref="HasBias"/> is non-zero.</summary>
    public ArrayView<float> Bias;

    /// <summary>Non-zero when a bias is added.</summary>
    public int HasBias;

    /// <summary>Elements between two consecutive rows of Y (n for a dense output).</summary>
    public int Ldy;

    /// <summary>Elements of Y between two consecutive GEMMs of a batch.</summary>
    public long YBatchStride;

    /// <summary>Elements of <see cref="AScale"/> between two consecutive GEMMs of a batch.</summary>
    public long AScaleBatchStride;

    /// <summary>Elements of <see cref="BScale"/> and <see cref="Bias"/> between two consecutive GEMMs (0: shared).</summary>
    public long BScaleBatchStride;

    /// <inheritdoc />
    public readonly void Store(int batch, int row, int col, int acc)
    {
        float value = acc * AScale[batch * AScaleBatchStride + row] * BScale[batch * BScaleBatchStride + col];
        if (HasBias != 0)
            value += Bias[batch * BScaleBatchStride + col];
        Y[batch * YBatchStride + (long)row * Ldy + col] = value;
    }
}
