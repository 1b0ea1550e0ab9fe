/* A page tracker in C for KvmSharp's tracker protocol (docs/tracker-protocol.md): proves the protocol
 * is not .NET-only. Connects, maps guest memory from the memfds of HELLO, subscribes, tracks a range of
 * gfns, then prints every event of the ring as `kvmsharp track` does and acks it.
 *
 *   tracker_client SOCKET FIRST_GFN PAGES sync|async [noack] [quiet] [stall=MS] [ring=BYTES] [deadline=MS] [spin=US]
 *
 * noack: never ack (a hung tracker: the VMM must detach it); stall=MS: sleep before reading events (to
 * overflow an asynchronous ring); quiet: count writes instead of printing them, print "writes=N" at the end
 * (the benchmark: a tracker whose work per event is trivial, as the in-process reference's). stderr gets "tracking ..." once the gfns are tracked, and "detached: ..."
 * at the end. Exit 0 when the VMM ended the session, 3 when it detached us for a missed deadline, 1 on errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { HELLO = 1, SUBSCRIBE = 2, ADD_GFNS = 3, REMOVE_GFNS = 4, REPLY = 5, DETACHED = 6 };
enum { KIND_PAD = 0, KIND_WRITE = 1, KIND_REMOVE_REGION = 2, KIND_GAP = 3 };

struct msg_header { uint32_t type, length; uint64_t id; };
struct region { uint64_t gpa, size, fd_offset; uint32_t fd_index; uint16_t as_id, flags; };

/* The ring header's fields (offsets from the start of the ring memfd). */
#define RING_MAGIC 0x31474E4952534B56ULL
#define OFF_DATA_BYTES 16
#define OFF_HEAD 64
#define OFF_GAP_PENDING 80
#define OFF_PRODUCER_WAITING 84
#define OFF_TAIL 128
#define OFF_ACKED_SEQ 136
#define OFF_CONSUMER_SLEEPING 144
#define RING_HEADER_BYTES 4096

struct record {
    uint32_t kind, size;
    uint64_t seq;
    int32_t vcpu;
    uint16_t as_id, source;
    uint32_t len, reserved;
    uint64_t gpa, aux;
    uint8_t bytes[];
};
_Static_assert(sizeof(struct record) == 48, "record header is 48 bytes");
_Static_assert(sizeof(struct msg_header) == 16, "message header is 16 bytes");
_Static_assert(sizeof(struct region) == 32, "region entry is 32 bytes");

static int sock;

static void die(const char *what) { fprintf(stderr, "tracker_client: %s: %s\n", what, strerror(errno)); exit(1); }

static void read_exactly(void *buffer, size_t length, int *fds, int *nfds)
{
    size_t got = 0;
    while (got < length) {
        char control[CMSG_SPACE(sizeof(int) * 16)];
        struct iovec iov = { (char *)buffer + got, length - got };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control };
        ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { fprintf(stderr, "detached: disconnected\n"); exit(0); }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && fds)
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) fds[(*nfds)++] = ((int *)CMSG_DATA(c))[i];
        got += (size_t)n;
    }
}

/* One message; its payload is malloc'ed (free it). */
static uint8_t *receive(struct msg_header *h, int *fds, int *nfds)
{
    if (nfds) *nfds = 0;
    read_exactly(h, sizeof *h, fds, nfds);
    uint8_t *payload = malloc(h->length + 1);
    if (h->length) read_exactly(payload, h->length, fds, nfds);
    payload[h->length] = 0;
    return payload;
}

static void send_message(uint32_t type, uint64_t id, const void *payload, uint32_t length)
{
    struct msg_header h = { type, length, id };
    if (write(sock, &h, sizeof h) != sizeof h || (length && write(sock, payload, length) != (ssize_t)length)) die("write");
}

static int32_t request(uint32_t type, uint64_t id, const void *payload, uint32_t length, int *fds, int *nfds)
{
    send_message(type, id, payload, length);
    struct msg_header h;
    uint8_t *reply = receive(&h, fds, nfds);
    if (h.type != REPLY || h.id != id) { fprintf(stderr, "tracker_client: expected reply %llu, got type %u\n", (unsigned long long)id, h.type); exit(1); }
    int32_t error;
    memcpy(&error, reply, 4);
    if (error) fprintf(stderr, "tracker_client: request %u refused: errno %d: %s\n", type, error, (char *)reply + 8);
    free(reply);
    return error;
}

static uint8_t *ring;
static uint64_t data_bytes;
static int doorbell, acks;

#define FIELD64(off) ((_Atomic uint64_t *)(ring + (off)))
#define FIELD32(off) ((_Atomic uint32_t *)(ring + (off)))

static int quiet;
static unsigned long long quiet_writes;

static void print_record(const struct record *r)
{
    if (quiet) {
        quiet_writes += r->kind == KIND_WRITE;
        return;
    }
    if (r->kind == KIND_WRITE) {
        printf("write seq=%llu vcpu=%d as=%u gpa=0x%llx len=%u bytes=", (unsigned long long)r->seq, r->vcpu, r->as_id, (unsigned long long)r->gpa, r->len);
        for (uint32_t i = 0; i < r->len; i++) printf("%02x", r->bytes[i]);
        printf(" source=%s\n", r->source == 1 ? "device" : "vcpu");
    } else if (r->kind == KIND_REMOVE_REGION) {
        printf("remove-region seq=%llu gfn=0x%llx pages=%llu\n", (unsigned long long)r->seq, (unsigned long long)r->gpa, (unsigned long long)r->aux);
    } else if (r->kind == KIND_GAP) {
        printf("gap seq=%llu lost=%llu\n", (unsigned long long)r->seq, (unsigned long long)r->aux);
    }
    fflush(stdout);
}

/* Every record published so far; acks each after printing it. */
static void drain(uint64_t *tail)
{
    uint64_t head = atomic_load_explicit(FIELD64(OFF_HEAD), memory_order_acquire);
    while (*tail != head) {
        const struct record *r = (const struct record *)(ring + RING_HEADER_BYTES + (*tail & (data_bytes - 1)));
        uint32_t size = r->size;
        if (r->kind != KIND_PAD) print_record(r);
        *tail += size;
        atomic_store_explicit(FIELD64(OFF_TAIL), *tail, memory_order_release);
        if (r->kind != KIND_PAD) atomic_store_explicit(FIELD64(OFF_ACKED_SEQ), r->seq, memory_order_release);
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load(FIELD32(OFF_PRODUCER_WAITING)) || atomic_load(FIELD32(OFF_GAP_PENDING))) {
            uint64_t one = 1;
            if (write(acks, &one, 8) != 8) die("write acks");
        }
        if (*tail == head) head = atomic_load_explicit(FIELD64(OFF_HEAD), memory_order_acquire);
    }
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 5) { fprintf(stderr, "usage: tracker_client SOCKET FIRST_GFN PAGES sync|async [noack] [quiet] [stall=MS] [ring=BYTES] [deadline=MS] [spin=US]\n"); return 2; }
    uint64_t first = strtoull(argv[2], NULL, 0), pages = strtoull(argv[3], NULL, 0);
    uint32_t synchronous = strcmp(argv[4], "sync") == 0, ring_bytes = 0, deadline = 0;
    int noack = 0, stall_ms = 0;
    uint64_t spin_ns = 200000;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "noack") == 0) noack = 1;
        else if (strcmp(argv[i], "quiet") == 0) quiet = 1;
        else if (strncmp(argv[i], "stall=", 6) == 0) stall_ms = atoi(argv[i] + 6);
        else if (strncmp(argv[i], "ring=", 5) == 0) ring_bytes = (uint32_t)strtoul(argv[i] + 5, NULL, 0);
        else if (strncmp(argv[i], "deadline=", 9) == 0) deadline = (uint32_t)strtoul(argv[i] + 9, NULL, 0);
        else if (strncmp(argv[i], "spin=", 5) == 0) spin_ns = strtoull(argv[i] + 5, NULL, 0) * 1000;
    }

    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    if (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) die("connect");

    /* HELLO: the guest memory table and one memfd per backing region. */
    struct msg_header h;
    int fds[16], nfds;
    uint8_t *hello = receive(&h, fds, &nfds);
    if (h.type != HELLO) { fprintf(stderr, "tracker_client: expected HELLO, got %u: %s\n", h.type, (char *)hello + 8); return 1; }
    uint32_t version, page_size, count, fd_count;
    memcpy(&version, hello, 4); memcpy(&page_size, hello + 4, 4); memcpy(&count, hello + 8, 4); memcpy(&fd_count, hello + 12, 4);
    if (version != 1 || (int)fd_count != nfds) { fprintf(stderr, "tracker_client: version %u, %u memfds announced, %d received\n", version, fd_count, nfds); return 1; }
    struct region *regions = (struct region *)(hello + 16);
    /* Map each region: the tracker can read what the guest wrote. */
    uint8_t **maps = calloc(count, sizeof *maps);
    for (uint32_t i = 0; i < count; i++) {
        maps[i] = mmap(NULL, regions[i].size, PROT_READ, MAP_SHARED, fds[regions[i].fd_index], (off_t)regions[i].fd_offset);
        if (maps[i] == MAP_FAILED) die("mmap guest memory");
    }

    uint32_t subscribe[4] = { synchronous, deadline, ring_bytes, 0 };
    int ring_fds[16], ring_nfds;
    if (request(SUBSCRIBE, 1, subscribe, sizeof subscribe, ring_fds, &ring_nfds) != 0) return 1;
    if (ring_nfds != 3) { fprintf(stderr, "tracker_client: SUBSCRIBE's reply carried %d descriptors\n", ring_nfds); return 1; }
    off_t ring_size = lseek(ring_fds[0], 0, SEEK_END);
    ring = mmap(NULL, (size_t)ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fds[0], 0);
    if (ring == MAP_FAILED) die("mmap ring");
    if (*(uint64_t *)ring != RING_MAGIC) { fprintf(stderr, "tracker_client: bad ring magic\n"); return 1; }
    data_bytes = *(uint64_t *)(ring + OFF_DATA_BYTES);
    doorbell = ring_fds[1];
    acks = ring_fds[2];

    struct { uint32_t mode, count; uint64_t first, pages; } __attribute__((packed)) add = { 1 /* trap writes */, 1, first, pages };
    if (request(ADD_GFNS, 2, &add, sizeof add, NULL, NULL) != 0) return 1;
    /* Guest memory is readable now: show the first tracked qword as the tracker sees it. */
    uint64_t probe = 0;
    for (uint32_t i = 0; i < count; i++)
        if (regions[i].as_id == 0 && first * page_size >= regions[i].gpa && first * page_size + 8 <= regions[i].gpa + regions[i].size)
            memcpy(&probe, maps[i] + (first * page_size - regions[i].gpa), 8);
    fprintf(stderr, "tracking gfn 0x%llx + %llu (%s), first qword 0x%llx\n", (unsigned long long)first, (unsigned long long)pages,
            synchronous ? "synchronous" : "asynchronous", (unsigned long long)probe);

    if (stall_ms) usleep((useconds_t)stall_ms * 1000);
    uint64_t tail = atomic_load(FIELD64(OFF_TAIL)), idle_since = now_ns();
    for (;;) {
        if (!noack) {
            uint64_t head = atomic_load_explicit(FIELD64(OFF_HEAD), memory_order_acquire);
            if (head != tail) { drain(&tail); idle_since = now_ns(); continue; }
            if (now_ns() - idle_since < spin_ns) { __builtin_ia32_pause(); continue; }
            atomic_store(FIELD32(OFF_CONSUMER_SLEEPING), 1);
            atomic_thread_fence(memory_order_seq_cst);
            if (atomic_load(FIELD64(OFF_HEAD)) != tail) { atomic_store(FIELD32(OFF_CONSUMER_SLEEPING), 0); continue; }
        }
        struct pollfd wanted[2] = { { sock, POLLIN, 0 }, { doorbell, POLLIN, 0 } };
        poll(wanted, noack ? 1 : 2, 200);
        atomic_store(FIELD32(OFF_CONSUMER_SLEEPING), 0);
        if (wanted[1].revents) { uint64_t c; if (read(doorbell, &c, 8) < 0 && errno != EAGAIN) die("read doorbell"); }
        if (wanted[0].revents) {
            uint8_t *message = receive(&h, NULL, NULL);
            if (h.type == DETACHED) {
                int32_t error;
                memcpy(&error, message, 4);
                if (!noack) drain(&tail);
                if (quiet) printf("writes=%llu\n", quiet_writes);
                fprintf(stderr, "detached: %s\n", (char *)message + 8);
                return error == ETIMEDOUT ? 3 : 0;
            }
            free(message);
        }
        idle_since = now_ns();
    }
}
