/*
 * Guest side of tests/testbed/vsock-tests.sh (built with gcc -static, put in an initrd layer, run by
 * the guest's init through kvmsharp.run=). Over AF_VSOCK:
 *   port 5000  echo server: every connection, concurrently (a process each), gets its bytes back;
 *              the guest shuts down its sending side once the host has shut down its own.
 *   port 5001  abrupt server: reads one byte, then closes with the host's data unread.
 *   port 5002  quit: the host's last connection; the program ends and init powers off.
 * Guest-initiated, to the host (CID 2): port 6000 gets MIB MiB of the stream seeded SEED_GUEST while
 * the host's MIB MiB (seed SEED_HOST) are read back and compared byte for byte; port 6001 gets 1 MiB
 * and an abrupt close. Results as KVMSHARP-VSOCK-* lines on stdout (the console).
 *
 *   vsock-guest [MIB]   (default 64)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define SEED_GUEST 0x5EED0001u
#define SEED_HOST 0x5EED0002u
#define CHUNK 65536

/* The test stream: xorshift64 words, little-endian, byte by byte (the host's VsockCheck makes the same). */
struct stream {
    uint64_t state, word;
    int used;
};

static void stream_init(struct stream *s, uint64_t seed) { s->state = seed; s->used = 8; }

static void stream_fill(struct stream *s, unsigned char *buffer, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        if (s->used == 8) {
            uint64_t x = s->state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s->state = s->word = x;
            s->used = 0;
        }
        buffer[i] = (unsigned char)(s->word >> (8 * s->used++));
    }
}

static int listen_on(unsigned port)
{
    struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 128) != 0) {
        printf("KVMSHARP-VSOCK-ERROR=listen %u: %s\n", port, strerror(errno));
        fflush(stdout);
        exit(1);
    }
    return fd;
}

static int connect_host(unsigned port)
{
    struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = port };
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int write_all(int fd, const unsigned char *data, size_t length)
{
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

static void echo_connection(int fd)
{
    static unsigned char buffer[CHUNK];
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (write_all(fd, buffer, (size_t)n) != 0)
            break;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    _exit(0);
}

/* A server in its own process: each accepted connection is handled by handler in a child. */
static pid_t serve(unsigned port, void (*handler)(int))
{
    int listener = listen_on(port);
    pid_t pid = fork();
    if (pid != 0) {
        close(listener);
        return pid;
    }
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            _exit(1);
        }
        if (fork() == 0) {
            close(listener);
            handler(fd);
        }
        close(fd);
    }
}

static void abrupt_connection(int fd)
{
    unsigned char one;
    (void)!read(fd, &one, 1);
    close(fd); /* the host's bytes unread: the guest's stack resets the connection */
    _exit(0);
}

/* Port 6000: send MIB MiB (a child process writes) while reading the host's MIB MiB back; both checked by content. */
static void guest_to_host(unsigned long long bytes)
{
    int fd = -1;
    for (int attempt = 0; attempt < 50 && fd < 0; attempt++) {
        fd = connect_host(6000);
        if (fd < 0)
            usleep(200000);
    }
    if (fd < 0) {
        printf("KVMSHARP-VSOCK-OUT=connect-failed %s\n", strerror(errno));
        return;
    }
    pid_t writer = fork();
    if (writer == 0) {
        static unsigned char buffer[CHUNK];
        struct stream s;
        stream_init(&s, SEED_GUEST);
        for (unsigned long long done = 0; done < bytes;) {
            size_t n = bytes - done < CHUNK ? (size_t)(bytes - done) : CHUNK;
            stream_fill(&s, buffer, n);
            if (write_all(fd, buffer, n) != 0) {
                printf("KVMSHARP-VSOCK-OUT-WRITE=failed after %llu bytes: %s\n", done, strerror(errno));
                fflush(stdout);
                _exit(1);
            }
            done += n;
        }
        shutdown(fd, SHUT_WR);
        _exit(0);
    }
    static unsigned char buffer[CHUNK], expected[CHUNK];
    struct stream s;
    stream_init(&s, SEED_HOST);
    unsigned long long received = 0, mismatches = 0;
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        stream_fill(&s, expected, (size_t)n);
        for (ssize_t i = 0; i < n; i++)
            mismatches += buffer[i] != expected[i];
        received += (unsigned long long)n;
    }
    int status = 0;
    waitpid(writer, &status, 0);
    close(fd);
    printf("KVMSHARP-VSOCK-OUT=sent %llu %s received %llu mismatches %llu\n", bytes,
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "FAILED", received, mismatches);
}

/* Port 6001: 1 MiB, then close without reading what the host sends. */
static void guest_abrupt_close(void)
{
    int fd = connect_host(6001);
    if (fd < 0) {
        printf("KVMSHARP-VSOCK-ABRUPT-OUT=connect-failed %s\n", strerror(errno));
        return;
    }
    static unsigned char buffer[1 << 20];
    memset(buffer, 0x5A, sizeof buffer);
    int wrote = write_all(fd, buffer, sizeof buffer);
    close(fd);
    printf("KVMSHARP-VSOCK-ABRUPT-OUT=%s\n", wrote == 0 ? "closed" : "write-failed");
}

int main(int argc, char **argv)
{
    unsigned long long mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 64;
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    pid_t echo = serve(5000, echo_connection);
    pid_t abrupt = serve(5001, abrupt_connection);
    int quit = listen_on(5002);
    printf("KVMSHARP-VSOCK-READY\n");
    fflush(stdout);

    guest_to_host(mib << 20);
    guest_abrupt_close();
    fflush(stdout);

    int fd;
    while ((fd = accept(quit, NULL, NULL)) < 0 && errno == EINTR)
        ;
    printf("KVMSHARP-VSOCK-DONE\n");
    fflush(stdout);
    if (fd >= 0)
        close(fd);
    kill(echo, SIGKILL);
    kill(abrupt, SIGKILL);
    return 0;
}
