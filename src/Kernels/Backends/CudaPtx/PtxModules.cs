using ILGPU;
using Kernels.Backends.Ilgpu;
using Kernels.DeviceCode;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Backends.CudaPtx;

/// <summary>
/// The CUDA PTX tier's state in one session: whether the device can run the generated tensor-core
/// kernels at all, the two modules (dense <see cref="TensorCoreGemm"/>, sparse <see cref="SparseTensorCoreGemm"/>)
/// loaded on first use with their load failures remembered, the translation of a device epilogue into
/// the PTX kernels' operands, and the zero-padded row copies the 16-byte loads need. Every session has
/// one (on other accelerators it only answers why the tier is unavailable).
/// </summary>
internal sealed class PtxModules(KernelSession session) : IDisposable
{
    private TensorCoreGemm? _gemm;
    private SparseTensorCoreGemm? _sparse;
    private string? _gemmLoadFailure, _sparseLoadFailure, _capabilityGap;
    private bool _checked;
    private readonly ScratchBuffers _scratch = new(session);

    /// <summary>Why the device itself cannot run the tensor-core kernels (not CUDA, compute capability below 8.0), or null.</summary>
    public string? CapabilityGap
    {
        get
        {
            if (!_checked)
            {
                _capabilityGap = TensorCoreGemm.WhyUnsupported(session.Accelerator);
                _checked = true;
            }
            return _capabilityGap;
        }
    }

    /// <summary>Why the dense tensor-core GEMM does not run (capability, or the driver rejected the module), or null.</summary>
    public string? GemmUnsupported => CapabilityGap ?? _gemmLoadFailure;

    /// <summary>Why the sparse tensor-core GEMM does not run, or null.</summary>
    public string? SparseUnsupported => CapabilityGap ?? _sparseLoadFailure;

    /// <summary>The loaded sparse module's form (ordered metadata, and why not), or null before it is loaded.</summary>
    public (bool Ordered, string? OrderedFailure)? SparseForm =>
        _sparse is null ? null : (_sparse.OrderedMetadata, _sparse.OrderedFailure);

    /// <summary>
    /// The dense module, loaded once. When the driver rejects it (an old driver that does not know the
    /// PTX ISA version, say) the failure is kept in <see cref="GemmUnsupported"/> and null is returned
    /// from then on, or, for an explicit request, an exception with the JIT log is thrown.
    /// </summary>
    public TensorCoreGemm? Gemm(bool explicitlyRequested)
    {
        if (_gemm is not null)
            return _gemm;
        if (_gemmLoadFailure is null)
        {
            try
            {
                return _gemm = TensorCoreGemm.Load(session.Accelerator);
            }
            catch (InvalidOperationException ex)
            {
                _gemmLoadFailure = ex.Message;
            }
        }
        return explicitlyRequested ? throw new InvalidOperationException(_gemmLoadFailure) : null;
    }

    /// <summary>The sparse module, loaded once; null (from then on) when the driver rejected it.</summary>
    public SparseTensorCoreGemm? Sparse()
    {
        if (_sparse is not null || _sparseLoadFailure is not null)
            return _sparse;
        try
        {
            return _sparse = SparseTensorCoreGemm.Load(session.Accelerator);
        }
        catch (InvalidOperationException ex)
        {
            _sparseLoadFailure = ex.Message;
            return null;
        }
    }

    /// <summary>
    /// The one translation of a device epilogue into the PTX kernels' operands (unused pointers
    /// point at the session's dummy buffer, never at 0).
    /// </summary>
    public PtxOutput OutputOf<TEpilogue>(TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        long dummy = Address(session.Dummy);
        return epilogue switch
        {
            Int32Epilogue c => new PtxOutput(PtxEpilogue.Raw, Address(c.C), dummy, dummy, dummy, c.Ldc, false, c.BatchStride, 0, 0),
            DequantEpilogue d => new PtxOutput(PtxEpilogue.Dequant, Address(d.Y), Address(d.AScale), Address(d.BScale),
                d.HasBias != 0 ? Address(d.Bias) : dummy, d.Ldy, d.HasBias != 0, d.YBatchStride, d.AScaleBatchStride, d.BScaleBatchStride),
            _ => throw new NotSupportedException($"The PTX kernels have no epilogue {typeof(TEpilogue).Name}."),
        };
    }

    /// <summary>The device address of a view's first element (CUDA buffers).</summary>
    public static long Address<T>(ArrayView<T> view)
        where T : unmanaged =>
        ((IArrayView)view).Buffer.NativePtr.ToInt64() + ((IContiguousArrayView)view).IndexInBytes;

    /// <summary>
    /// Rows of int8 values at a 16-byte aligned address with a row length of a multiple of 16: the view
    /// itself when it already is (<see cref="TensorCoreGemm.RowsUsableInPlace"/>), else a zero-padded copy
    /// of <paramref name="kPad"/> bytes per row in scratch space (<paramref name="second"/>: the slot for
    /// the second operand). Returns the device address and the batch stride in bytes.
    /// </summary>
    public (long Address, long Stride) AlignedRows(ArrayView<sbyte> source, int rows, int k, int kPad, int batchCount, long stride, bool second)
    {
        long address = Address(source);
        if (TensorCoreGemm.RowsUsableInPlace(k, address, stride))
            return (address, stride);
        int batches = stride == 0 ? 1 : batchCount;
        int kWords = kPad / 4;
        ArrayView<int> packed = second
            ? _scratch.Get<int>("padded b", (long)batches * rows * kWords)
            : _scratch.Get<int>("padded a", (long)batches * rows * kWords);
        RowPacking.Pack(session, source, packed, rows, k, kWords, batches, stride);
        return (Address(packed), stride == 0 ? 0 : (long)rows * kPad);
    }

    public void Dispose()
    {
        _gemm?.Dispose();
        _gemm = null;
        _sparse?.Dispose();
        _sparse = null;
    }
}

/// <summary>An epilogue as the generated PTX kernels take it: device addresses and strides.</summary>
internal readonly record struct PtxOutput(
    PtxEpilogue Kind, long Output, long AScale, long BScale, long Bias, int Ld, bool HasBias,
    long OutputStride, long AScaleStride, long BScaleStride);
