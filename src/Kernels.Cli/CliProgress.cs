using System.Diagnostics;
using Spectre.Console;

namespace Kernels.Cli;

/// <summary>
/// Progress of long commands, always on stderr so that stdout holds the results alone: a spinner or a
/// bar on a terminal, one plain line at the start and one at the end of each step otherwise (logs, CI).
/// </summary>
internal static class CliProgress
{
    /// <summary>A Spectre console writing to stderr.</summary>
    public static IAnsiConsole Err { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Whether stderr is a terminal (then progress is drawn; else plain lines).</summary>
    public static bool Interactive => !Console.IsErrorRedirected;

    /// <summary>Runs <paramref name="body"/> as one step named <paramref name="label"/>.</summary>
    public static T Step<T>(string label, Func<T> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (Interactive)
        {
            T result = default!;
            Err.Status().Start(Markup.Escape(label) + " …", _ => result = body());
            return result;
        }
        long start = Stopwatch.GetTimestamp();
        Console.Error.WriteLine($"{label} …");
        T value = body();
        Console.Error.WriteLine($"{label}: done in {Stopwatch.GetElapsedTime(start).TotalSeconds:F1} s");
        return value;
    }

    /// <summary>
    /// Runs <paramref name="body"/> with a progress bar of <paramref name="steps"/> steps on a terminal
    /// (the body reports the steps done), or as a plain <see cref="Step{T}"/> otherwise.
    /// </summary>
    public static T Bar<T>(string label, int steps, Func<Action<int>, T> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (!Interactive)
            return Step(label, () => body(_ => { }));
        T result = default!;
        Err.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                ProgressTask task = ctx.AddTask(Markup.Escape(label), maxValue: steps);
                result = body(done => task.Value = done);
                task.StopTask();
            });
        return result;
    }
}
