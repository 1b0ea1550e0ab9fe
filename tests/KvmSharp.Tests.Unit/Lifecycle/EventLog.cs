using KvmSharp.Vmm.Lifecycle;
using Xunit;

namespace KvmSharp.Tests.Unit.Lifecycle;

/// <summary>Records a controller's events and the threads they arrived on; waits for them with a bound.</summary>
internal sealed class EventLog : IDisposable
{
    private readonly object _gate = new();
    private readonly List<(VmEvent Event, int Thread)> _seen = new();
    private readonly IDisposable _subscription;

    public EventLog(IVmController controller) => _subscription = controller.Subscribe(Record);

    public IReadOnlyList<VmEvent> Events
    {
        get { lock (_gate) return _seen.Select(s => s.Event).ToList(); }
    }

    public IReadOnlyList<int> Threads
    {
        get { lock (_gate) return _seen.Select(s => s.Thread).ToList(); }
    }

    public IReadOnlyList<string> Kinds => Events.Select(e => e.Kind).ToList();

    private void Record(VmEvent e)
    {
        lock (_gate)
        {
            _seen.Add((e, Environment.CurrentManagedThreadId));
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Wait until at least <paramref name="count"/> events arrived (fails after 10 s, naming what did).</summary>
    public IReadOnlyList<VmEvent> WaitFor(int count)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        lock (_gate)
        {
            while (_seen.Count < count)
            {
                var left = deadline - DateTime.UtcNow;
                Assert.True(left > TimeSpan.Zero, $"expected {count} events, got [{string.Join(", ", _seen.Select(s => s.Event.Kind))}]");
                Monitor.Wait(_gate, left);
            }
            return _seen.Select(s => s.Event).ToList();
        }
    }

    public void Dispose() => _subscription.Dispose();
}
