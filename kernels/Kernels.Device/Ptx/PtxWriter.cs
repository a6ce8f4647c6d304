using System.Globalization;
using System.Text;

namespace Kernels.DeviceCode.Ptx;

/// <summary>
/// Builds the text of one PTX entry: named virtual registers (declared on first use, in order),
/// instructions, labels and comments. Deterministic: the same calls give the same text.
/// </summary>
internal sealed class PtxWriter
{
    private readonly StringBuilder _body = new();
    private readonly List<(string Name, string Type)> _registers = [];
    private readonly Dictionary<string, string> _types = new(StringComparer.Ordinal);

    /// <summary>Declares (once) and returns the register <c>%name</c> of PTX type <paramref name="type"/> (b32, b64, f32, pred).</summary>
    public string Reg(string name, string type)
    {
        if (_types.TryGetValue(name, out string? existing))
        {
            if (existing != type)
                throw new InvalidOperationException($"register %{name} declared as .{existing} and .{type}");
        }
        else
        {
            _types[name] = type;
            _registers.Add((name, type));
        }
        return "%" + name;
    }

    /// <summary>A b32 register.</summary>
    public string R(string name) => Reg(name, "b32");

    /// <summary>A b64 register.</summary>
    public string D(string name) => Reg(name, "b64");

    /// <summary>An f32 register.</summary>
    public string F(string name) => Reg(name, "f32");

    /// <summary>A predicate register.</summary>
    public string P(string name) => Reg(name, "pred");

    /// <summary>One instruction (without the semicolon).</summary>
    public void Op(string instruction) => _body.Append('\t').Append(instruction).Append(";\n");

    /// <summary>A label.</summary>
    public void Label(string label) => _body.Append(label).Append(":\n");

    /// <summary>A comment line.</summary>
    public void Comment(string text) => _body.Append("\t// ").Append(text).Append('\n');

    /// <summary>The register declarations followed by the body.</summary>
    public string Build()
    {
        var text = new StringBuilder();
        foreach ((string name, string type) in _registers)
            text.Append("\t.reg .").Append(type).Append(" %").Append(name).Append(";\n");
        text.Append(_body);
        return text.ToString();
    }

    /// <summary>An integer as PTX text (invariant culture).</summary>
    public static string I(long value) => value.ToString(CultureInfo.InvariantCulture);
}
