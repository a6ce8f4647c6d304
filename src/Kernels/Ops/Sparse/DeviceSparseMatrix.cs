using ILGPU.Runtime;
using Kernels.Backends.Simd;
using Kernels.DeviceCode;

namespace Kernels;

/// <summary>
/// A sparse weight matrix in device memory, owned by one <see cref="KernelSession"/>: created by
/// <see cref="KernelSession.Upload(SparseMatrix)"/> or <see cref="KernelSession.Upload(SparseMatrixF32)"/>,
/// kept across calls, disposed when done. It holds the arrays of its <see cref="SparseFormat"/> layout
/// in device buffers (empty arrays as one-element placeholders).
/// </summary>
/// <typeparam name="T">The value type: <see cref="sbyte"/> or <see cref="float"/>.</typeparam>
public sealed class DeviceSparseMatrix<T> : IDisposable
    where T : unmanaged
{
    private readonly DeviceBuffer<int> _rowPointers;
    private readonly DeviceBuffer<int> _columnIndices;
    private readonly DeviceBuffer<T> _values;
    private readonly DeviceBuffer<byte> _meta;

    internal DeviceSparseMatrix(KernelSession session, SparseParts<T> parts, int nonZeros)
    {
        Session = session;
        Format = parts.Format;
        Rows = parts.Rows;
        Columns = parts.Columns;
        BlockRows = parts.BlockRows;
        BlockColumns = parts.BlockColumns;
        NonZeros = nonZeros;
        var uploaded = new List<IDisposable>();
        try
        {
            _rowPointers = Keep(uploaded, UploadOrPlaceholder<int>(session, parts.RowPointers));
            _columnIndices = Keep(uploaded, UploadOrPlaceholder<int>(session, parts.ColumnIndices));
            _values = Keep(uploaded, UploadOrPlaceholder<T>(session, parts.Values));
            _meta = Keep(uploaded, UploadOrPlaceholder<byte>(session, parts.Meta));
            // The backend's own format of the weights (tiles, tensor-core packing, CPU plans).
            Prepared = session.SparseBackend.Prepare(this, parts);
        }
        catch
        {
            foreach (IDisposable buffer in uploaded)
                buffer.Dispose();
            throw;
        }
    }

    /// <summary>The storage layout.</summary>
    public SparseFormat Format { get; }

    /// <summary>Rows (n, output channels).</summary>
    public int Rows { get; }

    /// <summary>Columns (k).</summary>
    public int Columns { get; }

    /// <summary>BSR block height (1 for the other formats).</summary>
    public int BlockRows { get; }

    /// <summary>BSR block width (1 for the other formats).</summary>
    public int BlockColumns { get; }

    /// <summary>Non-zero stored values.</summary>
    public int NonZeros { get; }

    /// <summary>Device memory held, in bytes.</summary>
    public long LengthInBytes =>
        _rowPointers.LengthInBytes + _columnIndices.LengthInBytes + _values.LengthInBytes + _meta.LengthInBytes
        + (Prepared?.LengthInBytes ?? 0);

    /// <summary>What the session's sparse backend prepared from the matrix in its own format (see <see cref="ISparseBackend.Prepare"/>), or null.</summary>
    internal IPreparedSparse? Prepared { get; }

    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    public bool IsDisposed => _values.IsDisposed;

    internal KernelSession Session { get; }

    /// <summary>Releases the device memory. Further use throws.</summary>
    public void Dispose()
    {
        Prepared?.Dispose();
        _rowPointers.Dispose();
        _columnIndices.Dispose();
        _values.Dispose();
        _meta.Dispose();
    }

    /// <summary>Hands the rows of the matrix, as the device-code struct of its layout, to <paramref name="launch"/>.</summary>
    internal void Dispatch<TLaunch>(ref TLaunch launch)
        where TLaunch : struct, ISparseLaunch<T>
    {
        switch (Format)
        {
            case SparseFormat.Csr:
                launch.Launch(new CsrRows<T> { RowPointers = _rowPointers.View, ColumnIndices = _columnIndices.View, Values = _values.View });
                break;
            case SparseFormat.Bsr:
                launch.Launch(new BsrRows<T>
                {
                    RowPointers = _rowPointers.View,
                    ColumnIndices = _columnIndices.View,
                    Values = _values.View,
                    BlockRows = BlockRows,
                    BlockColumns = BlockColumns,
                    Columns = Columns,
                });
                break;
            default:
                launch.Launch(new TwoFourRows<T> { Values = _values.View, Meta = _meta.View, Groups = SparseLayout.Groups(Columns), Columns = Columns });
                break;
        }
    }

    /// <summary>The matrix as raw pointers, for sessions whose device memory is host memory (cpu-simd).</summary>
    internal unsafe SparseWeights HostWeights => SparseLayout.Weights(
        Format, Rows, Columns, BlockRows, BlockColumns,
        (void*)_rowPointers.View.LoadEffectiveAddressAsPtr(), (void*)_columnIndices.View.LoadEffectiveAddressAsPtr(),
        (void*)_values.View.LoadEffectiveAddressAsPtr(), (void*)_meta.View.LoadEffectiveAddressAsPtr());

    private static DeviceBuffer<TElement> UploadOrPlaceholder<TElement>(KernelSession session, TElement[] data)
        where TElement : unmanaged =>
        data.Length == 0 ? session.Upload<TElement>([default]) : session.Upload<TElement>(data);

    private static DeviceBuffer<TElement> Keep<TElement>(List<IDisposable> uploaded, DeviceBuffer<TElement> buffer)
        where TElement : unmanaged
    {
        uploaded.Add(buffer);
        return buffer;
    }
}

/// <summary>A launch that is generic over the device-code rows struct of a layout (see <see cref="DeviceSparseMatrix{T}.Dispatch"/>).</summary>
internal interface ISparseLaunch<T>
    where T : unmanaged
{
    void Launch<TRows>(TRows rows)
        where TRows : struct, ISparseRows<T>;
}
