using Microsoft.Extensions.Logging;

namespace KvmSharp.Vmm.Machine;

/// <summary>
/// Devices' ILogger&lt;T&gt; lines of <see cref="LogLevel.Warning"/> and above, forwarded to the VM's
/// <see cref="VmConfig.Log"/> action, for hosts that give no logger factory.
/// </summary>
internal sealed class ForwardingLoggerFactory(Action<string> log) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new Forwarding(log, categoryName[(categoryName.LastIndexOf('.') + 1)..]);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("a forwarding logger factory has no providers");

    public void Dispose()
    {
    }

    private sealed class Forwarding(Action<string> log, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            log($"{category}: {formatter(state, exception)}{(exception is null ? "" : $" ({exception.GetType().Name}: {exception.Message})")}");
        }
    }
}
