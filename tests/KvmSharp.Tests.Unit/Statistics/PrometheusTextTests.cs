using System.Diagnostics.Metrics;
using CsCheck;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Statistics;
using Xunit;

namespace KvmSharp.Tests.Unit.Statistics;

/// <summary>The Prometheus text PrometheusText writes, read back by a strict parser.</summary>
public sealed class PrometheusTextTests
{
    private static string Write(Meter meter)
    {
        var writer = new StringWriter { NewLine = "\n" };
        PrometheusText.Write(writer, meter);
        return writer.ToString();
    }

    [Fact]
    public void Counters_and_gauges_become_families_with_help_type_and_their_labelled_values()
    {
        using var meter = new Meter($"test.{Guid.NewGuid():N}");
        meter.CreateObservableCounter("kvmsharp.vm.exits", () => new[]
        {
            new Measurement<long>(41, new KeyValuePair<string, object?>("reason", "KVM_EXIT_IO")),
            new Measurement<long>(7, new KeyValuePair<string, object?>("reason", "KVM_EXIT_MMIO")),
        }, unit: "{exit}", description: "vCPU exits handled in userspace, by exit reason");
        meter.CreateObservableCounter("kvmsharp.vm.run_time", () => 1.25, unit: "s", description: "time in KVM_RUN");
        meter.CreateObservableCounter("kvmsharp.vm.device.io.bytes", () => 4096L, unit: "By");
        meter.CreateObservableGauge("kvmsharp.vm.memslots.kernel", () => 3, unit: "{memslot}", description: "kernel memslots");

        string text = Write(meter);
        var families = PrometheusTextParser.Parse(text);

        var exits = families["kvmsharp_vm_exits_total"];
        Assert.Equal(("counter", "vCPU exits handled in userspace, by exit reason"), (exits.Type, exits.Help));
        Assert.Equal(41, exits.Samples.Single(s => s.Labels["reason"] == "KVM_EXIT_IO").Value);
        Assert.Equal(7, exits.Samples.Single(s => s.Labels["reason"] == "KVM_EXIT_MMIO").Value);
        Assert.Equal(1.25, Assert.Single(families["kvmsharp_vm_run_time_seconds_total"].Samples).Value);
        var bytes = families["kvmsharp_vm_device_io_bytes_total"];
        Assert.Equal(("counter", "kvmsharp.vm.device.io.bytes"), (bytes.Type, bytes.Help)); // no description: the instrument's name
        Assert.Equal(4096, Assert.Single(bytes.Samples).Value);
        var slots = families["kvmsharp_vm_memslots_kernel"];
        Assert.Equal("gauge", slots.Type);
        Assert.Empty(Assert.Single(slots.Samples).Labels);
        Assert.Equal(3, slots.Samples[0].Value);
        Assert.Contains("kvmsharp_vm_exits_total{reason=\"KVM_EXIT_IO\"} 41\n", text);
    }

    [Fact]
    public void Only_the_given_meters_observable_instruments_are_written()
    {
        using var meter = new Meter($"test.{Guid.NewGuid():N}");
        using var other = new Meter($"test.{Guid.NewGuid():N}");
        meter.CreateObservableCounter("mine", () => 1L);
        other.CreateObservableCounter("theirs", () => 2L);
        var pushed = meter.CreateCounter<long>("pushed");
        pushed.Add(5); // before any listener: a one-shot collection cannot see it (documented)

        var families = PrometheusTextParser.Parse(Write(meter));

        Assert.Equal(["mine_total"], families.Keys);
    }

    [Fact]
    public void Series_with_the_same_labels_are_summed_for_counters_and_the_last_kept_for_gauges()
    {
        using var meter = new Meter($"test.{Guid.NewGuid():N}");
        var tag = new KeyValuePair<string, object?>("device", "disk");
        meter.CreateObservableCounter("ops", () => new[] { new Measurement<long>(2, tag), new Measurement<long>(3, tag) });
        meter.CreateObservableGauge("depth", () => new[] { new Measurement<long>(2, tag), new Measurement<long>(9, tag) });

        var families = PrometheusTextParser.Parse(Write(meter));

        Assert.Equal(5, Assert.Single(families["ops_total"].Samples).Value);
        Assert.Equal(9, Assert.Single(families["depth"].Samples).Value);
    }

    [Fact]
    public void Label_values_and_help_with_quotes_backslashes_and_newlines_round_trip()
    {
        Gen.Select(Gen.String[Gen.Char["azAZ09\"\\\n{ =,é"], 0, 20], Gen.String[Gen.Char["az09\\\n\" "], 0, 20])
            .Sample((value, help) =>
            {
                using var meter = new Meter($"test.{Guid.NewGuid():N}");
                meter.CreateObservableCounter("odd", () => new Measurement<long>(1, new KeyValuePair<string, object?>("path", value)),
                    description: help.Length == 0 ? null : help);

                var family = PrometheusTextParser.Parse(Write(meter))["odd_total"];

                Assert.Equal(value, Assert.Single(family.Samples).Labels["path"]);
                Assert.Equal(help.Length == 0 ? "odd" : help, family.Help);
            }, iter: 200, threads: 1);
    }

    [Theory]
    [InlineData("kvmsharp.vm.exits", "{exit}", true, "kvmsharp_vm_exits_total")]
    [InlineData("kvmsharp.vm.run_time", "s", true, "kvmsharp_vm_run_time_seconds_total")]
    [InlineData("kvmsharp.vm.device.io.bytes", "By", true, "kvmsharp_vm_device_io_bytes_total")]
    [InlineData("kvmsharp.vm.start_to_first_run", "s", false, "kvmsharp_vm_start_to_first_run_seconds")]
    [InlineData("9lives-and/dashes", null, false, "_9lives_and_dashes")]
    public void Instrument_names_become_prometheus_names(string instrument, string? unit, bool counter, string expected) =>
        Assert.Equal(expected, PrometheusText.MetricName(instrument, unit, counter));

    [Fact]
    public void Label_names_that_are_not_prometheus_names_are_rewritten()
    {
        using var meter = new Meter($"test.{Guid.NewGuid():N}");
        meter.CreateObservableGauge("g", () => new Measurement<double>(0.5, new KeyValuePair<string, object?>("device.name", "x"),
            new KeyValuePair<string, object?>("2nd", 3)));

        var sample = Assert.Single(PrometheusTextParser.Parse(Write(meter))["g"].Samples);

        Assert.Equal(("x", "3", 0.5), (sample.Labels["device_name"], sample.Labels["_2nd"], sample.Value));
    }

    [Fact]
    public void A_gauge_family_that_is_no_instrument_and_a_meter_append_to_one_text()
    {
        using var meter = new Meter($"test.{Guid.NewGuid():N}");
        meter.CreateObservableCounter("kvmsharp.vm.exits", () => 3L, unit: "{exit}");
        var text = new System.Text.StringBuilder();
        PrometheusText.WriteGauge(text, "kvmsharp_vm_state", "1 for the state the VM is in",
            [([new("state", "Running")], 1.0), ([new("state", "Paused \"x\"")], 0.0)]);
        PrometheusText.Write(meter, text);

        var families = PrometheusTextParser.Parse(text.ToString());

        Assert.Equal(1, families["kvmsharp_vm_state"].Samples.Single(s => s.Labels["state"] == "Running").Value);
        Assert.Equal(0, families["kvmsharp_vm_state"].Samples.Single(s => s.Labels["state"] == "Paused \"x\"").Value);
        Assert.Equal(3, Assert.Single(families["kvmsharp_vm_exits_total"].Samples).Value);
        Assert.Throws<ArgumentException>(() => PrometheusText.WriteGauge(text, "kvmsharp.vm.state", "", []));
    }

    [Fact]
    public void The_parser_rejects_what_a_scraper_would()
    {
        Assert.Throws<FormatException>(() => PrometheusTextParser.Parse("x 1\n")); // no TYPE
        Assert.Throws<FormatException>(() => PrometheusTextParser.Parse("# TYPE x counter\nx{a=\"\\q\"} 1\n")); // bad escape
        Assert.Throws<FormatException>(() => PrometheusTextParser.Parse("# TYPE x counter\nx 1\nx 2\n")); // repeated series
        Assert.Throws<FormatException>(() => PrometheusTextParser.Parse("# TYPE x gauge\nx one\n")); // not a number
        Assert.Throws<FormatException>(() => PrometheusTextParser.Parse("# TYPE x.y gauge\nx.y 1\n")); // invalid name
    }
}
