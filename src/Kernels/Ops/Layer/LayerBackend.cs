using ILGPU;
using Kernels.DeviceCode;

namespace Kernels;

/// <summary>
/// The decoder's small ops on one backend. <see cref="KernelSession"/> picks the implementation once, when
/// it is created (<see cref="Backends.Simd.SimdLayerBackend"/> on cpu-simd, <see cref="Backends.Ilgpu.IlgpuLayerBackend"/>
/// on CUDA, OpenCL and the CPU accelerator); its layer methods validate, describe the call with the device
/// structs of <see cref="LayerKernels"/> (the row input, <see cref="RowOutput"/>, <see cref="RopeIo"/>/<see cref="RopeParams"/>)
/// and call here with the session's lock held. Every call is on views of session buffers (the host-array
/// overloads stage through the device API), enqueued on the session's stream.
/// </summary>
internal interface ILayerBackend
{
    /// <summary>
    /// A row op: <typeparamref name="TInput"/> is <see cref="RmsNormInput"/>, <see cref="SwiGluInput"/> or
    /// <see cref="HeadsInput"/>; the output is float rows or int8 rows with per-row scales.
    /// </summary>
    void Rows<TInput>(TInput input, RowOutput output, int rows, int n, float eps)
        where TInput : struct, IRowInput;

    /// <summary>x[i] += y[i], i &lt; count.</summary>
    void Add(ArrayView<float> x, ArrayView<float> y, long count);

    /// <summary>Embedding lookup of validated host token ids.</summary>
    void Embed(ArrayView<sbyte> table, ArrayView<float> rowScale, ReadOnlySpan<int> tokens, ArrayView<float> y, int n);

    /// <summary>RoPE on q and k, with k and v written into the caches.</summary>
    void Rope(RopeIo io, RopeParams p);
}
