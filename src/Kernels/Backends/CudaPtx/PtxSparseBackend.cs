using ILGPU;
using Kernels.Backends.Ilgpu;

namespace Kernels.Backends.CudaPtx;

/// <summary>
/// Sparse products on CUDA: int8 2:4 matrices on the sparse tensor cores (<c>mma.sp</c>, compute
/// capability ≥ 8.0, the module loaded at the first 2:4 product; a rejected module selects the ILGPU
/// kernels from then on and is reported by <see cref="PtxModules.SparseUnsupported"/>), everything else
/// on the ILGPU kernels of the base class. A 2:4 upload gets, besides the tiles, a copy of its values
/// and metadata rearranged once into the fragment order of <c>mma.sp</c> (<see cref="SparseTensorCorePacked"/>).
/// </summary>
internal sealed class PtxSparseBackend(KernelSession session, PtxModules modules) : IlgpuSparseBackend(session)
{
    public override IPreparedSparse? Prepare<T>(DeviceSparseMatrix<T> w, SparseParts<T> parts)
    {
        IPreparedSparse? tiles = base.Prepare(w, parts);
        if (parts is not SparseParts<sbyte> int8 || w.Format != SparseFormat.TwoFour || w.Rows == 0 || modules.CapabilityGap is not null)
            return tiles;
        SparseTensorCorePacked packed = SparseTensorCorePacked.Pack(w.Rows, w.Columns, int8.Values, int8.Meta);
        if (!SparseTensorCoreGemm.Addressable(packed.RowTiles, packed.KSteps))
            return tiles;
        try
        {
            DeviceBuffer<byte> values = Session.Upload<byte>(packed.Values);
            try
            {
                return new PtxSparseWeights((SparseTiledWeights)tiles!, values, Session.Upload<uint>(packed.Meta), packed.KSteps);
            }
            catch
            {
                values.Dispose();
                throw;
            }
        }
        catch
        {
            tiles?.Dispose();
            throw;
        }
    }

    public override SparseInt8Path Select(DeviceSparseMatrix<sbyte> w, int m) =>
        w.Prepared is PtxSparseWeights && modules.Sparse() is not null ? SparseInt8Path.TensorCore : base.Select(w, m);

    public override SparseKernelChoice Describe(DeviceSparseMatrix<sbyte> w, int m)
    {
        if (Select(w, m) == SparseInt8Path.TensorCore)
        {
            string form = modules.SparseForm switch
            {
                { Ordered: true } => "mma.sp::ordered_metadata",
                { OrderedFailure: { } failure } => $"mma.sp (ordered_metadata refused: {failure})",
                _ => "mma.sp",
            };
            return new SparseKernelChoice(SparseInt8Path.TensorCore, form, DenseFallback: false);
        }
        SparseKernelChoice ilgpu = base.Describe(w, m);
        return w.Format == SparseFormat.TwoFour && modules.SparseUnsupported is { } why
            ? ilgpu with { Kernel = $"{ilgpu.Kernel}; sparse tensor cores unused: {why}" }
            : ilgpu;
    }

    public override void Int8<TEpilogue>(DeviceSparseMatrix<sbyte> w, ArrayView<sbyte> x, int m, TEpilogue epilogue)
    {
        if (Select(w, m) != SparseInt8Path.TensorCore)
        {
            base.Int8(w, x, m, epilogue);
            return;
        }
        SparseTensorCoreGemm gemm = modules.Sparse() ?? throw new InvalidOperationException("The sparse tensor-core module is not loaded.");
        var packed = (PtxSparseWeights)w.Prepared!;
        int k = w.Columns, n = w.Rows;
        int ldx = (k + 15) / 16 * 16;
        (long xAddress, _) = modules.AlignedRows(x, m, k, ldx, 1, 0, second: false);
        PtxOutput o = modules.OutputOf(epilogue);
        var operands = new SparseTensorCoreOperands(PtxModules.Address(packed.Values.View), PtxModules.Address(packed.Meta.View), xAddress,
            o.Output, o.AScale, o.BScale, o.Bias, ldx, ldx, o.Ld, o.HasBias);
        SparseTensorCorePlan plan = SparseTensorCoreGemm.Plan(m, n);
        gemm.Launch(plan, o.Kind, Session.Stream, SparseTensorCoreGemm.Arguments(m, n, packed.KSteps, operands));
    }
}

/// <summary>An int8 2:4 matrix prepared for CUDA: the tiles of the ILGPU kernel and the copy packed for <c>mma.sp</c>.</summary>
internal sealed class PtxSparseWeights(SparseTiledWeights tiles, DeviceBuffer<byte> values, DeviceBuffer<uint> meta, int kSteps)
    : SparseTiledWeights(tiles.Pointers, tiles.Groups, tiles.Chunks)
{
    public DeviceBuffer<byte> Values { get; } = values;

    public DeviceBuffer<uint> Meta { get; } = meta;

    /// <summary>64-column k steps.</summary>
    public int KSteps { get; } = kSteps;

    public override long LengthInBytes => base.LengthInBytes + Values.LengthInBytes + Meta.LengthInBytes;

    public override void Dispose()
    {
        base.Dispose();
        Values.Dispose();
        Meta.Dispose();
    }
}
