using Google.Protobuf;
using Onnx;

namespace Kernels.Peers;

/// <summary>
/// The two small ONNX models the peers run, built in memory with OnnxSharp's generated ONNX protobuf
/// classes (no model files on disk).
/// </summary>
internal static class OnnxModels
{
    private const long IrVersion = 8;

    /// <summary>
    /// <c>Y[m,N] = (A − 128)·B</c> in int32 through <c>MatMulInteger</c>: A is uint8 [m, K] with a symbolic
    /// m (int8 activations + 128), B an int8 [K, N] initializer (constant, so ORT prepacks it once when the
    /// session is created), a_zero_point the constant 128 that undoes the shift exactly: MLAS subtracts
    /// 128·Σ_k B[k,n] from each output, with the weights' column sums computed at packing time.
    /// </summary>
    public static byte[] MatMulIntegerU8S8(ReadOnlySpan<sbyte> bTransposed, int n, int k)
    {
        var graph = new GraphProto { Name = "int8_gemm" };
        graph.Input.Add(Value("A", TensorProto.Types.DataType.Uint8, Dim("m"), Dim(k)));
        graph.Output.Add(Value("Y", TensorProto.Types.DataType.Int32, Dim("m"), Dim(n)));
        var b = new TensorProto { Name = "B", DataType = (int)TensorProto.Types.DataType.Int8, RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bTransposed)) };
        b.Dims.Add(k);
        b.Dims.Add(n);
        graph.Initializer.Add(b);
        graph.Initializer.Add(new TensorProto { Name = "a_zero_point", DataType = (int)TensorProto.Types.DataType.Uint8, RawData = ByteString.CopyFrom((byte)128) });
        var node = new NodeProto { OpType = "MatMulInteger", Name = "gemm" };
        node.Input.Add("A");
        node.Input.Add("B");
        node.Input.Add("a_zero_point");
        node.Output.Add("Y");
        graph.Node.Add(node);
        return Model(graph, msDomain: false);
    }

    /// <summary>
    /// com.microsoft <c>MultiHeadAttention</c> on 3-D float32 inputs Q [B, S, H·D], K and V [B, Sk, H·D]
    /// (the form whose non-causal case MLAS runs as flash attention), output [B, S, H·D], scale 1/√D,
    /// <c>unidirectional</c> for the causal mask.
    /// </summary>
    public static byte[] MultiHeadAttention(int batch, int heads, int seq, int kvSeq, int headDim, bool causal)
    {
        int hidden = heads * headDim;
        var graph = new GraphProto { Name = "attention" };
        graph.Input.Add(Value("query", TensorProto.Types.DataType.Float, Dim(batch), Dim(seq), Dim(hidden)));
        graph.Input.Add(Value("key", TensorProto.Types.DataType.Float, Dim(batch), Dim(kvSeq), Dim(hidden)));
        graph.Input.Add(Value("value", TensorProto.Types.DataType.Float, Dim(batch), Dim(kvSeq), Dim(hidden)));
        graph.Output.Add(Value("output", TensorProto.Types.DataType.Float, Dim(batch), Dim(seq), Dim(hidden)));
        var node = new NodeProto { OpType = "MultiHeadAttention", Domain = "com.microsoft", Name = "mha" };
        node.Input.Add("query");
        node.Input.Add("key");
        node.Input.Add("value");
        node.Output.Add("output");
        node.Attribute.Add(new AttributeProto { Name = "num_heads", Type = AttributeProto.Types.AttributeType.Int, I = heads });
        node.Attribute.Add(new AttributeProto { Name = "unidirectional", Type = AttributeProto.Types.AttributeType.Int, I = causal ? 1 : 0 });
        graph.Node.Add(node);
        return Model(graph, msDomain: true);
    }

    private static byte[] Model(GraphProto graph, bool msDomain)
    {
        var model = new ModelProto { IrVersion = IrVersion, ProducerName = "Kernels.Peers.OnnxRuntime", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        if (msDomain)
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        return model.ToByteArray();
    }

    private static TensorShapeProto.Types.Dimension Dim(long value) => new() { DimValue = value };

    private static TensorShapeProto.Types.Dimension Dim(string name) => new() { DimParam = name };

    private static ValueInfoProto Value(string name, TensorProto.Types.DataType type, params TensorShapeProto.Types.Dimension[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(dims);
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }
}
