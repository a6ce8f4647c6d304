using System.Buffers.Binary;
using System.Text;
using Kernels.Decoder;
using Kernels.LlamaCpp;
using Kernels.Tests.Decoder;

namespace Kernels.Tests;

/// <summary>The GGUF writer (read back by a small parser) and llama.cpp against the float64 reference.</summary>
public sealed class LlamaCppPeerTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("kernels-gguf-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public void GgufRoundTripKeepsMetadataTensorInfosAndQ8_0Bytes()
    {
        var weights = new SyntheticWeights(LlamaConfig.Tiny, seed: 3);
        LlamaConfig c = weights.Config;
        string path = Path.Combine(_dir.FullName, "tiny.gguf");
        LlamaGguf.Write(path, weights, contextLength: 256);

        GgufFile f = GgufFile.Read(path);
        Assert.Equal(3u, f.Version);
        Assert.Equal("llama", f.Metadata["general.architecture"]);
        Assert.Equal(7u, f.Metadata["general.file_type"]);
        Assert.Equal(256u, f.Metadata["llama.context_length"]);
        Assert.Equal((uint)c.Hidden, f.Metadata["llama.embedding_length"]);
        Assert.Equal((uint)c.Layers, f.Metadata["llama.block_count"]);
        Assert.Equal((uint)c.FfnHidden, f.Metadata["llama.feed_forward_length"]);
        Assert.Equal((uint)c.Heads, f.Metadata["llama.attention.head_count"]);
        Assert.Equal((uint)c.KvHeads, f.Metadata["llama.attention.head_count_kv"]);
        Assert.Equal((uint)c.HeadDim, f.Metadata["llama.rope.dimension_count"]);
        Assert.Equal((float)c.RopeTheta, f.Metadata["llama.rope.freq_base"]);
        Assert.Equal(c.NormEps, f.Metadata["llama.attention.layer_norm_rms_epsilon"]);
        Assert.Equal("llama", f.Metadata["tokenizer.ggml.model"]);
        var tokens = (object[])f.Metadata["tokenizer.ggml.tokens"];
        Assert.Equal(c.Vocab, tokens.Length);
        Assert.Equal("</s>", tokens[LlamaGguf.EosToken]);
        Assert.Equal(c.Vocab, ((object[])f.Metadata["tokenizer.ggml.scores"]).Length);
        Assert.Equal(c.Vocab, ((object[])f.Metadata["tokenizer.ggml.token_type"]).Length);

        Assert.Equal(3 + 9 * c.Layers, f.Tensors.Count);
        Assert.All(f.Tensors.Values, t => Assert.Equal(0, t.Offset % GgufWriter.Alignment));
        Assert.Equal(0, f.DataStart % GgufWriter.Alignment);

        // A Q8_0 projection: ne0 = columns, ne1 = rows; each block = the row's half scale, then its 32 int8 values.
        GgufTensorInfo q = f.Tensors["blk.1.attn_q.weight"];
        Assert.Equal(GgufTensorType.Q8_0, q.Type);
        Assert.Equal([c.Hidden, c.QueryFeatures], q.Dims);
        Int8Weight expected = weights.Layer(1).Q;
        byte[] bytes = f.ReadData(q, (long)expected.Rows * expected.Columns / 32 * 34);
        for (int r = 0; r < expected.Rows; r++)
        {
            for (int b = 0; b < expected.Columns / 32; b++)
            {
                int at = (r * (expected.Columns / 32) + b) * 34;
                Half d = BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(at));
                Assert.Equal(expected.RowScales[r], (float)d);
                for (int i = 0; i < 32; i++)
                    Assert.Equal(expected.Values[r * expected.Columns + b * 32 + i], (sbyte)bytes[at + 2 + i]);
            }
        }

        // The output head (Vocab = 97 rows) and a norm (F32).
        GgufTensorInfo head = f.Tensors["output.weight"];
        Assert.Equal([c.Hidden, c.Vocab], head.Dims);
        GgufTensorInfo norm = f.Tensors["blk.0.ffn_norm.weight"];
        Assert.Equal(GgufTensorType.F32, norm.Type);
        Assert.Equal([c.Hidden], norm.Dims);
        byte[] normBytes = f.ReadData(norm, 4L * c.Hidden);
        float[] expectedNorm = weights.Layer(0).FfnNorm;
        for (int i = 0; i < c.Hidden; i++)
            Assert.Equal(expectedNorm[i], BinaryPrimitives.ReadSingleLittleEndian(normBytes.AsSpan(4 * i)));

        // The last tensor ends, padded, at the end of the file.
        GgufTensorInfo last = f.Tensors.Values.MaxBy(t => t.Offset)!;
        Assert.Equal(new FileInfo(path).Length, f.DataStart + (last.Offset + last.Bytes + 31) / 32 * 32);
    }

    [Fact]
    public void GgufRefusesColumnsThatAreNotAMultipleOf32()
    {
        // Hidden 48: every projection reading the hidden state has 48 columns, not whole Q8_0 blocks.
        var odd = new LlamaConfig("odd", 1, 48, 3, 1, 16, 64, 50, 10000, 1e-5f, "test shape");
        string path = Path.Combine(_dir.FullName, "odd.gguf");
        Expect.Throws("weights", () => LlamaGguf.Write(path, new SyntheticWeights(odd)), "Hidden", "multiple of 32", "48");
        Assert.False(File.Exists(path));
        var writer = new GgufWriter();
        Expect.Throws("columns", () => writer.AddQ8_0("w", 2, 40, () => throw new InvalidOperationException()), "multiple of 32", "40");

        // A tensor callback that writes the wrong number of bytes fails the write and leaves no partial file.
        writer.AddTensor("short", GgufTensorType.F32, [4], s => s.Write(new byte[8]));
        string partial = Path.Combine(_dir.FullName, "partial.gguf");
        var ex = Assert.Throws<InvalidOperationException>(() => writer.WriteTo(partial));
        Assert.Contains("expected 16 bytes", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(partial));
    }

    /// <summary>
    /// llama.cpp's logits for the last prompt token, and after a few decode steps, against the float64 reference.
    /// Bound (relative L2 error of the logits ≤ 3 %, same argmax): llama.cpp's CPU matmuls quantize each activation
    /// row to Q8_0 per 32-block before the int8 dot (its weights are exactly ours): rounding to a step of
    /// max|x|/127 gives a relative error of about 1/127·(max/rms)/√12 ≈ 0.5–0.7 % per quantized input (max/rms ≈ 2–3 in
    /// a 32-block), and each logit passes through ~4 independent quantized inputs per layer plus the head, which add
    /// in quadrature (~1.5 % for 2 layers); f32 accumulation, f32 softmax/silu and the F32 KV cache add far less.
    /// Measured (seed 5, avx512 build, F32 KV, flash attention auto → enabled): 0.97 % after prefill, 0.90 % after 4
    /// decode steps, so 3 % leaves 3× headroom; pairing RoPE the NeoX way (halves) instead gives 17.7 %.
    /// </summary>
    [Fact]
    public void LlamaCppLastTokenLogitsMatchTheFloat64Reference()
    {
        var weights = new SyntheticWeights(LlamaConfig.Tiny, seed: 5);
        string path = Path.Combine(_dir.FullName, "tiny.gguf");
        LlamaGguf.Write(path, weights);
        int[] prompt = [1, 17, 42, 5, 96, 3, 60, 60, 23, 88, 11, 70];
        int[] forced = [9, 31, 77, 4];

        using var peer = new LlamaCppPeer(path, threads: 2, contextLength: 64);
        Assert.Equal(LlamaConfig.Tiny.Vocab, peer.Vocab);
        LlamaCppRun run = peer.Run(prompt, forced.Length, forced);

        double[] prefillReference = Float64Llama.Logits(weights, prompt);
        double[] decodeReference = Float64Llama.Logits(weights, [.. prompt, .. forced]);
        double prefillError = RelativeL2(prefillReference, run.PrefillLogits);
        double decodeError = RelativeL2(decodeReference, run.LastLogits);
        TestContext.Current.SendDiagnosticMessage(
            $"llama.cpp vs float64: relative L2 error {prefillError:P3} after prefill, {decodeError:P3} after {forced.Length} decode steps; native: {LlamaCppPeer.NativeLibrary}");
        Assert.True(prefillError < 0.03, $"prefill: relative L2 error {prefillError:P3} ≥ 3 %");
        Assert.True(decodeError < 0.03, $"decode: relative L2 error {decodeError:P3} ≥ 3 %");
        SameArgMax(prefillReference, run.PrefillLogits, "prefill");
        SameArgMax(decodeReference, run.LastLogits, "decode");
        Assert.Equal(forced, run.DecodeTokens);
    }

    [Fact]
    public void RunsRepeatFromAClearedCacheAndDecodeGreedily()
    {
        var weights = new SyntheticWeights(LlamaConfig.Tiny, seed: 7);
        string path = Path.Combine(_dir.FullName, "tiny.gguf");
        LlamaGguf.Write(path, weights);
        int[] prompt = [2, 50, 13, 77, 8];

        using var peer = new LlamaCppPeer(path, threads: 2, contextLength: 32);
        LlamaCppRun first = peer.Run(prompt, 6);
        LlamaCppRun second = peer.Run(prompt, 6);
        Assert.Equal(first.PrefillLogits, second.PrefillLogits);
        Assert.Equal(first.DecodeTokens, second.DecodeTokens);
        Assert.Equal(first.LastLogits, second.LastLogits);
        Assert.Equal(LlamaCppPeer.ArgMax(first.PrefillLogits), first.DecodeTokens[0]);
        Assert.Equal(6, first.DecodeSeconds.Length);
        Assert.True(first.PrefillSeconds > 0 && first.DecodeSeconds.All(s => s > 0));

        // Greedy: each fed token is the argmax of the logits after the previous one; replaying them forced gives the same run.
        LlamaCppRun forced = peer.Run(prompt, 6, first.DecodeTokens);
        Assert.Equal(first.LastLogits, forced.LastLogits);

        Expect.Throws("decodeSteps", () => peer.Run(prompt, 28), "context length 32");
        Expect.Throws("prompt", () => peer.Run([0, 97], 0), "[0, 97)", "97");
    }

    private static double RelativeL2(double[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double err = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            err += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            norm += expected[i] * expected[i];
        }
        return Math.Sqrt(err / norm);
    }

    /// <summary>
    /// llama.cpp picks the reference's argmax, or a token whose reference logit is within 0.1 of it: a near tie that
    /// its ~1 % error may flip (the logits' RMS is ≈ 5, so 1 % is ≈ 0.05 a logit; seed 5's decode step has two
    /// tokens 0.004 apart).
    /// </summary>
    private static void SameArgMax(double[] reference, float[] actual, string what)
    {
        int expected = Array.IndexOf(reference, reference.Max()), got = LlamaCppPeer.ArgMax(actual);
        Assert.True(got == expected || reference[expected] - reference[got] < 0.1,
            $"{what}: llama.cpp's argmax {got} (reference logit {reference[got]:F4}) is not the reference's {expected} ({reference[expected]:F4})");
    }
}

/// <summary>One tensor info of a GGUF file.</summary>
internal sealed record GgufTensorInfo(string Name, long[] Dims, GgufTensorType Type, long Offset)
{
    public long Bytes => Type == GgufTensorType.F32 ? 4 * Dims.Aggregate(1L, (a, d) => a * d) : Dims.Aggregate(1L, (a, d) => a * d) / 32 * 34;
}

/// <summary>A minimal GGUF v3 reader for the tests (independent of the writer: its own constants and parsing).</summary>
internal sealed class GgufFile
{
    public required string Path { get; init; }
    public required uint Version { get; init; }
    public required Dictionary<string, object> Metadata { get; init; }
    public required Dictionary<string, GgufTensorInfo> Tensors { get; init; }
    public required long DataStart { get; init; }

    public static GgufFile Read(string path)
    {
        using var s = File.OpenRead(path);
        using var r = new BinaryReader(s, Encoding.UTF8);
        Assert.Equal("GGUF"u8.ToArray(), r.ReadBytes(4));
        uint version = r.ReadUInt32();
        ulong tensorCount = r.ReadUInt64(), kvCount = r.ReadUInt64();
        var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = ReadString(r);
            metadata.Add(key, ReadValue(r, r.ReadUInt32()));
        }
        var tensors = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = ReadString(r);
            uint nDims = r.ReadUInt32();
            var dims = new long[nDims];
            for (int d = 0; d < nDims; d++)
                dims[d] = checked((long)r.ReadUInt64());
            var type = (GgufTensorType)r.ReadUInt32();
            tensors.Add(name, new GgufTensorInfo(name, dims, type, checked((long)r.ReadUInt64())));
        }
        long dataStart = (s.Position + 31) / 32 * 32;
        return new GgufFile { Path = path, Version = version, Metadata = metadata, Tensors = tensors, DataStart = dataStart };
    }

    public byte[] ReadData(GgufTensorInfo t, long bytes)
    {
        Assert.Equal(bytes, t.Bytes);
        using var s = File.OpenRead(Path);
        s.Position = DataStart + t.Offset;
        var data = new byte[bytes];
        s.ReadExactly(data);
        return data;
    }

    private static string ReadString(BinaryReader r) => Encoding.UTF8.GetString(r.ReadBytes(checked((int)r.ReadUInt64())));

    private static object ReadValue(BinaryReader r, uint type) => type switch
    {
        0 => r.ReadByte(),
        1 => r.ReadSByte(),
        2 => r.ReadUInt16(),
        3 => r.ReadInt16(),
        4 => r.ReadUInt32(),
        5 => r.ReadInt32(),
        6 => r.ReadSingle(),
        7 => r.ReadByte() != 0,
        8 => ReadString(r),
        9 => ReadArray(r),
        10 => r.ReadUInt64(),
        11 => r.ReadInt64(),
        12 => r.ReadDouble(),
        _ => throw new InvalidDataException($"unknown GGUF value type {type}"),
    };

    private static object[] ReadArray(BinaryReader r)
    {
        uint type = r.ReadUInt32();
        var items = new object[checked((int)r.ReadUInt64())];
        for (int i = 0; i < items.Length; i++)
            items[i] = ReadValue(r, type);
        return items;
    }
}
