using System.Buffers.Binary;
using System.Text;
using Kernels.Decoder;

namespace Kernels.LlamaCpp;

/// <summary>The ggml tensor types <see cref="GgufWriter"/> writes (values as in ggml's <c>enum ggml_type</c>).</summary>
public enum GgufTensorType
{
    /// <summary>IEEE single precision, 4 bytes a value.</summary>
    F32 = 0,

    /// <summary>Blocks of 32 values: one IEEE half scale <c>d</c>, then 32 int8 <c>q</c>; value = d·q (34 bytes a block).</summary>
    Q8_0 = 8,
}

#pragma warning disable CA1720 // The names are the GGUF spec's (GGUF_METADATA_VALUE_TYPE_UINT8 …).
/// <summary>The GGUF metadata value types (values as in the GGUF spec's <c>gguf_metadata_value_type</c>).</summary>
public enum GgufValueType
{
    /// <summary>uint8.</summary>
    UInt8 = 0,

    /// <summary>int8.</summary>
    Int8 = 1,

    /// <summary>uint16.</summary>
    UInt16 = 2,

    /// <summary>int16.</summary>
    Int16 = 3,

    /// <summary>uint32.</summary>
    UInt32 = 4,

    /// <summary>int32.</summary>
    Int32 = 5,

    /// <summary>float32.</summary>
    Float32 = 6,

    /// <summary>bool (one byte, 0 or 1).</summary>
    Bool = 7,

    /// <summary>string: uint64 byte length, then UTF-8 bytes (no terminator).</summary>
    String = 8,

    /// <summary>array: uint32 element type, uint64 count, then the elements.</summary>
    Array = 9,

    /// <summary>uint64.</summary>
    UInt64 = 10,

    /// <summary>int64.</summary>
    Int64 = 11,

    /// <summary>float64.</summary>
    Float64 = 12,
}
#pragma warning restore CA1720

/// <summary>
/// Writes a GGUF version 3 file (little-endian): header, metadata key/values, tensor infos, then the tensor data,
/// each tensor at a multiple of <see cref="Alignment"/> bytes from the start of the data section.
/// Tensors are declared first with a callback that produces their data; <see cref="WriteTo(string)"/> calls the
/// callbacks one at a time and streams each tensor to disk, so the file is never held in memory.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>The data alignment in bytes (GGUF's default; <c>general.alignment</c> is not written).</summary>
    public const int Alignment = 32;

    /// <summary>Values per Q8_0 block.</summary>
    public const int Q8_0BlockSize = 32;

    /// <summary>Bytes per Q8_0 block: a half scale and 32 int8 values.</summary>
    public const int Q8_0BlockBytes = 2 + Q8_0BlockSize;

    private readonly List<(string Key, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<Tensor> _tensors = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    private sealed record Tensor(string Name, GgufTensorType Type, long[] Dims, long Bytes, Action<Stream> Write);

    /// <summary>Metadata entries declared so far.</summary>
    public int MetadataCount => _metadata.Count;

    /// <summary>Tensors declared so far.</summary>
    public int TensorCount => _tensors.Count;

    /// <summary>Adds a uint32 metadata value.</summary>
    public void AddUInt32(string key, uint value) => AddValue(key, GgufValueType.UInt32, w => w.Write(value));

    /// <summary>Adds an int32 metadata value.</summary>
    public void AddInt32(string key, int value) => AddValue(key, GgufValueType.Int32, w => w.Write(value));

    /// <summary>Adds a float32 metadata value.</summary>
    public void AddFloat32(string key, float value) => AddValue(key, GgufValueType.Float32, w => w.Write(value));

    /// <summary>Adds a bool metadata value.</summary>
    public void AddBool(string key, bool value) => AddValue(key, GgufValueType.Bool, w => w.Write((byte)(value ? 1 : 0)));

    /// <summary>Adds a string metadata value.</summary>
    public void AddString(string key, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        AddValue(key, GgufValueType.String, w => WriteString(w, value));
    }

    /// <summary>Adds an array of strings.</summary>
    public void AddStringArray(string key, IReadOnlyList<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        string[] copy = [.. values];
        AddArray(key, GgufValueType.String, copy.Length, w =>
        {
            foreach (string s in copy)
                WriteString(w, s);
        });
    }

    /// <summary>Adds an array of float32.</summary>
    public void AddFloat32Array(string key, IReadOnlyList<float> values) =>
        AddValues(key, GgufValueType.Float32, values, (w, v) => w.Write(v));

    /// <summary>Adds an array of int32.</summary>
    public void AddInt32Array(string key, IReadOnlyList<int> values) =>
        AddValues(key, GgufValueType.Int32, values, (w, v) => w.Write(v));

    private void AddValues<T>(string key, GgufValueType type, IReadOnlyList<T> values, Action<BinaryWriter, T> write)
    {
        ArgumentNullException.ThrowIfNull(values);
        T[] copy = [.. values];
        AddArray(key, type, copy.Length, w =>
        {
            foreach (T v in copy)
                write(w, v);
        });
    }

    /// <summary>
    /// Declares a tensor of <paramref name="type"/> with GGUF dimensions <paramref name="dims"/> (ne0 first: the
    /// fastest-varying dimension). <paramref name="write"/> is called once, during <see cref="WriteTo(string)"/>, and
    /// must write exactly the tensor's bytes (checked).
    /// </summary>
    public void AddTensor(string name, GgufTensorType type, IReadOnlyList<long> dims, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(dims);
        ArgumentNullException.ThrowIfNull(write);
        if (dims.Count is < 1 or > 4)
            throw new ArgumentException($"dims: expected 1 to 4 dimensions, got {dims.Count} for {name}.", nameof(dims));
        if (dims.Any(d => d < 1))
            throw new ArgumentException($"dims: expected every dimension ≥ 1, got [{string.Join(", ", dims)}] for {name}.", nameof(dims));
        long elements = dims.Aggregate(1L, (a, d) => checked(a * d));
        long bytes = type switch
        {
            GgufTensorType.F32 => checked(elements * 4),
            GgufTensorType.Q8_0 => dims[0] % Q8_0BlockSize == 0
                ? checked(elements / Q8_0BlockSize * Q8_0BlockBytes)
                : throw new ArgumentException($"dims[0]: Q8_0 needs a multiple of {Q8_0BlockSize} values in a row, got {dims[0]} for {name}.", nameof(dims)),
            _ => throw new ArgumentException($"type: expected F32 or Q8_0, got {type}.", nameof(type)),
        };
        if (!_tensorNames.Add(name))
            throw new ArgumentException($"name: tensor {name} declared twice.", nameof(name));
        _tensors.Add(new Tensor(name, type, [.. dims], bytes, write));
    }

    /// <summary>Declares an F32 vector; <paramref name="data"/> is called when the file is written.</summary>
    public void AddF32(string name, int length, Func<float[]> data)
    {
        ArgumentNullException.ThrowIfNull(data);
        AddTensor(name, GgufTensorType.F32, [length], s =>
        {
            float[] values = data();
            if (values.Length != length)
                throw new InvalidOperationException($"{name}: expected {length} values, got {values.Length}.");
            WriteF32(s, values);
        });
    }

    /// <summary>
    /// Declares a Q8_0 matrix of <paramref name="rows"/> × <paramref name="columns"/> (GGUF ne0 = columns, ne1 = rows);
    /// <paramref name="data"/> is called when the file is written. Every block of a row gets that row's scale and the
    /// row's int8 values unchanged, which is exact because the scales are fp16-exact (checked).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="columns"/> is not a multiple of 32.</exception>
    public void AddQ8_0(string name, int rows, int columns, Func<Int8Weight> data)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if (columns % Q8_0BlockSize != 0)
            throw new ArgumentException($"columns: Q8_0 stores blocks of {Q8_0BlockSize} values along a row, so {name} needs a multiple of {Q8_0BlockSize} columns, got {columns}.", nameof(columns));
        AddTensor(name, GgufTensorType.Q8_0, [columns, rows], s =>
        {
            Int8Weight w = data();
            if (w.Rows != rows || w.Columns != columns)
                throw new InvalidOperationException($"{name}: expected {rows}×{columns}, got {w.Rows}×{w.Columns}.");
            WriteQ8_0(s, w);
        });
    }

    /// <summary>Writes <paramref name="values"/> as little-endian float32.</summary>
    public static void WriteF32(Stream stream, ReadOnlySpan<float> values)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var buffer = new byte[4 * Math.Min(values.Length, 16384)];
        while (!values.IsEmpty)
        {
            int n = Math.Min(values.Length, buffer.Length / 4);
            for (int i = 0; i < n; i++)
                BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(4 * i), values[i]);
            stream.Write(buffer, 0, 4 * n);
            values = values[n..];
        }
    }

    /// <summary>
    /// Writes <paramref name="weight"/> as Q8_0 blocks, row by row: for each block of 32 columns the row scale as an
    /// IEEE half, then the 32 int8 values.
    /// </summary>
    /// <exception cref="ArgumentException">The columns are not a multiple of 32, or a scale is not exactly a half.</exception>
    public static void WriteQ8_0(Stream stream, Int8Weight weight)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Columns % Q8_0BlockSize != 0)
            throw new ArgumentException($"weight: Q8_0 needs a multiple of {Q8_0BlockSize} columns, got {weight.Columns}.", nameof(weight));
        int blocks = weight.Columns / Q8_0BlockSize;
        var row = new byte[blocks * Q8_0BlockBytes];
        for (int r = 0; r < weight.Rows; r++)
        {
            float scale = weight.RowScales[r];
            var half = (Half)scale;
            if ((float)half != scale)
                throw new ArgumentException($"weight: row {r}'s scale {scale:R} is not exactly representable as a half; Q8_0 would change it.", nameof(weight));
            ushort bits = BitConverter.HalfToUInt16Bits(half);
            ReadOnlySpan<byte> values = System.Runtime.InteropServices.MemoryMarshal.AsBytes(
                weight.Values.AsSpan((int)((long)r * weight.Columns), weight.Columns));
            for (int b = 0; b < blocks; b++)
            {
                Span<byte> block = row.AsSpan(b * Q8_0BlockBytes, Q8_0BlockBytes);
                BinaryPrimitives.WriteUInt16LittleEndian(block, bits);
                values.Slice(b * Q8_0BlockSize, Q8_0BlockSize).CopyTo(block[2..]);
            }
            stream.Write(row);
        }
    }

    /// <summary>
    /// Writes the file: header, metadata, tensor infos (offsets in declaration order), padding, then each tensor's
    /// data (padded to <see cref="Alignment"/>), produced and written one tensor at a time. A failure part-way deletes
    /// the partial file.
    /// </summary>
    public void WriteTo(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        try
        {
            WriteFile(path);
        }
        catch
        {
            File.Delete(path);
            throw;
        }
    }

    private void WriteFile(string path)
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true); // BinaryWriter is little-endian.
        w.Write(0x46554747u); // "GGUF"
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach ((string key, Action<BinaryWriter> write) in _metadata)
        {
            WriteString(w, key);
            write(w);
        }
        long offset = 0;
        foreach (Tensor t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims)
                w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = AlignUp(offset + t.Bytes);
        }
        w.Flush();
        Pad(file);
        long dataStart = file.Position;
        foreach (Tensor t in _tensors)
        {
            long start = file.Position;
            t.Write(file);
            long written = file.Position - start;
            if (written != t.Bytes)
                throw new InvalidOperationException($"{t.Name}: expected {t.Bytes} bytes of data, the writer produced {written}.");
            Pad(file);
        }
        if (file.Position - dataStart != offset)
            throw new InvalidOperationException($"data section: expected {offset} bytes, wrote {file.Position - dataStart}.");
    }

    private static long AlignUp(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s)
    {
        int pad = (int)(AlignUp(s.Position) - s.Position);
        Span<byte> zeros = stackalloc byte[Alignment];
        zeros.Clear();
        s.Write(zeros[..pad]);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private void AddValue(string key, GgufValueType type, Action<BinaryWriter> write)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!_keys.Add(key))
            throw new ArgumentException($"key: {key} added twice.", nameof(key));
        _metadata.Add((key, w =>
        {
            w.Write((uint)type);
            write(w);
        }));
    }

    private void AddArray(string key, GgufValueType elementType, int count, Action<BinaryWriter> writeElements) =>
        AddValue(key, GgufValueType.Array, w =>
        {
            w.Write((uint)elementType);
            w.Write((ulong)count);
            writeElements(w);
        });
}
