using Kernels.Backends.Simd;
using Kernels.DeviceCode;

namespace Kernels.Tests.Layer;

/// <summary>
/// The quantization rule's two forms, and the SIMD layer kernels at every vector width (16, 8 and the scalar
/// rules at 1) on this machine: per-element rules are bit-identical across widths, reductions agree with the reference.
/// </summary>
public sealed unsafe class LayerSimdTests
{
    private static readonly int[] Widths = [16, 8, 1];

    [Fact]
    public void DeviceQuantizeRuleAgreesWithQuantizationExceptAtFloat32Ties()
    {
        Seeded.Run((random, _) =>
        {
            for (int i = 0; i < 200_000; i++)
            {
                float scale = (float)Math.Pow(10, random.NextDouble() * 8 - 6);
                float value = i % 4 == 0
                    ? (float)((random.Next(-127, 127) + 0.5) * scale)   // at or next to a tie
                    : (float)((random.NextDouble() * 2 - 1) * 127.4 * scale);
                sbyte device = LayerMath.Quantize(value, scale), host = Quantization.QuantizeValue(value, scale);
                if (device == host)
                    continue;
                float quotient = value / scale;
                double exact = value / (double)scale;
                Assert.True(Math.Abs(device - host) == 1 && Math.Abs(quotient - Math.Floor(quotient)) == 0.5 && exact != quotient,
                    $"{value:R}/{scale:R}: device {device}, host {host} (float quotient {quotient:R}, double {exact:R})");
            }
        });
        Assert.Equal(0, LayerMath.Quantize(5f, 0f));
        Assert.Equal(2, LayerMath.Quantize(2.5f, 1f));
        Assert.Equal(-2, LayerMath.Quantize(-2.5f, 1f));
        Assert.Equal(-4, LayerMath.Quantize(-3.5f, 1f));
        Assert.Equal(127, LayerMath.Quantize(1e30f, 1f));
        Assert.Equal(-127, LayerMath.Quantize(-128f, 1f));
    }

    [Fact]
    public void QuantizedRowsAreBitIdenticalAtEveryWidth()
    {
        Seeded.Run((random, seed) =>
        {
            foreach ((int rows, int n) in new[] { (1, 1), (3, 7), (2, 127), (20, 2051) })
            {
                float[] x = Seeded.Floats(random, (long)rows * n, -50, 50);
                sbyte[]? first = null;
                float[]? firstScale = null;
                foreach (int width in Widths)
                {
                    var q = new sbyte[rows * n];
                    var scale = new float[rows];
                    fixed (float* px = x, ps = scale)
                    fixed (sbyte* pq = q)
                    {
                        LayerSimd.Rows(new RowJob { Kind = RowKind.Heads, X = px, Q = pq, Scale = ps, Rows = rows, N = n, Heads = 1, Quantize = true }, width);
                    }
                    first ??= q;
                    firstScale ??= scale;
                    Assert.Equal(first, q);
                    Assert.Equal(firstScale, scale);
                    for (int i = 0; i < q.Length; i++)
                        Assert.Equal(LayerMath.Quantize(x[i], scale[i / n]), q[i]);
                }
            }
        });
    }

    [Fact]
    public void FloatRowsMatchTheReferenceAtEveryWidth()
    {
        Seeded.Run((random, seed) =>
        {
            foreach ((int rows, int n) in new[] { (1, 1), (3, 7), (2, 2051), (16, 2053) })
            {
                float[] x = Seeded.Floats(random, (long)rows * 2 * n, -20, 20);
                float[] w = Seeded.Floats(random, n, -2, 2);
                double[] rms = HostReference.RmsNorm(x.AsSpan(0, rows * n), w, rows, n, 1e-6);
                double[] swiglu = HostReference.SwiGlu(x, rows, n);
                foreach (int width in Widths)
                {
                    var y = new float[rows * n];
                    var z = new float[rows * n];
                    fixed (float* px = x, pw = w, py = y, pz = z)
                    {
                        LayerSimd.Rows(new RowJob { Kind = RowKind.RmsNorm, X = px, Weight = pw, Y = py, Rows = rows, N = n, Heads = 1, Eps = 1e-6f }, width);
                        LayerSimd.Rows(new RowJob { Kind = RowKind.SwiGlu, X = px, Y = pz, Rows = rows, N = n, Heads = 1 }, width);
                    }
                    LayerAccept.Floats(rms, y, LayerAccept.Subnormal, $"rmsnorm width {width} {rows}×{n} seed {seed}");
                    LayerAccept.Floats(swiglu, z, LayerAccept.SiluUnderflow, $"swiglu width {width} {rows}×{n} seed {seed}");
                }
            }
        });
    }

    [Fact]
    public void RopeAddAndEmbedAreBitIdenticalAtEveryWidth()
    {
        Seeded.Run((random, seed) =>
        {
            var shape = new RopeShape(2, 3, 4, 2, 18, 8, 4);
            float[] qkv = Seeded.Floats(random, (long)shape.QkvElements, -3, 3);
            float[] table = RopeTable.Compute(8, 18, 500000);
            float[] a = Seeded.Floats(random, 1031, -1, 1), b = Seeded.Floats(random, 1031, -1, 1);
            sbyte[] embedding = Seeded.Int8(random, 7 * 33, -127, 127);
            float[] rowScale = Seeded.Floats(random, 7, 0, 1);
            int[] tokens = [6, 0, 3, 3];
            float[][]? first = null;
            foreach (int width in Widths)
            {
                float[] q = new float[(int)shape.QueryElements], k = new float[(int)shape.CacheElements], v = new float[(int)shape.CacheElements];
                float[] sum = [.. a];
                var e = new float[tokens.Length * 33];
                fixed (float* pqkv = qkv, pt = table, pq = q, pk = k, pv = v, ps = sum, pb = b, prs = rowScale, pe = e)
                fixed (sbyte* pemb = embedding)
                fixed (int* ptok = tokens)
                {
                    LayerSimd.Rope(pqkv, pt, pq, pk, pv, new RopeParams(2, 3, 4, 2, 18, 8, 4), width);
                    LayerSimd.Add(ps, pb, sum.Length, width);
                    LayerSimd.Embed(pemb, prs, ptok, tokens.Length, pe, 33, width);
                }
                float[][] all = [q, k, v, sum, e];
                first ??= all;
                for (int i = 0; i < all.Length; i++)
                    Assert.Equal(first[i], all[i]);
            }
            Assert.Equal(a.Zip(b, (x, y) => x + y), first![3]);
        });
    }
}

/// <summary>The decode step's calls on cpu-simd allocate nothing on the managed heap once warm (one token, serial paths).</summary>
public sealed class LayerDecodeAllocationTests
{
    [Fact]
    public void DecodeCallsOnCpuSimdAllocateNothing()
    {
        using KernelSession s = KernelSession.Create(Backend.CpuSimd); // its own: no lock contention with other tests
        const int N = 4096, Heads = 32, KvHeads = 8, D = 128, Ffn = 11008, Vocab = 16;
        using DeviceBuffer<float> h = s.Upload<float>(new float[N]), w = s.Upload<float>(Enumerable.Repeat(1f, N).ToArray());
        using DeviceBuffer<sbyte> act = s.Allocate<sbyte>(Ffn);
        using DeviceBuffer<float> actScale = s.Allocate<float>(1), other = s.Upload<float>(new float[N]);
        using DeviceBuffer<float> gateUp = s.Upload<float>(new float[2 * Ffn]);
        using DeviceBuffer<float> qkv = s.Upload<float>(new float[(Heads + 2 * KvHeads) * D]), q = s.Allocate<float>(Heads * D);
        using DeviceBuffer<float> k = s.Allocate<float>(KvHeads * 64 * D), v = s.Allocate<float>(KvHeads * 64 * D);
        using DeviceBuffer<sbyte> table = s.Upload<sbyte>(new sbyte[Vocab * N]);
        using DeviceBuffer<float> tableScale = s.Upload<float>(new float[Vocab]);
        using RopeTable rope = s.CreateRopeTable(64, D, 10000);
        var shape = new RopeShape(1, 1, Heads, KvHeads, D, 64, 9);
        int[] token = [3];

        void Step()
        {
            s.EmbedInt8(table, tableScale, token, h, Vocab, N);
            s.RmsNormQuantize(h, w, act, actScale, 1, N, 1e-5f);
            s.RopeKvCache(qkv, rope, q, k, v, shape);
            s.QuantizeRows(q, act, actScale, 1, Heads * D, Heads);
            s.SwiGluQuantize(gateUp, act, actScale, 1, Ffn);
            s.RmsNorm(h, w, other, 1, N, 1e-5f);
            s.SwiGlu(gateUp, k, 1, Ffn);
            s.Add(h, other, N);
        }
        Step();
        var each = new List<string>();
        foreach ((string name, Action call) in new (string, Action)[]
        {
            ("embed", () => s.EmbedInt8(table, tableScale, token, h, Vocab, N)),
            ("rmsq", () => s.RmsNormQuantize(h, w, act, actScale, 1, N, 1e-5f)),
            ("rope", () => s.RopeKvCache(qkv, rope, q, k, v, shape)),
            ("qrows", () => s.QuantizeRows(q, act, actScale, 1, Heads * D, Heads)),
            ("add", () => s.Add(h, other, N)),
            ("sync", () => s.Synchronize()),
        })
        {
            call();
            long b0 = GC.GetAllocatedBytesForCurrentThread();
            call();
            each.Add($"{name} {GC.GetAllocatedBytesForCurrentThread() - b0}");
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        Step();
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before == 0, string.Join(", ", each));
    }
}
