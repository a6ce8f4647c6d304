using CsCheck;
using Kernels.Energy;
using Kernels.Tests.Sparse;

namespace Kernels.Tests.Fuzz;

/// <summary>
/// Property-based fuzzing of the public API (CsCheck; issue 15). Random shapes, strides, lengths, flags,
/// kernels, formats and buffers (fresh, too short, too long, disposed, of another session, aliased) and
/// random profile JSON. The property: a documented <see cref="ArgumentException"/> before any write (the
/// poisoned output is untouched), or the reference result; never another exception type.
/// </summary>
/// <remarks>
/// Each property runs 150 cases in the ordinary test run, or for <c>KERNELS_FUZZ_SECONDS</c> seconds when set. <c>.ci/run</c> runs the fuzzer once more on its own, in a separate test host process with a
/// longer budget, so that a crash the process cannot catch (a wild pointer, an uncatchable assertion)
/// fails CI with the case that caused it (a failure prints CsCheck's seed: replay with <c>CsCheck_Seed</c>).
/// </remarks>
[Trait("Category", "Fuzz")]
public sealed class ApiFuzzTests
{
    /// <summary>The time budget of each property (KERNELS_FUZZ_SECONDS), or -1: a fixed number of cases instead.</summary>
    private static int Seconds =>
        int.TryParse(Environment.GetEnvironmentVariable("KERNELS_FUZZ_SECONDS"), out int s) && s > 0 ? s : -1;

    private static long Iterations => Seconds > 0 ? long.MaxValue : 150;

    /// <summary>Fewer cases on the CPU accelerator, which simulates every GPU thread.</summary>
    private static long IterationsOn(Backend backend) => backend == Backend.Cpu && Seconds < 0 ? 40 : Iterations;

    private static readonly Gen<int> Size = Gen.Frequency(
        (8, Gen.Int[1, 24]),
        (1, Gen.OneOf(0, -1, int.MinValue, int.MaxValue, 131071, 131072, 65535, 65536, 1 << 30)));

    private static readonly Gen<int> Count = Gen.Frequency(
        (8, Gen.Int[1, 3]),
        (1, Gen.OneOf(0, -1, 65535, 65536, int.MaxValue)));

    /// <summary>A stride: -2 stands for "the natural one" (packed), else an explicit, possibly hostile value.</summary>
    private static readonly Gen<long> Stride = Gen.Frequency(
        (6, Gen.Const(-2L)),
        (2, Gen.Long[0, 600]),
        (1, Gen.OneOf(-1L, long.MaxValue, long.MinValue, long.MaxValue / 2 + 1, 1L << 40, (1L << 62) + 3)));

    /// <summary>How much longer (or shorter) than needed a buffer is.</summary>
    private static readonly Gen<int> Slack = Gen.Frequency((6, Gen.Const(0)), (2, Gen.Int[1, 9]), (2, Gen.Int[-9, -1]));

    public enum BufferState
    {
        Fresh,
        Disposed,
        Foreign,
        Aliased,
    }

    private static readonly Gen<BufferState> State = Gen.Frequency(
        (12, Gen.Const(BufferState.Fresh)), (1, Gen.Const(BufferState.Disposed)), (1, Gen.Const(BufferState.Foreign)), (1, Gen.Const(BufferState.Aliased)));

    private static readonly Gen<GemmKernel> Kernel = Gen.Frequency(
        (6, Gen.Const(GemmKernel.Auto)),
        (2, Gen.OneOf(GemmKernel.Reference, GemmKernel.Tiled, GemmKernel.Dp4a, GemmKernel.Simd, GemmKernel.TensorCore, (GemmKernel)99)));

    public sealed record GemmCall(
        int M, int N, int K, int Count, long StrideA, long StrideB, long StrideC, long StrideAScale, long StrideBScale,
        int SlackA, int SlackB, int SlackC, int SlackScales, bool Dequant, bool Bias, BufferState State, GemmKernel Kernel);

    private static readonly Gen<GemmCall> GemmCalls =
        Gen.Select(Gen.Select(Size, Size, Size, Count, Stride, Stride, Stride),
                   Gen.Select(Stride, Stride, Slack, Slack, Slack, Slack),
                   Gen.Select(Gen.Bool, Gen.Bool, State, Kernel))
        .Select((a, b, c) => new GemmCall(a.Item1, a.Item2, a.Item3, a.Item4, a.Item5, a.Item6, a.Item7,
            b.Item1, b.Item2, b.Item3, b.Item4, b.Item5, b.Item6, c.Item1, c.Item2, c.Item3, c.Item4));

    public static TheoryData<Backend> Backends => new(Backend.CpuSimd, Backend.Cpu);

    /// <summary>The length a buffer needs, in 128 bits, and the length to allocate (small, or 1 when it cannot exist).</summary>
    private static long Allocation(Int128 needed, int slack) =>
        needed + slack is var l && l >= 1 && l <= 1 << 20 ? (long)l : needed <= 0 ? 1 : Math.Min(1 << 10, (long)Int128.Min(needed, 1 << 10));

    [Theory]
    [MemberData(nameof(Backends))]
    public void GemmDeviceApi(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        KernelSession foreign = Sessions.Get(backend == Backend.CpuSimd ? Backend.Cpu : Backend.CpuSimd);
        GemmCalls.Sample(call => RunGemm(session, foreign, call), iter: IterationsOn(backend), time: Seconds, threads: 1);
    }

    private static void RunGemm(KernelSession session, KernelSession foreign, GemmCall c)
    {
        int m = c.M, n = c.N, k = c.K, count = c.Count;
        long sa = c.StrideA == -2 ? (long)m * k : c.StrideA, sb = c.StrideB == -2 ? (long)n * k : c.StrideB;
        long sc = c.StrideC == -2 ? (long)m * n : c.StrideC;
        long sas = c.StrideAScale == -2 ? m : c.StrideAScale, sbs = c.StrideBScale == -2 ? n : c.StrideBScale;
        Int128 last = Math.Max(0, count - 1);
        long lenA = Allocation(last * sa + (Int128)m * k, c.SlackA), lenB = Allocation(last * sb + (Int128)n * k, c.SlackB);
        long lenC = Allocation(last * sc + (Int128)m * n, c.SlackC);
        long lenAs = Allocation(last * sas + m, c.SlackScales), lenBs = Allocation(last * sbs + n, c.SlackScales);
        var random = new Random(HashCode.Combine(m, n, k, count, sa, sb));
        sbyte[] a = Seeded.Int8(random, lenA), b = Seeded.Int8(random, lenB);
        float[] aScale = Seeded.Floats(random, lenAs, 0.01f, 1), bScale = Seeded.Floats(random, lenBs, 0.01f, 1), bias = Seeded.Floats(random, lenBs, -1, 1);

        using DeviceBuffer<sbyte> da = (c.State == BufferState.Foreign ? foreign : session).Upload<sbyte>(a);
        using DeviceBuffer<sbyte> db = session.Upload<sbyte>(b);
        if (c.State == BufferState.Disposed)
            db.Dispose();
        var batch = new StridedBatch(count, sa, sb, sc);
        if (!c.Dequant)
        {
            int[] poison = [.. Enumerable.Repeat(unchecked((int)0xDEADBEEF), (int)lenC)];
            using DeviceBuffer<int> dc = session.Upload<int>(poison);
            bool ok = Outcome(() => session.Int8GemmBatched(da, db, dc, m, n, k, batch, c.Kernel), c);
            int[] got = dc.ToArray();
            if (!ok)
            {
                Assert.Equal(poison, got);
                return;
            }
            var expected = (int[])poison.Clone();
            for (int g = 0; g < count; g++)
            {
                long[] r = HostReference.Int8Gemm(a.AsSpan((int)(g * sa), m * k), b.AsSpan((int)(g * sb), n * k), m, n, k);
                for (int i = 0; i < r.Length; i++)
                    expected[g * sc + i] = (int)r[i];
            }
            Assert.Equal(expected, got);
            return;
        }

        float[] poisonF = [.. Enumerable.Repeat(float.NaN, (int)lenC)];
        using DeviceBuffer<float> das = session.Upload<float>(aScale);
        using DeviceBuffer<float> dbs = session.Upload<float>(bScale);
        using DeviceBuffer<float> dbias = session.Upload<float>(bias);
        using DeviceBuffer<float> dy = c.State == BufferState.Aliased ? session.Upload<float>(aScale) : session.Upload<float>(poisonF);
        DeviceBuffer<float> scaleArg = c.State == BufferState.Aliased ? dy : das;
        float[] before = dy.ToArray();
        bool done = Outcome(() => session.Int8GemmDequantBatched(da, db, scaleArg, dbs, c.Bias ? dbias : null, dy, m, n, k, batch, sas, sbs, c.Kernel), c);
        float[] y = dy.ToArray();
        if (!done)
        {
            Assert.Equal(before, y);
            return;
        }
        for (int g = 0; g < count; g++)
        {
            double[] r = HostReference.Int8GemmDequant(a.AsSpan((int)(g * sa), m * k), b.AsSpan((int)(g * sb), n * k),
                aScale.AsSpan((int)(g * sas), m), bScale.AsSpan((int)(g * sbs), n), c.Bias ? bias.AsSpan((int)(g * sbs), n) : [], m, n, k);
            Expect.Close(r, y[(int)(g * sc)..(int)(g * sc + (long)m * n)], 5e-7, 1.2e-6, $"{c} gemm {g}");
        }
    }

    /// <summary>Runs a call: true when it ran, false when it threw an ArgumentException; any other exception fails the property.</summary>
    private static bool Outcome(Action call, object what)
    {
        try
        {
            call();
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
        {
            throw new Xunit.Sdk.XunitException($"{what}: expected an ArgumentException or a result, got {ex.GetType().Name}: {ex.Message}");
        }
    }

    // ---------------------------------------------------------------------------------- attention

    public sealed record AttentionCall(int B, int H, int KvH, int Sq, int Sk, int D, bool Causal, int Window, float? Scale, int SlackQ, int SlackK, bool Decode, int LengthSlack);

    private static readonly Gen<int> Small = Gen.Frequency((8, Gen.Int[1, 5]), (1, Gen.OneOf(0, -1, int.MaxValue, 1 << 30, 257)));

    private static readonly Gen<AttentionCall> AttentionCalls =
        Gen.Select(Gen.Select(Small, Small, Small, Small, Small, Gen.Frequency((6, Gen.OneOf(1, 4, 16, 64)), (1, Gen.OneOf(0, 257, -3)))),
                   Gen.Select(Gen.Bool, Gen.Frequency((4, Gen.Const(0)), (2, Gen.Int[1, 6]), (1, Gen.OneOf(-1, int.MaxValue))),
                       Gen.Frequency((6, Gen.Const((float?)null)), (1, Gen.OneOf<float?>(0f, float.NaN, float.PositiveInfinity, 0.5f)))),
                   Gen.Select(Slack, Slack, Gen.Bool, Gen.Frequency((6, Gen.Const(0)), (1, Gen.OneOf(-1, 1, int.MaxValue)))))
        .Select((s, o, l) => new AttentionCall(s.Item1, s.Item2, s.Item3, s.Item4, s.Item5, s.Item6, o.Item1, o.Item2, o.Item3, l.Item1, l.Item2, l.Item3, l.Item4));

    [Theory]
    [MemberData(nameof(Backends))]
    public void AttentionHostApi(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        AttentionCalls.Sample(call => RunAttention(session, call), iter: IterationsOn(backend), time: Seconds, threads: 1);
    }

    private static void RunAttention(KernelSession session, AttentionCall c)
    {
        var shape = new AttentionShape(c.B, c.H, c.KvH, c.Sq, c.Sk, c.D, c.Causal);
        var options = new AttentionOptions(c.Scale, c.Window);
        Int128 qNeeded = (Int128)c.B * c.H * c.Sq * c.D, kNeeded = (Int128)c.B * c.KvH * c.Sk * c.D;
        var random = new Random(HashCode.Combine(c.B, c.H, c.Sq, c.Sk, c.D));
        float[] q = Seeded.Floats(random, Allocation(qNeeded, c.SlackQ), -1, 1);
        float[] k = Seeded.Floats(random, Allocation(kNeeded, c.SlackK), -1, 1);
        float[] v = Seeded.Floats(random, k.Length, -1, 1);
        int[] lengths = c.Decode ? [.. Enumerable.Range(0, Math.Clamp(c.B, 0, 8)).Select(_ => Math.Clamp(c.Sk, 0, 1 << 20) + c.LengthSlack - 1)] : [];
        float[]? result = null;
        bool ran = Outcome(() => result = c.Decode
            ? session.AttentionDecode(q, k, v, lengths, shape, options)
            : session.Attention(q, k, v, shape, options), c);
        if (!ran)
            return;
        double[] expected = HostReference.Attention(q, k, v, shape, options, lengths);
        Expect.Close(expected, result!, 1e-4, 1e-4, c.ToString());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void AttentionDeviceApi(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Gen.Select(AttentionCalls, State).Sample((call, state) => RunAttentionDevice(session, call, state), iter: IterationsOn(backend), time: Seconds, threads: 1);
    }

    private static void RunAttentionDevice(KernelSession session, AttentionCall c, BufferState state)
    {
        var shape = new AttentionShape(c.B, c.H, c.KvH, c.Sq, c.Sk, c.D, c.Causal);
        var options = new AttentionOptions(c.Scale, c.Window);
        Int128 qNeeded = (Int128)c.B * c.H * c.Sq * c.D, kNeeded = (Int128)c.B * c.KvH * c.Sk * c.D;
        var random = new Random(HashCode.Combine(c.B, c.H, c.Sq, c.Sk, c.D, state));
        float[] q = Seeded.Floats(random, Allocation(qNeeded, c.SlackQ), -1, 1);
        float[] k = Seeded.Floats(random, Allocation(kNeeded, c.SlackK), -1, 1);
        float[] v = Seeded.Floats(random, k.Length, -1, 1);
        int[] lengths = [.. Enumerable.Range(0, Math.Clamp(c.B, 1, 8)).Select(_ => Math.Clamp(c.Sk, 0, 1 << 20) + c.LengthSlack - 1)];
        using DeviceBuffer<float> dq = session.Upload<float>(q), dk = session.Upload<float>(k), dv = session.Upload<float>(v);
        using DeviceBuffer<int> dl = session.Upload<int>(lengths);
        using DeviceBuffer<float> fresh = session.Upload<float>([.. Enumerable.Repeat(float.NaN, (int)Allocation(qNeeded, c.SlackQ))]);
        DeviceBuffer<float> output = state == BufferState.Aliased ? dk : fresh;
        if (state == BufferState.Disposed)
            dv.Dispose();
        float[] before = output.IsDisposed ? [] : output.ToArray();
        bool ran = Outcome(() =>
        {
            if (c.Decode)
                session.AttentionDecode(dq, dk, dv, dl, output, shape, options);
            else
                session.Attention(dq, dk, dv, output, shape, options);
        }, c);
        if (!ran)
        {
            Assert.Equal(before, output.ToArray());
            return;
        }
        double[] expected = HostReference.Attention(q.AsSpan(0, (int)shape.QueryElements), k.AsSpan(0, (int)shape.KeyElements),
            v.AsSpan(0, (int)shape.KeyElements), shape, options, c.Decode ? lengths.AsSpan(0, shape.Batch) : []);
        Expect.Close(expected, output.ToArray()[..(int)shape.QueryElements], 1e-4, 1e-4, c.ToString());
    }

    // ------------------------------------------------------------------------------------- sparse

    public sealed record SparseCall(SparseFormat Format, int Rows, int Cols, int BlockRows, int BlockCols, double Sparsity, int M, int SlackX);

    private static readonly Gen<SparseCall> SparseCalls =
        Gen.Select(Gen.Select(Gen.Enum<SparseFormat>(), Size, Size, Gen.Frequency((6, Gen.Int[1, 5]), (1, Gen.OneOf(0, 300, 65536, int.MaxValue))),
                       Gen.Frequency((6, Gen.Int[1, 5]), (1, Gen.OneOf(0, 300, 65536, int.MaxValue)))),
                   Gen.Select(Gen.OneOf(0.0, 0.5, 0.9, 1.0), Size, Slack))
        .Select((a, b) => new SparseCall(a.Item1, a.Item2, a.Item3, a.Item4, a.Item5, b.Item1, b.Item2, b.Item3));

    [Theory]
    [MemberData(nameof(Backends))]
    public void SparseHostApi(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        SparseCalls.Sample(call => RunSparse(session, call, backend == Backend.Cpu), iter: IterationsOn(backend), time: Seconds, threads: 1);
    }

    private static void RunSparse(KernelSession session, SparseCall c, bool simulated)
    {
        long cells = Allocation((Int128)c.Rows * c.Cols, 0);
        var random = new Random(HashCode.Combine(c.Rows, c.Cols, c.Format));
        float[] dense = Seeded.Floats(random, cells, -100, 100);
        float[]? pruned = null;
        if (!Outcome(() => pruned = c.Format switch
            {
                SparseFormat.Bsr => Pruning.Block(dense, c.Rows, c.Cols, c.BlockRows, c.BlockCols, c.Sparsity),
                SparseFormat.TwoFour => Pruning.TwoFour(dense, c.Rows, c.Cols),
                _ => Pruning.Magnitude(dense, c.Rows, c.Cols, c.Sparsity),
            }, c))
        {
            return;
        }
        sbyte[] w = [.. pruned!.Select(v => (sbyte)Math.Clamp(v, -127, 127))];
        SparseMatrix? matrix = null;
        if (!Outcome(() => matrix = c.Format == SparseFormat.Bsr
                ? SparseMatrix.FromDense(w, c.Rows, c.Cols, c.Format, c.BlockRows, c.BlockCols)
                : SparseMatrix.FromDense(w, c.Rows, c.Cols, c.Format), c))
        {
            return;
        }
        // The CPU accelerator simulates every GPU thread: valid products of more than 2^14 outputs are left to cpu-simd.
        if (simulated && (long)c.M * c.Rows > 1 << 14 && (long)c.M * c.Cols == Allocation((Int128)c.M * c.Cols, c.SlackX))
            return;
        sbyte[] x = Seeded.Int8(random, Allocation((Int128)c.M * c.Cols, c.SlackX));
        int[]? y = null;
        if (!Outcome(() => y = session.SparseInt8Gemm(matrix!, x, c.M), c))
            return;
        Expect.Equal(HostReference.Int8Gemm(x, w, c.M, c.Rows, c.Cols), y!, c.ToString());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void SparseDeviceApi(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        KernelSession foreign = Sessions.Get(backend == Backend.CpuSimd ? Backend.Cpu : Backend.CpuSimd);
        Gen.Select(SparseCalls, State, Gen.Bool).Sample((call, state, dequant) => RunSparseDevice(session, foreign, call, state, dequant, backend == Backend.Cpu),
            iter: IterationsOn(backend), time: Seconds, threads: 1);
    }

    private static void RunSparseDevice(KernelSession session, KernelSession foreign, SparseCall c, BufferState state, bool dequant, bool simulated)
    {
        if (c.Rows < 1 || c.Cols < 1 || (long)c.Rows * c.Cols > 1 << 16)
            return; // the matrix itself is validated by the host-array property; here the device calls are
        var random = new Random(HashCode.Combine(c.Rows, c.Cols, c.M, state));
        sbyte[] w = SparseTestData.PrunedInt8(random, c.Rows, c.Cols, SparseFormat.Csr, c.Sparsity);
        SparseMatrix matrix = SparseMatrix.FromDense(w, c.Rows, c.Cols, SparseFormat.Csr);
        if (simulated && (long)c.M * c.Rows > 1 << 14)
            return;
        using DeviceSparseMatrix<sbyte> dw = (state == BufferState.Foreign ? foreign : session).Upload(matrix);
        if (state == BufferState.Disposed)
            dw.Dispose();
        sbyte[] x = Seeded.Int8(random, Allocation((Int128)c.M * c.Cols, c.SlackX));
        using DeviceBuffer<sbyte> dx = session.Upload<sbyte>(x);
        long yLength = Allocation((Int128)c.M * c.Rows, c.SlackX);
        if (!dequant)
        {
            using DeviceBuffer<int> dy = session.Upload<int>([.. Enumerable.Repeat(unchecked((int)0xDEADBEEF), (int)yLength)]);
            int[] before = dy.ToArray();
            if (!Outcome(() => session.SparseInt8Gemm(dw, dx, dy, c.M), c))
            {
                Assert.Equal(before, dy.ToArray());
                return;
            }
            Expect.Equal(HostReference.Int8Gemm(x.AsSpan(0, c.M * c.Cols), w, c.M, c.Rows, c.Cols), dy.ToArray()[..(c.M * c.Rows)], c.ToString());
            return;
        }
        float[] xScale = Seeded.Floats(random, Math.Max(1, Math.Min(c.M, 1 << 16)), 0.01f, 1), wScale = Seeded.Floats(random, c.Rows, 0.01f, 1);
        using DeviceBuffer<float> dxs = session.Upload<float>(xScale), dws = session.Upload<float>(wScale);
        using DeviceBuffer<float> fresh = session.Upload<float>([.. Enumerable.Repeat(float.NaN, (int)yLength)]);
        DeviceBuffer<float> y = state == BufferState.Aliased ? dws : fresh;
        float[] old = y.ToArray();
        if (!Outcome(() => session.SparseInt8GemmDequant(dw, dx, dxs, dws, null, y, c.M), c))
        {
            Assert.Equal(old, y.ToArray());
            return;
        }
        Expect.Close(HostReference.Int8GemmDequant(x.AsSpan(0, c.M * c.Cols), w, xScale, wScale, [], c.M, c.Rows, c.Cols),
            y.ToArray()[..(c.M * c.Rows)], 5e-7, 1.2e-6, c.ToString());
    }

    // ----------------------------------------------------------------------------------- profiles

    private static readonly Gen<string> JsonValue = Gen.OneOf(
        "null", "0", "-1", "1e308", "-1e308", "0.12", "\"\"", "\"EUR\"", "\"USD\"", "\"x\"", "[]", "{}", "true", "300", "1.3", "1e-300");

    private static readonly string[] RegionFields =
        ["id", "name", "currency", "price_per_kwh", "price_date", "price_source", "carbon_g_per_kwh", "carbon_date", "carbon_source", "pue", "hardware_cost_per_hour", "confidence"];

    private static readonly string[] RateFields = ["currency", "units_per_usd", "date", "source", "confidence"];

    private static readonly Gen<string> ProfileJson =
        Gen.Select(JsonValue.Array[RegionFields.Length], Gen.Int[0, 3], JsonValue.Array[RateFields.Length], Gen.Int[0, 3], Gen.Int[0, 20])
        .Select((region, regions, rate, rates, drop) =>
        {
            string Obj(string[] names, string[] values) =>
                "{" + string.Join(", ", names.Select((f, i) => (f, i)).Where(p => p.i != drop).Select(p => $"\"{p.f}\": {values[p.i]}")) + "}";
            string r = Obj(RegionFields, region), e = Obj(RateFields, rate);
            return $"{{ \"regions\": [{string.Join(", ", Enumerable.Repeat(r, regions))}], \"exchange_rates\": [{string.Join(", ", Enumerable.Repeat(e, rates))}] }}";
        });

    [Fact]
    public void ProfileJson_IsParsedOrRefusedWithAnArgumentException() =>
        ProfileJson.Sample(json =>
        {
            CostProfiles? profiles = null;
            if (!Outcome(() => profiles = CostProfiles.Parse(json), json))
                return;
            foreach (RegionProfile region in profiles!.Regions)
            {
                // Whatever loads can be costed: a finite figure or an ArgumentException, nothing else.
                Outcome(() => CostModel.PerMillionTokens(10, CostModel.InputsFor(region, "USD", profiles.Rates), 100), json);
            }
        }, iter: Iterations, time: Seconds, threads: 1);
}
