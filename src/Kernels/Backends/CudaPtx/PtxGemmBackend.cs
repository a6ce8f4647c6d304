using ILGPU;
using Kernels.Backends.Ilgpu;
using Kernels.DeviceCode;

namespace Kernels.Backends.CudaPtx;

/// <summary>
/// Int8 GEMM on CUDA: the generated tensor-core PTX (<see cref="TensorCoreGemm"/>) when the device has
/// compute capability ≥ 8.0 and the driver accepts the module, else dp4a; the other ILGPU kernels on
/// request. A and B are read in place when their rows are 16-byte aligned (k % 16 = 0, aligned
/// addresses and batch strides), else copied into zero-padded rows first.
/// </summary>
internal sealed class PtxGemmBackend(KernelSession session, PtxModules modules) : IlgpuGemmBackend(session)
{
    public override GemmKernel Select(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Auto => modules.GemmUnsupported is null ? GemmKernel.TensorCore : GemmKernel.Dp4a,
        // Compute capability below 8.0: the dp4a kernel instead (TensorCoreUnsupported says why). An explicit
        // request on a device that can run it but whose driver rejected the module throws (see PtxModules.Gemm).
        GemmKernel.TensorCore => modules.CapabilityGap is null ? GemmKernel.TensorCore : GemmKernel.Dp4a,
        _ => base.Select(kernel),
    };

    public override IReadOnlyList<GemmKernel> Compared => [GemmKernel.Reference, GemmKernel.Tiled, GemmKernel.Dp4a];

    public override void Run<TEpilogue>(ArrayView<sbyte> a, ArrayView<sbyte> b, in GemmProblem problem, TEpilogue epilogue,
        GemmKernel requested, DeviceBuffer<sbyte>? weights)
    {
        GemmKernel kernel = Select(requested);
        if (kernel == GemmKernel.TensorCore)
        {
            if (modules.Gemm(explicitlyRequested: requested == GemmKernel.TensorCore) is { } tensorCore)
            {
                RunTensorCore(tensorCore, a, b, problem, epilogue);
                return;
            }
            kernel = GemmKernel.Dp4a;
        }
        Launch(kernel, a, b, problem, epilogue);
    }

    private void RunTensorCore<TEpilogue>(TensorCoreGemm tensorCore, ArrayView<sbyte> a, ArrayView<sbyte> b, in GemmProblem problem, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        (int m, int n, int k, StridedBatch batch) = problem;
        int kPad = (k + 15) / 16 * 16;
        (long aAddress, long strideA) = modules.AlignedRows(a, m, k, kPad, batch.Count, batch.StrideA, second: false);
        (long bAddress, long strideB) = modules.AlignedRows(b, n, k, kPad, batch.Count, batch.StrideB, second: true);
        PtxOutput o = modules.OutputOf(epilogue);
        var operands = new TensorCoreOperands(aAddress, bAddress, o.Output, o.AScale, o.BScale, o.Bias, kPad, o.Ld, o.HasBias,
            strideA, strideB, o.OutputStride, o.AScaleStride, o.BScaleStride);
        TensorCorePlan plan = TensorCoreGemm.Plan(m, n, batch.Count, Session.Accelerator.NumMultiprocessors);
        long[] arguments = TensorCoreGemm.Arguments(plan, m, n, k, operands);
        tensorCore.Launch(plan, o.Kind, Session.Stream, arguments);
    }
}
