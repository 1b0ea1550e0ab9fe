/*
 * exit_roundtrip.c - the C reference for `scripts/bench.sh exit-roundtrip`.
 *
 * The smallest VMM that runs the benchmark guest the way KvmSharp does: one memslot of RAM,
 * one vCPU in 16-bit real mode at CS:IP = 0:0x1000, and a KVM_RUN loop that does nothing but
 * count port-I/O exits. It is "the practical limit" a VMM can reach for an exit round trip.
 *
 * Usage: exit_roundtrip GUEST.bin
 *   GUEST.bin is written by `kvmsharp-bench write-guest exit-roundtrip N GUEST.bin`: a loop of
 *   N `out 0x80, al`, then `out 0x501, al` (debug-exit, status 0), then hlt.
 *
 * What is timed (identical in kvmsharp-bench): from the handling of the FIRST exit on port 0x80
 * to the handling of the exit on port 0x501. That interval holds exactly N guest resumes, each
 * ending in one port-I/O exit, and none of the setup or teardown. ns_per_exit = interval / N.
 *
 * Output (stdout, one key=value per line): exits_0x80=N, total_exits=..., cpu_ns_per_exit=X (the same
 * interval in this thread's CPU time), ns_per_exit=X (wall time, the figure bench.sh compares).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* These must match KvmSharp (VirtualMachine / VmConfig / RealModeSetup / kvmsharp-bench). */
#define RAM_BYTES      (1UL << 20)     /* kvmsharp-bench uses VmConfig.MemoryBytes = 1 MiB   */
#define LOAD_ADDRESS   0x1000UL        /* GuestImage load address = entry                     */
#define BENCH_PORT     0x80            /* the port the loop writes; a no-op device in KvmSharp */
#define EXIT_PORT      0x501           /* VmConfig.DebugExitPort default                      */
#define TSS_ADDRESS    0xFFFBD000UL    /* VirtualMachine.TssAddress (QEMU's choice)           */
#define IDMAP_ADDRESS  0xFFFBC000UL    /* VirtualMachine.IdentityMapAddress                   */

static void die(const char *what)
{
    fprintf(stderr, "exit_roundtrip: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* CLOCK_MONOTONIC is what .NET's Stopwatch reads on Linux; CLOCK_THREAD_CPUTIME_ID is the time this
 * thread actually ran (it leaves out time spent preempted on a busy host). */
static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s GUEST.bin\n", argv[0]);
        return 2;
    }

    /* Guest memory: anonymous, like GuestMemoryRegion.CreateAnonymous; the image goes at 0x1000. */
    uint8_t *ram = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED) die("mmap guest RAM");
    FILE *f = fopen(argv[1], "rb");
    if (!f) die(argv[1]);
    size_t len = fread(ram + LOAD_ADDRESS, 1, RAM_BYTES - LOAD_ADDRESS, f);
    fclose(f);
    if (len == 0) { fprintf(stderr, "exit_roundtrip: %s is empty\n", argv[1]); return 1; }

    /* /dev/kvm is the system fd: capability checks and VM creation. */
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm (run as root)");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) { fprintf(stderr, "exit_roundtrip: KVM API version is not 12\n"); return 1; }

    /* KVM_CREATE_VM: a VM fd (machine type 0 = default). */
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");

    /* KVM_SET_TSS_ADDR / KVM_SET_IDENTITY_MAP_ADDR: pages Intel VMX needs to run real mode
     * without unrestricted guest. KvmSharp issues both when the capability exists; so do we. */
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 && ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDRESS) < 0)
        die("KVM_SET_TSS_ADDR");
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        uint64_t idmap = IDMAP_ADDRESS;
        if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    }

    /* KVM_SET_USER_MEMORY_REGION: slot 0 maps guest physical 0..RAM_BYTES to our buffer. */
    struct kvm_userspace_memory_region region = {
        .slot = 0, .flags = 0, .guest_phys_addr = 0, .memory_size = RAM_BYTES, .userspace_addr = (uint64_t)(uintptr_t)ram,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

    /* KVM_CREATE_VCPU, then map its kvm_run page (size from KVM_GET_VCPU_MMAP_SIZE): the kernel
     * reports each exit there, and port-I/O data lives at run + io.data_offset. */
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    /* KVM_GET_SUPPORTED_CPUID -> KVM_SET_CPUID2: the same CPUID KvmSharp gives its vCPU
     * (CpuidSetup; vCPU 0, so its APIC id patch is a no-op). */
    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) die("calloc");
    cpuid->nent = nent;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");

    /* KVM_GET/SET_SREGS: the vCPU resets to real mode with CS base 0xffff0000; make CS base 0,
     * selector 0 (RealModeSetup.Enter). The other segments already have base 0. */
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");

    /* KVM_SET_REGS: IP = entry, a stack below 64 KiB, RFLAGS = just the reserved bit 1. */
    struct kvm_regs regs = { .rip = LOAD_ADDRESS, .rsp = 0xFFF0, .rflags = 2 };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

    /* The timed part: KVM_RUN until the guest writes the debug-exit port (or halts). */
    uint64_t bench_exits = 0, total_exits = 0, t0 = 0, t1 = 0, cpu0 = 0, cpu1 = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("KVM_RUN");
        }
        total_exits++;
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) {
            if (run->io.port == BENCH_PORT) {
                if (bench_exits++ == 0) { t0 = clock_ns(CLOCK_MONOTONIC); cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID); }
                continue;
            }
            if (run->io.port == EXIT_PORT) { t1 = clock_ns(CLOCK_MONOTONIC); cpu1 = clock_ns(CLOCK_THREAD_CPUTIME_ID); break; }
            continue; /* any other port: ignore, like an unclaimed port on KvmSharp's bus */
        }
        if (run->exit_reason == KVM_EXIT_HLT) { fprintf(stderr, "exit_roundtrip: guest halted before debug-exit\n"); return 1; }
        if (run->exit_reason == KVM_EXIT_INTR) continue;
        fprintf(stderr, "exit_roundtrip: unexpected exit reason %u\n", run->exit_reason);
        return 1;
    }
    if (bench_exits == 0) { fprintf(stderr, "exit_roundtrip: the guest made no exit on port 0x80\n"); return 1; }

    /* Exits after the first 0x80 one: bench_exits - 1 on port 0x80, plus the debug-exit one. */
    printf("exits_0x80=%llu\n", (unsigned long long)bench_exits);
    printf("total_exits=%llu\n", (unsigned long long)total_exits);
    printf("cpu_ns_per_exit=%.1f\n", (double)(cpu1 - cpu0) / (double)bench_exits);
    printf("ns_per_exit=%.1f\n", (double)(t1 - t0) / (double)bench_exits);
    return 0;
}
