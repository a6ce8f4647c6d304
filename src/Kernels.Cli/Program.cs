using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;

namespace Kernels.Cli;

/// <summary>The <c>kernels</c> command: list devices, benchmark kernels.</summary>
internal static class Program
{
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    private static int Main(string[] args)
    {
        // Piped or redirected output (CI logs, files) gets wide tables instead of Spectre's 80 columns.
        if (Console.IsOutputRedirected)
            AnsiConsole.Profile.Width = 200;
        // A plain command named as users type it (a RootCommand takes the assembly's name, Kernels.Cli), with
        // the help (on every subcommand) and version options a root command would add.
        var root = new Command("kernels", "Kernels: int8 GEMM, sparse GEMM and attention on CUDA, OpenCL and the CPU, verified and measured; energy and cost per token.")
        {
            new System.CommandLine.Help.HelpOption { Recursive = true },
            new VersionOption(),
            DevicesCommand.Create(),
            BenchCommand.Create(),
            CostCommand.Create(),
            PtxCommand.Create(),
            JitCommand.Create(),
            Report.ReportCommand.Create(),
        };
        // Exit codes (README, docs/reliability.md): 0 success; 1 a result that failed verification, or a
        // failure while running; 2 a bad command line, argument or value, before any work. Never a stack trace.
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (System.CommandLine.Parsing.ParseError error in parsed.Errors)
                Console.Error.WriteLine($"error: {error.Message.ReplaceLineEndings(" ").Replace('\t', ' ')}");
            Console.Error.WriteLine("Run 'kernels --help' or 'kernels <command> --help' for usage.");
            return 2;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception ex) when (ex is ArgumentException or BackendUnavailableException or DeviceOutOfMemoryException)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return 2;
        }
#pragma warning disable CA1031 // The last resort: one line instead of a stack trace.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Console.Error.WriteLine($"error: {ex.GetType().Name} while running: {ex.Message.ReplaceLineEndings(" ")}");
            return 1;
        }
    }
}

/// <summary><c>kernels devices [--json]</c>.</summary>
internal static class DevicesCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per device instead of a table." };
        var command = new Command("devices", "List every device of every backend, its memory, and why any is unusable.") { json };
        command.SetAction(result =>
        {
            IReadOnlyList<DeviceInfo> devices = DeviceCatalog.List();
            if (result.GetValue(json))
            {
                foreach (DeviceInfo d in devices)
                {
                    Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        backend = d.Backend.ToName(),
                        name = d.Name,
                        memory_bytes = d.MemoryBytes,
                        usable = d.Usable,
                        reason = d.Reason,
                        details = d.Details,
                    }, Program.Json));
                }
                return 0;
            }

            var table = new Table().AddColumns("backend", "device", "memory", "usable", "details / reason");
            foreach (DeviceInfo d in devices)
            {
                table.AddRow(
                    d.Backend.ToName(),
                    Markup.Escape(d.Name),
                    d.MemoryBytes > 0 ? $"{d.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB" : "-",
                    d.Usable ? "[green]yes[/]" : "[red]no[/]",
                    Markup.Escape(d.Usable ? d.Details : d.Reason ?? ""));
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
