using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace KvmSharp.Api;

/// <summary>
/// GET /metrics until the systemd helper's exporter (src/KvmSharp.Vmm/Statistics) lands: the VM's meter
/// (<see cref="Vmm.Statistics.VmMetrics"/>) read once through a <see cref="MeterListener"/> and written in the
/// Prometheus text format 0.0.4 (dots become underscores, counters end in _total, seconds in _seconds).
/// </summary>
public static class PrometheusText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private sealed record Sample(Instrument Instrument, double Value, KeyValuePair<string, object?>[] Tags);

    /// <summary>Every instrument of <paramref name="meter"/>, observed now.</summary>
    public static void Write(Meter meter, StringBuilder text)
    {
        var samples = new List<Sample>();
        using (var listener = new MeterListener())
        {
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == meter) l.EnableMeasurementEvents(instrument);
            };
            listener.SetMeasurementEventCallback<long>((i, v, tags, _) => samples.Add(new(i, v, tags.ToArray())));
            listener.SetMeasurementEventCallback<int>((i, v, tags, _) => samples.Add(new(i, v, tags.ToArray())));
            listener.SetMeasurementEventCallback<double>((i, v, tags, _) => samples.Add(new(i, v, tags.ToArray())));
            listener.Start();
            listener.RecordObservableInstruments();
        }
        foreach (var group in samples.GroupBy(s => s.Instrument))
        {
            var instrument = group.Key;
            bool counter = instrument is ObservableCounter<long> or ObservableCounter<double> or ObservableCounter<int> or Counter<long> or Counter<double>;
            string name = Name(instrument.Name, instrument.Unit, counter);
            if (instrument.Description is { } help) text.Append("# HELP ").Append(name).Append(' ').Append(help.Replace("\n", " ", StringComparison.Ordinal)).Append('\n');
            text.Append("# TYPE ").Append(name).Append(counter ? " counter\n" : " gauge\n");
            foreach (var sample in group) WriteSample(text, name, sample.Tags, sample.Value);
        }
    }

    /// <summary>One gauge with labels, for what the API knows itself (the VM's state).</summary>
    public static void WriteGauge(StringBuilder text, string name, string help, IEnumerable<(KeyValuePair<string, object?>[] Labels, double Value)> samples)
    {
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(name).Append(" gauge\n");
        foreach (var (labels, value) in samples) WriteSample(text, name, labels, value);
    }

    public static string Name(string instrument, string? unit, bool counter)
    {
        var name = new StringBuilder();
        foreach (char c in instrument) name.Append(char.IsAsciiLetterOrDigit(c) ? c : '_');
        if (unit == "s" && !instrument.EndsWith("seconds", StringComparison.Ordinal)) name.Append("_seconds");
        if (counter) name.Append("_total");
        return name.ToString();
    }

    private static void WriteSample(StringBuilder text, string name, KeyValuePair<string, object?>[] tags, double value)
    {
        text.Append(name);
        if (tags.Length > 0)
        {
            text.Append('{');
            for (int i = 0; i < tags.Length; i++)
            {
                if (i > 0) text.Append(',');
                text.Append(tags[i].Key).Append("=\"").Append(EscapeLabel(Convert.ToString(tags[i].Value, CultureInfo.InvariantCulture) ?? "")).Append('"');
            }
            text.Append('}');
        }
        text.Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
    }

    private static string EscapeLabel(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
