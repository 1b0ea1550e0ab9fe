/*
 * tracked_write.c - the C reference for `scripts/bench.sh tracked-write`.
 *
 * The smallest VMM that realises one write-tracked page the way KvmSharp does (DESIGN.md, "How
 * userspace realises write tracking"): guest RAM is carved into three memslots, the tracked page
 * being a KVM_MEM_READONLY slot of its own, so every guest write to it exits as KVM_EXIT_MMIO.
 * The exit handler "emulates the write" (copies the bytes into the backing memory) and calls a
 * trivial notify function, as KvmSharp's PageTracker does before TrackWrite. One vCPU in 16-bit
 * real mode at CS:IP = 0:0x1000, like exit_roundtrip.c. This is the practical limit for that work.
 *
 * Usage: tracked_write GUEST.bin
 *   GUEST.bin is written by `kvmsharp-bench write-guest tracked-write N GUEST.bin`: N dword writes
 *   to the tracked page at 0x8000 (each value differs from what memory holds), then a read-back of
 *   its last write, then `out 0x501, al` (debug-exit; status 0, or 1 if the write did not land), hlt.
 *
 * What is timed (identical in kvmsharp-bench): from the handling of the FIRST trapped write to the
 * tracked page to the handling of the exit on port 0x501. That interval holds exactly N guest
 * resumes, each ending in one exit, and none of the setup or teardown. ns_per_write = interval / N.
 *
 * Output (stdout, one key=value per line): tracked_writes=N, total_exits=..., cpu_ns_per_write=X (the
 * same interval in this thread's CPU time), ns_per_write=X (wall time, the figure bench.sh compares).
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

/* These must match KvmSharp (VirtualMachine / VmConfig / RealModeSetup / kvmsharp-bench TrackedWriteGuest). */
#define RAM_BYTES      (1UL << 20)     /* kvmsharp-bench uses VmConfig.MemoryBytes = 1 MiB   */
#define LOAD_ADDRESS   0x1000UL        /* GuestImage load address = entry                     */
#define TRACKED_PAGE   0x8000UL        /* TrackedWriteGuest.TargetAddress: gfn 8              */
#define PAGE_BYTES     0x1000UL
#define EXIT_PORT      0x501           /* VmConfig.DebugExitPort default                      */
#define TSS_ADDRESS    0xFFFBD000UL    /* VirtualMachine.TssAddress (QEMU's choice)           */
#define IDMAP_ADDRESS  0xFFFBC000UL    /* VirtualMachine.IdentityMapAddress                   */

static void die(const char *what)
{
    fprintf(stderr, "tracked_write: %s: %s\n", what, strerror(errno));
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

/* The notifier: trivial work the compiler may not remove or inline (KvmSharp's counts and keeps the last value). */
static volatile uint64_t notified_writes, notified_last_gpa;
static __attribute__((noinline)) void track_write(uint64_t gpa, const uint8_t *bytes, uint32_t len)
{
    (void)bytes;
    (void)len;
    notified_writes++;
    notified_last_gpa = gpa;
}

static void set_slot(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, uint8_t *host)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot, .flags = flags, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
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
    size_t len = fread(ram + LOAD_ADDRESS, 1, TRACKED_PAGE - LOAD_ADDRESS, f);
    fclose(f);
    if (len == 0) { fprintf(stderr, "tracked_write: %s is empty\n", argv[1]); return 1; }

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm (run as root)");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) { fprintf(stderr, "tracked_write: KVM API version is not 12\n"); return 1; }
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) { fprintf(stderr, "tracked_write: no KVM_CAP_READONLY_MEM\n"); return 1; }

    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 && ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDRESS) < 0)
        die("KVM_SET_TSS_ADDR");
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        uint64_t idmap = IDMAP_ADDRESS;
        if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    }

    /* The carved layout KvmSharp's CarvedMemslotBackend makes for one tracked gfn in slot 0: the user's
     * slot id keeps the piece below, the read-only piece and the piece above take ids from the top of
     * the id space (KVM_CAP_NR_MEMSLOTS - 1, - 2). */
    int nr_slots = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
    if (nr_slots < 3) nr_slots = 32764;
    set_slot(vm, 0, 0, 0, TRACKED_PAGE, ram);
    set_slot(vm, (uint32_t)nr_slots - 1, KVM_MEM_READONLY, TRACKED_PAGE, PAGE_BYTES, ram + TRACKED_PAGE);
    set_slot(vm, (uint32_t)nr_slots - 2, 0, TRACKED_PAGE + PAGE_BYTES, RAM_BYTES - TRACKED_PAGE - PAGE_BYTES, ram + TRACKED_PAGE + PAGE_BYTES);

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    /* The same CPUID, segments and registers as exit_roundtrip.c (CpuidSetup, RealModeSetup.Enter). */
    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) die("calloc");
    cpuid->nent = nent;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = LOAD_ADDRESS, .rsp = 0xFFF0, .rflags = 2 };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

    /* The timed part: KVM_RUN until the guest writes the debug-exit port (or halts). */
    uint64_t tracked = 0, total_exits = 0, t0 = 0, t1 = 0, cpu0 = 0, cpu1 = 0;
    uint8_t status = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("KVM_RUN");
        }
        total_exits++;
        if (run->exit_reason == KVM_EXIT_MMIO) {
            uint64_t gpa = run->mmio.phys_addr;
            uint32_t n = run->mmio.len > 8 ? 8 : run->mmio.len;
            if (gpa - TRACKED_PAGE < PAGE_BYTES) {
                if (!run->mmio.is_write) { memcpy(run->mmio.data, ram + gpa, n); continue; } /* reads do not exit; be correct anyway */
                if (tracked++ == 0) { t0 = clock_ns(CLOCK_MONOTONIC); cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID); }
                memcpy(ram + gpa, run->mmio.data, n); /* emulate the write: it lands in guest memory... */
                track_write(gpa, run->mmio.data, n);  /* ...then the notifier hears of it */
                continue;
            }
            fprintf(stderr, "tracked_write: MMIO %s outside the tracked page at 0x%llx\n", run->mmio.is_write ? "write" : "read", (unsigned long long)gpa);
            return 1;
        }
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) {
            if (run->io.port == EXIT_PORT) {
                t1 = clock_ns(CLOCK_MONOTONIC);
                cpu1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
                status = *((uint8_t *)run + run->io.data_offset);
                break;
            }
            continue; /* any other port: ignore, like an unclaimed port on KvmSharp's bus */
        }
        if (run->exit_reason == KVM_EXIT_HLT) { fprintf(stderr, "tracked_write: guest halted before debug-exit\n"); return 1; }
        if (run->exit_reason == KVM_EXIT_INTR) continue;
        fprintf(stderr, "tracked_write: unexpected exit reason %u\n", run->exit_reason);
        return 1;
    }
    if (tracked == 0) { fprintf(stderr, "tracked_write: the guest made no write to the tracked page\n"); return 1; }
    if (notified_writes != tracked) { fprintf(stderr, "tracked_write: notified %llu of %llu writes\n", (unsigned long long)notified_writes, (unsigned long long)tracked); return 1; }
    /* The guest read its last write back from the page before exiting: status 1 means it was not applied. */
    if (status != 0) { fprintf(stderr, "tracked_write: guest exit status %u: a trapped write was not applied\n", status); return 1; }

    /* The interval holds tracked - 1 trapped writes after the first, plus the debug-exit exit. */
    printf("tracked_writes=%llu\n", (unsigned long long)tracked);
    printf("total_exits=%llu\n", (unsigned long long)total_exits);
    printf("cpu_ns_per_write=%.1f\n", (double)(cpu1 - cpu0) / (double)tracked);
    printf("ns_per_write=%.1f\n", (double)(t1 - t0) / (double)tracked);
    return 0;
}
