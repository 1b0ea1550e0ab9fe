using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// Moments of a VM's start (Stopwatch timestamps), so --stats can say where the time from process start to the
/// first KVM_RUN went: before the VM was asked for (runtime, host, options), creating it, laying out RAM,
/// loading the guest, starting the vCPU threads.
/// </summary>
public sealed class StartupTimeline
{
    private readonly List<(string Step, long Timestamp)> _marks = new();

    /// <summary>The process's own steps before any VM (command line, settings, host), merged into a VM's timeline by <see cref="Format"/>.</summary>
    public static StartupTimeline Process { get; } = new();

    /// <summary>Note that <paramref name="step"/> ended now.</summary>
    public void Mark(string step)
    {
        lock (_marks) _marks.Add((step, Stopwatch.GetTimestamp()));
    }

    public IReadOnlyList<(string Step, long Timestamp)> Marks
    {
        get
        {
            lock (_marks) return _marks.ToArray();
        }
    }

    /// <summary>One line: each step's duration in ms, from <paramref name="processStartUtc"/> to <paramref name="firstRunTimestamp"/>.</summary>
    /// <param name="processStartUtc">When the process started.</param>
    /// <param name="firstRunTimestamp">The first KVM_RUN (0: not reached).</param>
    /// <param name="other">Another timeline whose marks are merged in time order (the process's own, for the first VM).</param>
    public string Format(DateTime? processStartUtc, long firstRunTimestamp, StartupTimeline? other = null)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder("start-up (ms):");
        var marks = Marks.ToList();
        if (other is not null && other != this) marks.AddRange(other.Marks);
        if (firstRunTimestamp != 0) marks.Add(("first KVM_RUN", firstRunTimestamp));
        marks.Sort((a, b) => a.Timestamp.CompareTo(b.Timestamp));
        long? previous = null;
        if (processStartUtc is { } start && marks.Count > 0)
        {
            // The process start on the monotonic clock: the first mark minus how long after the start it came.
            var firstUtc = DateTime.UtcNow - Stopwatch.GetElapsedTime(marks[0].Timestamp);
            previous = marks[0].Timestamp - (long)((firstUtc - start).TotalSeconds * Stopwatch.Frequency);
            text.Append(" process start");
        }
        foreach (var (step, timestamp) in marks)
        {
            if (previous is { } from) text.Append(c, $" +{Stopwatch.GetElapsedTime(from, timestamp).TotalMilliseconds:0.0} {step}");
            else text.Append(c, $" {step}");
            previous = timestamp;
        }
        return text.ToString();
    }
}
