using System.Diagnostics;

namespace Kernels.Cli;

/// <summary>
/// How every benchmark that times ours against peers in one process schedules the calls (the one place for it):
/// the contenders take turns in blocks (not call by call), each block starts after a pause, and the first call of a
/// block is timed apart from the rest.
/// </summary>
/// <remarks>
/// <para>Blocks and pauses: a peer's threads (OpenMP's, ONNX Runtime's pool, ours) keep spinning for a while after a
/// call and would slow down whatever runs next; the pause lets them go idle first.</para>
/// <para>The first call of a block: after the pause every side's worker threads are asleep, and on a virtual machine
/// an idle vCPU can take milliseconds to come back (measured on the 2-vCPU Xeon, int8 1024³, medians of that call
/// over 20–30 blocks in four runs: ours 3.7–6.0 ms and oneDNN 2.8–12 ms, against 1.7–1.9 ms for the calls after it). That call measures the machine's wake-up
/// more than the kernel, so it is not one of the <c>repeat</c> timed calls; its time is kept
/// (<see cref="Contender.AfterIdle"/>) and reported apart as the median "after idle".</para>
/// <para>With a single contender there is nothing to alternate with: its calls run back to back, without pauses,
/// after the warm-up the benchmark does itself.</para>
/// </remarks>
internal static class Alternation
{
    /// <summary>The pause before each block when there are peers.</summary>
    internal static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(300);

    /// <summary>One side of the comparison: the call to time, and its times.</summary>
    internal sealed class Contender(Action<int> call, int repeat)
    {
        /// <summary>The call; its argument is the index of the timed call (0 … repeat − 1), or −1 for a block's first call.</summary>
        public Action<int> Call { get; } = call;

        /// <summary>The <c>repeat</c> timed calls, in milliseconds.</summary>
        public double[] Times { get; } = new double[repeat];

        /// <summary>The first call of each block (after the pause), in milliseconds; empty with a single contender.</summary>
        public List<double> AfterIdle { get; } = [];

        /// <summary>Runs before each block's timed calls (after its first call).</summary>
        public Action? BeforeTimed { get; init; }

        /// <summary>Runs after each block's timed calls.</summary>
        public Action? AfterTimed { get; init; }

        /// <summary>The median of <see cref="Times"/>.</summary>
        public double Median => Median(Times);

        /// <summary>The median of <see cref="AfterIdle"/>, or null when there was none.</summary>
        public double? AfterIdleMedian => AfterIdle.Count == 0 ? null : Median([.. AfterIdle]);
    }

    /// <summary>
    /// Runs every contender's <c>repeat</c> timed calls: back to back when there is one contender; otherwise in
    /// three blocks each (of ⌈repeat / 3⌉ calls), taking turns in the order given, every block preceded by
    /// <see cref="Pause"/> and one call timed into <see cref="Contender.AfterIdle"/>.
    /// </summary>
    public static void Run(int repeat, params Contender[] contenders)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repeat, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(contenders.Length, 1);
        bool alone = contenders.Length == 1;
        int block = alone ? repeat : Math.Max(1, (repeat + 2) / 3);
        for (int begin = 0; begin < repeat; begin += block)
        {
            int end = Math.Min(repeat, begin + block);
            foreach (Contender c in contenders)
            {
                if (!alone)
                {
                    Thread.Sleep(Pause);
                    c.AfterIdle.Add(Time(c.Call, -1));
                }
                c.BeforeTimed?.Invoke();
                for (int i = begin; i < end; i++)
                    c.Times[i] = Time(c.Call, i);
                c.AfterTimed?.Invoke();
            }
        }
    }

    /// <summary>The median (the mean of the middle two for an even count).</summary>
    public static double Median(double[] values)
    {
        double[] sorted = [.. values];
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private static double Time(Action<int> call, int index)
    {
        long start = Stopwatch.GetTimestamp();
        call(index);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
}
