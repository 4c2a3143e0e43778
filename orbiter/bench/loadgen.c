/* orbiter bench load generator: many subscriber connections and a publisher
 * on one epoll loop, on one core.
 *
 * Compiled by orbiter/bench/native.py with the machine's gcc at first use.
 * Driven by orbiter/bench/runner.py through a config file and stdin/stdout:
 *
 *   loadgen CONFIG          prints "READY <ok> <failed>" when every subscriber is
 *                           connected and subscribed, waits for "GO" on stdin,
 *                           publishes, prints "P <published> <unique> <dup>" every
 *                           200 ms, then "DONE" and one JSON object with the results.
 *
 * Subscribers ("ws", "sse" or "lp" config lines): WebSocket (plain, SockJS or
 * Engine.IO v4 framing, see enum framing), SSE (chunked or not), or orbiter's
 * long polls (see "long poll" below). The publisher speaks HTTP/1.1 (pipelined
 * POSTs) or WebSocket, to the subscribers' host and port or to its own
 * ("pub_host", "pub_port").
 *
 * Every published payload holds a marker "#B<seq>.<usec>#": the publication's
 * sequence number and its send time (scheduled time in rate mode) in
 * microseconds on this process's monotonic clock, so latency is receive time
 * minus that. Per connection a bitmap of seen sequence numbers tells unique
 * deliveries from duplicates; the driver compares with what it expected.
 *
 * Every WebSocket handshake (subscribers' and the publisher's) sends a fresh
 * random Sec-WebSocket-Key and is checked as a browser checks it (RFC 6455
 * section 4.1, see ws_handshake_problem): a subscriber whose answer fails is
 * counted as failed and in "handshake_errors", never as connected; a
 * publisher whose answer fails ends the run (exit 2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXLINE 65536
#define RBUF (1 << 20)
#define WINDOW_US 100000
#define MAX_WINDOWS 6000
#define HBUCKETS 4608
#define WBUCKETS 576

enum kind { K_WS, K_SSE, K_LP };
/* What a WebSocket subscriber's frames are wrapped in: plain (commands sent at
 * the 101), SockJS (commands sent, already as JSON arrays, once the "o" frame
 * arrives; "h" frames carry no marker and are ignored), Engine.IO v4 (commands
 * sent once the "0{...}" open packet arrives, not scanned; a ping "2" is
 * answered "3"; the subscriber is ready at the namespace's "40{...}" answer,
 * refused at "44{...}"; those are told by the frame's start, not by markers). */
enum framing { F_PLAIN, F_SOCKJS, F_EIO };
enum state { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSED };

typedef struct {
    int fd;
    int kind;
    int state;
    char *path;
    char **sends; /* frames to send once open */
    int nsends;
    int ready_need, ready_got;
    int ready;
    int failed;
    unsigned char *leftover; /* partial frame / line kept between reads */
    size_t nleft;
    /* sse chunked decoding */
    long chunk_left; /* -1: reading size line */
    int chunk_crlf;
    int chunked;
    char sz[32];
    int nsz;
    int framing;
    int opened; /* SockJS / Engine.IO: the open frame has arrived */
    /* long poll: the response being read, and where the next poll starts */
    unsigned char *in;
    size_t nin, capin;
    char lp_epoch[128];
    long lp_offset;
    uint8_t *seen;
    long unique, dup;
    int probed; /* a probe publication (see probe_subscriptions) has arrived */
    int channel; /* index in channels of what it subscribes to ("subscribes" line) */
    char ws_accept[29]; /* the Sec-WebSocket-Accept its handshake's key calls for */
} conn_t;

typedef struct {
    int fd;
    int state;
    char *out;
    size_t nout, offout, capout;
    unsigned char *in;
    size_t nin, capin;
    int inflight;
    int ready;
    char ws_accept[29];
} pubconn_t;

static conn_t *conns;
static int nconns, capconns;
static pubconn_t *pubs;
static int npubconns = 1;
static char host[256] = "127.0.0.1";
static int port = 8000;
static char pub_host[256] = ""; /* publisher's own host and port (default: the subscribers') */
static int pub_port = 0;
static long timeout_ms = 60000, settle_ms = 5000;
static long nmsgs = 0, expected = 0;
static double pub_rate = 0;
static int pub_depth = 1, pub_batch = 1, pub_ws = 0;
static char pub_path[4096] = "/api/publish";
static char pub_prefix[4096] = "", pub_item[4096] = "", pub_suffix[4096] = "", pub_sep[64] = ",";
static char pub_init[4096] = "";
static char pub_ack[256] = "\"result\"";
static char ready_marker[256] = "\"result\"";
static char fail_marker[256] = "\"error\"";
static char **channels;
static int nchannels, capchannels;
static int padding = 60;
static int max_connecting = 256;
/* Servers that subscribe a connection some time after its handshake, with
 * nothing telling the client when (Pushpin: its handler takes the origin's
 * GRIP subscribe ~60 ms after the 101): before READY, channels get probe
 * publications ("#PROBE#", no "#B" marker, so never counted) until every
 * ready subscriber has received one (see probe()). */
static int probe_subscriptions = 0;
#define PROBE_MARKER "#PROBE#"

static uint64_t t0;
static long long hist[HBUCKETS];
static uint32_t (*whist)[WBUCKETS];
static long wcount[MAX_WINDOWS];
static long wmax[MAX_WINDOWS];
static long nwindows;
static long pub_reconnects, pub_connects;
static long lp_polls, lp_unrecoverable, lp_errors;
static long churn_ms, churn_cycles, churn_failures;
static int churning;
static long total_unique, total_dup, total_bad, pub_sent, pub_acked, pub_errors;
static long handshake_errors; /* WebSocket handshakes answered wrongly (ws_handshake_problem) */
static long lat_max;
static uint64_t first_send_us, last_recv_us, last_pub_us;
static int epfd;

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + ts.tv_nsec / 1000 - t0;
}

static void die(const char *m) {
    fprintf(stderr, "loadgen: %s: %s\n", m, strerror(errno));
    exit(2);
}

static int msb(uint64_t v) { return 63 - __builtin_clzll(v); }

static int hidx(uint64_t v) {
    if (v < 256) return (int)v;
    int e = msb(v), shift = e - 7;
    int i = 256 + (e - 8) * 128 + (int)((v >> shift) - 128);
    return i < HBUCKETS ? i : HBUCKETS - 1;
}
static uint64_t hlow(int i) {
    if (i < 256) return i;
    int e = (i - 256) / 128 + 8, m = (i - 256) % 128 + 128;
    return (uint64_t)m << (e - 7);
}
static int widx(uint64_t v) {
    if (v < 32) return (int)v;
    int e = msb(v), shift = e - 4;
    int i = 32 + (e - 5) * 16 + (int)((v >> shift) - 16);
    return i < WBUCKETS ? i : WBUCKETS - 1;
}
static uint64_t wlow(int i) {
    if (i < 32) return i;
    int e = (i - 32) / 16 + 5, m = (i - 32) % 16 + 16;
    return (uint64_t)m << (e - 4);
}

static void record(conn_t *c, long seq, uint64_t sent, uint64_t now) {
    if (seq < 0 || seq >= nmsgs) {
        total_bad++;
        return;
    }
    if (c->seen[seq >> 3] & (1 << (seq & 7))) {
        c->dup++;
        total_dup++;
        return;
    }
    c->seen[seq >> 3] |= (uint8_t)(1 << (seq & 7));
    c->unique++;
    total_unique++;
    uint64_t lat = now > sent ? now - sent : 0;
    hist[hidx(lat)]++;
    if ((long)lat > lat_max) lat_max = (long)lat;
    long w = (long)(now / WINDOW_US);
    if (w >= MAX_WINDOWS) w = MAX_WINDOWS - 1;
    if (w >= nwindows) nwindows = w + 1;
    wcount[w]++;
    whist[w][widx(lat)]++;
    if ((long)lat > wmax[w]) wmax[w] = (long)lat;
    last_recv_us = now;
}

/* Find every marker "#B<seq>.<usec>#" and every ready/fail marker in a message. */
static void scan(conn_t *c, const unsigned char *p, size_t n, uint64_t now) {
    const unsigned char *end = p + n, *q = p;
    while (q < end && (q = memmem(q, end - q, "#B", 2)) != NULL) {
        q += 2;
        long seq = 0, ts = 0;
        int ok = 0;
        while (q < end && *q >= '0' && *q <= '9') seq = seq * 10 + (*q++ - '0'), ok = 1;
        if (q >= end || *q != '.') continue;
        q++;
        while (q < end && *q >= '0' && *q <= '9') ts = ts * 10 + (*q++ - '0');
        if (ok && q < end && *q == '#') record(c, seq, (uint64_t)ts, now);
    }
    if (probe_subscriptions && !c->probed && memmem(p, n, PROBE_MARKER, strlen(PROBE_MARKER)))
        c->probed = 1;
    if (!c->ready) {
        size_t rl = strlen(ready_marker), fl = strlen(fail_marker);
        for (q = p; rl && q < end && (q = memmem(q, end - q, ready_marker, rl)); q += rl)
            c->ready_got++;
        if (fl && memmem(p, n, fail_marker, fl)) {
            c->failed = 1;
            fprintf(stderr, "loadgen: subscriber %s refused: %.*s\n", c->path, (int)(n > 300 ? 300 : n), p);
        }
        if (c->ready_got >= c->ready_need) c->ready = 1;
    }
}

static void put_u32be(unsigned char *b, uint32_t v) {
    b[0] = v >> 24, b[1] = v >> 16, b[2] = v >> 8, b[3] = v;
}

/* A masked client frame (mask 0: XOR is a no-op, which RFC 6455 allows). */
static size_t ws_frame(unsigned char *out, int opcode, const char *data, size_t n) {
    size_t h = 0;
    out[h++] = 0x80 | opcode;
    if (n < 126) {
        out[h++] = 0x80 | n;
    } else if (n < 65536) {
        out[h++] = 0x80 | 126, out[h++] = n >> 8, out[h++] = n & 255;
    } else {
        out[h++] = 0x80 | 127;
        memset(out + h, 0, 4), h += 4;
        put_u32be(out + h, (uint32_t)n), h += 4;
    }
    memset(out + h, 0, 4), h += 4;
    memcpy(out + h, data, n);
    return h + n;
}

static void add_fd(int fd, uint64_t tag, uint32_t events);

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = {fd, POLLOUT, 0};
                poll(&pfd, 1, 1000);
                continue;
            }
            return -1;
        }
        p += w, n -= w;
    }
    return 0;
}

static int open_socket_to(const char *h, int p) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(p);
    if (inet_pton(AF_INET, h, &a.sin_addr) != 1) {
        fprintf(stderr, "loadgen: host %s is not an IPv4 address\n", h);
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
    return fd;
}

static int open_socket(void) { return open_socket_to(host, port); }
static int open_pub_socket(void) { return open_socket_to(pub_host, pub_port); }

/* ------------------------------------------------------ WebSocket handshake
 *
 * RFC 6455 section 4.1: the client sends a random 16-byte nonce, base64, as
 * Sec-WebSocket-Key; the server must answer 101, "Upgrade: websocket",
 * "Connection: Upgrade" and Sec-WebSocket-Accept = base64(SHA-1(key + GUID)).
 * A browser refuses anything else, and so does this load generator, or a
 * server that gets it wrong would be measured as if it worked. SHA-1 is
 * written out here: the build is plain gcc and libc (native.py). */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 section 1.3 */

static uint32_t rol32(uint32_t x, int n) { return x << n | x >> (32 - n); }

/* FIPS 180-4 SHA-1 of m[0..n). */
static void sha1(const unsigned char *m, size_t n, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t nblocks = (n + 9 + 63) / 64; /* the message, 0x80, the 64-bit bit length */
    for (size_t b = 0; b < nblocks; b++) {
        unsigned char blk[64];
        for (int i = 0; i < 64; i++) {
            size_t at = b * 64 + i;
            blk[i] = at < n ? m[at] : at == n ? 0x80 : 0;
        }
        if (b == nblocks - 1)
            for (int i = 0; i < 8; i++) blk[63 - i] = (unsigned char)(((uint64_t)n * 8) >> (8 * i));
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 | (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (bb & c) | (~bb & d), k = 0x5A827999;
            else if (i < 40) f = bb ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (bb & c) | (bb & d) | (c & d), k = 0x8F1BBCDC;
            else f = bb ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol32(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol32(bb, 30), bb = a, a = t;
        }
        h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 5; i++) put_u32be(out + 4 * i, h[i]);
}

/* Standard base64 of p[0..n) into out (4 * ceil(n / 3) characters and a NUL). */
static void base64(const unsigned char *p, size_t n, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *out++ = tab[v >> 18 & 63];
        *out++ = tab[v >> 12 & 63];
        *out++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *out++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *out = 0;
}

/* A fresh Sec-WebSocket-Key (16 random bytes, base64: 24 characters) into key,
 * and the Sec-WebSocket-Accept it calls for into accept (28 characters). */
static void ws_new_key(char key[25], char accept[29]) {
    static uint64_t state;
    if (!state && getrandom(&state, sizeof state, 0) != sizeof state) state = now_us() ^ (uint64_t)getpid() << 32;
    unsigned char nonce[16];
    for (int i = 0; i < 16; i += 8) { /* splitmix64 */
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        memcpy(nonce + i, &z, 8);
    }
    base64(nonce, 16, key);
    unsigned char text[24 + sizeof WS_GUID], digest[20];
    memcpy(text, key, 24);
    memcpy(text + 24, WS_GUID, sizeof WS_GUID - 1);
    sha1(text, 24 + sizeof WS_GUID - 1, digest);
    base64(digest, 20, accept);
}

/* s[0..n) without the blanks around it, compared with lit ignoring ASCII case. */
static int equals_nocase(const char *s, size_t n, const char *lit) {
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return n == strlen(lit) && !strncasecmp(s, lit, n);
}

/* Why the answer head[0..n) (its status line and header lines, up to the blank
 * line) does not open the WebSocket whose key called for ``accept``: NULL when
 * it does. What a browser requires (RFC 6455 section 4.1): status 101; every
 * Upgrade header "websocket" and at least one; a Connection header holding the
 * token "Upgrade"; exactly one Sec-WebSocket-Accept, equal to ``accept`` (base64
 * is case-sensitive: every character counts). */
static const char *ws_handshake_problem(const char *head, size_t n, const char *accept) {
    const char *end = head + n, *line = memmem(head, n, "\r\n", 2);
    if (n < 12 || memcmp(head, "HTTP/1.", 7) || memcmp(head + 8, " 101", 4) || (n > 12 && head[12] != ' ' && head[12] != '\r'))
        return "the status is not 101";
    int upgrade = 0, bad_upgrade = 0, connection = 0, naccept = 0, accept_ok = 0;
    while (line && line + 2 < end) {
        const char *ls = line + 2, *le = memmem(ls, end - ls, "\r\n", 2);
        if (!le) le = end;
        const char *colon = memchr(ls, ':', le - ls);
        if (colon) {
            const char *v = colon + 1;
            size_t nv = le - v, nn = colon - ls;
            if (equals_nocase(ls, nn, "upgrade")) {
                upgrade = 1;
                if (!equals_nocase(v, nv, "websocket")) bad_upgrade = 1;
            } else if (equals_nocase(ls, nn, "connection")) {
                for (const char *t = v; t < le;) { /* a comma-separated list of tokens */
                    const char *comma = memchr(t, ',', le - t);
                    const char *te = comma ? comma : le;
                    if (equals_nocase(t, te - t, "upgrade")) connection = 1;
                    t = te + 1;
                }
            } else if (equals_nocase(ls, nn, "sec-websocket-accept")) {
                naccept++;
                while (v < le && (*v == ' ' || *v == '\t')) v++, nv--;
                while (nv && (v[nv - 1] == ' ' || v[nv - 1] == '\t')) nv--;
                accept_ok = nv == 28 && !memcmp(v, accept, 28);
            }
        }
        line = le < end ? le : NULL;
    }
    if (!upgrade || bad_upgrade) return "no \"Upgrade: websocket\"";
    if (!connection) return "no \"Connection: Upgrade\"";
    if (naccept == 0) return "no Sec-WebSocket-Accept";
    if (naccept > 1) return "more than one Sec-WebSocket-Accept";
    if (!accept_ok) return "Sec-WebSocket-Accept is not base64(SHA-1(key + RFC 6455's GUID))";
    return NULL;
}

/* The request that opens ``path``: ws 1, a WebSocket handshake (a fresh key;
 * the accept it calls for goes to ``accept``); 2, a long poll; 0, SSE. */
static void send_request(int fd, const char *path, int ws, char accept[29]) {
    char req[8192], key[25];
    int n;
    if (ws == 1) {
        ws_new_key(key, accept);
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     path, host, port, key);
    }
    else if (ws == 2) /* a long poll: plain keep-alive GET */
        n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, host, port);
    else
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n", path, host,
                     port);
    if (write_all(fd, req, n) < 0) die("write request");
}

static long closed_before_ready;

/* This side ends the connection: one that was not ready yet has failed. */
static void conn_refuse(conn_t *c) {
    if (c->state == S_CLOSED) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = S_CLOSED;
    if (!c->ready) c->failed = 1;
}

static void conn_close(conn_t *c) {
    if (c->state == S_CLOSED) return;
    if (!c->ready && closed_before_ready++ < 3)
        fprintf(stderr, "loadgen: %s closed by the server before it was ready\n", c->path);
    conn_refuse(c);
}

static void keep(unsigned char **store, size_t *nstore, const unsigned char *p, size_t n) {
    *store = realloc(*store, n ? n : 1);
    memcpy(*store, p, n);
    *nstore = n;
}

/* The subscriber's configured commands, each as one text frame. */
static void send_commands(conn_t *c) {
    for (int i = 0; i < c->nsends; i++) {
        size_t len = strlen(c->sends[i]);
        unsigned char *out = malloc(len + 16);
        size_t m = ws_frame(out, 1, c->sends[i], len);
        write_all(c->fd, out, m);
        free(out);
    }
}

/* A SockJS or Engine.IO text frame: the open frame sends the commands; pings are answered. */
static int framed_message(conn_t *c, const unsigned char *d, size_t len) {
    if (c->framing == F_SOCKJS && !c->opened) {
        if (len == 1 && d[0] == 'o') {
            c->opened = 1;
            send_commands(c);
        }
        return 1;
    }
    if (c->framing == F_EIO) {
        if (!c->opened) {
            if (len >= 1 && d[0] == '0') {
                c->opened = 1;
                send_commands(c);
            }
            return 1;
        }
        if (len == 1 && d[0] == '2') {
            unsigned char out[16];
            size_t m = ws_frame(out, 1, "3", 1);
            write_all(c->fd, out, m);
            return 1;
        }
        if (!c->ready && len >= 2 && d[0] == '4' && (d[1] == '0' || d[1] == '4')) {
            if (d[1] == '0') {
                c->ready = 1;
            } else {
                c->failed = 1;
                fprintf(stderr, "loadgen: subscriber %s refused: %.*s\n", c->path, (int)(len > 300 ? 300 : len), d);
            }
            return 1;
        }
    }
    return 0;
}

/* Parse whole WebSocket frames from p[0..n); returns bytes consumed. */
static size_t ws_frames(conn_t *c, unsigned char *p, size_t n, uint64_t now) {
    size_t off = 0;
    while (n - off >= 2) {
        unsigned char *f = p + off;
        int op = f[0] & 15;
        uint64_t len = f[1] & 127;
        size_t h = 2;
        if (len == 126) {
            if (n - off < 4) break;
            len = (f[2] << 8) | f[3], h = 4;
        } else if (len == 127) {
            if (n - off < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
            h = 10;
        }
        if (f[1] & 128) h += 4;
        if (n - off < h + len) break;
        unsigned char *d = f + h;
        if (op == 1 || op == 2 || op == 0) {
            if (c->framing == F_PLAIN || !framed_message(c, d, len)) scan(c, d, len, now);
        } else if (op == 9) {
            unsigned char out[256];
            size_t m = ws_frame(out, 10, (const char *)d, len < 125 ? len : 125);
            write_all(c->fd, out, m);
        } else if (op == 8) {
            conn_close(c);
            return n;
        }
        off += h + len;
    }
    return off;
}

/* Decode a chunked (or plain) SSE body; scan it line by line. */
static void sse_body(conn_t *c, unsigned char *p, size_t n, uint64_t now) {
    static unsigned char dec[RBUF * 2];
    size_t nd = 0;
    if (c->nleft) memcpy(dec, c->leftover, c->nleft), nd = c->nleft, c->nleft = 0;
    size_t i = 0;
    if (!c->chunked) {
        memcpy(dec + nd, p, n), nd += n, i = n;
    }
    while (i < n) {
        if (c->chunk_crlf) {
            if (p[i] == '\n') c->chunk_crlf = 0;
            i++;
        } else if (c->chunk_left < 0) {
            /* size line: hex digits until LF */
            if (p[i] == '\n') {
                c->sz[c->nsz] = 0;
                c->chunk_left = strtol(c->sz, NULL, 16);
                c->nsz = 0;
                if (c->chunk_left == 0) {
                    conn_close(c);
                    return;
                }
            } else if (p[i] != '\r' && c->nsz < 30) {
                c->sz[c->nsz++] = p[i];
            }
            i++;
        } else {
            size_t take = n - i < (size_t)c->chunk_left ? n - i : (size_t)c->chunk_left;
            memcpy(dec + nd, p + i, take), nd += take, i += take;
            c->chunk_left -= take;
            if (c->chunk_left == 0) c->chunk_left = -1, c->chunk_crlf = 1;
        }
    }
    /* scan complete lines; keep the rest */
    unsigned char *last = NULL;
    for (size_t k = nd; k > 0; k--)
        if (dec[k - 1] == '\n') {
            last = dec + k;
            break;
        }
    if (!last) {
        keep(&c->leftover, &c->nleft, dec, nd);
        return;
    }
    scan(c, dec, last - dec, now);
    keep(&c->leftover, &c->nleft, last, dec + nd - last);
}

/* ----------------------------------------------------------------- long poll
 *
 * orbiter's GET /poll (docs/protocol.md, "Long polling"): the first request,
 * the configured path without "since", is answered at once with the channel's
 * position ({"channel":..,"epoch":E,"offset":N,...}); that makes the
 * subscriber ready, and it polls "PATH&since=N&epoch=E" at once. Every answer
 * is {"channel","epoch","offset","recoverable","publications":[...]} in that
 * key order: the position (before "publications") is where the next poll
 * starts, every marker in the body is counted, and "recoverable":false (what
 * was asked for is gone from history) is counted too. One request is in
 * flight per connection, on one keep-alive connection. Any answer but a 200,
 * or one without a position, ends the subscriber (reported as closed). */

static void lp_send(conn_t *c) {
    char path[8192], ep[3 * sizeof c->lp_epoch];
    size_t k = 0;
    for (const char *e = c->lp_epoch; *e; e++) {
        unsigned char ch = (unsigned char)*e;
        if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_')
            ep[k++] = ch;
        else
            k += sprintf(ep + k, "%%%02X", ch);
    }
    ep[k] = 0;
    if (c->lp_offset < 0)
        snprintf(path, sizeof path, "%s", c->path);
    else
        snprintf(path, sizeof path, "%s&since=%ld&epoch=%s", c->path, c->lp_offset, ep);
    send_request(c->fd, path, 2, NULL);
    lp_polls++;
}

static void lp_fail(conn_t *c, const char *why, const unsigned char *p, size_t n) {
    if (lp_errors++ < 3) fprintf(stderr, "loadgen: long poll %s %s: %.*s\n", c->path, why, (int)(n > 300 ? 300 : n), p);
    c->failed = !c->ready;
    conn_close(c);
}

/* The value of top-level key ``key`` (quoted) in p[0..n): past the colon and any blanks. */
static const unsigned char *json_value(const unsigned char *p, size_t n, const char *key) {
    size_t kl = strlen(key);
    const unsigned char *end = p + n, *q = memmem(p, n, key, kl);
    if (!q) return NULL;
    for (q += kl; q < end && (*q == ' ' || *q == ':'); q++) continue;
    return q < end ? q : NULL;
}

/* One whole answer (head and body): take the position, count the markers, poll again. */
static int lp_answer(conn_t *c, const unsigned char *head, size_t nhead, const unsigned char *body, size_t n, uint64_t now) {
    int status = 0;
    sscanf((const char *)head, "HTTP/1.%*d %d", &status);
    if (status != 200) {
        lp_fail(c, "answered", head, nhead);
        return 0;
    }
    const unsigned char *pubs = memmem(body, n, "\"publications\"", 14);
    size_t top = pubs ? (size_t)(pubs - body) : n;
    const unsigned char *o = json_value(body, top, "\"offset\"");
    const unsigned char *e = json_value(body, top, "\"epoch\"");
    const unsigned char *r = json_value(body, top, "\"recoverable\"");
    if (!o || *o < '0' || *o > '9' || !e || *e != '"') {
        lp_fail(c, "answer has no position", body, n);
        return 0;
    }
    c->lp_offset = strtol((const char *)o, NULL, 10);
    size_t k = 0;
    for (e++; e < body + top && *e != '"' && k < sizeof c->lp_epoch - 1; e++) c->lp_epoch[k++] = *e;
    c->lp_epoch[k] = 0;
    if (r && *r == 'f') lp_unrecoverable++;
    c->ready = 1;
    if (pubs) scan(c, pubs, body + n - pubs, now);
    lp_send(c);
    return 1;
}

static void lp_readable(conn_t *c) {
    for (;;) {
        if (c->capin - c->nin < 65536) c->capin = c->capin * 2 + 65536, c->in = realloc(c->in, c->capin);
        ssize_t r = read(c->fd, c->in + c->nin, c->capin - c->nin);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
            conn_close(c);
            return;
        }
        c->nin += r;
    }
    uint64_t now = now_us();
    size_t off = 0;
    while (off < c->nin) {
        unsigned char *s = c->in + off;
        size_t n = c->nin - off;
        unsigned char *e = memmem(s, n, "\r\n\r\n", 4);
        if (!e) break;
        size_t nhead = e + 4 - s;
        unsigned char *cl = memmem(s, nhead, "ontent-Length:", 14);
        if (!cl) cl = memmem(s, nhead, "ontent-length:", 14);
        if (!cl) {
            lp_fail(c, "answer has no Content-Length", s, nhead);
            return;
        }
        size_t len = (size_t)strtol((char *)cl + 14, NULL, 10);
        if (n < nhead + len) break;
        if (!lp_answer(c, s, nhead, s + nhead, len, now)) return;
        off += nhead + len;
    }
    memmove(c->in, c->in + off, c->nin - off);
    c->nin -= off;
}

static unsigned char rbuf[RBUF * 2];

static void on_readable(conn_t *c) {
    if (c->kind == K_LP) {
        lp_readable(c);
        return;
    }
    for (;;) {
        size_t have = 0;
        if (c->kind == K_WS || c->state == S_HANDSHAKE) {
            if (c->nleft) memcpy(rbuf, c->leftover, c->nleft), have = c->nleft;
        }
        ssize_t r = read(c->fd, rbuf + have, RBUF);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
            conn_close(c);
            return;
        }
        uint64_t now = now_us();
        size_t n = have + r, off = 0;
        if (c->kind == K_WS || c->state == S_HANDSHAKE) c->nleft = 0;
        if (c->state == S_HANDSHAKE) {
            unsigned char *e = memmem(rbuf, n, "\r\n\r\n", 4);
            if (!e) {
                keep(&c->leftover, &c->nleft, rbuf, n);
                continue;
            }
            if (c->kind == K_WS) {
                const char *problem = ws_handshake_problem((char *)rbuf, e - rbuf, c->ws_accept);
                if (problem) {
                    if (handshake_errors++ < 3)
                        fprintf(stderr, "loadgen: %s: WebSocket handshake refused: %s; the answer: %.*s\n", c->path,
                                problem, (int)(e - rbuf > 600 ? 600 : e - rbuf), rbuf);
                    conn_refuse(c);
                    return;
                }
            } else {
                int status = 0;
                sscanf((char *)rbuf, "HTTP/1.%*d %d", &status);
                if (status != 200) {
                    fprintf(stderr, "loadgen: %s answered %.*s\n", c->path, (int)(e - rbuf), rbuf);
                    conn_close(c);
                    return;
                }
            }
            c->chunked = memmem(rbuf, e - rbuf, "hunked", 6) != NULL;
            c->state = S_OPEN;
            if (c->ready_need == 0) c->ready = 1;
            if (c->framing == F_PLAIN) send_commands(c);
            off = e + 4 - rbuf;
        }
        if (c->kind == K_WS) {
            size_t used = ws_frames(c, rbuf + off, n - off, now);
            if (c->state == S_CLOSED) return;
            if (used < n - off) keep(&c->leftover, &c->nleft, rbuf + off + used, n - off - used);
        } else if (n > off) {
            sse_body(c, rbuf + off, n - off, now);
            if (c->state == S_CLOSED) return;
        }
    }
}

/* ----------------------------------------------------------------- publisher */

static void out_append(pubconn_t *p, const char *d, size_t n) {
    if (p->nout + n > p->capout) {
        p->capout = (p->nout + n) * 2;
        p->out = realloc(p->out, p->capout);
    }
    memcpy(p->out + p->nout, d, n);
    p->nout += n;
}

static void pub_flush(pubconn_t *p) {
    while (p->offout < p->nout) {
        ssize_t w = write(p->fd, p->out + p->offout, p->nout - p->offout);
        if (w < 0) {
            if (errno == EAGAIN) break;
            die("publisher write");
        }
        p->offout += w;
    }
    if (p->offout == p->nout) p->offout = p->nout = 0;
    struct epoll_event ev = {.events = EPOLLIN | (p->nout ? EPOLLOUT : 0), .data.u64 = (1ull << 32) | (p - pubs)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd, &ev);
}

/* Expand a template: @C channel, @P payload, @I command id. */
static size_t expand(char *dst, const char *tpl, const char *ch, const char *payload, long id) {
    char *d = dst;
    for (const char *s = tpl; *s; s++) {
        if (s[0] == '@' && s[1] == 'C') d = stpcpy(d, ch), s++;
        else if (s[0] == '@' && s[1] == 'P') d = stpcpy(d, payload), s++;
        else if (s[0] == '@' && s[1] == 'I') d += sprintf(d, "%ld", id), s++;
        else *d++ = *s;
    }
    *d = 0;
    return d - dst;
}

static long next_seq;

/* One publish request (HTTP POST to pub_path, or a WebSocket frame) carrying ``body``. */
static void send_body(pubconn_t *p, const char *channel, const char *body, size_t nb) {
    static char req[(4 << 20) + 16];
    if (pub_ws) {
        size_t m = ws_frame((unsigned char *)req, 1, body, nb);
        out_append(p, req, m);
    } else {
        char path[8192];
        expand(path, pub_path, channel, "", 0);
        int h = sprintf(req,
                        "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        path, pub_host, pub_port, nb);
        out_append(p, req, h);
        out_append(p, body, nb);
    }
}

static void publish_one(pubconn_t *p, uint64_t stamp) {
    static char body[4 << 20], item[65536], payload[8192];
    size_t nb = 0;
    nb = expand(body, pub_prefix, "", "", 0);
    int k;
    /* an item is at most the payload plus the template: stop well before the end */
    for (k = 0; k < pub_batch && next_seq < nmsgs && nb < sizeof body - 20000; k++) {
        long seq = next_seq++;
        int n = sprintf(payload, "#B%ld.%llu#", seq, (unsigned long long)stamp);
        memset(payload + n, 'x', padding), payload[n + padding] = 0;
        if (k) nb += sprintf(body + nb, "%s", pub_sep);
        size_t ni = expand(item, pub_item, channels[seq % nchannels], payload, seq + 1000);
        memcpy(body + nb, item, ni), nb += ni;
    }
    nb += expand(body + nb, pub_suffix, "", "", 0);
    send_body(p, channels[(next_seq - 1) % nchannels], body, nb);
    if (!first_send_us) first_send_us = now_us();
    p->inflight += pub_ws ? k : 1; /* native: one reply per command */
    pub_sent += k;
}

/* A publication on ``channel`` whose payload is the probe marker. */
static void probe_one(pubconn_t *p, const char *channel) {
    static char body[65536];
    size_t nb = expand(body, pub_prefix, "", "", 0);
    nb += expand(body + nb, pub_item, channel, PROBE_MARKER, 999);
    nb += expand(body + nb, pub_suffix, "", "", 0);
    send_body(p, channel, body, nb);
    p->inflight++;
}

/* Count complete HTTP responses (or WS acks) in the publisher's input. */
/* The publisher's connection ended: the server closed it (``announced``: after a
 * response saying "Connection: close", as Pushpin's control API does after
 * every request), or it went away. HTTP publishers connect again; what was
 * still in flight is lost and counted as errors. */
static void pub_reconnect(pubconn_t *p, int announced) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    if (pub_ws || (!announced && pub_reconnects >= 100)) {
        fprintf(stderr, "loadgen: publisher connection closed by the server\n");
        p->state = S_CLOSED;
        return;
    }
    if (announced) pub_connects++;
    else pub_reconnects++;
    pub_errors += p->inflight;
    p->inflight = 0, p->nin = 0, p->nout = p->offout = 0;
    p->fd = open_pub_socket();
    struct pollfd pfd = {p->fd, POLLOUT, 0};
    poll(&pfd, 1, 5000);
    add_fd(p->fd, (1ull << 32) | (p - pubs), EPOLLIN);
}

static void pub_readable(pubconn_t *p) {
    int eof = 0, closing = 0;
    for (;;) {
        if (p->capin - p->nin < 65536) p->capin = p->capin * 2 + 65536, p->in = realloc(p->in, p->capin);
        ssize_t r = read(p->fd, p->in + p->nin, p->capin - p->nin);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
            eof = 1;
            break;
        }
        p->nin += r;
    }
    size_t off = 0;
    if (p->state == S_HANDSHAKE) {
        unsigned char *e = memmem(p->in, p->nin, "\r\n\r\n", 4);
        if (!e) {
            if (eof) pub_reconnect(p, 0);
            return;
        }
        const char *problem = ws_handshake_problem((char *)p->in, e - p->in, p->ws_accept);
        if (problem) {
            fprintf(stderr, "loadgen: publisher's WebSocket handshake refused: %s; the answer: %.*s\n", problem,
                    (int)(e - p->in > 600 ? 600 : e - p->in), p->in);
            exit(2);
        }
        off = e + 4 - p->in;
        p->state = S_OPEN;
        if (*pub_init) {
            unsigned char f[8192];
            size_t m = ws_frame(f, 1, pub_init, strlen(pub_init));
            out_append(p, (char *)f, m);
        } else {
            p->ready = 1;
        }
    }
    for (;;) {
        unsigned char *s = p->in + off;
        size_t n = p->nin - off;
        if (pub_ws) {
            if (n < 2) break;
            uint64_t len = s[1] & 127;
            size_t h = 2;
            if (len == 126) {
                if (n < 4) break;
                len = (s[2] << 8) | s[3], h = 4;
            } else if (len == 127) {
                if (n < 10) break;
                len = 0;
                for (int i = 0; i < 8; i++) len = (len << 8) | s[2 + i];
                h = 10;
            }
            if (n < h + len) break;
            int op = s[0] & 15;
            if (op == 1 || op == 2) {
                const unsigned char *d = s + h, *q = d;
                size_t al = strlen(pub_ack);
                while ((q = memmem(q, d + len - q, pub_ack, al))) {
                    q += al;
                    if (!p->ready) {
                        p->ready = 1;
                        continue;
                    }
                    p->inflight--, pub_acked++;
                }
                if (memmem(d, len, "\"error\"", 7)) pub_errors++, p->inflight--;
            } else if (op == 9) {
                unsigned char f[256];
                size_t m = ws_frame(f, 10, (const char *)s + h, len < 125 ? len : 125);
                out_append(p, (char *)f, m);
            } else if (op == 8) {
                fprintf(stderr, "loadgen: publisher WebSocket closed by the server\n");
                exit(2);
            }
            off += h + len;
        } else {
            unsigned char *e = memmem(s, n, "\r\n\r\n", 4);
            if (!e) break;
            long cl = 0;
            unsigned char *c = memmem(s, e - s, "ontent-Length:", 14);
            if (!c) c = memmem(s, e - s, "ontent-length:", 14);
            if (c) cl = strtol((char *)c + 14, NULL, 10);
            size_t total = (e + 4 - s) + cl;
            if (n < total) break;
            int status = 0;
            sscanf((char *)s, "HTTP/1.%*d %d", &status);
            if (memmem(s, e - s, "onnection: close", 16) || memmem(s, e - s, "onnection: Close", 16)) closing = 1;
            if (status < 200 || status >= 300) {
                pub_errors++;
                if (pub_errors <= 3) fprintf(stderr, "loadgen: publish answered %.*s\n", (int)(total > 400 ? 400 : total), s);
            } else {
                pub_acked++;
            }
            p->inflight--;
            off += total;
        }
    }
    memmove(p->in, p->in + off, p->nin - off);
    p->nin -= off;
    if (eof || closing) pub_reconnect(p, closing);
}

/* ------------------------------------------------------------------ config */

static char *trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

static void load_config(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) die(file);
    static char line[MAXLINE];
    conn_t *cur = NULL;
    while (fgets(line, sizeof line, f)) {
        trim(line);
        char *sp = strchr(line, ' ');
        char *val = sp ? sp + 1 : line + strlen(line);
        if (sp) *sp = 0;
        if (!strcmp(line, "host")) snprintf(host, sizeof host, "%s", val);
        else if (!strcmp(line, "port")) port = atoi(val);
        else if (!strcmp(line, "pub_host")) snprintf(pub_host, sizeof pub_host, "%s", val);
        else if (!strcmp(line, "pub_port")) pub_port = atoi(val);
        else if (!strcmp(line, "timeout_ms")) timeout_ms = atol(val);
        else if (!strcmp(line, "settle_ms")) settle_ms = atol(val);
        else if (!strcmp(line, "churn_ms")) churn_ms = atol(val);
        else if (!strcmp(line, "nmsgs")) nmsgs = atol(val);
        else if (!strcmp(line, "expected")) expected = atol(val);
        else if (!strcmp(line, "padding")) padding = atoi(val) > 8000 ? 8000 : atoi(val);
        else if (!strcmp(line, "max_connecting")) max_connecting = atoi(val);
        else if (!strcmp(line, "probe_subscriptions")) probe_subscriptions = atoi(val);
        else if (!strcmp(line, "pub_rate")) pub_rate = atof(val);
        else if (!strcmp(line, "pub_depth")) pub_depth = atoi(val);
        else if (!strcmp(line, "pub_batch")) pub_batch = atoi(val);
        else if (!strcmp(line, "pub_conns")) npubconns = atoi(val);
        else if (!strcmp(line, "pub_ws")) pub_ws = atoi(val);
        else if (!strcmp(line, "pub_path")) snprintf(pub_path, sizeof pub_path, "%s", val);
        else if (!strcmp(line, "pub_prefix")) snprintf(pub_prefix, sizeof pub_prefix, "%s", val);
        else if (!strcmp(line, "pub_item")) snprintf(pub_item, sizeof pub_item, "%s", val);
        else if (!strcmp(line, "pub_suffix")) snprintf(pub_suffix, sizeof pub_suffix, "%s", val);
        else if (!strcmp(line, "pub_sep")) snprintf(pub_sep, sizeof pub_sep, "%s", strcmp(val, "\\n") ? val : "\n");
        else if (!strcmp(line, "pub_init")) snprintf(pub_init, sizeof pub_init, "%s", val);
        else if (!strcmp(line, "pub_ack")) snprintf(pub_ack, sizeof pub_ack, "%s", val);
        else if (!strcmp(line, "ready_marker")) snprintf(ready_marker, sizeof ready_marker, "%s", val);
        else if (!strcmp(line, "fail_marker")) snprintf(fail_marker, sizeof fail_marker, "%s", val);
        else if (!strcmp(line, "channel")) {
            if (nchannels == capchannels) capchannels = capchannels * 2 + 16, channels = realloc(channels, capchannels * sizeof *channels);
            channels[nchannels++] = strdup(val);
        } else if (!strcmp(line, "ws") || !strcmp(line, "sse") || !strcmp(line, "lp")) {
            if (nconns == capconns) capconns = capconns * 2 + 64, conns = realloc(conns, capconns * sizeof *conns);
            cur = &conns[nconns++];
            memset(cur, 0, sizeof *cur);
            cur->kind = line[0] == 'w' ? K_WS : line[0] == 's' ? K_SSE : K_LP;
            cur->path = strdup(val);
            cur->chunk_left = -1;
            cur->lp_offset = -1;
            cur->fd = -1;
        } else if (!strcmp(line, "framing") && cur) {
            if (!strcmp(val, "sockjs")) cur->framing = F_SOCKJS;
            else if (!strcmp(val, "eio")) cur->framing = F_EIO;
            else if (strcmp(val, "plain")) {
                fprintf(stderr, "loadgen: unknown framing %s\n", val);
                exit(2);
            }
        } else if (!strcmp(line, "send") && cur) {
            cur->sends = realloc(cur->sends, (cur->nsends + 1) * sizeof *cur->sends);
            cur->sends[cur->nsends++] = strdup(val);
        } else if (!strcmp(line, "ready") && cur) {
            cur->ready_need = atoi(val);
        } else if (!strcmp(line, "subscribes") && cur) {
            cur->channel = atoi(val);
        } else if (*line) {
            fprintf(stderr, "loadgen: unknown config line %s\n", line);
            exit(2);
        }
    }
    fclose(f);
    if (!*pub_host) snprintf(pub_host, sizeof pub_host, "%s", host);
    if (!pub_port) pub_port = port;
    if (nmsgs && !nchannels) {
        fprintf(stderr, "loadgen: nmsgs without channels\n");
        exit(2);
    }
    for (int i = 0; i < nconns; i++)
        if (conns[i].channel < 0 || (nchannels && conns[i].channel >= nchannels)) {
            fprintf(stderr, "loadgen: subscriber %d subscribes to channel %d of %d\n", i, conns[i].channel, nchannels);
            exit(2);
        }
}

static void dump_json(void) {
    printf("{\"publisher_reconnects\":%ld,\"publisher_connects\":%ld,\"churn_cycles\":%ld,\"churn_failures\":%ld,",
           pub_reconnects, pub_connects, churn_cycles, churn_failures);
    printf("\"polls\":%ld,\"polls_unrecoverable\":%ld,\"poll_errors\":%ld,", lp_polls, lp_unrecoverable, lp_errors);
    printf("\"handshake_errors\":%ld,", handshake_errors);
    printf("\"published\":%ld,\"acked\":%ld,\"publish_errors\":%ld,\"unique\":%ld,\"duplicates\":%ld,"
           "\"bad\":%ld,\"first_send_us\":%llu,\"last_pub_us\":%llu,\"last_recv_us\":%llu,\"latency_max_us\":%ld,",
           pub_sent, pub_acked, pub_errors, total_unique, total_dup, total_bad,
           (unsigned long long)first_send_us, (unsigned long long)last_pub_us,
           (unsigned long long)last_recv_us, lat_max);
    printf("\"histogram\":[");
    int first = 1;
    for (int i = 0; i < HBUCKETS; i++)
        if (hist[i]) {
            printf("%s[%llu,%llu,%lld]", first ? "" : ",", (unsigned long long)hlow(i),
                   (unsigned long long)hlow(i + 1), hist[i]);
            first = 0;
        }
    printf("],\"windows\":[");
    first = 1;
    for (long w = 0; w < nwindows; w++) {
        if (!wcount[w]) continue;
        long n50 = (wcount[w] + 1) / 2, n99 = (long)(wcount[w] * 0.99 + 0.999), acc = 0;
        uint64_t p50 = 0, p99 = 0;
        int got50 = 0;
        for (int i = 0; i < WBUCKETS; i++) {
            acc += whist[w][i];
            if (!got50 && acc >= n50) p50 = wlow(i + 1), got50 = 1;
            if (acc >= n99) {
                p99 = wlow(i + 1);
                break;
            }
        }
        if (p99 > (uint64_t)wmax[w]) p99 = wmax[w];
        if (p50 > (uint64_t)wmax[w]) p50 = wmax[w];
        printf("%s[%ld,%ld,%llu,%llu,%ld]", first ? "" : ",", w * WINDOW_US, wcount[w],
               (unsigned long long)p50, (unsigned long long)p99, wmax[w]);
        first = 0;
    }
    printf("],\"connections\":[");
    for (int i = 0; i < nconns; i++)
        printf("%s[%ld,%ld,%d]", i ? "," : "", conns[i].unique, conns[i].dup,
               conns[i].failed ? 2 : conns[i].state == S_CLOSED ? 1 : 0);
    printf("]}\n");
    fflush(stdout);
}

static void add_fd(int fd, uint64_t tag, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u64 = tag};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

static void recycle(uint64_t idx);

/* One epoll event on subscriber ``idx``: connect finished, or data. */
static void conn_event(uint64_t idx, uint32_t events) {
    conn_t *c = &conns[idx];
    if (c->state == S_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
            conn_close(c);
        } else {
            c->state = S_HANDSHAKE;
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = idx};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            if (c->kind == K_LP) {
                c->state = S_OPEN;
                lp_send(c);
            } else {
                send_request(c->fd, c->path, c->kind == K_WS, c->ws_accept);
            }
        }
    } else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        on_readable(c);
    }
    if (churning) recycle(idx);
}

/* Wait up to ``timeout_ms`` for events and serve them: publishers' answers, subscribers' data. */
static void serve_events(int timeout_ms) {
    struct epoll_event evs[1024];
    int n = epoll_wait(epfd, evs, 1024, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag >> 32) {
            pubconn_t *p = &pubs[tag & 0xffffffff];
            if (evs[i].events & EPOLLIN) pub_readable(p);
            if (p->state != S_CLOSED) pub_flush(p);
        } else {
            conn_event(tag, evs[i].events);
        }
    }
}

/* Rounds of probes (see probe_subscriptions) until every ready subscriber has
 * had one: each round probes the channels that have a ready subscriber still
 * waiting, once all of the previous round's probes are answered and at least
 * ``wait`` after it began; ``wait`` starts at 200 ms and doubles up to 3.2 s,
 * so a server slow to deliver is not flooded with probes. Then the
 * publisher's counters start from zero: the probes count nowhere in the report. */
static void probe(uint64_t deadline) {
    char *wanted = calloc(nchannels, 1);
    int next_channel = nchannels; /* nchannels: no round under way */
    uint64_t round_at = 0, wait = 200000;
    long rounds = 0;
    for (;;) {
        uint64_t now = now_us();
        long inflight = 0;
        for (int i = 0; i < npubconns; i++) inflight += pubs[i].inflight;
        int between = next_channel >= nchannels && inflight <= 0;
        if (between) {
            int waiting = 0;
            memset(wanted, 0, nchannels);
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                if (c->ready && !c->failed && c->state != S_CLOSED && !c->probed)
                    waiting++, wanted[c->channel] = 1;
            }
            if (!waiting) break;
            if (now > deadline) {
                fprintf(stderr, "loadgen: %d subscribers got no probe publication in %ld rounds\n", waiting, rounds);
                break;
            }
            if (now >= round_at) {
                next_channel = 0, round_at = now + wait, rounds++;
                if (wait < 3200000) wait *= 2;
            }
        } else if (now > deadline + 5000000) {
            fprintf(stderr, "loadgen: %ld probe publications still unanswered\n", inflight);
            break;
        }
        for (int i = 0; i < npubconns && next_channel < nchannels; i++) {
            pubconn_t *p = &pubs[i];
            if (!p->ready || p->state == S_CLOSED) continue;
            int sent = 0;
            for (; next_channel < nchannels && p->inflight < pub_depth; next_channel++)
                if (wanted[next_channel]) probe_one(p, channels[next_channel]), sent = 1;
            if (sent) pub_flush(p);
        }
        serve_events(10);
    }
    free(wanted);
    pub_acked = pub_errors = pub_connects = pub_reconnects = 0;
}

/* churn: a subscriber that is ready (or was refused) disconnects and connects again */
static void recycle(uint64_t idx) {
    conn_t *c = &conns[idx];
    if (c->ready || c->state == S_CLOSED) {
        if (c->ready) churn_cycles++;
        else churn_failures++;
        if (c->state != S_CLOSED) {
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
        }
        c->ready = c->ready_got = c->failed = c->opened = 0;
        c->nleft = 0, c->chunk_left = -1, c->chunk_crlf = 0, c->nsz = 0;
        c->nin = 0, c->lp_offset = -1;
        c->fd = open_socket();
        c->state = S_CONNECTING;
        add_fd(c->fd, idx, EPOLLIN | EPOLLOUT);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: loadgen CONFIG\n");
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (uint64_t)ts.tv_sec * 1000000u + ts.tv_nsec / 1000 - 1;
    load_config(argv[1]);
    whist = calloc(MAX_WINDOWS, sizeof *whist);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    epfd = epoll_create1(0);
    size_t bits = (size_t)(nmsgs + 7) / 8 + 1;
    for (int i = 0; i < nconns; i++) conns[i].seen = calloc(bits, 1);

    /* connect subscribers, at most max_connecting handshakes at a time */
    int next = 0, pending = 0, nready = 0, nfailed = 0;
    struct epoll_event evs[1024];
    uint64_t deadline = now_us() + timeout_ms * 1000;
    while (nready + nfailed < nconns) {
        while (next < nconns && pending < max_connecting) {
            conn_t *c = &conns[next];
            c->fd = open_socket();
            c->state = S_CONNECTING;
            add_fd(c->fd, next, EPOLLIN | EPOLLOUT);
            next++, pending++;
        }
        int n = epoll_wait(epfd, evs, 1024, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = &conns[evs[i].data.u64];
            int was_ready = c->ready, was_closed = c->state == S_CLOSED;
            conn_event(evs[i].data.u64, evs[i].events);
            if (!was_ready && !was_closed && (c->ready || c->failed || c->state == S_CLOSED)) {
                pending--;
                if (c->failed || (c->state == S_CLOSED && !c->ready)) c->failed = 1, nfailed++;
                else nready++;
            }
        }
        if (now_us() > deadline) {
            fprintf(stderr, "loadgen: timed out connecting (%d ready, %d failed of %d)\n", nready, nfailed, nconns);
            break;
        }
    }
    /* publishers */
    pubs = calloc(npubconns, sizeof *pubs);
    if (nmsgs) {
        for (int i = 0; i < npubconns; i++) {
            pubs[i].fd = open_pub_socket();
            struct pollfd pfd = {pubs[i].fd, POLLOUT, 0};
            poll(&pfd, 1, 5000);
            add_fd(pubs[i].fd, (1ull << 32) | i, EPOLLIN);
            if (pub_ws) {
                pubs[i].state = S_HANDSHAKE;
                send_request(pubs[i].fd, pub_path, 1, pubs[i].ws_accept);
            } else {
                pubs[i].state = S_OPEN, pubs[i].ready = 1;
            }
        }
    }
    if (probe_subscriptions && nmsgs) probe(deadline);
    printf("READY %d %d\n", nready, nfailed);
    fflush(stdout);
    /* wait for GO, serving the subscribers meanwhile */
    int go = 0;
    fcntl(0, F_SETFL, O_NONBLOCK);
    add_fd(0, 1ull << 40, EPOLLIN);
    while (!go) {
        int n = epoll_wait(epfd, evs, 1024, 100);
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == 1ull << 40) {
                char b[64];
                ssize_t r = read(0, b, sizeof b);
                if (r <= 0 || memmem(b, r, "GO", 2)) go = 1;
            } else if (tag >> 32) {
                pub_readable(&pubs[tag & 0xffffffff]);
                pub_flush(&pubs[tag & 0xffffffff]);
            } else {
                on_readable(&conns[tag]);
            }
        }
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
    uint64_t start = now_us(), last_progress = start, settle_until = 0;
    churning = churn_ms > 0;
    if (churning)
        for (int i = 0; i < nconns; i++) recycle(i);
    deadline = start + timeout_ms * 1000;
    double interval = pub_rate > 0 ? 1e6 / pub_rate : 0;
    long scheduled = 0;
    for (;;) {
        uint64_t now = now_us();
        /* publish what is due (rate mode) or what the depth allows */
        if (next_seq < nmsgs) {
            for (int i = 0; i < npubconns && next_seq < nmsgs; i++) {
                pubconn_t *p = &pubs[i];
                if (!p->ready || p->state == S_CLOSED) continue;
                int sent = 0;
                while (next_seq < nmsgs && p->inflight < pub_depth) {
                    uint64_t stamp;
                    if (interval > 0) {
                        uint64_t due = start + (uint64_t)(scheduled * interval);
                        if (due > now) break;
                        stamp = due;
                        scheduled += pub_batch;
                    } else {
                        stamp = now_us();
                    }
                    publish_one(p, stamp);
                    sent = 1;
                }
                if (sent) pub_flush(p);
            }
            if (next_seq >= nmsgs) last_pub_us = now_us();
        } else if (!settle_until) {
            if (!last_pub_us) last_pub_us = now;
            settle_until = now + settle_ms * 1000;
        }
        int timeout = 1;
        if (interval == 0 || next_seq >= nmsgs) timeout = 50;
        serve_events(timeout);
        now = now_us();
        if (now - last_progress >= 200000) {
            printf("P %ld %ld %ld\n", pub_sent, total_unique, total_dup);
            fflush(stdout);
            last_progress = now;
        }
        if (churning) {
            if (now < start + (uint64_t)churn_ms * 1000) continue;
            churning = 0;
            break;
        }
        long inflight = 0;
        for (int i = 0; i < npubconns; i++) inflight += pubs[i].inflight;
        if (next_seq >= nmsgs && inflight <= 0 && total_unique >= expected) break;
        /* after the last publication, wait until nothing has arrived for settle_ms
         * (a server that queued what it accepted is still delivering), or the timeout */
        if (settle_until && now > settle_until && now > last_recv_us + settle_ms * 1000) break;
        if (now > deadline) {
            fprintf(stderr, "loadgen: timed out after %ld ms\n", timeout_ms);
            break;
        }
        int alive = 0;
        for (int i = 0; i < npubconns; i++) alive += pubs[i].state != S_CLOSED;
        if (nmsgs && !alive) break;
    }
    if (!last_pub_us) last_pub_us = now_us(); /* publishing did not finish */
    printf("DONE\n");
    fflush(stdout);
    dump_json();
    return 0;
}
