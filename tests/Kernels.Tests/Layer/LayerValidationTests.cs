namespace Kernels.Tests.Layer;

/// <summary>
/// Every bad argument of the layer ops throws an ArgumentException naming it before anything runs, and the
/// outputs stay as they were (NaN / −128 poison). Validation is the facade's, the same on every backend; it is
/// run on cpu-simd and on the CPU accelerator.
/// </summary>
public sealed class LayerValidationTests
{
    public static TheoryData<string> Targets => new("cpu-simd", "cpu");

    private const int Rows = 3, N = 8, F = 8;

    [Theory]
    [MemberData(nameof(Targets))]
    public void RowOpsRejectBadArguments(string target)
    {
        KernelSession s = Conformance.ConformanceTests.Open(target);
        using KernelSession other = KernelSession.Create(Backend.CpuSimd);
        using DeviceBuffer<float> x = s.Upload<float>(new float[Rows * N]), w = s.Upload<float>(new float[N]);
        using DeviceBuffer<float> gateUp = s.Upload<float>(new float[Rows * 2 * F]);
        using DeviceBuffer<float> y = s.Upload<float>(Conformance.ConformanceTests.Poisoned(Rows * N, float.NaN));
        using DeviceBuffer<float> shortBuffer = s.Upload<float>(new float[Rows * N - 1]);
        using DeviceBuffer<sbyte> q = s.Upload<sbyte>(Conformance.ConformanceTests.Poisoned<sbyte>(Rows * N, -128));
        using DeviceBuffer<sbyte> shortQ = s.Upload<sbyte>(Conformance.ConformanceTests.Poisoned<sbyte>(Rows * N - 1, -128));
        using DeviceBuffer<float> scale = s.Upload<float>(Conformance.ConformanceTests.Poisoned(Rows, float.NaN));
        using DeviceBuffer<float> shortScale = s.Upload<float>(Conformance.ConformanceTests.Poisoned(Rows - 1, float.NaN));
        using DeviceBuffer<float> foreign = other.Upload<float>(new float[Rows * N]);
        DeviceBuffer<float> disposed = s.Upload<float>(new float[Rows * N]);
        disposed.Dispose();

        Expect.Throws("x", () => s.RmsNorm(null!, w, y, Rows, N, 1e-5f), "null");
        Expect.Throws("x", () => s.RmsNorm(foreign, w, y, Rows, N, 1e-5f), "another session");
        Expect.Throws("x", () => s.RmsNorm(disposed, w, y, Rows, N, 1e-5f), "disposed");
        Expect.Throws("rows", () => s.RmsNorm(x, w, y, 0, N, 1e-5f), "≥ 1", "got 0");
        Expect.Throws("n", () => s.RmsNorm(x, w, y, Rows, -1, 1e-5f), "≥ 1", "got -1");
        foreach (float eps in new[] { 0f, -1e-5f, float.NaN, float.PositiveInfinity })
            Expect.Throws("eps", () => s.RmsNorm(x, w, y, Rows, N, eps), "finite value > 0");
        Expect.Throws("x", () => s.RmsNorm(shortBuffer, w, y, Rows, N, 1e-5f), "rows·n = 24", "got 23");
        using DeviceBuffer<float> shortWeight = s.Upload<float>(new float[N - 1]);
        Expect.Throws("weight", () => s.RmsNorm(x, shortWeight, y, Rows, N, 1e-5f), "n = 8", "got 7");
        Expect.Throws("y", () => s.RmsNorm(x, w, shortBuffer, Rows, N, 1e-5f), "rows·n = 24", "got 23");
        Expect.Throws("y", () => s.RmsNorm(x, w, x, Rows, N, 1e-5f), "not also an input");
        Expect.Throws("y", () => s.RmsNorm(x, y, y, Rows, N, 1e-5f), "not also an input");
        Expect.Throws("q", () => s.RmsNormQuantize(x, w, shortQ, scale, Rows, N, 1e-5f), "rows·n = 24", "got 23");
        Expect.Throws("scale", () => s.RmsNormQuantize(x, w, q, shortScale, Rows, N, 1e-5f), "rows = 3", "got 2");
        Expect.Throws("scale", () => s.RmsNormQuantize(x, w, q, w, 1, N, 1e-5f), "not also an input");
        Expect.Throws("eps", () => s.RmsNormQuantize(x, w, q, scale, Rows, N, float.NaN), "finite");

        Expect.Throws("heads", () => s.QuantizeRows(x, q, scale, Rows, N, 0), "≥ 1");
        Expect.Throws("heads", () => s.QuantizeRows(x, q, scale, Rows, N, 3), "divisor of n = 8", "got 3");
        Expect.Throws("x", () => s.QuantizeRows(shortBuffer, q, scale, Rows, N, 2), "heads·rows·(n/heads) = 24");
        Expect.Throws("scale", () => s.QuantizeRows(x, q, x, Rows, N), "not also an input");
        Expect.Throws("q", () => s.QuantizeRows(x, shortQ, scale, Rows, N), "got 23");

        Expect.Throws("f", () => s.SwiGlu(gateUp, y, Rows, 0), "≥ 1");
        Expect.Throws("gateUp", () => s.SwiGlu(x, y, Rows, F), "rows·2f = 48", "got 24");
        Expect.Throws("y", () => s.SwiGlu(gateUp, gateUp, Rows, F), "not also an input");
        Expect.Throws("y", () => s.SwiGlu(gateUp, shortBuffer, Rows, F), "rows·f = 24");
        Expect.Throws("scale", () => s.SwiGluQuantize(gateUp, q, shortScale, Rows, F), "rows = 3");
        Expect.Throws("scale", () => s.SwiGluQuantize(gateUp, q, gateUp, Rows, F), "not also an input");

        // Host arrays: exact lengths.
        Expect.Throws("x", () => s.RmsNorm(new float[Rows * N + 1], new float[N], Rows, N, 1e-5f), "expected length rows·n = 24", "got 25");
        Expect.Throws("weight", () => s.RmsNormQuantize(new float[Rows * N], new float[N + 1], Rows, N, 1e-5f), "expected length n = 8");
        Expect.Throws("gateUp", () => s.SwiGlu(new float[5], 1, 3), "rows·2f = 6", "got 5");
        Expect.Throws("gateUp", () => s.SwiGluQuantize(new float[7], 1, 3), "got 7");
        Expect.Throws("heads", () => s.QuantizeRows(new float[6], 1, 6, 4), "divisor");

        Assert.All(y.ToArray(), v => Assert.True(float.IsNaN(v), "y was written"));
        Assert.All(q.ToArray(), v => Assert.Equal(-128, v));
        Assert.All(scale.ToArray(), v => Assert.True(float.IsNaN(v), "scale was written"));
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void AddAndEmbedRejectBadArguments(string target)
    {
        KernelSession s = Conformance.ConformanceTests.Open(target);
        float[] poison = Conformance.ConformanceTests.Poisoned(8, float.NaN);
        using DeviceBuffer<float> x = s.Upload<float>(poison), y = s.Upload<float>(new float[8]), shortY = s.Upload<float>(new float[7]);
        Expect.Throws("count", () => s.Add(x, y, 0), "≥ 1", "got 0");
        Expect.Throws("x", () => s.Add(x, y, 9), "count = 9", "got 8");
        Expect.Throws("y", () => s.Add(x, shortY, 8), "count = 8", "got 7");
        Expect.Throws("x", () => s.Add(x, x, 8), "not also an input");
        Expect.Throws("y", () => s.Add(new float[3], new float[2]), "x.Length = 3", "got 2");
        Expect.Throws("x.Length", () => s.Add([], []), "≥ 1");
        Assert.All(x.ToArray(), v => Assert.True(float.IsNaN(v), "x was written"));

        const int Vocab = 5, N = 4;
        using DeviceBuffer<sbyte> table = s.Upload<sbyte>(new sbyte[Vocab * N]);
        using DeviceBuffer<float> rowScale = s.Upload<float>(new float[Vocab]);
        using DeviceBuffer<float> e = s.Upload<float>(Conformance.ConformanceTests.Poisoned(3 * N, float.NaN));
        Expect.Throws("tokens", () => s.EmbedInt8(table, rowScale, [0, Vocab, 1], e, Vocab, N), "0..4", $"got {Vocab} at index 1");
        Expect.Throws("tokens", () => s.EmbedInt8(table, rowScale, [-1], e, Vocab, N), "got -1 at index 0");
        Expect.Throws("tokens.Length", () => s.EmbedInt8(table, rowScale, [], e, Vocab, N), "≥ 1");
        Expect.Throws("vocab", () => s.EmbedInt8(table, rowScale, [0], e, 0, N), "≥ 1");
        Expect.Throws("table", () => s.EmbedInt8(table, rowScale, [0], e, Vocab + 1, N), "vocab·n = 24", "got 20");
        Expect.Throws("rowScale", () => s.EmbedInt8(table, y, [0], e, 2 * Vocab, 2), "vocab = 10", "got 8");
        Expect.Throws("y", () => s.EmbedInt8(table, rowScale, [0, 1, 2, 3], e, Vocab, N), "tokens.Length·n = 16", "got 12");
        Expect.Throws("y", () => s.EmbedInt8(table, rowScale, [0], rowScale, Vocab, 1), "not also an input");
        Expect.Throws("table", () => s.EmbedInt8(new sbyte[Vocab * N - 1], new float[Vocab], [0], Vocab, N), "got 19");
        Assert.All(e.ToArray(), v => Assert.True(float.IsNaN(v), "y was written"));
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void RopeRejectsBadArguments(string target)
    {
        KernelSession s = Conformance.ConformanceTests.Open(target);
        var shape = new RopeShape(Batch: 2, Tokens: 3, Heads: 4, KvHeads: 2, HeadDim: 8, Capacity: 6, Start: 2);
        using RopeTable table = s.CreateRopeTable(8, 8, 10000);
        using RopeTable otherDim = s.CreateRopeTable(8, 6, 10000);
        using DeviceBuffer<float> qkv = s.Upload<float>(new float[(int)shape.QkvElements]);
        using DeviceBuffer<float> q = s.Upload<float>(Conformance.ConformanceTests.Poisoned((long)shape.QueryElements, float.NaN));
        using DeviceBuffer<float> k = s.Upload<float>(Conformance.ConformanceTests.Poisoned((long)shape.CacheElements, float.NaN));
        using DeviceBuffer<float> v = s.Upload<float>(Conformance.ConformanceTests.Poisoned((long)shape.CacheElements, float.NaN));
        using DeviceBuffer<float> tiny = s.Upload<float>(new float[3]);

        Expect.Throws("shape.HeadDim", () => s.RopeKvCache(qkv, table, q, k, v, shape with { HeadDim = 7 }), "even value in 2..256", "got 7");
        Expect.Throws("shape.HeadDim", () => s.RopeKvCache(qkv, table, q, k, v, shape with { HeadDim = 258 }), "got 258");
        Expect.Throws("shape.Start", () => s.RopeKvCache(qkv, table, q, k, v, shape with { Start = -1 }), "≥ 0");
        Expect.Throws("shape", () => s.RopeKvCache(qkv, table, q, k, v, shape with { Start = 4 }), "Start + Tokens ≤ Capacity = 6", "4 + 3 = 7");
        Expect.Throws("shape", () => s.RopeKvCache(qkv, table, q, k, v, shape with { KvHeads = 3 }), "multiple of KvHeads");
        Expect.Throws("shape.Batch", () => s.RopeKvCache(qkv, table, q, k, v, shape with { Batch = 0 }), "≥ 1");
        Expect.Throws("shape.Tokens", () => s.RopeKvCache(qkv, table, q, k, v, shape with { Tokens = 0 }), "≥ 1");
        Expect.Throws("shape.Capacity", () => s.RopeKvCache(qkv, table, q, k, v, shape with { Capacity = 0 }), "≥ 1");
        Expect.Throws("ropeTable", () => s.RopeKvCache(qkv, otherDim, q, k, v, shape), "shape.HeadDim = 8", "one for 6");
        Expect.Throws("ropeTable", () => s.RopeKvCache(qkv, table, q, k, v, shape with { Capacity = 20, Start = 6 }), "Start + Tokens − 1 = 8", "8 positions");
        Expect.Throws("ropeTable", () => s.RopeKvCache(qkv, null!, q, k, v, shape));
        Expect.Throws("qkv", () => s.RopeKvCache(tiny, table, q, k, v, shape), "Batch·Tokens·(Heads + 2·KvHeads)·HeadDim = 384", "got 3");
        Expect.Throws("q", () => s.RopeKvCache(qkv, table, tiny, k, v, shape), "Batch·Heads·Tokens·HeadDim = 192");
        Expect.Throws("kCache", () => s.RopeKvCache(qkv, table, q, tiny, v, shape), "Batch·KvHeads·Capacity·HeadDim = 192");
        Expect.Throws("vCache", () => s.RopeKvCache(qkv, table, q, k, tiny, shape), "= 192", "got 3");
        Expect.Throws("vCache", () => s.RopeKvCache(qkv, table, q, k, k, shape), "not also an input", "kCache");
        Expect.Throws("q", () => s.RopeKvCache(qkv, table, qkv, k, v, shape), "not also an input", "qkv");
        Expect.Throws("kCache", () => s.RopeKvCache(qkv, table, q, table.Buffer, v, shape), "ropeTable");
        Expect.Throws("kCache", () => s.RopeKvCache(new float[(int)shape.QkvElements], table, new float[(int)shape.CacheElements + 1], new float[(int)shape.CacheElements], shape), "got 193");
        Expect.Throws("headDim", () => s.CreateRopeTable(8, 5, 10000), "even");
        Expect.Throws("maxPositions", () => s.CreateRopeTable(0, 8, 10000), "≥ 1");
        foreach (double theta in new[] { 0, -1, double.NaN, double.PositiveInfinity })
            Expect.Throws("theta", () => s.CreateRopeTable(8, 8, theta), "finite value > 0");

        Assert.All(q.ToArray(), x => Assert.True(float.IsNaN(x), "q was written"));
        Assert.All(k.ToArray(), x => Assert.True(float.IsNaN(x), "kCache was written"));
        Assert.All(v.ToArray(), x => Assert.True(float.IsNaN(x), "vCache was written"));
    }
}
