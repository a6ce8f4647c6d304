using System.Collections.Concurrent;

namespace Kernels.Tests;

/// <summary>Sessions shared by all tests: one per backend, created on first use, skipped with the reason when absent.</summary>
internal static class Sessions
{
    private static readonly ConcurrentDictionary<Backend, Lazy<(KernelSession? Session, string? Reason)>> Cache = new();

    public static KernelSession Get(Backend backend)
    {
        var (session, reason) = Cache.GetOrAdd(backend, b => new Lazy<(KernelSession?, string?)>(() => Open(b))).Value;
        if (session is null)
            Assert.Skip($"{backend.ToName()} backend not available: {reason}");
        return session!;
    }

    private static (KernelSession?, string?) Open(Backend backend)
    {
        try
        {
            return (KernelSession.Create(backend), null);
        }
        catch (BackendUnavailableException ex) when (backend is not (Backend.Cpu or Backend.CpuSimd))
        {
            return (null, ex.Reason);
        }
    }

    private static readonly ConcurrentDictionary<(int, int), Lazy<KernelSession>> CpuSchedules = new();

    /// <summary>The CPU accelerator simulating <paramref name="warpSize"/> lanes per warp on <paramref name="multiprocessors"/> multiprocessors, shared by the tests.</summary>
    public static KernelSession Cpu(int warpSize, int multiprocessors) =>
        CpuSchedules.GetOrAdd((warpSize, multiprocessors), key => new Lazy<KernelSession>(() => KernelSession.CreateCpu(key.Item1, key.Item2))).Value;

    public static TheoryData<Backend> Backends => new(Backend.Cpu, Backend.CpuSimd, Backend.Cuda, Backend.OpenCL);

    public static TheoryData<Backend, GemmKernel> BackendsAndKernels
    {
        get
        {
            var data = new TheoryData<Backend, GemmKernel>();
            foreach (Backend b in new[] { Backend.Cpu, Backend.Cuda, Backend.OpenCL })
            {
                foreach (GemmKernel k in new[] { GemmKernel.Reference, GemmKernel.Tiled, GemmKernel.Dp4a })
                    data.Add(b, k);
            }
            data.Add(Backend.Cuda, GemmKernel.TensorCore);
            data.Add(Backend.CpuSimd, GemmKernel.Simd);
            return data;
        }
    }
}

/// <summary>
/// A fresh random seed per test, reported with any failure so the case can be replayed
/// (KERNELS_TEST_SEED). KERNELS_TEST_REPEAT=N runs the body N times, each with a fresh seed (or N times
/// the fixed one): the repeat mode that catches kernels whose results depend on the schedule.
/// </summary>
internal static class Seeded
{
    /// <summary>How many times <see cref="Run"/> runs its body (KERNELS_TEST_REPEAT, default 1).</summary>
    public static int Repeat { get; } = ReadRepeat();

    private static int ReadRepeat()
    {
        string? text = Environment.GetEnvironmentVariable("KERNELS_TEST_REPEAT");
        if (string.IsNullOrWhiteSpace(text))
            return 1;
        if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) || n < 1)
            throw new InvalidOperationException($"KERNELS_TEST_REPEAT: expected a whole number ≥ 1, got '{text}'.");
        return n;
    }

    public static void Run(Action<Random, int> body)
    {
        string? fixedSeed = Environment.GetEnvironmentVariable("KERNELS_TEST_SEED");
        for (int round = 1; round <= Repeat; round++)
        {
            int seed = fixedSeed is null ? Random.Shared.Next() : int.Parse(fixedSeed, System.Globalization.CultureInfo.InvariantCulture);
            try
            {
                body(new Random(seed), seed);
            }
            catch (Exception ex) when (ex is not Xunit.Sdk.SkipException && ex.GetType().Name != "SkipException")
            {
                string repeat = Repeat > 1 ? $"round {round} of {Repeat}, " : "";
                throw new Xunit.Sdk.XunitException($"{repeat}seed {seed} (replay with KERNELS_TEST_SEED={seed}): {ex.Message}", ex);
            }
        }
    }

    public static sbyte[] Int8(Random random, long length, int min = -128, int max = 127)
    {
        var data = new sbyte[length];
        for (long i = 0; i < length; i++)
            data[i] = (sbyte)random.Next(min, max + 1);
        return data;
    }

    public static float[] Floats(Random random, long length, float min, float max)
    {
        var data = new float[length];
        for (long i = 0; i < length; i++)
            data[i] = (float)(min + random.NextDouble() * (max - min));
        return data;
    }
}

internal static class Expect
{
    /// <summary>Exact equality with the first differing index in the message.</summary>
    public static void Equal(long[] expected, int[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
                Assert.Fail($"{what}: element {i} is {actual[i]}, expected {expected[i]}");
        }
    }

    /// <summary>An ArgumentException naming <paramref name="argument"/>, whose message holds every fragment.</summary>
    public static void Throws(string argument, Action action, params string[] fragments)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(action);
        Assert.Equal(argument, ex.ParamName);
        foreach (string f in fragments)
            Assert.Contains(f, ex.Message, StringComparison.Ordinal);
    }

    /// <summary>|actual − expected| ≤ rtol·|expected| + atol, with the worst element in the message.</summary>
    public static void Close(double[] expected, float[] actual, double rtol, double atol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            if (!(err <= rtol * Math.Abs(expected[i]) + atol))
                Assert.Fail($"{what}: element {i} is {actual[i]}, expected {expected[i]} (error {err})");
        }
    }
}
