using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using Kernels.DeviceCode;
using Half = System.Half;

namespace Kernels.Backends.Ilgpu;

/// <summary>
/// Attention on the ILGPU accelerators (CUDA, OpenCL, the CPU accelerator): the fused kernel of
/// <see cref="AttentionKernels"/> for the storage format (<see cref="FloatAttentionIo"/>,
/// <see cref="HalfAttentionIo"/>, <see cref="Int8KvAttentionIo"/>), writing the output directly or, with
/// splits &gt; 1, per-split partials that the combine kernel merges. Host arrays are staged in this
/// backend's own scratch buffers (grown, never shrunk; freed with the session's accelerator).
/// </summary>
internal sealed class IlgpuAttentionBackend(KernelSession session) : IAttentionBackend
{
    private readonly ScratchBuffers _scratch = new(session);

    public int Parallelism => session.Accelerator is CPUAccelerator
        ? Environment.ProcessorCount
        : Math.Max(1, session.Accelerator.NumMultiprocessors * 4);

    public void Float(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<int> keyLengths,
        Span<float> output, in AttentionProblem problem)
    {
        ArrayView<float> ov = _scratch.Get<float>("output", output.Length);
        Float(_scratch.Stage(nameof(q), q), _scratch.Stage(nameof(k), k), _scratch.Stage(nameof(v), v),
            Lengths(keyLengths), !keyLengths.IsEmpty, ov, problem);
        HostCopy.ToHost(session.Stream, ov, output);
    }

    public void Half(ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, ReadOnlySpan<int> keyLengths,
        Span<Half> output, in AttentionProblem problem)
    {
        ArrayView<ushort> ov = _scratch.Get<ushort>("output", output.Length);
        var io = new HalfAttentionIo
        {
            Query = _scratch.Stage(nameof(q), MemoryMarshal.Cast<Half, ushort>(q)),
            Key = _scratch.Stage(nameof(k), MemoryMarshal.Cast<Half, ushort>(k)),
            Value = _scratch.Stage(nameof(v), MemoryMarshal.Cast<Half, ushort>(v)),
            Output = ov,
        };
        Launch(io, Lengths(keyLengths), Prepare(problem, ragged: !keyLengths.IsEmpty), problem.Shape.HeadDim);
        HostCopy.ToHost(session.Stream, ov, MemoryMarshal.Cast<Half, ushort>(output));
    }

    public void Int8Kv(ReadOnlySpan<float> q, ReadOnlySpan<sbyte> k, ReadOnlySpan<float> kScale, ReadOnlySpan<sbyte> v,
        ReadOnlySpan<float> vScale, ReadOnlySpan<int> keyLengths, Span<float> output, in AttentionProblem problem)
    {
        ArrayView<float> ov = _scratch.Get<float>("output", output.Length);
        var io = new Int8KvAttentionIo
        {
            Query = _scratch.Stage(nameof(q), q),
            Key = _scratch.Stage("kCache", k),
            KeyScale = _scratch.Stage(nameof(kScale), kScale),
            Value = _scratch.Stage("vCache", v),
            ValueScale = _scratch.Stage(nameof(vScale), vScale),
            Output = ov,
        };
        Launch(io, Lengths(keyLengths), Prepare(problem, ragged: true), problem.Shape.HeadDim);
        HostCopy.ToHost(session.Stream, ov, output);
    }

    public void Float(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<int> keyLengths, bool ragged,
        ArrayView<float> output, in AttentionProblem problem) =>
        Launch(new FloatAttentionIo { Query = q, Key = k, Value = v, Output = output },
            ragged ? keyLengths : Lengths(default), Prepare(problem, ragged), problem.Shape.HeadDim);

    /// <summary>The key lengths staged, or (prefill) a one-element placeholder the kernel does not read.</summary>
    private ArrayView<int> Lengths(ReadOnlySpan<int> keyLengths) =>
        keyLengths.IsEmpty ? _scratch.Get<int>("cacheLengths", 1) : _scratch.Stage("cacheLengths", keyLengths);

    /// <summary>Enqueues the fused kernel for one storage format and, with splits &gt; 1, the combine kernel.</summary>
    private void Launch<TIo>(TIo io, ArrayView<int> keyLengths, AttentionLaunch launch, int headDim)
        where TIo : struct, IAttentionIo
    {
        bool wide = headDim > AttentionKernels.NarrowMaxHeadDim;
        var forward = session.Kernel($"attention/forward{(wide ? "-wide" : "")}/{typeof(TIo).Name}", acc =>
            GroupedKernels.Load<TIo, ArrayView<float>, ArrayView<int>, AttentionParams>(acc,
                wide ? AttentionKernels.ForwardWide<TIo> : AttentionKernels.Forward<TIo>));
        forward(session.Stream, launch.Config, io, launch.Partials, keyLengths, launch.Params);
        if (launch.Params.Splits == 1)
            return;
        var combine = session.Kernel($"attention/combine/{typeof(TIo).Name}", acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, TIo, long, int, int>(AttentionKernels.Combine<TIo>));
        combine(session.Stream, new Index1D(checked((int)(launch.Rows * headDim))), launch.Partials, io, launch.Rows, headDim, launch.Params.Splits);
    }

    /// <summary>Grid, parameters and split scratch of one launch (float, half or int8-KV kernels).</summary>
    private readonly record struct AttentionLaunch(AttentionParams Params, KernelConfig Config, ArrayView<float> Partials, long Rows);

    /// <summary>
    /// Checks the grid limits and sets up a launch of the fused attention kernels, which all share the same
    /// tiling: groups of <see cref="AttentionKernels.GroupSize"/> threads over (query blocks, batch·kv heads,
    /// splits), static shared memory for the tiles, and split partials in scratch when splits &gt; 1.
    /// </summary>
    private AttentionLaunch Prepare(in AttentionProblem problem, bool ragged)
    {
        AttentionShape shape = problem.Shape;
        int d = shape.HeadDim;
        int splits = Math.Max(1, problem.Splits);
#pragma warning disable CA2208 // the argument the caller passed is the shape
        if ((long)shape.Batch * shape.KvHeads > Check.MaxBatch)
            throw new ArgumentException(
                $"shape: the {session.Backend.ToName()} attention kernel launches Batch·KvHeads groups along a grid axis limited to {Check.MaxBatch}; got {(long)shape.Batch * shape.KvHeads}.", "shape");
        if ((long)shape.Batch * shape.Heads * shape.QueryLength * d > int.MaxValue)
            throw new ArgumentException(
                $"shape: at most {int.MaxValue} output elements per call on the {session.Backend.ToName()} backend, got {(long)shape.Batch * shape.Heads * shape.QueryLength * d}.", "shape");
#pragma warning restore CA2208
        var p = new AttentionParams
        {
            Batch = shape.Batch,
            Heads = shape.Heads,
            KvHeads = shape.KvHeads,
            QueryLength = shape.QueryLength,
            KeyLength = shape.KeyLength,
            HeadDim = d,
            Causal = shape.Causal ? 1 : 0,
            Window = problem.Window,
            Ragged = ragged ? 1 : 0,
            Splits = splits,
            TileKeys = AttentionKernels.TileKeysFor(d),
            Scale = problem.Scale,
        };
        long rows = (long)shape.Batch * shape.Heads * shape.QueryLength;
        ArrayView<float> partials = splits > 1
            ? _scratch.Get<float>("attention partials", splits * rows * AttentionKernels.PartialStride(d))
            : session.Dummy;
        int rowsPerKv = shape.Heads / shape.KvHeads * shape.QueryLength;
        var config = new KernelConfig(
            new Index3D((rowsPerKv + AttentionKernels.BlockRows - 1) / AttentionKernels.BlockRows, shape.Batch * shape.KvHeads, splits),
            new Index3D(AttentionKernels.GroupSize, 1, 1));
        return new AttentionLaunch(p, config, partials, rows);
    }
}
