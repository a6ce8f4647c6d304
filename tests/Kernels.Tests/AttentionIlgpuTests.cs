namespace Kernels.Tests;

/// <summary>
/// The ILGPU attention kernels against the float64 reference (<see cref="HostReference.Attention"/>).
/// Tolerance 1e-4 relative + 1e-4 absolute: inputs are in [−1, 1], so every output is a convex
/// combination of V values (|out| ≤ 1) and float32 rounding (dot products of ≤ 256 terms, the
/// online-softmax rescaling, the split combine) stays around 1e-6..1e-5; 1e-4 leaves an order of
/// magnitude of margin while still catching any masking or indexing error (which moves outputs by ≫ 1e-3).
/// The CPU accelerator simulates GPU threads slowly, so shapes are small.
/// </summary>
public sealed class AttentionIlgpuTests
{
    private const double Tolerance = 1e-4;

    public static TheoryData<Backend> IlgpuBackends => new(Backend.Cpu, Backend.Cuda, Backend.OpenCL);

    private static (float[] Q, float[] K, float[] V) Inputs(Random random, AttentionShape shape) =>
        (Seeded.Floats(random, shape.QueryElements, -1, 1),
         Seeded.Floats(random, shape.KeyElements, -1, 1),
         Seeded.Floats(random, shape.KeyElements, -1, 1));

    private static void CheckForward(KernelSession session, Random random, AttentionShape shape, AttentionOptions options, string what)
    {
        var (q, k, v) = Inputs(random, shape);
        double[] expected = HostReference.Attention(q, k, v, shape, options);
        float[] actual = session.Attention(q, k, v, shape, options);
        Expect.Close(expected, actual, Tolerance, Tolerance, $"{what} {shape} {options}");
    }

    [Fact]
    public void DeviceExp_IsAccurate()
    {
        double worst = 0;
        for (float x = -87f; x <= 88f; x += 0.001953125f)
        {
            double exact = Math.Exp(x);
            worst = Math.Max(worst, Math.Abs(DeviceCode.AttentionKernels.Exp(x) - exact) / exact);
        }
        Assert.True(worst < 5e-7, $"worst relative error {worst}");
        Assert.Equal(0f, DeviceCode.AttentionKernels.Exp(float.NegativeInfinity));
        Assert.Equal(1f, DeviceCode.AttentionKernels.Exp(0f));
        Assert.True(float.IsNaN(DeviceCode.AttentionKernels.Exp(float.NaN)));
    }

    [Fact]
    public void SharedMemory_FitsTheStatic48KiBOfEveryGpu()
    {
        for (int d = 1; d <= AttentionShape.MaxHeadDim; d++)
        {
            Assert.True(DeviceCode.AttentionKernels.SharedFloats(d) * sizeof(float) <= 48 * 1024, $"head dim {d}");
            Assert.Equal(0, DeviceCode.AttentionKernels.TileKeysFor(d) % DeviceCode.AttentionKernels.Lanes);
        }
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_MatchesReference_OddLengths_CausalOrNot(Backend backend) => Attention_MatchesReference_OddLengths_CausalOrNotOn(Sessions.Get(backend), backend.ToName());

    internal static void Attention_MatchesReference_OddLengths_CausalOrNotOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            foreach (bool causal in new[] { false, true })
            {
                foreach ((int sq, int sk) in new[] { (1, 1), (1, 7), (7, 7), (7, 33), (33, 33), (5, 70) })
                    CheckForward(session, random, new AttentionShape(2, 2, 2, sq, sk, 16, causal), AttentionOptions.Default, "lengths");
            }
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_GroupedAndMultiQuery(Backend backend) => Attention_GroupedAndMultiQueryOn(Sessions.Get(backend), backend.ToName());

    internal static void Attention_GroupedAndMultiQueryOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            foreach (int kvHeads in new[] { 2, 1 })
            {
                foreach (bool causal in new[] { false, true })
                {
                    CheckForward(session, random, new AttentionShape(1, 4, kvHeads, 7, 33, 8, causal), AttentionOptions.Default, "gqa");
                    CheckForward(session, random, new AttentionShape(2, 4, kvHeads, 1, 9, 8, causal), AttentionOptions.Default, "gqa decode");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_SlidingWindow_RowsWithoutKeysAreZero(Backend backend) => Attention_SlidingWindow_RowsWithoutKeysAreZeroOn(Sessions.Get(backend), backend.ToName());

    internal static void Attention_SlidingWindow_RowsWithoutKeysAreZeroOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            foreach (bool causal in new[] { false, true })
            {
                foreach (int window in new[] { 1, 3, 8 })
                    CheckForward(session, random, new AttentionShape(1, 2, 1, 33, 33, 8, causal), new AttentionOptions(Window: window), "window");

                // A window wider than any distance is no window at all, up to int.MaxValue (pos + window
                // must not wrap around), on this backend and in the reference.
                var wide = new AttentionShape(1, 2, 1, 9, 33, 8, causal);
                var (wq, wk, wv) = Inputs(random, wide);
                double[] unwindowed = HostReference.Attention(wq, wk, wv, wide);
                foreach (int window in new[] { 33, int.MaxValue - 1, int.MaxValue })
                {
                    Assert.Equal(unwindowed, HostReference.Attention(wq, wk, wv, wide, new AttentionOptions(Window: window)));
                    Expect.Close(unwindowed, session.Attention(wq, wk, wv, wide, new AttentionOptions(Window: window)), Tolerance, Tolerance, $"{target} {wide} window {window}");
                }
            }
            // Sq > Sk, causal: the first queries sit before every key and see none → zeros.
            var shape = new AttentionShape(1, 1, 1, 7, 3, 4, true);
            var (q, k, v) = Inputs(random, shape);
            float[] actual = session.Attention(q, k, v, shape);
            Expect.Close(HostReference.Attention(q, k, v, shape), actual, Tolerance, Tolerance, "no visible key");
            for (int x = 0; x < 4 * 4; x++)
                Assert.Equal(0f, actual[x]);
            Assert.NotEqual(0f, actual[(6 * 4) + 1]);
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_HeadDims(Backend backend) => Attention_HeadDimsOn(Sessions.Get(backend), backend.ToName());

    internal static void Attention_HeadDimsOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            foreach (int d in new[] { 1, 5, 31, 33, 64, 100, 128, 129, 200, 256 })
            {
                CheckForward(session, random, new AttentionShape(1, 1, 1, 9, 40, d, true), AttentionOptions.Default, "head dim");
                CheckForward(session, random, new AttentionShape(1, 2, 1, 1, 37, d, false), AttentionOptions.Default, "head dim");
            }
            // Every boundary of the per-lane feature registers (lane t owns t, t + 32, …, t + 224).
            foreach (int d in new[] { 2, 32, 63, 65, 96, 97, 159, 160, 161, 192, 224, 225, 255 })
                CheckForward(session, random, new AttentionShape(1, 1, 1, 2, 5, d, true), AttentionOptions.Default, "head dim boundary");
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_LargeLogits_StayFiniteAndCorrect(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, _) =>
        {
            var shape = new AttentionShape(1, 2, 1, 7, 33, 16, false);
            var (q, k, v) = Inputs(random, shape);
            for (int x = 0; x < q.Length; x++)
                q[x] *= 30;
            float[] actual = session.Attention(q, k, v, shape);
            Assert.All(actual, value => Assert.True(float.IsFinite(value)));
            // Logits up to ~120: float32 scores carry ~1e-5 relative error, i.e. ~1e-3 absolute in the exponent.
            Expect.Close(HostReference.Attention(q, k, v, shape), actual, 1e-3, 1e-3, "large logits");
            float[] decode = session.AttentionDecode(q, k, v, [33], shape, splits: 3);
            Assert.All(decode, value => Assert.True(float.IsFinite(value)));
            Expect.Close(HostReference.Attention(q, k, v, shape), decode, 1e-3, 1e-3, "large logits, split");
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_NaNInOneQueryRow_PropagatesToThatRowOnly(Backend backend) => Attention_NaNInOneQueryRow_PropagatesToThatRowOnlyOn(Sessions.Get(backend), backend.ToName());

    internal static void Attention_NaNInOneQueryRow_PropagatesToThatRowOnlyOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            const int d = 8, sq = 5;
            var shape = new AttentionShape(1, 2, 1, sq, 40, d, true);
            var (q, k, v) = Inputs(random, shape);
            int nanRow = sq + 3; // head 1, query 3
            q[(nanRow * d) + 2] = float.NaN;
            foreach (int splits in new[] { 0, 1, 3 })
            {
                float[] actual = splits == 0
                    ? session.Attention(q, k, v, shape)
                    : session.AttentionDecode(q, k, v, [40], shape, splits: splits);
                for (int row = 0; row < 2 * sq; row++)
                {
                    for (int x = 0; x < d; x++)
                    {
                        float value = actual[(row * d) + x];
                        Assert.True(row == nanRow ? float.IsNaN(value) : float.IsFinite(value),
                            $"splits {splits}: row {row} feature {x} is {value}");
                    }
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void AttentionDecode_Ragged_MatchesReference(Backend backend) => AttentionDecode_Ragged_MatchesReferenceOn(Sessions.Get(backend), backend.ToName());

    internal static void AttentionDecode_Ragged_MatchesReferenceOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            // (query length, causal, window): decode, multi-token decode, windowed, not causal.
            foreach ((int sq, bool causal, int window) in new[] { (1, true, 0), (3, true, 5), (1, true, 5), (3, false, 0) })
            {
                var shape = new AttentionShape(4, 4, 2, sq, 37, 16, causal);
                var (q, k, v) = Inputs(random, shape);
                int[] lengths = [0, 37, 1, 20]; // empty, full capacity, one key, partial
                var options = new AttentionOptions(Window: window);
                double[] expected = HostReference.Attention(q, k, v, shape, options, lengths);
                foreach (int splits in new[] { 0, 1, 3, 7 })
                {
                    float[] actual = session.AttentionDecode(q, k, v, lengths, shape, options, splits);
                    string what = $"decode sq {sq} causal {causal} window {window} splits {splits}";
                    Expect.Close(expected, actual, Tolerance, Tolerance, what);
                    for (int x = 0; x < 4 * sq * 16; x++)
                        Assert.True(actual[x] == 0f, $"{what}: length 0 gives {actual[x]} at {x}");
                }
            }
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void AttentionDecode_SplitK_EqualsUnsplit(Backend backend) => AttentionDecode_SplitK_EqualsUnsplitOn(Sessions.Get(backend), backend.ToName());

    internal static void AttentionDecode_SplitK_EqualsUnsplitOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            var shape = new AttentionShape(2, 2, 1, 2, 150, 64, true);
            var (q, k, v) = Inputs(random, shape);
            int[] lengths = [150, 97];
            float[] unsplit = session.AttentionDecode(q, k, v, lengths, shape, splits: 1);
            Expect.Close(HostReference.Attention(q, k, v, shape, null, lengths), unsplit, Tolerance, Tolerance, "unsplit");
            var unsplitD = Array.ConvertAll(unsplit, x => (double)x);
            foreach (int splits in new[] { 3, 7, 150 })
            {
                float[] split = session.AttentionDecode(q, k, v, lengths, shape, splits: splits);
                // Same float32 terms, summed in another order: within a few ulps of O(1) values.
                Expect.Close(unsplitD, split, 1e-5, 1e-5, $"splits {splits}");
            }
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_ResultsDoNotDependOnEarlierCalls(Backend backend)
    {
        KernelSession session = Sessions.Get(backend);
        Seeded.Run((random, _) =>
        {
            // Poison the session's staging buffers with a larger call whose outputs are NaN, then a smaller
            // call (including rows with no visible key and zero-length sequences) must not see any of it.
            var big = new AttentionShape(2, 2, 2, 9, 40, 32, false);
            var (bq, bk, bv) = Inputs(random, big);
            Array.Fill(bq, float.NaN);
            float[] poisoned = session.Attention(bq, bk, bv, big);
            Assert.All(poisoned, value => Assert.True(float.IsNaN(value)));
            Assert.Equal(big.QueryElements, session.AttentionDecode(bq, bk, bv, [40, 40], big, splits: 5).Length);

            var shape = new AttentionShape(2, 2, 1, 3, 11, 16, true);
            var (q, k, v) = Inputs(random, shape);
            int[] lengths = [0, 2];
            float[] actual = session.AttentionDecode(q, k, v, lengths, shape, splits: 2);
            Expect.Close(HostReference.Attention(q, k, v, shape, null, lengths), actual, Tolerance, Tolerance, "after poison");
            float[] plain = session.Attention(q, k, v, shape, new AttentionOptions(Window: 2));
            Expect.Close(HostReference.Attention(q, k, v, shape, new AttentionOptions(Window: 2)), plain, Tolerance, Tolerance, "after poison, window");
        });
    }

    [Theory]
    [MemberData(nameof(IlgpuBackends))]
    public void Attention_RandomShapes(Backend backend) => Attention_RandomShapesOn(Sessions.Get(backend), backend.ToName());

    internal static void Attention_RandomShapesOn(KernelSession session, string target)
    {
        Seeded.Run((random, _) =>
        {
            int[] lengths = [1, 7, 33];
            for (int t = 0; t < 12; t++)
            {
                int kvHeads = random.Next(1, 3);
                int heads = kvHeads * random.Next(1, 3);
                int sk = lengths[random.Next(lengths.Length)];
                int sq = random.Next(2) == 0 ? sk : lengths[random.Next(lengths.Length)];
                int d = new[] { 1, 5, 16, 64 }[random.Next(4)];
                var shape = new AttentionShape(random.Next(1, 3), heads, kvHeads, sq, sk, d, random.Next(2) == 0);
                var options = new AttentionOptions(random.Next(2) == 0 ? null : 0.5f, random.Next(3) == 0 ? random.Next(1, 10) : 0);
                CheckForward(session, random, shape, options, "random");
            }
        });
    }
}
