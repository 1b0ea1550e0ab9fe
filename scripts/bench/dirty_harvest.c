/*
 * dirty_harvest.c - the C reference for `scripts/bench.sh dirty`.
 *
 * The smallest VMM that harvests dirty pages the way KvmSharp does for a 4 GiB guest laid out as
 * VirtualMachine lays it out (slot 0: 3 GiB at 0, slot 1: 1 GiB at 4 GiB, both with
 * KVM_MEM_LOG_DIRTY_PAGES), in one of three modes:
 *   bitmap  KVM_GET_DIRTY_LOG on both slots (it clears and write-protects them);
 *   clear   KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, MANUAL_PROTECT_ENABLE | INITIALLY_SET), each
 *           new slot cleared once at creation (as KvmSharp does, so only written pages are reported);
 *           then per harvest KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG from the first to the last non-zero
 *           64-page word of each slot;
 *   ring    KVM_CAP_DIRTY_LOG_RING_ACQ_REL (or _RING) of 16384 entries enabled before the vCPU exists,
 *           the ring mapped from the vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET pages; per harvest the
 *           published entries are read in order (acquire), turned into bits of per-slot bitmaps, marked
 *           RESET (release), then KVM_RESET_DIRTY_RINGS.
 *
 * Usage: dirty_harvest MODE GUEST.bin ROUNDS
 *   GUEST.bin is written by `kvmsharp-bench write-guest dirty GUEST.bin` (DirtyBenchGuest): 64-bit code
 *   at 0x100000 that drops to CPL3 and writes 1 % of the guest's pages per round, then writes to the
 *   MMIO address 0xD0000000. This program lays out the same long-mode tables KvmSharp's LongModeSetup
 *   and DirtyBenchGuest.PrepareUserMode write.
 *
 * Timed (identical in kvmsharp-bench): one harvest of both slots at each round's MMIO exit, the guest
 * parked in the exit. Round 0 is not counted; every counted harvest must report exactly 10481 pages.
 * Output: rounds=, dirty_pages=, harvest_ns_min=, harvest_ns= (median wall time), harvest_cpu_ns_min=,
 * harvest_cpu_ns= (median CPU time of the harvesting thread: the ioctls' kernel work runs on it, and it
 * leaves out time the thread sat preempted on a busy host).
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

/* These must match KvmSharp (VirtualMachine, LongModeSetup, DirtyBenchGuest, DirtyHarvestBench). */
#define LOW_BYTES      (3UL << 30)
#define HIGH_BASE      (4UL << 30)
#define HIGH_BYTES     (1UL << 30)
#define LOAD_ADDRESS   0x100000UL
#define SIGNAL_ADDRESS 0xD0000000UL
#define DIRTY_PAGES    10481
#define RING_ENTRIES   16384
#define GDT_ADDRESS    0x500UL
#define GDT_POINTER    0x5F0UL
#define PML4_ADDRESS   0x9000UL
#define PDPT_ADDRESS   0xA000UL
#define PD_ADDRESS     0xB000UL
#define HIGH_PD        0xF000UL
#define TSS_ADDRESS    0xFFFBD000UL
#define IDMAP_ADDRESS  0xFFFBC000UL
#define LOW_WORDS      ((LOW_BYTES >> 12) / 64)
#define HIGH_WORDS     ((HIGH_BYTES >> 12) / 64)

enum mode { BITMAP, CLEAR, RING };

static void die(const char *what)
{
    fprintf(stderr, "dirty_harvest: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int vm_fd;
static enum mode mode;
static uint64_t low_bits[LOW_WORDS], high_bits[HIGH_WORDS];
static struct kvm_dirty_gfn *ring;
static uint32_t ring_fetch;

static void clear_range(uint32_t slot, uint64_t slot_pages, uint64_t *bits, uint64_t words)
{
    uint64_t first = 0, last;
    while (first < words && bits[first] == 0) first++;
    if (first == words) return;
    last = words - 1;
    while (bits[last] == 0) last--;
    uint64_t end = (last + 1) * 64 < slot_pages ? (last + 1) * 64 : slot_pages;
    struct kvm_clear_dirty_log clear = { .slot = slot, .first_page = first * 64, .num_pages = (uint32_t)(end - first * 64), .dirty_bitmap = bits + first };
    if (ioctl(vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0) die("KVM_CLEAR_DIRTY_LOG");
}

static void get_log(uint32_t slot, uint64_t *bits)
{
    struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bits };
    if (ioctl(vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) die("KVM_GET_DIRTY_LOG");
}

static void harvest(void)
{
    if (mode == BITMAP || mode == CLEAR) {
        get_log(0, low_bits);
        if (mode == CLEAR) clear_range(0, LOW_BYTES >> 12, low_bits, LOW_WORDS);
        get_log(1, high_bits);
        if (mode == CLEAR) clear_range(1, HIGH_BYTES >> 12, high_bits, HIGH_WORDS);
        return;
    }
    memset(low_bits, 0, sizeof low_bits);
    memset(high_bits, 0, sizeof high_bits);
    int taken = 0;
    for (;;) {
        struct kvm_dirty_gfn *entry = &ring[ring_fetch & (RING_ENTRIES - 1)];
        uint32_t flags = __atomic_load_n(&entry->flags, __ATOMIC_ACQUIRE);
        if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) break;
        uint64_t *bits = entry->slot == 0 ? low_bits : high_bits;
        bits[entry->offset >> 6] |= 1ull << (entry->offset & 63);
        __atomic_store_n(&entry->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
        ring_fetch++;
        taken++;
    }
    if (taken && ioctl(vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0) die("KVM_RESET_DIRTY_RINGS");
}

static long count_bits(void)
{
    long n = 0;
    for (size_t i = 0; i < LOW_WORDS; i++) n += __builtin_popcountll(low_bits[i]);
    for (size_t i = 0; i < HIGH_WORDS; i++) n += __builtin_popcountll(high_bits[i]);
    return n;
}

/* As KvmSharp: VirtualMachine creates the RAM slot, then the benchmark turns logging on (FLAGS_ONLY). */
static void set_slot(uint32_t slot, uint64_t gpa, uint64_t size, uint8_t *host)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot, .flags = 0, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    region.flags = KVM_MEM_LOG_DIRTY_PAGES;
    if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION (log)");
    if (mode == CLEAR) {
        uint64_t pages = size >> 12, words = (pages + 63) / 64;
        uint64_t *all = malloc(words * 8);
        if (!all) die("malloc");
        memset(all, 0xFF, words * 8);
        clear_range(slot, pages, all, words);
        free(all);
    }
}

static void put64(uint8_t *ram, uint64_t gpa, uint64_t value) { memcpy(ram + gpa, &value, 8); }

static int compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Private anonymous memory trimmed to a 2 MiB-aligned window and advised for transparent huge pages. */
/* NAME_min= and NAME= (median) of times[1..rounds] (round 0 is not counted); sorts them. */
static void print_times(const char *name, uint64_t *times, int rounds)
{
    qsort(times + 1, (size_t)rounds, sizeof(uint64_t), compare);
    double median = rounds % 2 ? (double)times[1 + rounds / 2] : (times[rounds / 2] + times[rounds / 2 + 1]) / 2.0;
    printf("%s_min=%llu\n", name, (unsigned long long)times[1]);
    printf("%s=%.1f\n", name, median);
}

static uint8_t *map_guest_ram(uint64_t size)
{
    const uint64_t huge = 2UL << 20;
    uint8_t *raw = mmap(NULL, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) die("mmap guest RAM");
    uint8_t *start = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (start > raw) munmap(raw, (size_t)(start - raw));
    uint8_t *end = raw + size + huge;
    if (end > start + size) munmap(start + size, (size_t)(end - (start + size)));
    madvise(start, size, MADV_HUGEPAGE); /* advice only, as in KvmSharp */
    return start;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s bitmap|clear|ring GUEST.bin ROUNDS\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "bitmap")) mode = BITMAP;
    else if (!strcmp(argv[1], "clear")) mode = CLEAR;
    else if (!strcmp(argv[1], "ring")) mode = RING;
    else { fprintf(stderr, "dirty_harvest: MODE must be bitmap, clear or ring, not '%s'\n", argv[1]); return 2; }
    int rounds = atoi(argv[3]);
    if (rounds < 1) { fprintf(stderr, "dirty_harvest: ROUNDS must be >= 1\n"); return 2; }

    /* Guest RAM as GuestMemoryRegion.CreateAnonymous maps it: private, 2 MiB aligned, MADV_HUGEPAGE.
     * (Backing decides how the kernel write-protects and faults pages, so it must match.) */
    uint8_t *low = map_guest_ram(LOW_BYTES);
    uint8_t *high = map_guest_ram(HIGH_BYTES);
    FILE *f = fopen(argv[2], "rb");
    if (!f) die(argv[2]);
    size_t len = fread(low + LOAD_ADDRESS, 1, 0x10000, f);
    fclose(f);
    if (len == 0) { fprintf(stderr, "dirty_harvest: %s is empty\n", argv[2]); return 1; }

    /* GDT (LongModeSetup + the user segments of DirtyBenchGuest), its pointer, and the identity map
     * with U, accessed and dirty bits, plus the 4-5 GiB directory. */
    const uint64_t gdt[8] = { 0, 0x00AF9B000000FFFFull, 0x00CF93000000FFFFull, 0x00008B0000000067ull, 0,
                              0x00CF9B000000FFFFull, 0x00CFF3000000FFFFull, 0x00AFFB000000FFFFull };
    memcpy(low + GDT_ADDRESS, gdt, sizeof gdt);
    uint16_t limit = sizeof gdt - 1;
    memcpy(low + GDT_POINTER, &limit, 2);
    put64(low, GDT_POINTER + 2, GDT_ADDRESS);
    const uint64_t table = 0x1 | 0x2 | 0x4 | 0x20, large = table | 0x80 | 0x40;
    put64(low, PML4_ADDRESS, PDPT_ADDRESS | table);
    for (uint64_t i = 0; i < 4; i++) put64(low, PDPT_ADDRESS + i * 8, (PD_ADDRESS + i * 4096) | table);
    put64(low, PDPT_ADDRESS + 4 * 8, HIGH_PD | table);
    for (uint64_t i = 0; i < 2048; i++) put64(low, PD_ADDRESS + i * 8, (i << 21) | large);
    for (uint64_t i = 0; i < 512; i++) put64(low, HIGH_PD + i * 8, (HIGH_BASE + (i << 21)) | large);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm (run as root)");
    vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm_fd < 0) die("KVM_CREATE_VM");
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 && ioctl(vm_fd, KVM_SET_TSS_ADDR, TSS_ADDRESS) < 0) die("KVM_SET_TSS_ADDR");
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        uint64_t idmap = IDMAP_ADDRESS;
        if (ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    }
    if (mode == CLEAR) {
        struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET } };
        if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0) die("KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)");
    }
    if (mode == RING) {
        uint32_t which = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0 ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
        struct kvm_enable_cap cap = { .cap = which, .args = { RING_ENTRIES * sizeof(struct kvm_dirty_gfn) } };
        if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0) die("KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING)");
    }
    set_slot(0, 0, LOW_BYTES, low);
    set_slot(1, HIGH_BASE, HIGH_BYTES, high);

    int vcpu = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    if (mode == RING) {
        ring = mmap(NULL, RING_ENTRIES * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu,
                    (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
        if (ring == MAP_FAILED) die("mmap dirty ring");
    }

    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) die("calloc");
    cpuid->nent = nent;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");

    /* LongModeSetup.Enter. */
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    struct kvm_segment code = { .base = 0, .limit = 0xFFFFFFFF, .selector = 0x08, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1 };
    struct kvm_segment data = { .base = 0, .limit = 0xFFFFFFFF, .selector = 0x10, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = 0x18, .type = 11, .present = 1 };
    sregs.gdt.base = GDT_ADDRESS;
    sregs.gdt.limit = 6 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = PML4_ADDRESS;
    sregs.cr4 = 0x20 | 0x200 | 0x400;
    sregs.cr0 = 0x80050033;
    sregs.efer = 0x501;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = LOAD_ADDRESS, .rsp = PML4_ADDRESS - 16, .rbp = PML4_ADDRESS - 16, .rflags = 2,
                             .rdi = LOW_BYTES + HIGH_BYTES, .rsi = 0, .rdx = 1 };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

    uint64_t *times = calloc((size_t)rounds + 1, sizeof(uint64_t));
    uint64_t *cpu_times = calloc((size_t)rounds + 1, sizeof(uint64_t));
    if (!times || !cpu_times) die("calloc");
    for (int round = 0; round <= rounds;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("KVM_RUN");
        }
        if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write && run->mmio.phys_addr == SIGNAL_ADDRESS) {
            uint64_t t0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
            harvest();
            cpu_times[round] = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
            times[round] = clock_ns(CLOCK_MONOTONIC) - t0;
            long pages = count_bits();
            if (round > 0 && pages != DIRTY_PAGES) {
                fprintf(stderr, "dirty_harvest: round %d: the harvest reported %ld dirty pages, the guest wrote %d\n", round, pages, DIRTY_PAGES);
                return 1;
            }
            round++;
            continue;
        }
        if (run->exit_reason == KVM_EXIT_DIRTY_RING_FULL) { harvest(); continue; }
        if (run->exit_reason == KVM_EXIT_INTR) continue;
        fprintf(stderr, "dirty_harvest: unexpected exit reason %u\n", run->exit_reason);
        return 1;
    }

    printf("rounds=%d\n", rounds);
    printf("dirty_pages=%d\n", DIRTY_PAGES);
    print_times("harvest_ns", times, rounds);
    print_times("harvest_cpu_ns", cpu_times, rounds);
    return 0;
}
