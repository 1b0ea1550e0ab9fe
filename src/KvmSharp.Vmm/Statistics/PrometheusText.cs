using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// The Prometheus text exposition format (version 0.0.4) written from System.Diagnostics.Metrics instruments: one
/// collection with a <see cref="MeterListener"/> of the given meter's observable instruments, then one family per
/// instrument with # HELP and # TYPE lines. Names follow the OpenTelemetry-to-Prometheus rules: dots and other
/// characters become '_', the unit adds a suffix ("s" → _seconds, "By" → _bytes; "{exit}" adds none) and counters
/// end in _total, so "kvmsharp.vm.exits" is <c>kvmsharp_vm_exits_total{reason="io"}</c>.
/// </summary>
/// <remarks>
/// Only observable instruments (and the last value of an ObservableGauge) are reported: a push instrument's
/// <c>Add</c> made before the collection is not seen by a listener made for it. KvmSharp's VM metrics are all
/// observable (they read preallocated counters). Series with the same labels are summed (counters) or the last
/// one kept (gauges), since a family must not repeat a series.
/// </remarks>
public static class PrometheusText
{
    /// <summary>The HTTP Content-Type of what <see cref="Write"/> produces.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>Collect <paramref name="metrics"/> now and return it in the text format (for GET /metrics).</summary>
    public static string Collect(VmMetrics metrics)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        var writer = new StringWriter(CultureInfo.InvariantCulture) { NewLine = "\n" };
        Write(writer, metrics.Meter);
        return writer.ToString();
    }

    /// <summary>Collect the observable instruments of <paramref name="meter"/> now and write them in the text format.</summary>
    public static void Write(TextWriter writer, Meter meter)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(meter);
        var families = new Dictionary<Instrument, Family>();
        var order = new List<Family>();
        using (var listener = new MeterListener())
        {
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter != meter || !IsObservable(instrument)) return;
                var family = new Family(instrument);
                families[instrument] = family;
                order.Add(family);
                l.EnableMeasurementEvents(instrument);
            };
            listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(families, instrument, value, tags));
            listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Record(families, instrument, value, tags));
            listener.SetMeasurementEventCallback<short>((instrument, value, tags, _) => Record(families, instrument, value, tags));
            listener.SetMeasurementEventCallback<byte>((instrument, value, tags, _) => Record(families, instrument, value, tags));
            listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(families, instrument, value, tags));
            listener.SetMeasurementEventCallback<float>((instrument, value, tags, _) => Record(families, instrument, value, tags));
            listener.Start();
            listener.RecordObservableInstruments();
        }

        foreach (var family in order.OrderBy(f => f.Name, StringComparer.Ordinal))
            WriteFamily(writer, family.Name, family.Help, family.IsCounter ? "counter" : "gauge", family.Samples);
    }

    /// <summary>The same as <see cref="Write(TextWriter, Meter)"/>, appended to <paramref name="text"/>.</summary>
    public static void Write(Meter meter, StringBuilder text)
    {
        ArgumentNullException.ThrowIfNull(text);
        Write(new StringWriter(text, CultureInfo.InvariantCulture) { NewLine = "\n" }, meter);
    }

    /// <summary>
    /// A gauge family that is no instrument (the API's kvmsharp_vm_state): <paramref name="name"/> must be a valid
    /// metric name; labels and help are escaped as for the instruments.
    /// </summary>
    public static void WriteGauge(StringBuilder text, string name, string help, IEnumerable<(KeyValuePair<string, object?>[] Labels, double Value)> samples)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(samples);
        if (Sanitize(name, allowColon: true) != name) throw new ArgumentException($"'{name}' is not a Prometheus metric name", nameof(name));
        WriteFamily(new StringWriter(text, CultureInfo.InvariantCulture) { NewLine = "\n" }, name, help, "gauge",
            samples.Select(sample => (Labels(sample.Labels), sample.Value)));
    }

    private static void WriteFamily(TextWriter writer, string name, string help, string type, IEnumerable<(string Labels, double Value)> samples)
    {
        writer.Write("# HELP ");
        writer.Write(name);
        writer.Write(' ');
        writer.Write(EscapeHelp(help));
        writer.Write('\n');
        writer.Write("# TYPE ");
        writer.Write(name);
        writer.Write(' ');
        writer.Write(type);
        writer.Write('\n');
        foreach (var (labels, value) in samples)
        {
            writer.Write(name);
            writer.Write(labels);
            writer.Write(' ');
            writer.Write(FormatValue(value));
            writer.Write('\n');
        }
    }

    /// <summary>The family name an instrument gets (see the class remarks).</summary>
    public static string MetricName(string instrumentName, string? unit, bool isCounter)
    {
        var name = new StringBuilder(Sanitize(instrumentName, allowColon: true));
        string suffix = UnitSuffix(unit);
        if (suffix.Length > 0 && !name.ToString().EndsWith("_" + suffix, StringComparison.Ordinal)) name.Append('_').Append(suffix);
        if (isCounter) name.Append("_total");
        return name.ToString();
    }

    /// <summary>A label value between double quotes: backslash, double quote and newline escaped.</summary>
    public static string EscapeLabelValue(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    /// <summary>A HELP text: backslash and newline escaped.</summary>
    public static string EscapeHelp(string text) => text.Replace("\\", "\\\\").Replace("\n", "\\n");

    private static bool IsObservable(Instrument instrument) => instrument.IsObservable;

    private static bool IsCounter(Instrument instrument) =>
        instrument is ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<short> or ObservableCounter<byte>
            or ObservableCounter<double> or ObservableCounter<float>;

    private static void Record<T>(Dictionary<Instrument, Family> families, Instrument instrument, T value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        where T : struct
    {
        if (!families.TryGetValue(instrument, out var family)) return;
        family.Add(Labels(tags), Convert.ToDouble(value, CultureInfo.InvariantCulture));
    }

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0) return "";
        var sorted = tags.ToArray();
        Array.Sort(sorted, (a, b) => StringComparer.Ordinal.Compare(a.Key, b.Key));
        var text = new StringBuilder("{");
        for (int i = 0; i < sorted.Length; i++)
        {
            if (i > 0) text.Append(',');
            string value = sorted[i].Value switch
            {
                null => "",
                IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
                var other => other.ToString() ?? "",
            };
            text.Append(Sanitize(sorted[i].Key, allowColon: false)).Append("=\"").Append(EscapeLabelValue(value)).Append('"');
        }
        return text.Append('}').ToString();
    }

    // [a-zA-Z_:][a-zA-Z0-9_:]* for metric names, no ':' in label names; anything else becomes '_'.
    private static string Sanitize(string name, bool allowColon)
    {
        if (name.Length == 0) return "_";
        var text = new StringBuilder(name.Length + 1);
        if (char.IsAsciiDigit(name[0])) text.Append('_');
        foreach (char c in name)
            text.Append(char.IsAsciiLetterOrDigit(c) || c == '_' || (allowColon && c == ':') ? c : '_');
        return text.ToString();
    }

    private static string UnitSuffix(string? unit) => unit switch
    {
        null or "" or "1" => "",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "%" => "percent",
        _ when unit.StartsWith('{') => "", // an annotation ("{exit}") names what is counted, not a unit
        _ => Sanitize(unit, allowColon: false),
    };

    private static string FormatValue(double value) => value switch
    {
        double.PositiveInfinity => "+Inf",
        double.NegativeInfinity => "-Inf",
        double.NaN => "NaN",
        _ when value == Math.Floor(value) && Math.Abs(value) < 1e15 => ((long)value).ToString(CultureInfo.InvariantCulture),
        _ => value.ToString("R", CultureInfo.InvariantCulture),
    };

    private sealed class Family(Instrument instrument)
    {
        private readonly Dictionary<string, double> _samples = new(StringComparer.Ordinal);
        private readonly List<string> _order = new();

        public bool IsCounter { get; } = PrometheusText.IsCounter(instrument);
        public string Name { get; } = MetricName(instrument.Name, instrument.Unit, PrometheusText.IsCounter(instrument));
        public string Help { get; } = string.IsNullOrEmpty(instrument.Description) ? instrument.Name : instrument.Description;

        public IEnumerable<(string Labels, double Value)> Samples => _order.Select(labels => (labels, _samples[labels]));

        public void Add(string labels, double value)
        {
            if (!_samples.TryGetValue(labels, out double existing))
            {
                _order.Add(labels);
                _samples[labels] = value;
            }
            else
            {
                _samples[labels] = IsCounter ? existing + value : value;
            }
        }
    }
}
