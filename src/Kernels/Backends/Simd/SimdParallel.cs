namespace Kernels.Backends.Simd;

/// <summary>How the SIMD kernels spread independent pieces of work over threads.</summary>
internal static class SimdParallel
{
    private static readonly ParallelOptions AllCores = new() { MaxDegreeOfParallelism = Environment.ProcessorCount };

    /// <summary>
    /// Runs <paramref name="body"/>(0 … count − 1): in order on the calling thread when one thread is asked
    /// for or there is one piece, else with <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>
    /// on up to <paramref name="threads"/> threads.
    /// </summary>
    public static void For(int count, int threads, Action<int> body)
    {
        if (threads <= 1 || count <= 1)
        {
            for (int i = 0; i < count; i++)
                body(i);
            return;
        }
        Parallel.For(0, count, threads >= Environment.ProcessorCount ? AllCores : new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }
}
