/*
 * fcgi-load.c -- a small FastCGI load generator for fpmd's benchmarks.
 *
 * It keeps C requests in flight against one FastCGI server (TCP or Unix
 * socket), spread over T threads that each run an epoll loop, and sends the
 * same RESPONDER request again and again, framed the way nginx frames it:
 * BEGIN_REQUEST, one PARAMS record holding nginx's fastcgi_params (padded to
 * a multiple of 8), an empty PARAMS, the optional POST body as STDIN, an
 * empty STDIN.  --new-conn opens a connection per request and leaves
 * FCGI_KEEP_CONN clear (nginx's default); --keep-conn sets it and sends many
 * requests over each connection (nginx's fastcgi_keep_conn on).
 *
 * A request is good when END_REQUEST arrives with FCGI_REQUEST_COMPLETE and
 * its STDOUT holds a CGI header block whose Status, if present, is 200,
 * followed by a non-empty body.  (A missing Status means 200, as in CGI/1.1:
 * PHP sends none.)  Anything else is an error of one kind: conn (connect
 * failed, reset, EOF before END_REQUEST), proto (a record we cannot accept),
 * status (not 200, no header end, empty body) or timeout.
 *
 * The run is always bounded: a warm-up of --warmup seconds whose requests
 * are not counted, then --duration seconds, or fewer once --requests have
 * been sent.  The last line on stdout is machine-readable:
 *	requests=N errors=N rps=N.N p50_us=N p99_us=N ...
 *
 * Needs nothing but libc and pthreads.  No allocation in the request path:
 * the request bytes are built once and latencies go to a fixed histogram.
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define FCGI_VERSION_1		1
#define FCGI_BEGIN_REQUEST	1
#define FCGI_END_REQUEST	3
#define FCGI_PARAMS		4
#define FCGI_STDIN		5
#define FCGI_STDOUT		6
#define FCGI_STDERR		7
#define FCGI_RESPONDER		1
#define FCGI_KEEP_CONN		1
#define FCGI_REQUEST_COMPLETE	0
#define FCGI_MAX_CHUNK		65528	/* largest multiple of 8 <= 65535 */

#define REQUEST_ID		1
#define HEAD_KEEP		1024	/* STDOUT bytes kept to judge the headers */
#define MAX_BODY		(64UL << 20)
#define MAX_CONNS		10000
#define MAX_THREADS		64
#define MAX_SECONDS		3600.0
#define RETRY_NS		(10 * NS_PER_MS)	/* after a failed connect */
#define SCAN_NS			(20 * NS_PER_MS)	/* timeout scan period */
#define NS_PER_US		1000ULL
#define NS_PER_MS		1000000ULL
#define NS_PER_S		1000000000ULL

/*
 * Latency histogram, log-linear (HdrHistogram's idea): values below 2^7 us
 * have their own bucket, above that every power of two is cut into 128
 * buckets, so a reported percentile is within 0.8% of the true value.
 * Values beyond 2^41 us (25 days) are clamped.
 */
#define HIST_SUB_BITS		7
#define HIST_SUB		(1U << HIST_SUB_BITS)
#define HIST_MAX_MSB		40
#define HIST_LEN		(HIST_SUB + (HIST_MAX_MSB - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t	count[HIST_LEN];
	uint64_t	n;
	uint64_t	sum;
	uint64_t	max;
};

enum conn_mode {
	MODE_NEW_CONN,
	MODE_KEEP_CONN
};

struct options {
	const char	*target;
	unsigned	 concurrency;
	unsigned	 threads;
	double		 duration;
	double		 warmup;
	double		 timeout;
	uint64_t	 requests;	/* 0: no limit but the duration */
	enum conn_mode	 mode;
	size_t		 body;
	const char	*uri;
	const char	*script;
	bool		 quiet;
	bool		 print;
};

struct target {
	struct sockaddr_storage	addr;
	socklen_t		addrlen;
	bool			tcp;
};

struct buf {
	unsigned char	*p;
	size_t		 len;
	size_t		 cap;
};

enum conn_state {
	CONN_IDLE,		/* no request; (re)start at retry_at */
	CONN_CONNECTING,
	CONN_SENDING,
	CONN_RECEIVING
};

enum parse_state {
	PARSE_HEADER,
	PARSE_CONTENT,
	PARSE_PADDING
};

enum outcome {
	OUT_OK,
	OUT_CONN,
	OUT_PROTO,
	OUT_STATUS,
	OUT_TIMEOUT,
	OUT_COUNT
};

static const char *const outcome_names[OUT_COUNT] = {
	"ok", "conn_errors", "proto_errors", "status_errors", "timeouts"
};

struct conn {
	int			 fd;
	enum conn_state		 state;
	uint32_t		 events;	/* epoll interest registered */
	uint64_t		 t_start;
	uint64_t		 deadline;
	uint64_t		 retry_at;
	size_t			 sent;

	enum parse_state	 ps;
	unsigned char		 hdr[8];
	size_t			 hdr_len;
	int			 rtype;
	size_t			 content_left;
	size_t			 padding_left;
	unsigned char		 end_body[8];
	size_t			 end_len;
	char			 head[HEAD_KEEP];
	size_t			 head_len;
	uint64_t		 stdout_bytes;
};

struct worker {
	pthread_t	 tid;
	int		 epfd;
	struct conn	*conns;
	size_t		 nconns;
	size_t		 inflight;
	uint64_t	 counts[OUT_COUNT];
	uint64_t	 resp_bytes;	/* STDOUT bytes of good requests */
	uint64_t	 last_done;	/* when the last counted request ended */
	uint64_t	 unfinished;	/* counted requests still in flight at the end */
	uint64_t	 oldest;	/* start of the oldest of those */
	struct hist	 hist;
};

/* Set once in main(), read-only while the workers run. */
static struct options	 opt = {
	.concurrency = 16,
	.threads = 1,
	.duration = 10.0,
	.warmup = 0.0,
	.timeout = 5.0,
	.mode = MODE_NEW_CONN,
	.uri = "/echo?a=1&b=two",
	.script = "/var/www/html/echo",
};
static struct target	 target;
static struct buf	 request;
static uint64_t		 t_measure;	/* start of the counted window */
static uint64_t		 t_end;
static atomic_int_least64_t budget;	/* requests left to start, if limited */

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("fcgi-load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* hist.c-style helpers: index of a value, and the value a bucket reports. */
static size_t
hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v >= (UINT64_C(1) << (HIST_MAX_MSB + 1)))
		v = (UINT64_C(1) << (HIST_MAX_MSB + 1)) - 1;
	if (v < HIST_SUB)
		return (size_t)v;
	msb = 63U - (unsigned)__builtin_clzll(v);
	shift = msb - HIST_SUB_BITS;
	return HIST_SUB + (size_t)shift * HIST_SUB +
	    (size_t)((v >> shift) - HIST_SUB);
}

static uint64_t
hist_value(size_t i)
{
	size_t j, shift;
	uint64_t low, width;

	if (i < HIST_SUB)
		return i;
	j = i - HIST_SUB;
	shift = j / HIST_SUB;
	low = (uint64_t)(HIST_SUB + j % HIST_SUB) << shift;
	width = UINT64_C(1) << shift;
	return low + (width - 1) / 2;
}

static void
hist_add(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

static void
hist_merge(struct hist *to, const struct hist *from)
{
	size_t i;

	for (i = 0; i < HIST_LEN; i++)
		to->count[i] += from->count[i];
	to->n += from->n;
	to->sum += from->sum;
	if (from->max > to->max)
		to->max = from->max;
}

/* The value at percentile p (0 < p <= 100); 0 for an empty histogram. */
static uint64_t
hist_percentile(const struct hist *h, double p)
{
	uint64_t rank, seen = 0;
	size_t i;
	uint64_t v;

	if (h->n == 0)
		return 0;
	rank = (uint64_t)(p / 100.0 * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	for (i = 0; i < HIST_LEN; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			v = hist_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

static void
buf_put(struct buf *b, const void *data, size_t len)
{
	size_t cap;
	unsigned char *p;

	if (b->len + len > b->cap) {
		cap = b->cap ? b->cap : 1024;
		while (cap < b->len + len)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL)
			die("out of memory");
		b->p = p;
		b->cap = cap;
	}
	if (len > 0 && data != NULL)
		memcpy(b->p + b->len, data, len);
	else if (len > 0)
		memset(b->p + b->len, 'x', len);
	b->len += len;
}

static void
fcgi_put_record(struct buf *b, int type, const void *content, size_t len)
{
	static const unsigned char zeros[8];
	unsigned char h[8];
	size_t pad = (8 - len % 8) % 8;

	h[0] = FCGI_VERSION_1;
	h[1] = (unsigned char)type;
	h[2] = (REQUEST_ID >> 8) & 0xff;
	h[3] = REQUEST_ID & 0xff;
	h[4] = (unsigned char)(len >> 8);
	h[5] = (unsigned char)(len & 0xff);
	h[6] = (unsigned char)pad;
	h[7] = 0;
	buf_put(b, h, sizeof(h));
	buf_put(b, content, len);
	buf_put(b, zeros, pad);
}

/* Append a record stream: content cut into records of at most 65528 bytes. */
static void
fcgi_put_stream(struct buf *b, int type, const void *content, size_t len)
{
	const unsigned char *p = content;
	size_t n;

	while (len > 0) {
		n = len > FCGI_MAX_CHUNK ? FCGI_MAX_CHUNK : len;
		fcgi_put_record(b, type, p, n);
		if (p != NULL)
			p += n;
		len -= n;
	}
}

static void
fcgi_put_length(struct buf *b, size_t len)
{
	unsigned char l[4];

	if (len < 128) {
		l[0] = (unsigned char)len;
		buf_put(b, l, 1);
		return;
	}
	l[0] = (unsigned char)(((len >> 24) & 0x7f) | 0x80);
	l[1] = (unsigned char)(len >> 16);
	l[2] = (unsigned char)(len >> 8);
	l[3] = (unsigned char)len;
	buf_put(b, l, 4);
}

static void
fcgi_put_param(struct buf *b, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	fcgi_put_length(b, nl);
	fcgi_put_length(b, vl);
	buf_put(b, name, nl);
	buf_put(b, value, vl);
}

/*
 * The request every connection sends, built once: the params of nginx's
 * fastcgi_params and fastcgi.conf, in that order, plus two request headers.
 */
static void
request_build(void)
{
	struct buf params = { 0 };
	unsigned char begin[8] = { 0 };
	char path[1024], root[1024], clen[32];
	const char *query, *slash;
	bool post = opt.body > 0;

	query = strchr(opt.uri, '?');
	snprintf(path, sizeof(path), "%.*s",
	    (int)(query ? (size_t)(query - opt.uri) : strlen(opt.uri)), opt.uri);
	query = query ? query + 1 : "";
	slash = strrchr(opt.script, '/');
	snprintf(root, sizeof(root), "%.*s",
	    (int)(slash && slash != opt.script ? (size_t)(slash - opt.script) : 1),
	    opt.script);
	snprintf(clen, sizeof(clen), "%zu", opt.body);

	fcgi_put_param(&params, "QUERY_STRING", query);
	fcgi_put_param(&params, "REQUEST_METHOD", post ? "POST" : "GET");
	fcgi_put_param(&params, "CONTENT_TYPE",
	    post ? "application/octet-stream" : "");
	fcgi_put_param(&params, "CONTENT_LENGTH", post ? clen : "");
	fcgi_put_param(&params, "SCRIPT_NAME", path);
	fcgi_put_param(&params, "REQUEST_URI", opt.uri);
	fcgi_put_param(&params, "DOCUMENT_URI", path);
	fcgi_put_param(&params, "DOCUMENT_ROOT", root);
	fcgi_put_param(&params, "SERVER_PROTOCOL", "HTTP/1.1");
	fcgi_put_param(&params, "REQUEST_SCHEME", "http");
	fcgi_put_param(&params, "GATEWAY_INTERFACE", "CGI/1.1");
	fcgi_put_param(&params, "SERVER_SOFTWARE", "nginx/1.22.1");
	fcgi_put_param(&params, "REMOTE_ADDR", "127.0.0.1");
	fcgi_put_param(&params, "REMOTE_PORT", "51234");
	fcgi_put_param(&params, "SERVER_ADDR", "127.0.0.1");
	fcgi_put_param(&params, "SERVER_PORT", "80");
	fcgi_put_param(&params, "SERVER_NAME", "localhost");
	fcgi_put_param(&params, "REDIRECT_STATUS", "200");
	fcgi_put_param(&params, "SCRIPT_FILENAME", opt.script);
	fcgi_put_param(&params, "HTTP_HOST", "localhost");
	fcgi_put_param(&params, "HTTP_USER_AGENT", "fcgi-load/1.0");

	begin[1] = FCGI_RESPONDER;
	begin[2] = opt.mode == MODE_KEEP_CONN ? FCGI_KEEP_CONN : 0;
	fcgi_put_record(&request, FCGI_BEGIN_REQUEST, begin, sizeof(begin));
	fcgi_put_stream(&request, FCGI_PARAMS, params.p, params.len);
	fcgi_put_record(&request, FCGI_PARAMS, NULL, 0);
	fcgi_put_stream(&request, FCGI_STDIN, NULL, opt.body);
	fcgi_put_record(&request, FCGI_STDIN, NULL, 0);
	free(params.p);
}

/* "host:port", "[v6]:port", or a Unix socket path (anything with a '/'). */
static void
target_parse(const char *s)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&target.addr;
	struct addrinfo hints = { 0 }, *res;
	char host[256];
	const char *port, *h;
	size_t hl;
	int rc;

	if (strncmp(s, "unix:", 5) == 0)
		s += 5;
	if (strchr(s, '/') != NULL) {
		if (strlen(s) >= sizeof(sun->sun_path))
			die("unix socket path too long: %s", s);
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, s);
		target.addrlen = sizeof(*sun);
		target.tcp = false;
		return;
	}
	if (s[0] == '[') {
		h = s + 1;
		if ((port = strchr(h, ']')) == NULL || port[1] != ':')
			die("bad target: %s", s);
		hl = (size_t)(port - h);
		port += 2;
	} else {
		h = s;
		if ((port = strrchr(s, ':')) == NULL)
			die("bad target (want host:port or a path): %s", s);
		hl = (size_t)(port - h);
		port++;
	}
	if (hl == 0 || hl >= sizeof(host) || *port == '\0')
		die("bad target: %s", s);
	memcpy(host, h, hl);
	host[hl] = '\0';
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		die("%s: %s", s, gai_strerror(rc));
	memcpy(&target.addr, res->ai_addr, res->ai_addrlen);
	target.addrlen = res->ai_addrlen;
	target.tcp = true;
	freeaddrinfo(res);
}

/* Make room for one descriptor per connection, within the hard limit. */
static void
fd_limit_raise(void)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)opt.concurrency + 32;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ?
	    want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur < want)
		die("%u connections need %llu descriptors; the limit is %llu",
		    opt.concurrency, (unsigned long long)want,
		    (unsigned long long)rl.rlim_cur);
}

static bool
budget_take(void)
{
	if (opt.requests == 0)
		return true;
	return atomic_fetch_sub(&budget, 1) > 0;
}

static void
conn_interest(struct worker *w, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	if (epoll_ctl(w->epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
	    c->fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
	c->events = events;
}

static void
conn_close(struct conn *c)
{
	if (c->fd != -1)
		close(c->fd);	/* also leaves the epoll set */
	c->fd = -1;
	c->events = 0;
}

static void conn_start(struct worker *, struct conn *, uint64_t);

/*
 * A request ended: count it (if it started inside the counted window), then
 * start the next one, on this connection or on a new one.
 */
static void
conn_finish(struct worker *w, struct conn *c, enum outcome out, uint64_t now)
{
	bool reuse = out == OUT_OK || out == OUT_STATUS;

	if (c->t_start >= t_measure && now <= t_end) {
		w->counts[out]++;
		w->last_done = now;
		if (out == OUT_OK) {
			hist_add(&w->hist, (now - c->t_start) / NS_PER_US);
			w->resp_bytes += c->stdout_bytes;
		}
	}
	if (opt.mode == MODE_NEW_CONN || !reuse)
		conn_close(c);
	c->state = CONN_IDLE;
	w->inflight--;
	if (out == OUT_CONN || out == OUT_TIMEOUT) {
		/* Do not spin on a refused connect: come back shortly. */
		c->retry_at = now + RETRY_NS;
		return;
	}
	conn_start(w, c, now);
}

static void
conn_send(struct worker *w, struct conn *c)
{
	ssize_t n;

	while (c->sent < request.len) {
		n = send(c->fd, request.p + c->sent, request.len - c->sent,
		    MSG_NOSIGNAL);
		if (n > 0) {
			c->sent += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_interest(w, c, EPOLLOUT);
			return;
		}
		conn_finish(w, c, OUT_CONN, now_ns());
		return;
	}
	c->state = CONN_RECEIVING;
	conn_interest(w, c, EPOLLIN);
}

static void
conn_start(struct worker *w, struct conn *c, uint64_t now)
{
	int fd, one = 1;

	c->retry_at = UINT64_MAX;
	if (now >= t_end)
		return;
	if (now >= t_measure && !budget_take())
		return;
	c->t_start = now;
	c->deadline = now + (uint64_t)(opt.timeout * (double)NS_PER_S);
	c->sent = 0;
	c->ps = PARSE_HEADER;
	c->hdr_len = 0;
	c->end_len = 0;
	c->head_len = 0;
	c->stdout_bytes = 0;
	w->inflight++;
	if (c->fd != -1) {
		c->state = CONN_SENDING;
		conn_send(w, c);
		return;
	}
	fd = socket(target.addr.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		die("socket: %s", strerror(errno));
	c->fd = fd;
	if (target.tcp)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&target.addr, target.addrlen) == 0) {
		c->state = CONN_SENDING;
		conn_send(w, c);
		return;
	}
	if (errno == EINPROGRESS) {
		c->state = CONN_CONNECTING;
		conn_interest(w, c, EPOLLOUT);
		return;
	}
	conn_finish(w, c, OUT_CONN, now);
}

/* Judge a response whose END_REQUEST has arrived. */
static enum outcome
conn_judge(const struct conn *c)
{
	const char *p, *end, *eol, *hend;
	size_t hlen;
	long code;

	if (c->end_body[4] != FCGI_REQUEST_COMPLETE)
		return OUT_PROTO;
	p = c->head;
	hend = memmem(p, c->head_len, "\r\n\r\n", 4);
	if (hend != NULL)
		hlen = (size_t)(hend - p) + 4;
	else if ((hend = memmem(p, c->head_len, "\n\n", 2)) != NULL)
		hlen = (size_t)(hend - p) + 2;
	else
		return OUT_STATUS;
	if (c->stdout_bytes <= hlen)
		return OUT_STATUS;
	end = hend;
	while (p < end) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end;
		if ((size_t)(eol - p) > 7 && strncasecmp(p, "Status:", 7) == 0) {
			p += 7;
			while (p < eol && (*p == ' ' || *p == '\t'))
				p++;
			code = strtol(p, NULL, 10);
			if (code != 200)
				return OUT_STATUS;
		}
		p = eol + 1;
	}
	return OUT_OK;
}

/*
 * Feed response bytes to the record parser.  Returns 1 when END_REQUEST is
 * complete (with *used set), 0 when more bytes are needed, -1 on a record we
 * cannot accept.
 */
static int
conn_feed(struct conn *c, const unsigned char *p, size_t n, size_t *used)
{
	size_t i = 0, take, room;

	for (;;) {
		/* Step over empty content and padding without input. */
		if (c->ps == PARSE_CONTENT && c->content_left == 0)
			c->ps = PARSE_PADDING;
		if (c->ps == PARSE_PADDING && c->padding_left == 0) {
			c->ps = PARSE_HEADER;
			if (c->rtype == FCGI_END_REQUEST) {
				*used = i;
				return 1;
			}
		}
		if (i == n)
			return 0;
		switch (c->ps) {
		case PARSE_HEADER:
			take = 8 - c->hdr_len;
			if (take > n - i)
				take = n - i;
			memcpy(c->hdr + c->hdr_len, p + i, take);
			c->hdr_len += take;
			i += take;
			if (c->hdr_len < 8)
				break;
			c->hdr_len = 0;
			if (c->hdr[0] != FCGI_VERSION_1 ||
			    ((c->hdr[2] << 8) | c->hdr[3]) != REQUEST_ID)
				return -1;
			c->rtype = c->hdr[1];
			c->content_left = (size_t)((c->hdr[4] << 8) | c->hdr[5]);
			c->padding_left = c->hdr[6];
			if (c->rtype == FCGI_END_REQUEST && c->content_left != 8)
				return -1;
			if (c->rtype != FCGI_STDOUT && c->rtype != FCGI_STDERR &&
			    c->rtype != FCGI_END_REQUEST)
				return -1;
			c->ps = PARSE_CONTENT;
			break;
		case PARSE_CONTENT:
			take = c->content_left < n - i ? c->content_left : n - i;
			if (c->rtype == FCGI_STDOUT) {
				room = HEAD_KEEP - c->head_len;
				if (room > take)
					room = take;
				memcpy(c->head + c->head_len, p + i, room);
				c->head_len += room;
				c->stdout_bytes += take;
			} else if (c->rtype == FCGI_END_REQUEST) {
				memcpy(c->end_body + c->end_len, p + i, take);
				c->end_len += take;
			}
			i += take;
			c->content_left -= take;
			break;
		case PARSE_PADDING:
			take = c->padding_left < n - i ? c->padding_left : n - i;
			i += take;
			c->padding_left -= take;
			break;
		}
	}
}

static void
conn_receive(struct worker *w, struct conn *c)
{
	unsigned char buf[16384];
	ssize_t n;
	size_t used;
	int rc;

	for (;;) {
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_finish(w, c, OUT_CONN, now_ns());
			return;
		}
		rc = conn_feed(c, buf, (size_t)n, &used);
		if (rc == 0)
			continue;
		if (rc == -1 || used != (size_t)n) {
			/* Garbage, or bytes after END_REQUEST we never asked for. */
			conn_finish(w, c, OUT_PROTO, now_ns());
			return;
		}
		conn_finish(w, c, conn_judge(c), now_ns());
		return;
	}
}

static void
conn_event(struct worker *w, struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	switch (c->state) {
	case CONN_CONNECTING:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
		    err != 0) {
			conn_finish(w, c, OUT_CONN, now_ns());
			return;
		}
		c->state = CONN_SENDING;
		conn_send(w, c);
		return;
	case CONN_SENDING:
		conn_send(w, c);
		return;
	case CONN_RECEIVING:
		conn_receive(w, c);
		return;
	case CONN_IDLE:
		/* An idle kept connection the server closed: reconnect later. */
		if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			conn_close(c);
		return;
	}
}

/* Time out stuck requests; restart idle connections whose pause is over. */
static void
worker_scan(struct worker *w, uint64_t now)
{
	struct conn *c;
	size_t i;

	for (i = 0; i < w->nconns; i++) {
		c = &w->conns[i];
		if (c->state == CONN_IDLE) {
			if (c->retry_at <= now)
				conn_start(w, c, now);
		} else if (c->deadline <= now)
			conn_finish(w, c, OUT_TIMEOUT, now);
	}
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[64];
	struct conn *c;
	uint64_t now, last_scan, wait_ns;
	size_t i;
	int n;

	now = now_ns();
	for (i = 0; i < w->nconns; i++)
		conn_start(w, &w->conns[i], now);
	last_scan = now;
	for (;;) {
		now = now_ns();
		if (now >= t_end)
			break;
		if (now - last_scan >= SCAN_NS) {
			worker_scan(w, now);
			last_scan = now;
		}
		if (w->inflight == 0 && opt.requests != 0 &&
		    now >= t_measure && atomic_load(&budget) <= 0)
			break;
		wait_ns = t_end - now;
		if (wait_ns > SCAN_NS)
			wait_ns = SCAN_NS;
		n = epoll_wait(w->epfd, evs, 64, (int)(wait_ns / NS_PER_MS) + 1);
		if (n == -1 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (i = 0; n > 0 && i < (size_t)n; i++)
			conn_event(w, evs[i].data.ptr, evs[i].events);
	}
	/*
	 * Requests still unanswered at the end show starvation: a prefork
	 * server pinned by kept connections never serves the ones beyond its
	 * worker count.
	 */
	w->oldest = UINT64_MAX;
	for (i = 0; i < w->nconns; i++) {
		c = &w->conns[i];
		if (c->state != CONN_IDLE && c->t_start >= t_measure) {
			w->unfinished++;
			if (c->t_start < w->oldest)
				w->oldest = c->t_start;
		}
		conn_close(c);
	}
	return NULL;
}

/* Read exactly len bytes; 0 on success, -1 on error or early EOF. */
static int
read_full(int fd, void *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = read(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p = (char *)p + n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * --print: send one request on a blocking socket and copy its STDOUT to
 * stdout and its STDERR to stderr, to look at what a server answers.
 */
static int
print_one(void)
{
	struct timeval tv;
	unsigned char h[8], content[65535 + 255];
	size_t clen, plen;
	ssize_t n;
	size_t off;
	int fd;

	tv.tv_sec = (time_t)opt.timeout;
	tv.tv_usec = (suseconds_t)((opt.timeout - (double)tv.tv_sec) * 1e6);
	fd = socket(target.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&target.addr, target.addrlen) == -1)
		die("connect %s: %s", opt.target, strerror(errno));
	for (off = 0; off < request.len; off += (size_t)n)
		if ((n = send(fd, request.p + off, request.len - off,
		    MSG_NOSIGNAL)) <= 0)
			die("send: %s", strerror(errno));
	for (;;) {
		if (read_full(fd, h, sizeof(h)) == -1)
			die("response cut short before END_REQUEST");
		clen = (size_t)((h[4] << 8) | h[5]);
		plen = h[6];
		if (h[0] != FCGI_VERSION_1 || read_full(fd, content,
		    clen + plen) == -1)
			die("bad record in the response");
		if (h[1] == FCGI_STDOUT)
			fwrite(content, 1, clen, stdout);
		else if (h[1] == FCGI_STDERR)
			fwrite(content, 1, clen, stderr);
		else if (h[1] == FCGI_END_REQUEST && clen == 8) {
			close(fd);
			fflush(stdout);
			return content[4] == FCGI_REQUEST_COMPLETE ? 0 : 1;
		}
	}
}

static double
parse_seconds(const char *s, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v > MAX_SECONDS)
		die("bad %s: %s (want seconds, 0..%.0f)", what, s, MAX_SECONDS);
	return v;
}

static uint64_t
parse_count(const char *s, const char *what, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' ||
	    v < min || v > max)
		die("bad %s: %s (want %llu..%llu)", what, s,
		    (unsigned long long)min, (unsigned long long)max);
	return v;
}

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
"usage: fcgi-load [options] TARGET\n"
"  TARGET                host:port, [v6addr]:port, or a Unix socket path\n"
"  -c, --concurrency N   requests in flight, one connection each (16)\n"
"  -t, --threads N       event-loop threads sharing them (1)\n"
"  -d, --duration SEC    length of the counted run (10)\n"
"  -w, --warmup SEC      uncounted run before it (0)\n"
"  -n, --requests N      stop after N counted requests (no limit)\n"
"  -N, --new-conn        a connection per request, FCGI_KEEP_CONN clear (default)\n"
"  -k, --keep-conn       FCGI_KEEP_CONN set, many requests per connection\n"
"  -b, --body BYTES      POST a body of BYTES (0: GET)\n"
"  -u, --uri URI         REQUEST_URI (/echo?a=1&b=two)\n"
"  -s, --script PATH     SCRIPT_FILENAME (/var/www/html/echo)\n"
"  -T, --timeout SEC     per-request timeout, counted as an error (5)\n"
"  -q, --quiet           only the final line\n"
"  -p, --print           send one request, print its STDOUT, exit\n"
"  -h, --help\n"
"The last line on stdout: requests= errors= rps= p50_us= p99_us= and more.\n"
"Exit status: 0 when at least one request succeeded, 1 when none did, 2 usage.\n");
	exit(status);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "concurrency", required_argument, NULL, 'c' },
		{ "threads", required_argument, NULL, 't' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "requests", required_argument, NULL, 'n' },
		{ "new-conn", no_argument, NULL, 'N' },
		{ "keep-conn", no_argument, NULL, 'k' },
		{ "body", required_argument, NULL, 'b' },
		{ "uri", required_argument, NULL, 'u' },
		{ "script", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "print", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct worker *workers;
	struct conn *conns;
	struct hist *total;
	uint64_t counts[OUT_COUNT] = { 0 }, resp_bytes = 0, last_done = 0;
	uint64_t unfinished = 0, oldest = UINT64_MAX;
	uint64_t errors, t_start, elapsed_ns;
	double elapsed, rps;
	size_t i, k;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:t:d:w:n:Nkb:u:s:T:qph",
	    longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			opt.concurrency = (unsigned)parse_count(optarg,
			    "concurrency", 1, MAX_CONNS);
			break;
		case 't':
			opt.threads = (unsigned)parse_count(optarg, "threads",
			    1, MAX_THREADS);
			break;
		case 'd':
			opt.duration = parse_seconds(optarg, "duration");
			break;
		case 'w':
			opt.warmup = parse_seconds(optarg, "warmup");
			break;
		case 'n':
			opt.requests = parse_count(optarg, "requests", 1,
			    INT64_MAX);
			break;
		case 'N':
			opt.mode = MODE_NEW_CONN;
			break;
		case 'k':
			opt.mode = MODE_KEEP_CONN;
			break;
		case 'b':
			opt.body = (size_t)parse_count(optarg, "body", 0,
			    MAX_BODY);
			break;
		case 'u':
			opt.uri = optarg;
			break;
		case 's':
			opt.script = optarg;
			break;
		case 'T':
			opt.timeout = parse_seconds(optarg, "timeout");
			break;
		case 'q':
			opt.quiet = true;
			break;
		case 'p':
			opt.print = true;
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (optind != argc - 1)
		usage(2);
	opt.target = argv[optind];
	if (opt.duration <= 0)
		die("the duration must be above 0");
	if (opt.timeout <= 0)
		die("the timeout must be above 0");
	if (opt.threads > opt.concurrency)
		opt.threads = opt.concurrency;
	target_parse(opt.target);
	request_build();
	if (opt.print)
		return print_one();
	atomic_store(&budget, (int_least64_t)opt.requests);
	signal(SIGPIPE, SIG_IGN);
	fd_limit_raise();

	workers = calloc(opt.threads, sizeof(*workers));
	conns = calloc(opt.concurrency, sizeof(*conns));
	total = calloc(1, sizeof(*total));
	if (workers == NULL || conns == NULL || total == NULL)
		die("out of memory");
	for (i = 0; i < opt.concurrency; i++)
		conns[i].fd = -1;

	t_start = now_ns();
	t_measure = t_start + (uint64_t)(opt.warmup * (double)NS_PER_S);
	t_end = t_measure + (uint64_t)(opt.duration * (double)NS_PER_S);
	/* Hand out the connections in contiguous slices, one per thread. */
	for (i = 0, k = 0; i < opt.threads; i++) {
		workers[i].conns = conns + k;
		workers[i].nconns = opt.concurrency / opt.threads +
		    (i < opt.concurrency % opt.threads);
		k += workers[i].nconns;
		if ((workers[i].epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
			die("epoll_create1: %s", strerror(errno));
		if ((errno = pthread_create(&workers[i].tid, NULL, worker_run,
		    &workers[i])) != 0)
			die("pthread_create: %s", strerror(errno));
	}
	for (i = 0; i < opt.threads; i++) {
		pthread_join(workers[i].tid, NULL);
		close(workers[i].epfd);
		for (k = 0; k < OUT_COUNT; k++)
			counts[k] += workers[i].counts[k];
		resp_bytes += workers[i].resp_bytes;
		if (workers[i].last_done > last_done)
			last_done = workers[i].last_done;
		unfinished += workers[i].unfinished;
		if (workers[i].oldest < oldest)
			oldest = workers[i].oldest;
		hist_merge(total, &workers[i].hist);
	}

	/* A run cut short by --requests lasts until its last answer. */
	elapsed_ns = t_end - t_measure;
	if (opt.requests != 0 && last_done > t_measure &&
	    last_done - t_measure < elapsed_ns)
		elapsed_ns = last_done - t_measure;
	elapsed = (double)elapsed_ns / (double)NS_PER_S;
	errors = counts[OUT_CONN] + counts[OUT_PROTO] + counts[OUT_STATUS] +
	    counts[OUT_TIMEOUT];
	rps = (double)counts[OUT_OK] / elapsed;

	if (!opt.quiet) {
		fprintf(stderr, "fcgi-load: %s, %s, c=%u t=%u, %.1fs "
		    "(+%.1fs warm-up), body %zu\n", opt.target,
		    opt.mode == MODE_KEEP_CONN ? "keep-conn" : "new-conn",
		    opt.concurrency, opt.threads, elapsed, opt.warmup,
		    opt.body);
		fprintf(stderr, "  %llu ok", (unsigned long long)counts[OUT_OK]);
		for (k = OUT_CONN; k < OUT_COUNT; k++)
			fprintf(stderr, ", %llu %s",
			    (unsigned long long)counts[k], outcome_names[k]);
		if (unfinished > 0)
			fprintf(stderr, ", %llu unfinished (oldest %llu ms)",
			    (unsigned long long)unfinished,
			    (unsigned long long)((t_end - oldest) / NS_PER_MS));
		fprintf(stderr, "\n  %.1f req/s, latency us: p50 %llu p90 %llu "
		    "p99 %llu max %llu\n", rps,
		    (unsigned long long)hist_percentile(total, 50),
		    (unsigned long long)hist_percentile(total, 90),
		    (unsigned long long)hist_percentile(total, 99),
		    (unsigned long long)total->max);
	}
	printf("requests=%llu errors=%llu rps=%.1f p50_us=%llu p90_us=%llu "
	    "p99_us=%llu max_us=%llu mean_us=%llu conn_errors=%llu "
	    "proto_errors=%llu status_errors=%llu timeouts=%llu "
	    "resp_bytes=%llu unfinished=%llu oldest_unfinished_ms=%llu "
	    "elapsed_s=%.3f\n",
	    (unsigned long long)counts[OUT_OK], (unsigned long long)errors, rps,
	    (unsigned long long)hist_percentile(total, 50),
	    (unsigned long long)hist_percentile(total, 90),
	    (unsigned long long)hist_percentile(total, 99),
	    (unsigned long long)total->max,
	    (unsigned long long)(total->n ? total->sum / total->n : 0),
	    (unsigned long long)counts[OUT_CONN],
	    (unsigned long long)counts[OUT_PROTO],
	    (unsigned long long)counts[OUT_STATUS],
	    (unsigned long long)counts[OUT_TIMEOUT],
	    (unsigned long long)(counts[OUT_OK] ?
	    resp_bytes / counts[OUT_OK] : 0), (unsigned long long)unfinished,
	    (unsigned long long)(unfinished ? (t_end - oldest) / NS_PER_MS : 0),
	    elapsed);
	free(total);
	free(conns);
	free(workers);
	free(request.p);
	return counts[OUT_OK] > 0 ? 0 : 1;
}
