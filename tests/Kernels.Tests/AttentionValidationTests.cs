namespace Kernels.Tests;

/// <summary>Attention input errors are reported before anything runs, naming the argument; the reference's semantics hold.</summary>
public class AttentionValidationTests
{
    private static readonly AttentionShape Ok = new(Batch: 2, Heads: 4, KvHeads: 2, QueryLength: 3, KeyLength: 5, HeadDim: 8, Causal: true);

    private static KernelSession Session => Sessions.Get(Backend.CpuSimd);

    private static void Throws(string argument, Action action, string fragment)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(action);
        Assert.Equal(argument, ex.ParamName);
        Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
    }

    private static float[] Q(AttentionShape s) => new float[s.QueryElements];

    private static float[] K(AttentionShape s) => new float[s.KeyElements];

    [Fact]
    public void ShapeErrors()
    {
        Throws("shape", () => Session.Attention(Q(Ok), K(Ok with { KvHeads = 3 }), K(Ok with { KvHeads = 3 }), Ok with { KvHeads = 3 }), "multiple of KvHeads");
        Throws("shape", () => Session.Attention(Q(Ok with { HeadDim = 257 }), K(Ok with { HeadDim = 257 }), K(Ok with { HeadDim = 257 }), Ok with { HeadDim = 257 }), "1..256");
        Throws("shape.QueryLength", () => Session.Attention([], [], [], Ok with { QueryLength = 0 }), "≥ 1");
        Throws("q", () => Session.Attention(new float[5], K(Ok), K(Ok), Ok), $"= {Ok.QueryElements}, got 5");
        Throws("k", () => Session.Attention(Q(Ok), new float[7], K(Ok), Ok), "got 7");
        Throws("v", () => Session.Attention(Q(Ok), K(Ok), new float[7], Ok), "got 7");
        float[] output = [.. Enumerable.Repeat(7f, (int)Ok.QueryElements + 1)];
        Throws("output", () => Session.Attention(Q(Ok), K(Ok), K(Ok), output, Ok), $"= {Ok.QueryElements}, got {Ok.QueryElements + 1}");
        Assert.All(output, x => Assert.Equal(7f, x));
    }

    [Fact]
    public void OptionAndCacheErrors()
    {
        Throws("options", () => Session.Attention(Q(Ok), K(Ok), K(Ok), Ok, new AttentionOptions(Scale: float.NaN)), "finite");
        Throws("options", () => Session.Attention(Q(Ok), K(Ok), K(Ok), Ok, new AttentionOptions(Window: -1)), "≥ 0");
        Throws("cacheLengths", () => Session.AttentionDecode(Q(Ok), K(Ok), K(Ok), [5, 6], Ok), "0..5");
        Throws("cacheLengths", () => Session.AttentionDecode(Q(Ok), K(Ok), K(Ok), [5], Ok), "Batch");
        Throws("splits", () => Session.AttentionDecode(Q(Ok), K(Ok), K(Ok), [5, 5], Ok, null, -1), "≥ 0");
    }

    [Fact]
    public void ReferenceMatchesAHandComputedSoftmax()
    {
        // One head, D = 1, keys 0..2, non-causal: scores = q·k·scale.
        var shape = new AttentionShape(1, 1, 1, 1, 3, 1, Causal: false);
        float[] q = [2], k = [0, 1, 2], v = [10, 20, 30];
        double z = Math.Exp(0) + Math.Exp(2) + Math.Exp(4);
        double expected = (10 * Math.Exp(0) + 20 * Math.Exp(2) + 30 * Math.Exp(4)) / z;
        Assert.Equal(expected, HostReference.Attention(q, k, v, shape)[0], 12);
    }

    [Fact]
    public void TheOneVisibilityRule_MatchesItsDefinition_AtEveryExtreme()
    {
        // The definition, in 64 bits: j ≤ p when causal; p − w < j when w > 0; j < p + w when w > 0 and not causal.
        static bool Defined(long j, long p, bool causal, long w) =>
            (!causal || j <= p) && (w == 0 || (p - w < j && (causal || j < p + w)));

        int[] interesting = [int.MinValue, int.MinValue + 1, -1000, -2, -1, 0, 1, 2, 3, 7, 1000, int.MaxValue - 1, int.MaxValue];
        int[] windows = [0, 1, 2, 3, 1000, int.MaxValue - 1, int.MaxValue];
        Seeded.Run((random, _) =>
        {
            var values = interesting.Concat(Enumerable.Range(0, 40).Select(_ => random.Next(int.MinValue, int.MaxValue))).ToArray();
            foreach (bool causal in new[] { false, true })
            {
                foreach (int w in windows.Append(random.Next(1, int.MaxValue)))
                {
                    foreach (int p in values)
                    {
                        int first = DeviceCode.AttentionMask.First(p, w), end = DeviceCode.AttentionMask.End(p, causal, w);
                        // Keys are indices into a sequence of at most int.MaxValue keys: 0 ≤ j < int.MaxValue.
                        foreach (int j in values.Concat([p - 1, p, p + 1, first, end - 1, end]).Where(j => j is >= 0 and < int.MaxValue))
                        {
                            bool expected = Defined(j, p, causal, w);
                            Assert.True(expected == DeviceCode.AttentionMask.Visible(j, p, causal, w), $"key {j} pos {p} causal {causal} window {w}: expected {expected}");
                            Assert.True(expected == (j >= first && j < end), $"range [{first}, {end}) key {j} pos {p} causal {causal} window {w}");
                            Assert.True(expected == HostReference.Visible(j, p, causal, w), $"reference: key {j} pos {p}");
                        }
                    }
                }
            }
        });
    }

    [Fact]
    public void ReferenceCausalWindowAndEmptyRows()
    {
        // Sq = 2, Sk = 4: query 0 sits at position 2, query 1 at 3 (bottom-right alignment).
        Assert.True(HostReference.Visible(2, 2, causal: true, window: 0));
        Assert.False(HostReference.Visible(3, 2, causal: true, window: 0));
        Assert.False(HostReference.Visible(0, 2, causal: true, window: 2));
        Assert.True(HostReference.Visible(1, 2, causal: true, window: 2));
        Assert.False(HostReference.Visible(4, 2, causal: false, window: 2));
        Assert.True(HostReference.Visible(3, 2, causal: false, window: 2));

        // A cache of length 0: no visible key, the row is zeros.
        var shape = new AttentionShape(1, 1, 1, 1, 4, 2, Causal: true);
        double[] row = HostReference.Attention([1, 1], new float[8], new float[8], shape, null, [0]);
        Assert.Equal([0.0, 0.0], row);
    }
}
