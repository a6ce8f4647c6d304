using System.Diagnostics;

namespace Kernels.Backends.Simd;

/// <summary>How the SIMD kernels spread independent pieces of work over threads.</summary>
/// <remarks>
/// A process-wide pool of <c>ProcessorCount − 1</c> worker threads runs the pieces with the calling thread.
/// After a call its workers spin for <see cref="SpinMilliseconds"/> before they block, as OpenMP's do: the
/// next call of a decode loop or of a layer then finds them running, not asleep (waking a thread costs tens of
/// microseconds, and on a virtual machine whose vCPU went idle far more). A call that finds the pool busy
/// (another thread's call, or a call from inside a piece) runs on <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>.
/// </remarks>
internal static class SimdParallel
{
    /// <summary>How long an idle worker spins before it blocks.</summary>
    internal const int SpinMilliseconds = 2;

    private static readonly ParallelOptions AllCores = new() { MaxDegreeOfParallelism = Environment.ProcessorCount };

    /// <summary>
    /// Runs <paramref name="body"/>(0 … count − 1): in order on the calling thread when one thread is asked
    /// for or there is one piece, else on up to <paramref name="threads"/> threads (the calling thread and
    /// the pool's workers). An exception thrown by a piece stops the pieces not yet started and is rethrown
    /// in an <see cref="AggregateException"/>, as <see cref="Parallel.For(int, int, Action{int})"/> does.
    /// </summary>
    public static void For(int count, int threads, Action<int> body)
    {
        if (threads <= 1 || count <= 1)
        {
            for (int i = 0; i < count; i++)
                body(i);
            return;
        }
        threads = Math.Min(threads, Environment.ProcessorCount);
        if (!WorkerPool.Shared.TryRun(count, threads, body))
            Parallel.For(0, count, threads >= Environment.ProcessorCount ? AllCores : new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }

    /// <summary>One call's pieces: taken one at a time by the caller and the workers.</summary>
    private sealed class Job(Action<int> body, int count, int workers)
    {
        public readonly Action<int> Body = body;
        public readonly int Count = count;

        /// <summary>Workers that take part (the first ones of the pool).</summary>
        public readonly int Workers = workers;

        public int Next;

        /// <summary>Workers inside <see cref="Work"/> (or about to look at <see cref="Closed"/>).</summary>
        public int Active;

        /// <summary>1 once the caller has taken its last piece: a worker that comes later takes none.</summary>
        public int Closed;

        public Exception? Error;

        public void Work()
        {
            int i;
            while ((i = Interlocked.Increment(ref Next) - 1) < Count)
            {
                try
                {
                    Body(i);
                }
                catch (Exception ex)
                {
                    Interlocked.CompareExchange(ref Error, ex, null);
                    Volatile.Write(ref Next, Count);
                }
            }
        }
    }

    private sealed class WorkerPool
    {
        public static readonly WorkerPool Shared = new(Environment.ProcessorCount - 1);

        private static readonly long SpinTicks = Stopwatch.Frequency * SpinMilliseconds / 1000;

        [ThreadStatic]
        private static bool t_isWorker;

        private readonly object _gate = new();
        private readonly int _workers;
        private int _busy;
        private long _sequence;
        private int _sleepers;
        private Job? _job;

        private WorkerPool(int workers)
        {
            _workers = workers;
            for (int w = 0; w < workers; w++)
            {
                int index = w;
                new Thread(() => Loop(index)) { IsBackground = true, Name = $"Kernels SIMD worker {index + 1}" }.Start();
            }
        }

        /// <summary>Runs the call on the pool; false (nothing run) when the pool is busy or has no workers.</summary>
        public bool TryRun(int count, int threads, Action<int> body)
        {
            if (_workers == 0 || t_isWorker || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
                return false;
            try
            {
                var job = new Job(body, count, Math.Min(_workers, threads - 1));
                Volatile.Write(ref _job, job);
                Interlocked.Increment(ref _sequence); // a full fence, before _sleepers is read
                if (Volatile.Read(ref _sleepers) > 0)
                {
                    lock (_gate)
                        Monitor.PulseAll(_gate);
                }
                job.Work();
                // Wait only for the workers that joined (a worker still asleep is not waited for). Closed and
                // Active are written then read in opposite orders with full fences on both sides, so either
                // the caller sees the worker active or the worker sees the job closed.
                Interlocked.Exchange(ref job.Closed, 1);
                var wait = new SpinWait();
                while (Volatile.Read(ref job.Active) > 0)
                    wait.SpinOnce(sleep1Threshold: -1);
                if (job.Error is { } error)
                    throw new AggregateException(error);
                return true;
            }
            finally
            {
                Volatile.Write(ref _job, null);
                Volatile.Write(ref _busy, 0);
            }
        }

        private void Loop(int index)
        {
            t_isWorker = true;
            long seen = 0;
            Job? last = null;
            while (true)
            {
                long start = Stopwatch.GetTimestamp();
                while (Volatile.Read(ref _sequence) == seen)
                {
                    if (Stopwatch.GetTimestamp() - start < SpinTicks)
                    {
                        Thread.SpinWait(32);
                        continue;
                    }
                    lock (_gate)
                    {
                        Interlocked.Increment(ref _sleepers); // a full fence, before _sequence is read again
                        while (Volatile.Read(ref _sequence) == seen)
                            Monitor.Wait(_gate);
                        Interlocked.Decrement(ref _sleepers);
                    }
                }
                seen = Volatile.Read(ref _sequence);
                // A call's job is taken at most once: a late look may already find the next call's job,
                // which the next turn of the loop must then not take again.
                Job? job = Volatile.Read(ref _job);
                if (job is null || job == last || index >= job.Workers)
                    continue;
                last = job;
                Interlocked.Increment(ref job.Active);
                if (Volatile.Read(ref job.Closed) == 0)
                    job.Work();
                Interlocked.Decrement(ref job.Active);
            }
        }
    }
}
