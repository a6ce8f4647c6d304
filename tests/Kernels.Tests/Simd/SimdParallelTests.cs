using Kernels.Backends.Simd;

namespace Kernels.Tests.Simd;

/// <summary>
/// <see cref="SimdParallel.For"/>: every piece runs exactly once, whatever the count and thread cap, on the
/// worker pool, from several threads at once (all but one fall back to Parallel.For), from inside a piece, and
/// after the workers went to sleep; an exception comes back as an AggregateException and the pool stays usable.
/// </summary>
public class SimdParallelTests
{
    private static void EachOnce(int count, int threads)
    {
        var hits = new int[count];
        SimdParallel.For(count, threads, i => Interlocked.Increment(ref hits[i]));
        for (int i = 0; i < count; i++)
            Assert.True(hits[i] == 1, $"piece {i} of {count} ran {hits[i]} times (threads {threads})");
    }

    [Fact]
    public void Every_piece_runs_once()
    {
        foreach (int threads in new[] { 1, 2, 3, Environment.ProcessorCount, 64 })
        {
            foreach (int count in new[] { 0, 1, 2, 3, 7, 97, 1000 })
                EachOnce(count, threads);
        }
        for (int call = 0; call < 2000; call++) // back to back: the workers are still spinning
            EachOnce(1 + call % 13, Environment.ProcessorCount);
    }

    [Fact]
    public void Runs_after_the_workers_went_to_sleep()
    {
        EachOnce(100, Environment.ProcessorCount);
        Thread.Sleep(SimdParallel.SpinMilliseconds * 10);
        EachOnce(100, Environment.ProcessorCount);
    }

    [Fact]
    public void Concurrent_and_nested_calls_each_run_every_piece_once()
    {
        const int Callers = 8, Calls = 200, Inner = 5;
        var outer = new int[Callers * Calls * 16];
        var inner = new int[Callers * Calls * 16 * Inner];
        var threads = new Thread[Callers];
        for (int t = 0; t < Callers; t++)
        {
            int caller = t;
            threads[t] = new Thread(() =>
            {
                for (int call = 0; call < Calls; call++)
                {
                    int base0 = (caller * Calls + call) * 16;
                    SimdParallel.For(16, Environment.ProcessorCount, i =>
                    {
                        Interlocked.Increment(ref outer[base0 + i]);
                        SimdParallel.For(Inner, Environment.ProcessorCount, j => Interlocked.Increment(ref inner[(base0 + i) * Inner + j]));
                    });
                }
            });
            threads[t].Start();
        }
        foreach (Thread t in threads)
            t.Join();
        Assert.All(outer, x => Assert.Equal(1, x));
        Assert.All(inner, x => Assert.Equal(1, x));
    }

    [Fact]
    public void An_exception_comes_back_and_the_pool_stays_usable()
    {
        var ex = Assert.Throws<AggregateException>(() => SimdParallel.For(64, Environment.ProcessorCount, i =>
        {
            if (i == 17)
                throw new InvalidOperationException("piece 17");
        }));
        Assert.Contains(ex.InnerExceptions, e => e is InvalidOperationException { Message: "piece 17" });
        EachOnce(97, Environment.ProcessorCount);
    }
}
