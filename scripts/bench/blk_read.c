// Guest side of `scripts/bench.sh blk`: reads a block device with O_DIRECT (no guest page cache, so
// every read is a request to the virtio-blk device) and prints what it measured, one key=value a
// line. Built static by the bench script and put into an initrd layer; runs inside the VM.
//
//   blk_read DEV seq MIB BLOCK_KIB   sequential read of MIB MiB from offset 0 in BLOCK_KIB reads:
//                                    seq_bytes= seq_s= seq_mib_per_s=
//   blk_read DEV rand SECONDS SEED   4 KiB reads at random 4 KiB-aligned offsets over the whole
//                                    device, one at a time, for SECONDS: rand_ops= rand_s=
//                                    rand_us_per_op=
// Exit status 0 on success; 1 with a message on stderr when an open, ioctl or read fails or
// comes back short.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, const char *dev) {
    fprintf(stderr, "blk_read: %s %s: %s\n", what, dev, strerror(errno));
    return 1;
}

// xorshift64*: a fixed sequence for a given seed, so both VMMs read the same offsets.
static uint64_t next_random(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: blk_read DEV seq MIB BLOCK_KIB | blk_read DEV rand SECONDS SEED\n");
        return 2;
    }
    const char *dev = argv[1];
    int fd = open(dev, O_RDONLY | O_DIRECT);
    if (fd < 0) return fail("open O_DIRECT", dev);
    uint64_t device_bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &device_bytes) != 0) {
        // A regular file (a host-side trial run): its length.
        off_t end = lseek(fd, 0, SEEK_END);
        if (errno != ENOTTY || end < 0) return fail("BLKGETSIZE64", dev);
        device_bytes = (uint64_t)end;
    }

    if (strcmp(argv[2], "seq") == 0) {
        uint64_t total = strtoull(argv[3], NULL, 10) << 20;
        size_t block = (size_t)strtoul(argv[4], NULL, 10) << 10;
        if (block == 0 || total == 0 || total % block != 0 || total > device_bytes) {
            fprintf(stderr, "blk_read: MIB must be a multiple of BLOCK_KIB and fit the device (%llu bytes)\n",
                    (unsigned long long)device_bytes);
            return 2;
        }
        void *buf;
        if (posix_memalign(&buf, 4096, block) != 0) return fail("posix_memalign", dev);
        double start = now();
        for (uint64_t off = 0; off < total; off += block) {
            ssize_t n = pread(fd, buf, block, (off_t)off);
            if (n != (ssize_t)block) {
                if (n >= 0) errno = EIO;
                return fail("sequential pread", dev);
            }
        }
        double seconds = now() - start;
        printf("seq_bytes=%llu\nseq_s=%.6f\nseq_mib_per_s=%.1f\n", (unsigned long long)total, seconds,
               (double)total / 1048576.0 / seconds);
    } else if (strcmp(argv[2], "rand") == 0) {
        double limit = strtod(argv[3], NULL);
        uint64_t state = strtoull(argv[4], NULL, 10) | 1;
        uint64_t pages = device_bytes / 4096;
        if (limit <= 0 || pages == 0) {
            fprintf(stderr, "blk_read: SECONDS must be > 0 and the device at least 4 KiB\n");
            return 2;
        }
        void *buf;
        if (posix_memalign(&buf, 4096, 4096) != 0) return fail("posix_memalign", dev);
        uint64_t ops = 0;
        double start = now(), end;
        do {
            off_t off = (off_t)(next_random(&state) % pages) * 4096;
            ssize_t n = pread(fd, buf, 4096, off);
            if (n != 4096) {
                if (n >= 0) errno = EIO;
                return fail("random pread", dev);
            }
            ops++;
            end = now();
        } while (end - start < limit);
        printf("rand_ops=%llu\nrand_s=%.6f\nrand_us_per_op=%.2f\n", (unsigned long long)ops, end - start,
               (end - start) * 1e6 / (double)ops);
    } else {
        fprintf(stderr, "blk_read: mode must be seq or rand, not %s\n", argv[2]);
        return 2;
    }
    close(fd);
    return 0;
}
