using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels;

public sealed partial class KernelSession
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _attentionPartials;

    /// <summary>
    /// ILGPU attention (CUDA, OpenCL, CPU accelerator): enqueues the fused kernel writing
    /// <paramref name="output"/> [B, H, Sq, D] directly, or, with <paramref name="splits"/> &gt; 1, writing
    /// per-split partials (max, sum of weights, unnormalized accumulators) to scratch and then the combine
    /// kernel. <paramref name="keyLengths"/> holds B key lengths when <paramref name="ragged"/>.
    /// </summary>
    private void RunAttentionIlgpu(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output, ArrayView<int> keyLengths,
        bool ragged, AttentionShape shape, float scale, int window, int splits)
    {
        AttentionLaunch launch = PrepareAttentionLaunch(shape, scale, window, ragged, splits);
        LaunchAttention(new FloatAttentionIo { Query = q, Key = k, Value = v, Output = output }, keyLengths, launch, shape.HeadDim);
    }

    /// <summary>Enqueues the fused kernel for one storage format and, with splits &gt; 1, the combine kernel.</summary>
    private void LaunchAttention<TIo>(TIo io, ArrayView<int> keyLengths, AttentionLaunch launch, int headDim)
        where TIo : struct, IAttentionIo
    {
        bool wide = headDim > AttentionKernels.NarrowMaxHeadDim;
        var forward = Kernel($"attention/forward{(wide ? "-wide" : "")}/{typeof(TIo).Name}", acc =>
            GroupedKernels.Load<TIo, ArrayView<float>, ArrayView<int>, AttentionParams>(acc,
                wide ? AttentionKernels.ForwardWide<TIo> : AttentionKernels.Forward<TIo>));
        forward(Stream, launch.Config, io, launch.Partials, keyLengths, launch.Params);
        if (launch.Params.Splits == 1)
            return;
        var combine = Kernel($"attention/combine/{typeof(TIo).Name}", acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, TIo, long, int, int>(AttentionKernels.Combine<TIo>));
        combine(Stream, new Index1D(checked((int)(launch.Rows * headDim))), launch.Partials, io, launch.Rows, headDim, launch.Params.Splits);
    }

    /// <summary>Grid, parameters and split scratch of one ILGPU attention launch (float, half or int8-KV kernels).</summary>
    private readonly record struct AttentionLaunch(AttentionParams Params, KernelConfig Config, ArrayView<float> Partials, long Rows);

    /// <summary>
    /// Checks the grid limits and sets up a launch of the fused attention kernels, which all share the same
    /// tiling: groups of <see cref="AttentionKernels.GroupSize"/> threads over (query blocks, batch·kv heads,
    /// splits), static shared memory for the tiles, and split partials in session scratch when splits &gt; 1.
    /// </summary>
    private AttentionLaunch PrepareAttentionLaunch(AttentionShape shape, float scale, int window, bool ragged, int splits)
    {
        int d = shape.HeadDim;
        splits = Math.Max(1, splits);
        if ((long)shape.Batch * shape.KvHeads > Check.MaxBatch)
            throw new ArgumentException(
                $"shape: the {Backend.ToName()} attention kernel launches Batch·KvHeads groups along a grid axis limited to {Check.MaxBatch}; got {(long)shape.Batch * shape.KvHeads}.", nameof(shape));
        if ((long)shape.Batch * shape.Heads * shape.QueryLength * d > int.MaxValue)
            throw new ArgumentException(
                $"shape: at most {int.MaxValue} output elements per call on the {Backend.ToName()} backend, got {(long)shape.Batch * shape.Heads * shape.QueryLength * d}.", nameof(shape));
        var p = new AttentionParams
        {
            Batch = shape.Batch,
            Heads = shape.Heads,
            KvHeads = shape.KvHeads,
            QueryLength = shape.QueryLength,
            KeyLength = shape.KeyLength,
            HeadDim = d,
            Causal = shape.Causal ? 1 : 0,
            Window = window,
            Ragged = ragged ? 1 : 0,
            Splits = splits,
            TileKeys = AttentionKernels.TileKeysFor(d),
            Scale = scale,
        };
        long rows = (long)shape.Batch * shape.Heads * shape.QueryLength;
        ArrayView<float> partials = splits > 1
            ? Scratch(ref _attentionPartials, splits * rows * AttentionKernels.PartialStride(d), "attention partials")
            : _dummy.View;
        int rowsPerKv = shape.Heads / shape.KvHeads * shape.QueryLength;
        var config = new KernelConfig(
            new Index3D((rowsPerKv + AttentionKernels.BlockRows - 1) / AttentionKernels.BlockRows, shape.Batch * shape.KvHeads, splits),
            new Index3D(AttentionKernels.GroupSize, 1, 1));
        return new AttentionLaunch(p, config, partials, rows);
    }
}
