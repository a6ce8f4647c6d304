using System.Text;

namespace Kernels.Cli.Report;

/// <summary>
/// Markdown tables, written by hand: a GitHub-flavoured pipe table is a header line, a separator line and one
/// line per row, with '|' escaped and line breaks flattened. Markdig (the well-kept .NET Markdown library) parses
/// and renders Markdown to HTML; it has no writer API for building a document, so it would not shorten this.
/// </summary>
internal static class Markdown
{
    public static string Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        ArgumentNullException.ThrowIfNull(headers);
        ArgumentNullException.ThrowIfNull(rows);
        var text = new StringBuilder();
        text.Append("| ").AppendJoin(" | ", headers.Select(Cell)).AppendLine(" |");
        text.Append('|').AppendJoin("|", headers.Select(_ => "---")).AppendLine("|");
        foreach (IReadOnlyList<string> row in rows)
            text.Append("| ").AppendJoin(" | ", row.Select(Cell)).AppendLine(" |");
        return text.ToString();
    }

    private static string Cell(string value) => value.Replace("|", "\\|", StringComparison.Ordinal).ReplaceLineEndings(" ");
}
