using Microsoft.Extensions.Logging;

namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// A VM's events in order: each gets the next sequence number when published (from any thread) and
/// reaches the observers subscribed before it, one event at a time, on a thread-pool thread (never
/// the publisher's, so never a vCPU's). An observer that throws is logged and skipped.
/// </summary>
internal sealed partial class VmEventStream(ILogger logger)
{
    private readonly object _lock = new();
    private readonly Queue<VmEvent> _pending = new();
    private Subscription[] _subscriptions = [];
    private long _sequence;
    private bool _delivering;

    public VmEvent Publish(string kind, string? detail)
    {
        VmEvent published;
        lock (_lock)
        {
            published = new VmEvent(++_sequence, DateTimeOffset.UtcNow, kind, detail);
            _pending.Enqueue(published);
            if (_delivering) return published;
            _delivering = true;
        }
        ThreadPool.UnsafeQueueUserWorkItem(static stream => stream.Deliver(), this, preferLocal: false);
        return published;
    }

    public IDisposable Subscribe(Action<VmEvent> observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        lock (_lock)
        {
            var subscription = new Subscription(this, observer, _sequence + 1);
            _subscriptions = [.. _subscriptions, subscription];
            return subscription;
        }
    }

    /// <summary>Wait (at most <paramref name="timeout"/>) until every event published so far was delivered.</summary>
    public bool WaitDelivered(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_lock)
        {
            while (_delivering)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0) return false;
                Monitor.Wait(_lock, (int)Math.Min(left, int.MaxValue));
            }
            return true;
        }
    }

    private void Deliver()
    {
        while (true)
        {
            VmEvent next;
            Subscription[] subscriptions;
            lock (_lock)
            {
                if (!_pending.TryDequeue(out next!))
                {
                    _delivering = false;
                    Monitor.PulseAll(_lock);
                    return;
                }
                subscriptions = _subscriptions;
            }
            foreach (var subscription in subscriptions)
            {
                if (subscription.Ended || next.Sequence < subscription.FirstSequence) continue;
                try
                {
                    subscription.Observer(next);
                }
                catch (Exception e)
                {
                    LogObserverFailed(logger, e, next.Kind, next.Sequence);
                }
            }
        }
    }

    private void Remove(Subscription subscription)
    {
        lock (_lock) _subscriptions = _subscriptions.Where(s => s != subscription).ToArray();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "a VM event observer threw on event {Sequence} ({Kind}); the other observers still get it")]
    private static partial void LogObserverFailed(ILogger logger, Exception exception, string kind, long sequence);

    private sealed class Subscription(VmEventStream stream, Action<VmEvent> observer, long firstSequence) : IDisposable
    {
        private int _ended;

        public Action<VmEvent> Observer { get; } = observer;
        public long FirstSequence { get; } = firstSequence;
        public bool Ended => Volatile.Read(ref _ended) != 0;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0) stream.Remove(this);
        }
    }
}
