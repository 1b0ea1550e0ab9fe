using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Debug;
using KvmSharp.Devices.Legacy;
using KvmSharp.Devices.Serial;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Boot.Acpi;
using KvmSharp.Vmm.Diagnostics;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Memory;
using KvmSharp.Vmm.PageTracking;
using KvmSharp.Vmm.Statistics;
using KvmSharp.Vmm.Vcpus;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Vmm.Machine;

/// <summary>
/// A whole VM: the KVM objects, guest RAM in memslots, the buses and devices, and one thread per
/// vCPU. It ends exactly once, with a <see cref="VmOutcome"/>; disposing it releases everything.
/// </summary>
public sealed class VirtualMachine : IDisposable, IControlledMachine
{
    // Where QEMU puts the pages Intel VMX needs for real mode without unrestricted guest.
    private const ulong TssAddress = 0xFFFB_D000;
    private const ulong IdentityMapAddress = 0xFFFB_C000;
    /// <summary>RAM ends here below 4 GiB (the rest is the PCI hole); any more RAM starts at <see cref="HighRamBase"/>.</summary>
    public const ulong LowRamLimit = 3UL << 30;
    public const ulong HighRamBase = 4UL << 30;

    private readonly List<VcpuRunner> _vcpus = new();
    private VcpuRunner[] _startedVcpus = [];
    private readonly List<GuestMemoryRegion> _regions = new();
    private readonly ManualResetEventSlim _ended = new(false);
    private readonly kvm_cpuid_entry2[] _supportedCpuid;
    private readonly bool _tscDeadline;
    private VmOutcome? _outcome;
    private bool _started;
    private int _disposed;
    private int _releaseDeferred;
    private int _resourcesReleased;

    private VirtualMachine(VmConfig config, KvmSystem system, KvmVm vm)
    {
        Config = config;
        System = system;
        Kvm = vm;
        var limits = MemslotLimitsProbe.Read(vm);
        var kernelSlots = DirtyLogKernelBackend.Create(vm, new KvmMemslotBackend(vm), config.DirtyLog);
        KernelSlots = new CarvedMemslotBackend(kernelSlots, limits);
        Memslots = new MemslotTable(limits, KernelSlots);
        DirtyLog = new DirtyPageLog(Memslots, KernelSlots, kernelSlots);
        Memory = new GuestPhysicalMemory(Memslots);
        PageTracker = new PageTracker(Memslots, KernelSlots, new VcpuQuiescer(Pauses, () => _vcpus), config.PageTracking)
        {
            Log = config.Log,
            StopVm = reason => End(VmOutcome.Error($"stopped by page-tracking policy: {reason}")),
        };
        PortBus = new DeviceBus("pio");
        MmioBus = new DeviceBus("mmio");
        Exits = new ExitDispatcher(PortBus, MmioBus) { MmioInterceptor = new TrackedAccessInterceptor(PageTracker, Memslots, config.Cpus),
            EmulationFailure = new TrackedInstructionEmulator(PageTracker, Memslots, config.Cpus), DirtyRingFull = DirtyLog.OnDirtyRingFull };
        HasIrqchip = config.UsesIrqchip;
        Devices = new MachineContext(this, config.LoggerFactory ?? (config.Log is { } log ? new ForwardingLoggerFactory(log) : NullLoggerFactory.Instance));
        try
        {
            MachineBuilder.For(config).AttachAll(Devices);
        }
        catch
        {
            Devices.Dispose();
            throw;
        }
        _supportedCpuid = system.GetSupportedCpuid();
        _tscDeadline = HasIrqchip && system.CheckExtension(KvmCap.KVM_CAP_TSC_DEADLINE_TIMER) > 0;
        Metrics = new VmMetrics(CollectExitStatistics, memslots: MemslotUsage, deviceIo: () => Devices.DeviceIo,
            pageTracking: () => (PageTracker.TrackedWrites, PageTracker.NotifierFaults));
    }

    /// <summary>When the steps of creating and starting this VM ended (for --stats).</summary>
    public StartupTimeline Timeline { get; private init; } = new();

    /// <summary>The exit statistics as System.Diagnostics.Metrics instruments (meter "KvmSharp.Vm").</summary>
    public VmMetrics Metrics { get; }

    /// <summary>Sum the vCPUs' exit counters now (exact once they ended, approximate while they run).</summary>
    public ExitStatisticsReport CollectExitStatistics() =>
        ExitStatisticsReport.Aggregate(Volatile.Read(ref _startedVcpus).Select(v => v.Counters).ToList(), PortBus, MmioBus, ProcessStartTime.Utc);

    /// <summary>The memslots in use now, and what page tracking takes of the kernel's budget.</summary>
    public MemslotUsage MemslotUsage()
    {
        var (kernel, tracking, coarsened) = PageTracker.KernelSlotUsage;
        return new(kernel - tracking, kernel, tracking, coarsened, Memslots.Limits.SlotsPerAddressSpace);
    }

    /// <summary>COM1's ISA interrupt.</summary>
    public const uint SerialIrq = StandardDevices.SerialIrq;

    /// <summary>The PS/2 keyboard's ISA interrupt.</summary>
    public const uint KeyboardIrq = StandardDevices.KeyboardIrq;

    /// <summary>What the attach steps built on: allocator, event loop, MSI, device memory, the PCI root.</summary>
    public MachineContext Devices { get; }

    public VmConfig Config { get; }

    /// <summary>True when KVM emulates the PIC, IOAPIC, LAPICs and PIT (Linux guests).</summary>
    public bool HasIrqchip { get; }
    public KvmSystem System { get; }
    public KvmVm Kvm { get; }
    public MemslotTable Memslots { get; }

    /// <summary>How user memslots are realised as kernel memslots (carved around tracked pages).</summary>
    public CarvedMemslotBackend KernelSlots { get; }

    /// <summary>Dirty pages per user slot, in the mode <see cref="VmConfig.DirtyLog"/> chose; devices report their writes here.</summary>
    public DirtyPageLog DirtyLog { get; }

    /// <summary>The page-track notifier model: register write trackers, protect gfns.</summary>
    public PageTracker PageTracker { get; }
    public GuestPhysicalMemory Memory { get; }
    public DeviceBus PortBus { get; }
    public DeviceBus MmioBus { get; }
    public ExitDispatcher Exits { get; }
    public Serial16550 Serial { get; internal set; } = null!;
    public DebugExitPort DebugExit { get; internal set; } = null!;

    /// <summary>Where the host's typed console bytes go: hvc0 with a virtio-console, else the 16550.</summary>
    public IConsoleInput ConsoleInput => Devices.ConsoleInput ?? Serial;
    public IReadOnlyList<VcpuRunner> Vcpus => _vcpus;

    /// <summary>Where every pause of the vCPUs comes from: one lease per holder (controller, page-track carve, register dump).</summary>
    public VcpuPauseGate Pauses { get; } = new();

    /// <summary>Guest RAM regions, in guest-address order.</summary>
    public IReadOnlyList<GuestMemoryRegion> RamRegions => _regions;

    /// <summary>Set once the VM has ended.</summary>
    public VmOutcome? Outcome => Volatile.Read(ref _outcome);

    /// <summary>Raised once, on the thread that ended the VM.</summary>
    public event Action<VmOutcome>? Ended;

    /// <summary>Validate the configuration, open KVM, create the VM, lay out RAM and load the image.</summary>
    public static VirtualMachine Create(VmConfig config)
    {
        var timeline = new StartupTimeline();
        timeline.Mark("VirtualMachine.Create called");
        config.Validate();
        var system = KvmSystem.Open(config.KvmPath);
        KvmVm? vm = null;
        VirtualMachine? machine = null;
        try
        {
            vm = system.CreateVm();
            if (system.CheckExtension(KvmCap.KVM_CAP_SET_TSS_ADDR) > 0) vm.SetTssAddress(TssAddress);
            // Instructions KVM cannot emulate exit with their bytes, so stores to tracked pages can be completed here.
            if (vm.CheckExtension(KvmCap.KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0) vm.EnableCap(KvmCap.KVM_CAP_EXIT_ON_EMULATION_FAILURE, 1);
            if (system.CheckExtension(KvmCap.KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) vm.SetIdentityMapAddress(IdentityMapAddress);
            if (config.UsesIrqchip)
            {
                // Linux wants the PC's interrupt controllers and timer; KVM emulates them in the kernel.
                vm.CreateIrqchip();
                vm.CreatePit2(); // flags 0: port 0x61 stays with the i8042 model
                // Missed PIT ticks are dropped, not replayed: Linux keeps time with kvm-clock, and the
                // replay worker (kvm-pit) was seen spinning forever in the testbed's nested KVM.
                vm.SetPitReinject(false);
            }
            machine = new VirtualMachine(config, system, vm) { Timeline = timeline };
            timeline.Mark("KVM VM and devices created");
            machine.LayOutRam();
            timeline.Mark("RAM laid out");
            machine.LoadImage();
            timeline.Mark("guest loaded");
            return machine;
        }
        catch
        {
            if (machine is not null) machine.Dispose();
            else
            {
                vm?.Dispose();
                system.Dispose();
            }
            throw;
        }
    }

    /// <summary>The PS/2 controller (Linux guests): reset line and Ctrl-Alt-Del.</summary>
    public I8042Controller? Keyboard { get; internal set; }

    /// <summary>The CMOS clock (Linux guests), showing the host's time.</summary>
    public CmosRtc? Rtc { get; internal set; }

    /// <summary>Ports a PC has but KvmSharp does not emulate, answered quietly (Linux guests).</summary>
    public QuietPorts? QuietPorts { get; internal set; }

    /// <summary>Ask the guest to shut down as a PC would on Ctrl-Alt-Del; false when it has no keyboard to receive it.</summary>
    public bool RequestGuestShutdown() => Config.Linux is not null && (Keyboard?.SendCtrlAltDel() ?? false); // a multiboot test kernel has no keyboard driver

    // RAM below 3 GiB in slot 0, the rest from 4 GiB in slot 1, leaving the usual hole for MMIO.
    private void LayOutRam()
    {
        ulong low = Math.Min(Config.MemoryBytes, LowRamLimit);
        AddRam(0, 0, low, "ram-low");
        if (Config.MemoryBytes > low) AddRam(1, HighRamBase, Config.MemoryBytes - low, "ram-high");
    }

    private void AddRam(ushort slot, ulong guestAddress, ulong size, string name)
    {
        var region = Config.MemfdBacking ? GuestMemoryRegion.CreateMemfd(size, name) : GuestMemoryRegion.CreateAnonymous(size, name);
        _regions.Add(region);
        Memslots.Apply(MemslotRequest.Create(slot, guestAddress, size, region.HostAddress));
    }

    private LinuxLoader.Result? _linux;

    /// <summary>Where the Linux kernel, initrd and zero page went (Linux guests only).</summary>
    public LinuxLoader.Result? LinuxBoot => _linux;

    private Boot.Multiboot.MultibootLoader.Result? _multiboot;

    /// <summary>Where the multiboot kernel, modules and info went (multiboot guests only).</summary>
    public Boot.Multiboot.MultibootLoader.Result? MultibootBoot => _multiboot;

    private void LoadImage()
    {
        if (Config.Multiboot is { } multiboot)
        {
            LongModeSetup.WriteTables(Memory); // the GDT of the 32-bit entry
            _multiboot = Boot.Multiboot.MultibootLoader.Load(Memory, Memslots.Current.Slots(0).Select(s => (s.GuestPhysAddr, s.Size)).ToList(), multiboot, Config.Cpus, Devices.PciRoot);
            return;
        }
        if (Config.Linux is { } linux)
        {
            LongModeSetup.WriteTables(Memory);
            var ram = Memslots.Current.Slots(0).Select(s => (s.GuestPhysAddr, s.Size)).ToList();
            _linux = LinuxLoader.Load(Memory, ram, linux, Config.Cpus, Devices.PciRoot);
            return;
        }
        var image = Config.Image!;
        if (image.Mode == CpuMode.Long)
        {
            if (image.LoadAddress < LongModeSetup.LowestUsableAfterTables)
                throw new ArgumentException($"image '{image.Name}': a long-mode image must load at or above 0x{LongModeSetup.LowestUsableAfterTables:x} (page tables live below)");
            LongModeSetup.WriteTables(Memory);
        }
        Memory.Write(image.LoadAddress, image.Bytes);
    }

    /// <summary>Create the vCPU threads and let them run.</summary>
    public void Start()
    {
        if (_started) throw new InvalidOperationException("the VM has already been started");
        _started = true;
        for (int id = 0; id < Config.Cpus; id++)
        {
            var runner = new VcpuRunner(Kvm, id, Exits, ConfigureVcpu,
                (vcpu, reason) => CpuStateReport.Capture(vcpu, Memory, reason))
            {
                Timeline = id == 0 ? Timeline : null,
                LowerSchedulingWeight = Config.Cpus > Environment.ProcessorCount,
            };
            runner.Ended += OnVcpuEnded;
            Pauses.Add(runner); // before its thread starts: a lease held now parks it before guest code
            _vcpus.Add(runner);
        }
        Volatile.Write(ref _startedVcpus, _vcpus.ToArray());
        Timeline.Mark("vCPU threads starting");
        // Starting a thread waits for it to be scheduled, which takes long among many spinning vCPUs:
        // a stop that arrives meanwhile must not wait for the rest to start.
        foreach (var runner in _vcpus)
        {
            if (Outcome is not null) break;
            runner.Start();
        }
    }

    private void ConfigureVcpu(KvmVcpu vcpu)
    {
        DirtyLog.AttachVcpu(vcpu);
        CpuidSetup.Apply(vcpu, _supportedCpuid, Config.Cpus, _tscDeadline);
        if (_linux is { } linux)
        {
            var refused = LinuxVcpuSetup.SetBootMsrs(vcpu);
            if (refused.Count > 0 && vcpu.Id == 0)
                Config.Log?.Invoke($"this KVM refused boot MSRs {string.Join(", ", refused.Select(m => $"0x{m:x}"))}; continuing");
            LinuxVcpuSetup.SetFpu(vcpu);
            LinuxVcpuSetup.SetLapicLints(vcpu);
            // Only the boot vCPU starts at the kernel; the others wait for INIT/SIPI in the in-kernel LAPIC.
            if (vcpu.Id != 0) return;
            if (linux.IsPvh) ProtectedModeSetup.Enter(vcpu, linux.Entry, ebx: linux.ZeroPage);
            else LongModeSetup.Enter(vcpu, linux.Entry, LongModeSetup.Pml4Address - 16, [0, linux.ZeroPage]);
            return;
        }
        if (_multiboot is { } multiboot)
        {
            // What a PC's firmware leaves: MSRs, FPU, LINT0 ExtINT / LINT1 NMI; the APs wait for INIT/SIPI.
            LinuxVcpuSetup.SetBootMsrs(vcpu);
            LinuxVcpuSetup.SetFpu(vcpu);
            LinuxVcpuSetup.SetLapicLints(vcpu);
            if (vcpu.Id != 0) return;
            WaitForOtherVcpus();
            Boot.Multiboot.MultibootLoader.Enter(vcpu, multiboot);
            return;
        }
        var image = Config.Image!;
        if (image.Mode == CpuMode.Real)
        {
            RealModeSetup.Enter(vcpu, image.Entry);
            return;
        }
        ulong stackTop = FlatImageStackTop(vcpu.Id);
        LongModeSetup.Enter(vcpu, image.Entry, stackTop, [Config.MemoryBytes, (ulong)vcpu.Id, (ulong)Config.Cpus]);
    }

    // As on QEMU, every vCPU exists before the boot vCPU runs: KVM delivers an INIT/SIPI only to vCPUs
    // that exist, and a test kernel sends them within microseconds of its entry (a Linux kernel, seconds later).
    private void WaitForOtherVcpus()
    {
        long deadline = Environment.TickCount64 + 10_000;
        foreach (var runner in _vcpus.Skip(1))
            while (!runner.WaitUntilReady(TimeSpan.FromMilliseconds(50)) && Outcome is null && Environment.TickCount64 < deadline) { }
    }

    /// <summary>
    /// A 4 KiB stack per vCPU for flat long-mode images: the first eight below the page tables at
    /// 0x9000 (pages 0x1000-0x8FFF), any others at the top of low RAM.
    /// </summary>
    public ulong FlatImageStackTop(int vcpuId)
    {
        const int LowStacks = 8;
        if (vcpuId < LowStacks) return LongModeSetup.Pml4Address - 0x1000UL * (ulong)vcpuId - 16;
        ulong lowRamEnd = Math.Min(Config.MemoryBytes, LowRamLimit);
        return lowRamEnd - 0x1000UL * (ulong)(vcpuId - LowStacks) - 16;
    }

    private void OnVcpuEnded(VcpuRunner runner)
    {
        // Disposed while this thread was still running: the last thread out releases what they shared.
        if (Volatile.Read(ref _releaseDeferred) != 0 && AllStartedVcpusEnded) ReleaseResources();
        switch (runner.State)
        {
            case VcpuState.Faulted when runner.Error is not null:
                End(VmOutcome.Error($"vCPU {runner.Id} failed: {runner.Error.Message}", runner.FaultReport));
                break;
            case VcpuState.Faulted:
                End(VmOutcome.Fault(runner.FaultReport is null ? $"vCPU {runner.Id}: fault" : FirstLine(runner.FaultReport), runner.FaultReport ?? "")); // the report's first line names the vCPU
                break;
            case VcpuState.Halted when _vcpus.All(v => v.HasEnded):
                End(VmOutcome.Halted());
                break;
        }
    }

    private static string FirstLine(string? text) => text is null ? "fault" : text.Split('\n')[0];

    /// <summary>End the VM with <paramref name="outcome"/> (the first caller wins) and stop every vCPU.</summary>
    public void End(VmOutcome outcome)
    {
        if (Interlocked.CompareExchange(ref _outcome, outcome, null) is not null) return;
        foreach (var runner in _vcpus) runner.RequestStop();
        _ended.Set();
        Ended?.Invoke(outcome);
    }

    /// <summary>Stop the VM from the host side.</summary>
    public void Stop(string why = "requested by the host") => End(VmOutcome.Stopped(why));

    /// <summary>Wait for the VM to end and for every vCPU thread to leave KVM_RUN.</summary>
    public VmOutcome WaitForExit(CancellationToken cancellation = default)
    {
        _ended.Wait(cancellation);
        WaitForVcpuThreads(VcpuExitGrace);
        return _outcome!;
    }

    public bool WaitForExit(TimeSpan timeout, out VmOutcome? outcome)
    {
        outcome = null;
        if (!_ended.Wait(timeout)) return false;
        WaitForVcpuThreads(VcpuExitGrace);
        outcome = _outcome;
        return true;
    }

    // How long an ended VM waits, in all, for its kicked vCPU threads to leave KVM_RUN.
    private static readonly TimeSpan VcpuExitGrace = TimeSpan.FromSeconds(10);

    // One deadline for all threads, not one each; threads never started have nothing to wait for.
    private void WaitForVcpuThreads(TimeSpan grace)
    {
        long deadline = Environment.TickCount64 + (long)grace.TotalMilliseconds;
        foreach (var runner in _vcpus)
        {
            if (!runner.WasStarted) continue;
            long left = Math.Max(0, deadline - Environment.TickCount64);
            runner.WaitForEnd(TimeSpan.FromMilliseconds(left));
        }
    }

    /// <summary>Where every vCPU is: registers and the code at RIP, taken under a pause lease of its own (for timeouts and hangs).</summary>
    public string DescribeVcpus(TimeSpan timeout)
    {
        var text = new System.Text.StringBuilder();
        using var lease = Pauses.Pause("describe vCPUs", timeout, out var late);
        foreach (string where in late) text.AppendLine($"{where}: did not pause within {timeout.TotalSeconds:0.#} s");
        foreach (var runner in _vcpus)
        {
            if (runner.Vcpu is not { } vcpu || runner.HasEnded || runner.IsReleased)
            {
                text.AppendLine($"vCPU {runner.Id}: {runner.State}");
                continue;
            }
            if (late.Count > 0 && runner.State != VcpuState.Paused) continue; // named above; its registers may be in use
            text.Append(CpuStateReport.Capture(vcpu, Memory, $"{runner.State} after {runner.ExitCount} exits"));
        }
        return text.ToString();
    }

    /// <summary>Pause every vCPU for <paramref name="holder"/> until the lease is disposed; throws <see cref="TimeoutException"/> (nothing paused) when one does not park in time.</summary>
    public IPauseLease Pause(string holder, TimeSpan timeout) =>
        Pauses.TryPause(holder, timeout, out var lease, out string? failure) ? lease : throw new TimeoutException(failure);

    /// <summary>The vCPUs stuck in a userspace exit handler for longer than <paramref name="threshold"/>, described.</summary>
    public IReadOnlyList<string> StalledVcpus(TimeSpan threshold)
    {
        List<string>? stalled = null;
        foreach (var runner in Volatile.Read(ref _startedVcpus))
            if (runner.DescribeStall(threshold) is { } stall) (stalled ??= new()).Add(stall);
        return stalled ?? (IReadOnlyList<string>)[];
    }

    KvmSharp.Devices.Events.IEventLoop? IControlledMachine.EventLoop => Devices.StartedEventLoop;

    void IControlledMachine.WaitForVcpuThreads() => WaitForVcpuThreads(VcpuExitGrace);

    /// <summary>How long <see cref="Dispose"/> waits for the vCPU threads to leave; a thread still running then keeps what it uses (see <see cref="ResourcesReleased"/>).</summary>
    public TimeSpan DisposeGrace { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// True once guest memory, the devices and the KVM VM are released: at <see cref="Dispose"/> when every vCPU
    /// thread has ended, else when the last one ends (never under a running thread).
    /// </summary>
    public bool ResourcesReleased => Volatile.Read(ref _resourcesReleased) != 0;

    private bool AllStartedVcpusEnded => _vcpus.All(v => !v.WasStarted || v.HasEnded);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        End(VmOutcome.Stopped("disposed"));
        WaitForVcpuThreads(DisposeGrace);
        // A runner whose thread is still inside (a device handler that does not return) keeps its kvm_run
        // and fd until it leaves; guest memory, devices and the VM fd wait for the last such thread.
        foreach (var runner in _vcpus) runner.Dispose(TimeSpan.Zero);
        Volatile.Write(ref _releaseDeferred, 1);
        if (AllStartedVcpusEnded) ReleaseResources(); // checked after the flag: a thread ending meanwhile releases them itself
        else Config.Log?.Invoke($"vCPU threads {string.Join(", ", _vcpus.Where(v => v.WasStarted && !v.HasEnded).Select(v => v.Id))} did not stop within {DisposeGrace.TotalSeconds:0.#} s; the VM's memory and devices are released when they do");
    }

    private void ReleaseResources()
    {
        if (Interlocked.Exchange(ref _resourcesReleased, 1) != 0) return;
        Devices.Dispose();
        Kvm.Dispose();
        System.Dispose();
        foreach (var region in _regions) region.Dispose();
        Metrics.Dispose();
    }
}
