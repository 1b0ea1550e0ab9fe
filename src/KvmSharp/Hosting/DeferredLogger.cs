using Microsoft.Extensions.Logging;

namespace KvmSharp.Hosting;

/// <summary>
/// A logger that can be used before the host (and its logging) exists: entries are kept, in order, until
/// <see cref="Attach"/> hands them to the real logger, which then takes every later entry directly. The first VM
/// starts before the host is built, and what it logs meanwhile must come out exactly as if the host had been there.
/// </summary>
public sealed class DeferredLogger<T> : ILogger<T>
{
    private readonly Lock _gate = new();
    private List<Action<ILogger>>? _held = new();
    private volatile ILogger? _target;
    private readonly TaskCompletionSource _attached = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes shortly after the held entries were handed to the real logger, which takes every entry from then on.</summary>
    public Task Attached => _attached.Task;

    /// <summary>Replay the held entries into <paramref name="target"/> (its filters apply then), and log there from now on; once only.</summary>
    public void Attach(ILogger target)
    {
        ArgumentNullException.ThrowIfNull(target);
        lock (_gate)
        {
            if (_held is null) return;
            foreach (var entry in _held) entry(target);
            _held = null;
            _target = target;
        }
        // The console logger writes from its own queue thread: give it a head start on output that waits for it.
        Task.Delay(ReplayHeadStart).ContinueWith(_ => _attached.TrySetResult(), TaskScheduler.Default);
    }

    private static readonly TimeSpan ReplayHeadStart = TimeSpan.FromMilliseconds(20);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => _target?.BeginScope(state);

    // Before the real logger exists every level is kept: its configured filter decides on replay.
    public bool IsEnabled(LogLevel logLevel) => _target?.IsEnabled(logLevel) ?? true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        var target = _target;
        if (target is null)
        {
            lock (_gate)
            {
                if (_held is not null)
                {
                    _held.Add(logger => logger.Log(logLevel, eventId, state, exception, formatter));
                    return;
                }
            }
            target = _target!;
        }
        target.Log(logLevel, eventId, state, exception, formatter);
    }
}
