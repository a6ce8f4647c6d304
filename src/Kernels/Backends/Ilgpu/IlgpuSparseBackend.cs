using ILGPU;
using ILGPU.Runtime;
using Kernels.DeviceCode;

namespace Kernels.Backends.Ilgpu;

/// <summary>
/// Sparse products with the ILGPU kernels of <see cref="SparseKernels"/>: for int8 with more than
/// <see cref="SparseKernels.SmallM"/> tokens the tiled kernel (groups of four non-zeros per k chunk,
/// prepared at upload as <see cref="SparseTiledWeights"/>), for few tokens the small-m kernel (a group per
/// output), otherwise the general kernel on Xᵀ. Host-array calls upload each matrix object once and
/// keep it until the matrix is collected; X, Y and the scales are staged in this backend's scratch.
/// </summary>
internal class IlgpuSparseBackend(KernelSession session) : ISparseBackend
{
    private readonly ScratchBuffers _scratch = new(session);
    private readonly ConditionalWeakTable<object, object> _uploads = new();
    private readonly List<(WeakReference<object> Matrix, IDisposable Uploaded)> _uploadList = [];

    protected KernelSession Session => session;

    public int CachedUploads => _uploadList.Count;

    public virtual IPreparedSparse? Prepare<T>(DeviceSparseMatrix<T> w, SparseParts<T> parts)
        where T : unmanaged =>
        parts is SparseParts<sbyte> int8 && w.Rows > 0 ? SparseTiledWeights.Upload(session, int8) : null;

    public virtual SparseInt8Path Select(DeviceSparseMatrix<sbyte> w, int m)
    {
        if (m > SparseKernels.SmallM && session.SparseInt8Kernel != SparseInt8Kernel.General && w.Prepared is SparseTiledWeights)
            return SparseInt8Path.Tiled;
        return m <= SparseKernels.SmallM ? SparseInt8Path.SmallM : SparseInt8Path.General;
    }

    public virtual SparseKernelChoice Describe(DeviceSparseMatrix<sbyte> w, int m)
    {
        SparseInt8Path path = Select(w, m);
        string kernel = path == SparseInt8Path.Tiled
            ? "ILGPU tiled kernel (4 non-zeros × 4 tokens per dp4a, X chunks in shared memory)"
            : SmallOrGeneral(m);
        return new SparseKernelChoice(path, kernel, DenseFallback: false);
    }

    public string DescribeFloat32(DeviceSparseMatrix<float> w, int m) => SmallOrGeneral(m);

    private static string SmallOrGeneral(int m) =>
        m <= SparseKernels.SmallM ? "ILGPU small-m kernel (a group per output)" : "ILGPU general kernel (on Xᵀ)";

    public virtual void Int8<TEpilogue>(DeviceSparseMatrix<sbyte> w, ArrayView<sbyte> x, int m, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        if (Select(w, m) == SparseInt8Path.Tiled)
            LaunchTiled(w, (SparseTiledWeights)w.Prepared!, x, m, epilogue);
        else // SmallM or General: Launch picks between the two by m, as the selector did
            Launch<sbyte, int, Int8Product<TEpilogue>>(w, x, m, new Int8Product<TEpilogue> { Epilogue = epilogue });
    }

    public virtual void Float32(DeviceSparseMatrix<float> w, ArrayView<float> x, int m, Float32Product output) =>
        Launch<float, float, Float32Product>(w, x, m, output);

    public virtual void Int8(SparseMatrix w, ReadOnlySpan<sbyte> x, int m, Span<int> y)
    {
        ArrayView<sbyte> xv = _scratch.Stage(nameof(x), x);
        ArrayView<int> yv = _scratch.Get<int>("y", y.Length);
        Int8(Uploaded(w), xv, m, new Int32Epilogue { C = yv, Ldc = w.Rows });
        HostCopy.ToHost(session.Stream, yv, y);
    }

    public virtual void Int8Dequant(SparseMatrix w, ReadOnlySpan<sbyte> x, ReadOnlySpan<float> xScale, ReadOnlySpan<float> wScale,
        ReadOnlySpan<float> bias, int m, Span<float> y)
    {
        int n = w.Rows;
        ArrayView<sbyte> xv = _scratch.Stage(nameof(x), x);
        ArrayView<float> scales = _scratch.Get<float>("scales", (long)m + 2L * n);
        ArrayView<float> xsv = scales.SubView(0, m), wsv = scales.SubView(m, n), biasv = scales.SubView((long)m + n, n);
        session.CopyIn(xsv, xScale);
        session.CopyIn(wsv, wScale);
        session.CopyIn(biasv, bias);
        ArrayView<float> yv = _scratch.Get<float>("y", y.Length);
        Int8(Uploaded(w), xv, m, session.DequantOutput(yv, xsv, wsv, bias.IsEmpty ? null : biasv, n));
        HostCopy.ToHost(session.Stream, yv, y);
    }

    public virtual void Float32(SparseMatrixF32 w, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, int m, Span<float> y)
    {
        int n = w.Rows;
        ArrayView<float> xv = _scratch.Stage(nameof(x), x);
        ArrayView<float> biasv = _scratch.Get<float>("bias", n);
        session.CopyIn(biasv, bias);
        ArrayView<float> yv = _scratch.Get<float>("y", y.Length);
        Float32(Uploaded(w), xv, m, session.FloatOutput(yv, bias.IsEmpty ? null : biasv, n));
        HostCopy.ToHost(session.Stream, yv, y);
    }

    public virtual void Dispose()
    {
    }

    /// <summary>The device copy of a matrix for the host-array calls, uploaded once per matrix object.</summary>
    private DeviceSparseMatrix<T> Uploaded<T>(SparseMatrix<T> w)
        where T : unmanaged, System.Numerics.INumberBase<T>
    {
        // Free the uploads of matrices that were collected.
        for (int i = _uploadList.Count - 1; i >= 0; i--)
        {
            if (!_uploadList[i].Matrix.TryGetTarget(out _))
            {
                _uploadList[i].Uploaded.Dispose();
                _uploadList.RemoveAt(i);
            }
        }
        if (_uploads.TryGetValue(w, out object? cached))
            return (DeviceSparseMatrix<T>)cached;
        var uploaded = new DeviceSparseMatrix<T>(session, w.Parts, w.NonZeros);
        _uploads.Add(w, uploaded);
        _uploadList.Add((new WeakReference<object>(w), uploaded));
        return uploaded;
    }

    /// <summary>The tiled int8 kernel: X packed into token words (k×⌈m/4⌉ in scratch), then one group per 64 rows × 128 tokens.</summary>
    private void LaunchTiled<TEpilogue>(DeviceSparseMatrix<sbyte> w, SparseTiledWeights tiles, ArrayView<sbyte> x, int m, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        int n = w.Rows, k = w.Columns;
        CheckGrid(m, n, k);
        int m4 = (m + 3) / 4;
        ArrayView<int> xt4 = _scratch.Get<byte>("x packed in token words", (long)m4 * k * sizeof(int)).Cast<int>();
        var pack = session.Kernel("sparse/tiled/pack", acc =>
            acc.LoadAutoGroupedKernel<Index2D, ArrayView<sbyte>, ArrayView<int>, int, int, int>(SparseKernels.PackTokenWords));
        pack(session.Stream, new Index2D(m4, k), x, xt4, m, m4, k);
        var tiled = session.Kernel($"sparse/tiled/{typeof(TEpilogue).Name}", acc =>
            GroupedKernels.Load<ArrayView<int>, ArrayView<long>, ArrayView<int>, int, int, int, int, int, TEpilogue>(acc,
                SparseKernels.TiledInt8<TEpilogue>));
        var config = new KernelConfig(
            new Index2D((m4 + SparseKernels.TileWords - 1) / SparseKernels.TileWords, (n + SparseKernels.TileRows - 1) / SparseKernels.TileRows),
            new Index2D(SparseKernels.TileWords, SparseKernels.TileWarps));
        tiled(session.Stream, config, tiles.Pointers.View, tiles.Groups.View, xt4, m, m4, n, k, tiles.Chunks, epilogue);
    }

    private void CheckGrid(int m, int n, int k)
    {
        if (m > SparseKernels.SmallM && ((long)m * n > int.MaxValue || (long)m * k > int.MaxValue))
            throw new ArgumentException(
                $"m: the {session.Backend.ToName()} sparse kernel handles at most {int.MaxValue} elements of X and of Y per call, got m·Columns = {(long)m * k} and m·Rows = {(long)m * n}; split the call.", nameof(m));
    }

    /// <summary>Enqueues the sparse product: the small-m kernel, or the transpose and the general kernel.</summary>
    private void Launch<TValue, TAcc, TProduct>(DeviceSparseMatrix<TValue> w, ArrayView<TValue> x, int m, TProduct product)
        where TValue : unmanaged
        where TAcc : unmanaged
        where TProduct : struct, ISparseProduct<TValue, TAcc>
    {
        CheckGrid(m, w.Rows, w.Columns);
        var launch = new SparseLaunch<TValue, TAcc, TProduct>(this, x, m, w.Rows, w.Columns, product);
        w.Dispatch(ref launch);
    }

    private readonly struct SparseLaunch<TValue, TAcc, TProduct>(IlgpuSparseBackend backend, ArrayView<TValue> x, int m, int n, int k, TProduct product)
        : ISparseLaunch<TValue>
        where TValue : unmanaged
        where TAcc : unmanaged
        where TProduct : struct, ISparseProduct<TValue, TAcc>
    {
        public void Launch<TRows>(TRows rows)
            where TRows : struct, ISparseRows<TValue>
        {
            KernelSession session = backend.Session;
            // The product type's name and its epilogue's (Int8Product`1 of Int32Epilogue or DequantEpilogue).
            string productName = typeof(TProduct).Name + string.Concat(typeof(TProduct).GenericTypeArguments.Select(t => "/" + t.Name));
            string key = $"sparse/{typeof(TValue).Name}/{typeof(TRows).Name}/{productName}";
            if (m <= SparseKernels.SmallM)
            {
                var small = session.Kernel($"{key}/small", acc =>
                    GroupedKernels.Load<TRows, ArrayView<TValue>, int, TProduct>(acc, SparseKernels.Small<TValue, TAcc, TRows, TProduct>));
                small(session.Stream, new KernelConfig(new Index2D(n, m), new Index2D(SparseKernels.Lanes, 1)), rows, x, k, product);
                return;
            }

            // Xᵀ (k×m) in scratch, so that the threads of a group read consecutive tokens.
            ArrayView<TValue> xt = backend._scratch.Get<byte>("transposed x", (long)m * k * Unsafe.SizeOf<TValue>()).Cast<TValue>();
            var transpose = session.Kernel($"sparse/transpose/{typeof(TValue).Name}", acc =>
                acc.LoadAutoGroupedKernel<Index2D, ArrayView<TValue>, ArrayView<TValue>, int, int>(SparseKernels.Transpose));
            transpose(session.Stream, new Index2D(m, k), x, xt, m, k);
            var general = session.Kernel($"{key}/general", acc =>
                acc.LoadAutoGroupedKernel<Index2D, TRows, ArrayView<TValue>, int, TProduct>(SparseKernels.General<TValue, TAcc, TRows, TProduct>));
            general(session.Stream, new Index2D(m, n), rows, xt, m, product);
        }
    }
}

/// <summary>
/// An int8 matrix as the tiled kernel reads it: the groups of four non-zeros per k chunk
/// (<see cref="SparseTiles"/>), uploaded once with the matrix.
/// </summary>
internal class SparseTiledWeights(DeviceBuffer<int> pointers, DeviceBuffer<long> groups, int chunks) : IPreparedSparse
{
    public DeviceBuffer<int> Pointers { get; } = pointers;

    public DeviceBuffer<long> Groups { get; } = groups;

    /// <summary>k chunks.</summary>
    public int Chunks { get; } = chunks;

    public virtual long LengthInBytes => Pointers.LengthInBytes + Groups.LengthInBytes;

    public static SparseTiledWeights Upload(KernelSession session, SparseParts<sbyte> parts)
    {
        SparseTiles tiles = SparseTiles.Build(parts);
        DeviceBuffer<int> pointers = session.Upload<int>(tiles.Pointers);
        try
        {
            return new SparseTiledWeights(pointers, session.Upload<long>(tiles.Groups), tiles.Chunks);
        }
        catch
        {
            pointers.Dispose();
            throw;
        }
    }

    public virtual void Dispose()
    {
        Pointers.Dispose();
        Groups.Dispose();
    }
}
