using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>
/// A strict reader of the Prometheus text format 0.0.4, for tests: it throws <see cref="FormatException"/> (with
/// the line) on anything a scraper would reject, such as an invalid name, a bad escape, a sample before its
/// family's TYPE, a family split in two, a repeated series or a value that is not a number.
/// </summary>
public static partial class PrometheusTextParser
{
    public sealed record Sample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

    public sealed record Family(string Name, string Type, string Help, IReadOnlyList<Sample> Samples);

    [GeneratedRegex("^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    private static partial Regex MetricName();

    [GeneratedRegex("^[a-zA-Z_][a-zA-Z0-9_]*$")]
    private static partial Regex LabelName();

    public static IReadOnlyDictionary<string, Family> Parse(string text)
    {
        if (text.Length > 0 && !text.EndsWith('\n')) throw new FormatException("the text does not end with a newline");
        var families = new Dictionary<string, (string Type, string Help, List<Sample> Samples)>(StringComparer.Ordinal);
        var closed = new HashSet<string>(StringComparer.Ordinal);
        string? current = null;
        foreach (string line in text.Split('\n'))
        {
            if (line.Length == 0) continue;
            if (line.StartsWith("# HELP ", StringComparison.Ordinal) || line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                string rest = line[7..];
                int space = rest.IndexOf(' ');
                if (space <= 0) throw new FormatException($"no name and text: {line}");
                string name = rest[..space];
                string value = rest[(space + 1)..];
                if (!MetricName().IsMatch(name)) throw new FormatException($"invalid metric name '{name}': {line}");
                if (current != name)
                {
                    if (current is not null) closed.Add(current);
                    if (closed.Contains(name)) throw new FormatException($"family {name} appears twice: {line}");
                    current = name;
                }
                var family = families.GetValueOrDefault(name, (Type: "", Help: "", Samples: new List<Sample>()));
                if (family.Samples.Count > 0) throw new FormatException($"HELP/TYPE after the samples of {name}: {line}");
                if (line[2] == 'H')
                {
                    if (family.Help.Length > 0) throw new FormatException($"two HELP lines for {name}");
                    family.Help = UnescapeHelp(value, line);
                }
                else
                {
                    if (family.Type.Length > 0) throw new FormatException($"two TYPE lines for {name}");
                    if (value is not ("counter" or "gauge" or "histogram" or "summary" or "untyped")) throw new FormatException($"unknown type: {line}");
                    family.Type = value;
                }
                families[name] = family;
                continue;
            }
            if (line.StartsWith('#')) continue; // a comment

            var sample = ParseSample(line);
            if (current != sample.Name || !families.TryGetValue(sample.Name, out var owner) || owner.Type.Length == 0)
                throw new FormatException($"sample before its family's TYPE line (or outside its family): {line}");
            if (owner.Samples.Any(s => SameLabels(s.Labels, sample.Labels))) throw new FormatException($"repeated series: {line}");
            owner.Samples.Add(sample);
        }
        return families.ToDictionary(kv => kv.Key, kv => new Family(kv.Key, kv.Value.Type, kv.Value.Help, kv.Value.Samples), StringComparer.Ordinal);
    }

    private static bool SameLabels(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);

    private static Sample ParseSample(string line)
    {
        int i = 0;
        while (i < line.Length && line[i] != '{' && line[i] != ' ') i++;
        string name = line[..i];
        if (!MetricName().IsMatch(name)) throw new FormatException($"invalid metric name '{name}': {line}");
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                if (i >= line.Length) throw new FormatException($"unterminated labels: {line}");
                if (line[i] == '}') { i++; break; }
                int eq = line.IndexOf('=', i);
                if (eq < 0) throw new FormatException($"label without '=': {line}");
                string label = line[i..eq];
                if (!LabelName().IsMatch(label)) throw new FormatException($"invalid label name '{label}': {line}");
                if (eq + 1 >= line.Length || line[eq + 1] != '"') throw new FormatException($"label value not quoted: {line}");
                var value = new StringBuilder();
                i = eq + 2;
                while (true)
                {
                    if (i >= line.Length) throw new FormatException($"unterminated label value: {line}");
                    char c = line[i++];
                    if (c == '"') break;
                    if (c == '\\')
                    {
                        if (i >= line.Length) throw new FormatException($"dangling backslash: {line}");
                        char e = line[i++];
                        value.Append(e switch
                        {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            _ => throw new FormatException($"invalid escape \\{e}: {line}"),
                        });
                    }
                    else if (c == '\n') throw new FormatException($"raw newline in a label value: {line}");
                    else value.Append(c);
                }
                if (!labels.TryAdd(label, value.ToString())) throw new FormatException($"label {label} twice: {line}");
                if (i < line.Length && line[i] == ',') i++;
            }
        }
        if (i >= line.Length || line[i] != ' ') throw new FormatException($"no space before the value: {line}");
        string[] rest = line[(i + 1)..].Split(' ');
        if (rest.Length is < 1 or > 2) throw new FormatException($"value and at most a timestamp expected: {line}");
        double number = rest[0] switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            var v when double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
            _ => throw new FormatException($"value '{rest[0]}' is not a number: {line}"),
        };
        return new Sample(name, labels, number);
    }

    private static string UnescapeHelp(string text, string line)
    {
        var result = new StringBuilder();
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != '\\') { result.Append(text[i]); continue; }
            if (++i >= text.Length) throw new FormatException($"dangling backslash in HELP: {line}");
            result.Append(text[i] switch
            {
                '\\' => '\\',
                'n' => '\n',
                _ => throw new FormatException($"invalid escape in HELP: {line}"),
            });
        }
        return result.ToString();
    }
}
