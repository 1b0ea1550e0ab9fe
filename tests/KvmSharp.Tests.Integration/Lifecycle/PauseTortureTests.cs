using System.Diagnostics;
using System.Text;
using KvmSharp.Devices.Serial;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Lifecycle;

/// <summary>
/// 10,000 pauses and resumes through the controller while the guest reads a port counter, an MMIO counter
/// and the UART in a loop, and a page-tracker re-carve (with its own lease) runs at the same time: every
/// value read reaches the guest exactly once, every UART byte is echoed exactly once, nothing deadlocks.
/// </summary>
public sealed class PauseTortureTests(ITestOutputHelper output)
{
    private const int Cycles = 10_000;
    private const ushort CounterPort = 0xE0, RecordPort = 0xE4, MmioRecordPort = 0xEC;
    private const ulong MmioCounter = 0xD000_0000;
    private const ulong TrackedPage = 0x300000;
    private const ushort Com1 = 0x3F8;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    // Each turn: port counter -> tracked store -> record; MMIO counter -> record; echo one UART byte if one waits.
    private static GuestImage Guest() => TestGuest.LongMode(a =>
    {
        var loop = a.CreateLabel();
        a.mov(rsi, MmioCounter);
        a.mov(rdi, TrackedPage);
        a.Label(ref loop);
        a.mov(edx, CounterPort);
        a.@in(eax, dx);
        a.mov(__dword_ptr[rdi], eax);
        a.mov(edx, RecordPort);
        a.@out(dx, eax);
        a.mov(eax, __dword_ptr[rsi]);
        a.mov(edx, MmioRecordPort);
        a.@out(dx, eax);
        a.mov(edx, Com1 + 5); // LSR
        a.@in(al, dx);
        a.test(al, 1); // data ready
        a.jz(loop);
        a.mov(edx, Com1); // RBR
        a.@in(al, dx);
        a.@out(dx, al); // THR: to the capturing sink
        a.jmp(loop);
    }, "pause-torture");

    [KvmFact]
    public async Task Ten_thousand_pauses_during_port_mmio_and_uart_reads_with_concurrent_recarves_lose_and_repeat_nothing()
    {
        var sink = new CapturingSerialSink();
        using var controller = new VmController(TestGuest.Create(Guest(), memory: 4UL << 20, sink: sink), "torture");
        var vm = controller.Machine;
        var portCounter = new CountingReadDevice();
        var mmioCounter = new CountingReadDevice();
        var portRecord = new SequenceRecorder("port counter");
        var mmioRecord = new SequenceRecorder("MMIO counter");
        vm.PortBus.Register(CounterPort, 4, portCounter, "counter");
        vm.PortBus.Register(RecordPort, 4, portRecord, "record");
        vm.PortBus.Register(MmioRecordPort, 4, mmioRecord, "mmio-record");
        vm.MmioBus.Register(MmioCounter, 0x1000, mmioCounter, "mmio-counter");
        var notifier = new IncreasingWriteNotifier();
        vm.PageTracker.Register(notifier);

        using var stop = new CancellationTokenSource();
        var fed = new StringBuilder();
        long carves = 0;
        await controller.StartAsync().WaitAsync(Bound);

        // The UART's input: a known text, paced by the receive FIFO's free space.
        var feeder = Task.Factory.StartNew(() =>
        {
            int next = 0;
            while (!stop.IsCancellationRequested)
            {
                int free = vm.Serial.ReceiveFifoFreeSpace;
                for (int i = 0; i < free; i++, next++)
                {
                    byte b = (byte)('a' + next % 26);
                    if (vm.Serial.EnqueueInput(b) != true) throw new InvalidOperationException("the UART refused input it had room for");
                    lock (fed) fed.Append((char)b);
                }
                Thread.Sleep(1);
            }
        }, TaskCreationOptions.LongRunning);

        // The page tracker re-carves the page the guest stores to, again and again: each carve is a lease of its own.
        var carver = Task.Factory.StartNew(() =>
        {
            const ulong gfn = TrackedPage >> 12;
            while (!stop.IsCancellationRequested)
            {
                vm.PageTracker.AddGfn(gfn);
                vm.PageTracker.RemoveGfn(gfn);
                Interlocked.Increment(ref carves);
            }
        }, TaskCreationOptions.LongRunning);

        var clock = Stopwatch.StartNew();
        TimeSpan pausing = TimeSpan.Zero, resuming = TimeSpan.Zero, running = TimeSpan.Zero;
        int cycle = 0;
        try
        {
            for (; cycle < Cycles; cycle++)
            {
                uint before = portRecord.Count;
                long step = Stopwatch.GetTimestamp();
                var lease = await Bounded(controller.PauseAsync("api"), controller, $"pause {cycle}");
                pausing += Stopwatch.GetElapsedTime(step);
                uint paused = portRecord.Count;
                uint pausedMmio = mmioRecord.Count;
                int echoed = sink.Length;
                Assert.Equal(VmState.Paused, controller.State);
                Assert.True(paused == portRecord.Count && pausedMmio == mmioRecord.Count && echoed == sink.Length, $"cycle {cycle}: the guest ran while paused");
                step = Stopwatch.GetTimestamp();
                await Bounded(Task.Run(lease.Dispose), controller, $"resume {cycle}");
                resuming += Stopwatch.GetElapsedTime(step);
                step = Stopwatch.GetTimestamp();
                // Let the guest run a little between pauses, so they land all over its loop.
                var wait = Stopwatch.StartNew();
                while (portRecord.Count == before && portRecord.FirstError is null)
                {
                    if (wait.Elapsed > Bound) Assert.Fail($"cycle {cycle}: the guest made no progress after resuming; {Describe(controller)}");
                    Thread.Yield();
                }
                running += Stopwatch.GetElapsedTime(step);
                if ((portRecord.FirstError ?? mmioRecord.FirstError ?? notifier.FirstError) is { } error) Assert.Fail($"cycle {cycle}: {error}");
            }
        }
        finally
        {
            stop.Cancel();
        }
        var elapsed = clock.Elapsed;
        await Bounded(carver, controller, "the re-carve thread");
        await Bounded(feeder, controller, "the UART feeder");

        using (await Bounded(controller.PauseAsync("final check"), controller, "the final pause"))
        {
            Assert.Null(portRecord.FirstError);
            Assert.Null(mmioRecord.FirstError);
            Assert.Null(notifier.FirstError);
            // The last read may be done (completed before the park) and not yet recorded: at most one ahead.
            Assert.InRange(portCounter.Reads - portRecord.Count, 0u, 1u);
            Assert.InRange(mmioCounter.Reads - mmioRecord.Count, 0u, 1u);
            string echoedText = sink.Text;
            string fedText;
            lock (fed) fedText = fed.ToString();
            Assert.True(fedText.StartsWith(echoedText, StringComparison.Ordinal), $"the guest echoed '{Tail(echoedText)}', not a prefix of what was fed ('{Tail(fedText)}')");
            // What was fed and not echoed still waits in the FIFO, or was read and is not yet written (one byte).
            Assert.InRange(fedText.Length - echoedText.Length, 0, Serial16550.ReceiveFifoCapacity + 1);
            Assert.True(echoedText.Length > 0, "the guest echoed no UART input");
            Assert.True(Interlocked.Read(ref carves) > 0, "no re-carve ran");
            output.WriteLine($"{Cycles} pause/resume cycles in {elapsed.TotalSeconds:0.00} s ({elapsed.TotalMilliseconds * 1000 / Cycles:0} µs per cycle: " +
                             $"pause {pausing.TotalMilliseconds * 1000 / Cycles:0} µs, resume {resuming.TotalMilliseconds * 1000 / Cycles:0} µs, waiting for the guest's next turn {running.TotalMilliseconds * 1000 / Cycles:0} µs); " +
                             $"guest turns {portRecord.Count}, MMIO reads {mmioRecord.Count}, UART bytes echoed {echoedText.Length}, " +
                             $"re-carves {Interlocked.Read(ref carves)}, tracked stores reported {notifier.Writes}");
        }
    }

    private static string Tail(string text) => text.Length <= 40 ? text : "..." + text[^40..];

    // A wait that fails with what is stuck instead of hanging the run.
    private static async Task<T> Bounded<T>(Task<T> task, VmController controller, string what)
    {
        if (await Task.WhenAny(task, Task.Delay(Bound)) != task) Assert.Fail($"{what} did not finish within {Bound.TotalSeconds} s: {Describe(controller)}");
        return await task;
    }

    private static async Task Bounded(Task task, VmController controller, string what)
    {
        if (await Task.WhenAny(task, Task.Delay(Bound)) != task) Assert.Fail($"{what} did not finish within {Bound.TotalSeconds} s: {Describe(controller)}");
        await task;
    }

    private static string Describe(VmController controller)
    {
        var progress = controller.CheckProgress(TimeSpan.FromSeconds(1));
        return $"state {controller.State}; leases held by [{string.Join(", ", controller.Machine.Pauses.Holders)}]; " +
               $"stalled: [{string.Join("; ", progress.Stalled)}]; vCPU states [{string.Join(", ", controller.Machine.Vcpus.Select(v => v.State))}]";
    }
}
