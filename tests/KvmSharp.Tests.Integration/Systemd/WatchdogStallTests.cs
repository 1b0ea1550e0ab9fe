using KvmSharp.Devices.Bus;
using KvmSharp.Hosting;
using KvmSharp.Systemd;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Lifecycle;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Systemd;

/// <summary>
/// The watchdog on a real VM: the notifier pings a real datagram socket while the VM runs, stops while a vCPU is
/// wedged in a device's exit handler (so systemd would restart the service), and says why.
/// </summary>
public sealed class WatchdogStallTests
{
    private const ushort GatePort = 0xE4;
    private const ushort BlockingPort = 0xE8;
    private static readonly TimeSpan WatchdogTimeout = TimeSpan.FromSeconds(2); // pings every 1 s, stalled after 1 s
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    // Reads 0 until the test opens it: the guest waits here, making progress (each read is a quick exit).
    private sealed class GateDevice : IBusDevice
    {
        private volatile bool _open;

        public void Open() => _open = true;

        public void Read(ulong offset, Span<byte> data)
        {
            data.Clear();
            if (_open) data[0] = 1;
            else Thread.Sleep(1); // a slow gate: the guest's loop exits a thousand times a second, not a hundred thousand
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data) { }
    }

    private sealed class CollectingLogger : ILogger<SystemdNotifyService>
    {
        public readonly System.Collections.Concurrent.ConcurrentQueue<(LogLevel Level, string Message)> Entries = new();
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Enqueue((logLevel, formatter(state, exception)));
    }

    [KvmFact]
    public async Task Pings_stop_while_a_vcpu_is_wedged_in_a_device_and_come_back_when_it_returns()
    {
        var gate = new GateDevice();
        var blocking = new BlockingDevice(1) { GiveUpAfter = TimeSpan.FromSeconds(60) };
        var image = TestGuest.LongMode(a =>
        {
            var wait = a.CreateLabel();
            a.Label(ref wait);
            a.mov(edx, GatePort);
            a.@in(al, dx);
            a.test(al, al);
            a.jz(wait);
            a.mov(edx, BlockingPort);
            a.@in(eax, dx); // wedged here until the test releases the device
            TestGuest.ExitWith(a, 0);
        });
        using var controller = new VmController(TestGuest.Create(image, memory: 4UL << 20), "wedge");
        controller.Machine.PortBus.Register(GatePort, 1, gate, "gate");
        controller.Machine.PortBus.Register(BlockingPort, 4, blocking, "blocking");

        using var listener = new NotifyListener();
        using var socket = SystemdNotifySocket.Open(listener.Address)!;
        var active = new ActiveVm();
        var lifetime = new ApplicationLifetime(NullLogger<ApplicationLifetime>.Instance);
        var log = new CollectingLogger();
        using var service = new SystemdNotifyService(socket, new SystemdWatchdog(WatchdogTimeout), SystemdReadiness.WhenVmRuns, active, lifetime, log);
        await service.StartAsync(CancellationToken.None);
        active.Set(controller);
        try
        {
            await controller.StartAsync().WaitAsync(Bound);
            Assert.True(listener.WaitFor(a => a == "READY=1", Bound), listener.Describe());

            // Running: the pings come (at least two in a row while the guest loops on the gate).
            long before = service.Pings;
            Assert.True(SpinWait.SpinUntil(() => service.Pings >= before + 2, Bound), $"no pings while running:\n{listener.Describe()}");

            gate.Open();
            Assert.True(blocking.WaitEntered(Bound), "the guest never reached the blocking device");
            Assert.True(listener.WaitFor(a => a.StartsWith("STATUS=stalled: ", StringComparison.Ordinal) && a.Contains("vCPU 0"), Bound),
                $"no stalled status:\n{listener.Describe()}");
            long atStall = service.Pings;
            var stalledAt = listener.Now;

            // Three more ping periods while wedged: not one WATCHDOG=1 (systemd would kill it after WATCHDOG_USEC).
            Thread.Sleep(WatchdogTimeout / 2 * 3);
            Assert.Equal(atStall, service.Pings);
            Assert.DoesNotContain(listener.Assignments, a => a.Assignment == "WATCHDOG=1" && a.At > stalledAt);
            Assert.Contains(log.Entries, e => e.Level == LogLevel.Error && e.Message.Contains("vCPU 0") && e.Message.Contains("withholding"));

            blocking.Release();
            Assert.True(SpinWait.SpinUntil(() => service.Pings > atStall, Bound), $"the pings did not come back:\n{listener.Describe()}");
        }
        finally
        {
            blocking.Release();
            gate.Open();
        }
        Assert.Equal(0, (await controller.Completion.WaitAsync(Bound)).ExitCode);
    }
}
