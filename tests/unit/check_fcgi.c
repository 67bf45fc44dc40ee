/*
 * check_fcgi.c -- the Check suite for the FastCGI codec (src/fcgi.c).
 *
 * Every test is a loop over a table of vectors.  The record parser is fed
 * each stream whole, split at every byte, split at every pair of bytes
 * (short streams), and one byte per call; each feeding must give the
 * records the vector names and the very same result as the whole feed.
 * Each piece is fed from its own heap copy of exactly its size, and the
 * name-value decoder reads exact-size copies too, so that a sanitizer build
 * (--enable-sanitizers) catches a read past the caller's buffer.
 *
 * Byte strings are written with a string break after every hex escape
 * ("\x0e" "FOO"), because C lets "\x0eF" run on into one escape.
 */
#include "config.h"

#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"
#include "unit.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
/* A string literal as a pointer and its length, NULs included. */
#define BYTES(s)	.bytes = (s), .len = sizeof(s) - 1
#define CONTENT(s)	.content = (s), .content_len = sizeof(s) - 1

#define MAX_RECS	24
#define MAX_PAIRS	8
/* Streams up to this long are also split at every pair of bytes. */
#define PAIR_SPLIT_MAX	192

/*
 * Check records a checkpoint for every ck_assert that passes: a write to
 * its temp file.  The parser loops make millions of checks, so they use
 * NEED, which calls into Check only on failure.
 */
#define NEED(cond, ...) do {						\
	if (!(cond))							\
		ck_abort_msg(__VA_ARGS__);				\
} while (0)

static bool
mem_same(const void *a, const void *b, size_t len)
{
	return len == 0 || memcmp(a, b, len) == 0;
}

/* A heap copy of exactly LEN bytes (one spare byte when LEN is 0). */
static uint8_t *
copy_exact(const void *src, size_t len)
{
	uint8_t	*p;

	p = malloc(len > 0 ? len : 1);
	NEED(p != NULL, "out of memory");
	if (len > 0)
		memcpy(p, src, len);
	return p;
}

/*
 * Record streams.
 */

struct want_rec {
	uint8_t		 type;
	uint16_t	 request_id;
	const void	*content;	/* every content byte, concatenated */
	size_t		 content_len;
	bool		 open;		/* the stream ends inside this record */
};

enum want_end {
	END_CLEAN,	/* the stream ends on a record boundary */
	END_OPEN,	/* the stream ends inside a record (EOF mid-record) */
	END_ERROR	/* FCGI_EV_ERROR once STOP bytes were consumed */
};

/* One test stream, written out or built (see the build_ functions). */
struct stream {
	const uint8_t	*bytes;
	size_t		 len;
	struct want_rec	 recs[MAX_RECS];
	size_t		 nrecs;
	enum want_end	 end;
	size_t		 stop;		/* END_ERROR: bytes consumed in all */
	uint8_t		*heap;		/* built streams: freed by stream_fini */
};

struct parse_vec {
	const char	*name;
	const char	*bytes;
	size_t		 len;
	struct want_rec	 recs[MAX_RECS];
	size_t		 nrecs;
	enum want_end	 end;
	size_t		 stop;
	/* When set, it makes the whole stream and the fields above are unused. */
	void		(*build)(struct stream *);
};

static void
build_put(struct stream *s, uint8_t version, uint8_t type, uint16_t id,
    size_t clen, uint8_t plen, uint8_t fill)
{
	uint8_t		*p = s->heap + s->len;
	struct want_rec	*r;
	size_t		 i;

	NEED(s->nrecs < MAX_RECS, "raise MAX_RECS");
	/* Written by hand, not by fcgi_header_encode: the test stands alone. */
	p[0] = version;
	p[1] = type;
	p[2] = (uint8_t)(id >> 8);
	p[3] = (uint8_t)id;
	p[4] = (uint8_t)(clen >> 8);
	p[5] = (uint8_t)clen;
	p[6] = plen;
	p[7] = 0;
	for (i = 0; i < clen; i++)
		p[8 + i] = (uint8_t)(fill + i * 7);
	/* Padding is garbage on purpose: a parser must skip it unread. */
	memset(p + 8 + clen, 0xee, plen);
	r = &s->recs[s->nrecs++];
	r->type = type;
	r->request_id = id;
	r->content = p + 8;
	r->content_len = clen;
	r->open = false;
	s->len += 8 + clen + plen;
}

#define BUILD_CAP	(4 * (FCGI_HEADER_LEN + FCGI_MAX_CONTENT + \
			    FCGI_MAX_PADDING))

static void
build_begin(struct stream *s)
{
	memset(s, 0, sizeof(*s));
	s->heap = calloc(1, BUILD_CAP);
	NEED(s->heap != NULL, "out of memory");
	s->bytes = s->heap;
	s->end = END_CLEAN;
}

static void
build_padding_255(struct stream *s)
{
	build_begin(s);
	build_put(s, 1, FCGI_STDOUT, 1, 1, 255, 'x');
	build_put(s, 1, FCGI_STDIN, 1, 0, 255, 0);
	build_put(s, 1, FCGI_STDERR, 1, 255, 255, 'e');
	build_put(s, 1, FCGI_STDIN, 1, 0, 0, 0);
}

static void
build_content_65535(struct stream *s)
{
	build_begin(s);
	build_put(s, 1, FCGI_STDIN, 1, FCGI_MAX_CONTENT, 1, 3);
	build_put(s, 1, FCGI_STDIN, 1, 0, 0, 0);
}

static void
build_content_and_padding_max(struct stream *s)
{
	build_begin(s);
	build_put(s, 1, FCGI_STDOUT, 0xffff, FCGI_MAX_CONTENT,
	    FCGI_MAX_PADDING, 9);
	build_put(s, 1, FCGI_STDOUT, 0xffff, 2, 6, 'z');
}

/* 0x0100 and 0x00ff bytes: a swapped length byte would show here. */
static void
build_length_byte_order(struct stream *s)
{
	build_begin(s);
	build_put(s, 1, FCGI_PARAMS, 0x0102, 0x0100, 0, 1);
	build_put(s, 1, FCGI_PARAMS, 0x0201, 0x00ff, 1, 2);
}

/* Every content length 0..16 with the spec's padding, in one stream. */
static void
build_many_small(struct stream *s)
{
	size_t	 n;

	build_begin(s);
	for (n = 0; n <= 16; n++)
		build_put(s, 1, (uint8_t)(1 + n % 11), (uint16_t)n, n,
		    (uint8_t)((8 - n % 8) % 8), (uint8_t)n);
}

/* A good record, then a version 2 header, then more good bytes. */
static void
build_bad_version_after_big(struct stream *s)
{
	size_t	 before;

	build_begin(s);
	build_put(s, 1, FCGI_STDIN, 1, 4000, 0, 5);
	before = s->len;
	build_put(s, 2, FCGI_STDIN, 1, 8, 0, 6);
	build_put(s, 1, FCGI_STDIN, 1, 0, 0, 0);
	s->nrecs = 1;
	s->end = END_ERROR;
	s->stop = before + FCGI_HEADER_LEN;
}

/* EOF inside the padding of a maximal record. */
static void
build_eof_in_long_padding(struct stream *s)
{
	build_begin(s);
	build_put(s, 1, FCGI_STDOUT, 1, 300, 255, 'p');
	s->len -= 100;
	s->recs[0].open = true;
	s->end = END_OPEN;
}

static const struct parse_vec parse_vecs[] = {
	{
		.name = "empty stream",
		BYTES(""),
		.end = END_CLEAN,
	},
	{
		.name = "zero-length STDIN (end of the body)",
		BYTES("\x01\x05\x00\x01\x00\x00\x00\x00"),
		.recs = { { FCGI_STDIN, 1, CONTENT("") } },
		.nrecs = 1,
		.end = END_CLEAN,
	},
	{
		.name = "zero-length records of every kind",
		BYTES("\x01\x02\x00\x01\x00\x00\x00\x00"	/* ABORT */
		    "\x01\x04\x00\x01\x00\x00\x00\x00"		/* PARAMS */
		    "\x01\x05\x00\x01\x00\x00\x00\x00"		/* STDIN */
		    "\x01\x08\x00\x01\x00\x00\x00\x00"		/* DATA */
		    "\x01\x09\x00\x00\x00\x00\x00\x00"		/* GET_VALUES */
		    "\x01\x00\x00\x00\x00\x00\x00\x00"),	/* type 0 */
		.recs = {
			{ FCGI_ABORT_REQUEST, 1, CONTENT("") },
			{ FCGI_PARAMS, 1, CONTENT("") },
			{ FCGI_STDIN, 1, CONTENT("") },
			{ FCGI_DATA, 1, CONTENT("") },
			{ FCGI_GET_VALUES, 0, CONTENT("") },
			{ 0, 0, CONTENT("") },
		},
		.nrecs = 6,
		.end = END_CLEAN,
	},
	{
		.name = "zero content, five bytes of padding",
		BYTES("\x01\x06\x00\x07\x00\x00\x05\x00" "PPPPP"
		    "\x01\x07\x00\x07\x00\x01\x00\x00" "E"),
		.recs = {
			{ FCGI_STDOUT, 7, CONTENT("") },
			{ FCGI_STDERR, 7, CONTENT("E") },
		},
		.nrecs = 2,
		.end = END_CLEAN,
	},
	{
		.name = "BEGIN_REQUEST responder keep-conn",
		BYTES("\x01\x01\x00\x01\x00\x08\x00\x00"
		    "\x00\x01\x01\x00\x00\x00\x00\x00"),
		.recs = { { FCGI_BEGIN_REQUEST, 1,
		    CONTENT("\x00\x01\x01\x00\x00\x00\x00\x00") } },
		.nrecs = 1,
		.end = END_CLEAN,
	},
	{
		.name = "nginx POST request",
		BYTES(
		    /* BEGIN_REQUEST id 1: RESPONDER, FCGI_KEEP_CONN */
		    "\x01\x01\x00\x01\x00\x08\x00\x00"
		    "\x00\x01\x01\x00\x00\x00\x00\x00"
		    /* PARAMS id 1: 94 bytes, 2 of padding */
		    "\x01\x04\x00\x01\x00\x5e\x02\x00"
		    "\x0f\x1a" "SCRIPT_FILENAME" "/srv/www/cgi-bin/hello.cgi"
		    "\x0e\x04" "REQUEST_METHOD" "POST"
		    "\x0e\x01" "CONTENT_LENGTH" "5"
		    "\x0c\x00" "QUERY_STRING"
		    "\x00\x00"
		    /* end of PARAMS */
		    "\x01\x04\x00\x01\x00\x00\x00\x00"
		    /* STDIN "hello", 3 of padding, then end of STDIN */
		    "\x01\x05\x00\x01\x00\x05\x03\x00" "hello" "\x00\x00\x00"
		    "\x01\x05\x00\x01\x00\x00\x00\x00"),
		.recs = {
			{ FCGI_BEGIN_REQUEST, 1,
			    CONTENT("\x00\x01\x01\x00\x00\x00\x00\x00") },
			{ FCGI_PARAMS, 1, CONTENT(
			    "\x0f\x1a" "SCRIPT_FILENAME"
			    "/srv/www/cgi-bin/hello.cgi"
			    "\x0e\x04" "REQUEST_METHOD" "POST"
			    "\x0e\x01" "CONTENT_LENGTH" "5"
			    "\x0c\x00" "QUERY_STRING") },
			{ FCGI_PARAMS, 1, CONTENT("") },
			{ FCGI_STDIN, 1, CONTENT("hello") },
			{ FCGI_STDIN, 1, CONTENT("") },
		},
		.nrecs = 5,
		.end = END_CLEAN,
	},
	{
		.name = "GET_VALUES on request id 0",
		BYTES("\x01\x09\x00\x00\x00\x30\x00\x00"
		    "\x0e\x00" "FCGI_MAX_CONNS"
		    "\x0d\x00" "FCGI_MAX_REQS"
		    "\x0f\x00" "FCGI_MPXS_CONNS"),
		.recs = { { FCGI_GET_VALUES, 0, CONTENT(
		    "\x0e\x00" "FCGI_MAX_CONNS"
		    "\x0d\x00" "FCGI_MAX_REQS"
		    "\x0f\x00" "FCGI_MPXS_CONNS") } },
		.nrecs = 1,
		.end = END_CLEAN,
	},
	{
		.name = "unknown type, highest request id, reserved byte set",
		BYTES("\x01\x2a\xff\xff\x00\x03\x05\x99" "abc" "\x01\x02\x03\x04\x05"
		    "\x01\xff\x12\x34\x00\x00\x00\xff"),
		.recs = {
			{ 0x2a, 0xffff, CONTENT("abc") },
			{ 0xff, 0x1234, CONTENT("") },
		},
		.nrecs = 2,
		.end = END_CLEAN,
	},
	{
		.name = "version 0 first",
		BYTES("\x00\x01\x00\x01\x00\x08\x00\x00"
		    "\x00\x01\x01\x00\x00\x00\x00\x00"),
		.end = END_ERROR,
		.stop = 8,
	},
	{
		.name = "an HTTP client on the FastCGI port",
		BYTES("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		.end = END_ERROR,
		.stop = 8,
	},
	{
		.name = "version 2 after a good record, good bytes after",
		BYTES("\x01\x05\x00\x01\x00\x02\x06\x00" "ok" "\x00\x00\x00\x00\x00\x00"
		    "\x02\x05\x00\x01\x00\x00\x00\x00"
		    "\x01\x05\x00\x01\x00\x00\x00\x00"),
		.recs = { { FCGI_STDIN, 1, CONTENT("ok") } },
		.nrecs = 1,
		.end = END_ERROR,
		.stop = 24,
	},
	{
		.name = "version 0xff",
		BYTES("\xff\x01\x00\x01\x00\x00\x00\x00"),
		.end = END_ERROR,
		.stop = 8,
	},
	{
		.name = "EOF inside a header",
		BYTES("\x01\x05\x00\x01\x00\x00\x00\x00" "\x01\x05\x00"),
		.recs = { { FCGI_STDIN, 1, CONTENT("") } },
		.nrecs = 1,
		.end = END_OPEN,
	},
	{
		.name = "EOF inside content",
		BYTES("\x01\x06\x00\x01\x00\x0a\x00\x00" "0123"),
		.recs = { { FCGI_STDOUT, 1, CONTENT("0123"), .open = true } },
		.nrecs = 1,
		.end = END_OPEN,
	},
	{
		.name = "EOF after content, inside padding",
		BYTES("\x01\x06\x00\x01\x00\x03\x05\x00" "abc" "\x00\x00"),
		.recs = { { FCGI_STDOUT, 1, CONTENT("abc"), .open = true } },
		.nrecs = 1,
		.end = END_OPEN,
	},
	{
		.name = "EOF right after a header with content to come",
		BYTES("\x01\x04\x00\x01\x00\x01\x00\x00"),
		.recs = { { FCGI_PARAMS, 1, CONTENT(""), .open = true } },
		.nrecs = 1,
		.end = END_OPEN,
	},
	{ .name = "255 bytes of padding", .build = build_padding_255 },
	{ .name = "content length 65535", .build = build_content_65535 },
	{
		.name = "content 65535 and padding 255",
		.build = build_content_and_padding_max,
	},
	{ .name = "length byte order", .build = build_length_byte_order },
	{ .name = "content lengths 0..16", .build = build_many_small },
	{
		.name = "bad version after a 4000-byte record",
		.build = build_bad_version_after_big,
	},
	{
		.name = "EOF in 255 bytes of padding",
		.build = build_eof_in_long_padding,
	},
};

static void
stream_init(struct stream *s, const struct parse_vec *v)
{
	if (v->build != NULL) {
		v->build(s);
		return;
	}
	memset(s, 0, sizeof(*s));
	s->bytes = (const uint8_t *)v->bytes;
	s->len = v->len;
	memcpy(s->recs, v->recs, sizeof(s->recs));
	s->nrecs = v->nrecs;
	s->end = v->end;
	s->stop = v->stop;
}

static void
stream_fini(struct stream *s)
{
	free(s->heap);
}

/* What the parser reported, gathered across however many calls. */
struct got_rec {
	struct fcgi_header	 hdr;
	size_t			 off;	/* into got.content */
	size_t			 len;
	bool			 ended;
};

struct got {
	struct got_rec		 recs[MAX_RECS];
	size_t			 nrecs;
	uint8_t			*content;
	size_t			 content_fill;
	enum want_end		 end;
	enum fcgi_error		 error;
	size_t			 consumed;
	struct fcgi_parser	 p;
};

static void
got_init(struct got *g, size_t stream_len)
{
	memset(g, 0, sizeof(*g));
	g->content = malloc(stream_len + 1);
	NEED(g->content != NULL, "out of memory");
	g->end = END_CLEAN;
	fcgi_parser_init(&g->p);
}

static void
got_fini(struct got *g)
{
	free(g->content);
}

/*
 * Feeds one piece (a heap block of exactly N bytes) until the parser asks
 * for more, checking the fcgi_parse contract on every event.
 */
static void
feed_piece(struct got *g, const uint8_t *piece, size_t n, const char *ctx)
{
	struct fcgi_parser	*p = &g->p;
	struct got_rec		*r;
	enum fcgi_event		 ev;
	size_t			 pos = 0, c, calls = 0;

	if (g->end == END_ERROR) {
		/* A broken parser stays broken and takes nothing. */
		c = SIZE_MAX;
		ev = fcgi_parse(p, piece, n, &c);
		NEED(ev == FCGI_EV_ERROR && c == 0,
		    "%s: broken parser gave event %d, consumed %zu", ctx,
		    (int)ev, c);
		NEED(p->state == FCGI_ST_BROKEN && p->error == g->error,
		    "%s: broken parser changed state", ctx);
		return;
	}
	for (;;) {
		/* Only RECORD_END may consume nothing, once per record. */
		NEED(++calls <= 2 * n + 4, "%s: parser spins", ctx);
		c = SIZE_MAX;
		ev = fcgi_parse(p, piece + pos, n - pos, &c);
		NEED(c <= n - pos, "%s: consumed %zu of %zu", ctx, c,
		    n - pos);
		if (ev != FCGI_EV_CONTENT)
			NEED(p->ev_data == NULL && p->ev_len == 0,
			    "%s: event %d carries data", ctx, (int)ev);
		r = g->nrecs > 0 ? &g->recs[g->nrecs - 1] : NULL;
		switch (ev) {
		case FCGI_EV_NEED_MORE:
			NEED(c == n - pos,
			    "%s: NEED_MORE with %zu of %zu bytes unread", ctx,
			    n - pos - c, n - pos);
			g->consumed += c;
			return;
		case FCGI_EV_HEADER:
			NEED(r == NULL || r->ended,
			    "%s: header inside a record", ctx);
			NEED(g->nrecs < MAX_RECS, "%s: raise MAX_RECS", ctx);
			NEED(p->hdr.version == FCGI_VERSION_1,
			    "%s: HEADER for version %u", ctx,
			    (unsigned)p->hdr.version);
			r = &g->recs[g->nrecs++];
			r->hdr = p->hdr;
			r->off = g->content_fill;
			r->len = 0;
			r->ended = false;
			break;
		case FCGI_EV_CONTENT:
			NEED(r != NULL && !r->ended,
			    "%s: content outside a record", ctx);
			NEED(p->ev_len > 0 && p->ev_len <= c,
			    "%s: slice of %zu from %zu consumed", ctx,
			    p->ev_len, c);
			NEED(p->ev_data == piece + pos + c - p->ev_len,
			    "%s: slice is not the bytes just consumed", ctx);
			NEED(r->len + p->ev_len <= r->hdr.content_length,
			    "%s: more content than the header said", ctx);
			memcpy(g->content + g->content_fill, p->ev_data,
			    p->ev_len);
			g->content_fill += p->ev_len;
			r->len += p->ev_len;
			break;
		case FCGI_EV_RECORD_END:
			NEED(r != NULL && !r->ended,
			    "%s: RECORD_END outside a record", ctx);
			NEED(r->len == r->hdr.content_length,
			    "%s: record ended after %zu of %u content bytes",
			    ctx, r->len, (unsigned)r->hdr.content_length);
			r->ended = true;
			break;
		case FCGI_EV_ERROR:
			NEED(p->error != FCGI_ERR_NONE &&
			    p->state == FCGI_ST_BROKEN,
			    "%s: ERROR without a broken state", ctx);
			g->end = END_ERROR;
			g->error = p->error;
			g->consumed += c;
			pos += c;
			/* The rest of this piece is refused as well. */
			feed_piece(g, piece + pos, n - pos, ctx);
			return;
		default:
			ck_abort_msg("%s: unknown event %d", ctx, (int)ev);
		}
		pos += c;
		g->consumed += c;
	}
}

/* Feeds S in pieces that end at CUTS[0] < ... <= CUTS[NCUTS - 1] == len. */
static void
feed(struct got *g, const struct stream *s, const size_t *cuts, size_t ncuts,
    const char *ctx)
{
	size_t		 i, from = 0;
	uint8_t		*piece;

	got_init(g, s->len);
	for (i = 0; i < ncuts; i++) {
		NEED(from <= cuts[i], "%s: cuts out of order", ctx);
		piece = copy_exact(s->bytes + from, cuts[i] - from);
		feed_piece(g, piece, cuts[i] - from, ctx);
		free(piece);
		from = cuts[i];
	}
	NEED(from == s->len, "%s: cuts miss the end", ctx);
	if (g->end != END_ERROR && !(g->p.state == FCGI_ST_DONE ||
	    (g->p.state == FCGI_ST_HEADER && g->p.hfill == 0)))
		g->end = END_OPEN;
}

static void
got_matches_want(const struct got *g, const struct stream *s, const char *ctx)
{
	const struct got_rec	*r;
	const struct want_rec	*w;
	size_t			 i;

	ck_assert_msg(g->nrecs == s->nrecs, "%s: %zu records, want %zu", ctx,
	    g->nrecs, s->nrecs);
	for (i = 0; i < s->nrecs; i++) {
		r = &g->recs[i];
		w = &s->recs[i];
		ck_assert_msg(r->hdr.type == w->type &&
		    r->hdr.request_id == w->request_id,
		    "%s: record %zu is type %u id %u, want type %u id %u", ctx,
		    i, (unsigned)r->hdr.type, (unsigned)r->hdr.request_id,
		    (unsigned)w->type, (unsigned)w->request_id);
		ck_assert_msg(r->len == w->content_len &&
		    mem_same(g->content + r->off, w->content, r->len),
		    "%s: record %zu content differs (%zu bytes, want %zu)",
		    ctx, i, r->len, w->content_len);
		ck_assert_msg(r->ended == !w->open,
		    "%s: record %zu %s", ctx, i,
		    r->ended ? "ended, want it open" : "open, want it ended");
	}
	ck_assert_msg(g->end == s->end, "%s: stream end %d, want %d", ctx,
	    (int)g->end, (int)s->end);
	if (s->end == END_ERROR) {
		ck_assert_int_eq(g->error, FCGI_ERR_VERSION);
		ck_assert_msg(g->consumed == s->stop,
		    "%s: error after %zu bytes, want %zu", ctx, g->consumed,
		    s->stop);
	} else
		ck_assert_msg(g->consumed == s->len,
		    "%s: consumed %zu of %zu", ctx, g->consumed, s->len);
}

static void
got_same(const struct got *a, const struct got *b, const char *ctx)
{
	size_t	 i;

	NEED(a->nrecs == b->nrecs, "%s: %zu records, whole feed %zu",
	    ctx, a->nrecs, b->nrecs);
	for (i = 0; i < a->nrecs; i++)
		NEED(memcmp(&a->recs[i].hdr, &b->recs[i].hdr,
		    sizeof(a->recs[i].hdr)) == 0 &&
		    a->recs[i].len == b->recs[i].len &&
		    a->recs[i].ended == b->recs[i].ended &&
		    mem_same(a->content + a->recs[i].off,
		    b->content + b->recs[i].off, a->recs[i].len),
		    "%s: record %zu differs from the whole feed", ctx, i);
	NEED(a->end == b->end && a->error == b->error &&
	    a->consumed == b->consumed && a->p.state == b->p.state,
	    "%s: end state differs from the whole feed", ctx);
}

/* Feeds V whole and checks it against the vector; the caller frees G. */
static void
feed_whole(struct got *g, const struct stream *s, const char *name)
{
	size_t	 cut = s->len;

	feed(g, s, &cut, 1, name);
	got_matches_want(g, s, name);
}

START_TEST(parse_whole)
{
	const struct parse_vec	*v = &parse_vecs[_i];
	struct stream		 s;
	struct got		 g;

	stream_init(&s, v);
	feed_whole(&g, &s, v->name);
	got_fini(&g);
	stream_fini(&s);
}
END_TEST

START_TEST(parse_split_every_byte)
{
	const struct parse_vec	*v = &parse_vecs[_i];
	struct stream		 s;
	struct got		 whole, g;
	size_t			 cuts[2], k;
	char			 ctx[160];

	stream_init(&s, v);
	feed_whole(&whole, &s, v->name);
	/* k == 0 and k == len feed an empty piece: that must be harmless. */
	for (k = 0; k <= s.len; k++) {
		snprintf(ctx, sizeof(ctx), "%s, split at %zu", v->name, k);
		cuts[0] = k;
		cuts[1] = s.len;
		feed(&g, &s, cuts, 2, ctx);
		got_same(&g, &whole, ctx);
		got_fini(&g);
	}
	got_fini(&whole);
	stream_fini(&s);
}
END_TEST

START_TEST(parse_split_every_pair)
{
	const struct parse_vec	*v = &parse_vecs[_i];
	struct stream		 s;
	struct got		 whole, g;
	size_t			 cuts[3], j, k;
	char			 ctx[160];

	stream_init(&s, v);
	if (s.len <= PAIR_SPLIT_MAX) {
		feed_whole(&whole, &s, v->name);
		for (j = 0; j <= s.len; j++) {
			for (k = j; k <= s.len; k++) {
				snprintf(ctx, sizeof(ctx),
				    "%s, split at %zu and %zu", v->name, j, k);
				cuts[0] = j;
				cuts[1] = k;
				cuts[2] = s.len;
				feed(&g, &s, cuts, 3, ctx);
				got_same(&g, &whole, ctx);
				got_fini(&g);
			}
		}
		got_fini(&whole);
	}
	stream_fini(&s);
}
END_TEST

START_TEST(parse_one_byte_per_call)
{
	const struct parse_vec	*v = &parse_vecs[_i];
	struct stream		 s;
	struct got		 whole, g;
	size_t			*cuts, k;
	char			 ctx[160];

	stream_init(&s, v);
	feed_whole(&whole, &s, v->name);
	cuts = calloc(s.len + 1, sizeof(*cuts));
	ck_assert_ptr_nonnull(cuts);
	for (k = 0; k < s.len; k++)
		cuts[k] = k + 1;
	snprintf(ctx, sizeof(ctx), "%s, one byte per call", v->name);
	/* An empty stream is one empty piece. */
	feed(&g, &s, cuts, s.len > 0 ? s.len : 1, ctx);
	got_same(&g, &whole, ctx);
	got_fini(&g);
	free(cuts);
	got_fini(&whole);
	stream_fini(&s);
}
END_TEST

/* Once broken, a parser refuses every later byte, good ones included. */
static const struct {
	const char	*name;
	const char	*bytes;
	size_t		 len;
	uint8_t		 version;
} broken_vecs[] = {
	{ "version 0", BYTES("\x00\x01\x00\x01\x00\x00\x00\x00"), 0 },
	{ "version 2", BYTES("\x02\x05\x00\x01\x00\x00\x00\x00"), 2 },
	{ "version 0xff", BYTES("\xff\xff\xff\xff\xff\xff\xff\xff"), 0xff },
	{ "HTTP request line", BYTES("GET / HT"), 'G' },
};

START_TEST(parse_error_is_sticky)
{
	static const uint8_t	 good[] = "\x01\x05\x00\x01\x00\x00\x00\x00";
	struct fcgi_parser	 p;
	uint8_t			*bytes;
	size_t			 c;
	int			 i;

	bytes = copy_exact(broken_vecs[_i].bytes, broken_vecs[_i].len);
	fcgi_parser_init(&p);
	ck_assert_int_eq(fcgi_parse(&p, bytes, broken_vecs[_i].len, &c),
	    FCGI_EV_ERROR);
	ck_assert_uint_eq(c, FCGI_HEADER_LEN);
	ck_assert_int_eq(p.error, FCGI_ERR_VERSION);
	ck_assert_uint_eq(p.hdr.version, broken_vecs[_i].version);
	ck_assert_str_eq(fcgi_error_str(p.error),
	    "unsupported protocol version");
	for (i = 0; i < 3; i++) {
		c = 99;
		ck_assert_int_eq(fcgi_parse(&p, good, sizeof(good) - 1, &c),
		    FCGI_EV_ERROR);
		ck_assert_uint_eq(c, 0);
		ck_assert_ptr_null(p.ev_data);
		ck_assert_int_eq(p.error, FCGI_ERR_VERSION);
		ck_assert_int_eq(fcgi_parse(&p, good, 0, &c), FCGI_EV_ERROR);
		ck_assert_uint_eq(c, 0);
	}
	/* fcgi_parser_init is the way back, for a new connection. */
	fcgi_parser_init(&p);
	ck_assert_int_eq(fcgi_parse(&p, good, sizeof(good) - 1, &c),
	    FCGI_EV_HEADER);
	ck_assert_int_eq(fcgi_parse(&p, good + c, sizeof(good) - 1 - c, &c),
	    FCGI_EV_RECORD_END);
	free(bytes);
}
END_TEST

/*
 * Headers.
 */

static const struct {
	enum fcgi_type	 type;
	uint16_t	 request_id;
	uint16_t	 content_length;
	uint8_t		 padding_length;
	const char	*bytes;
} header_vecs[] = {
	{ FCGI_BEGIN_REQUEST, 1, 8, 0, "\x01\x01\x00\x01\x00\x08\x00\x00" },
	{ FCGI_PARAMS, 1, 94, 2, "\x01\x04\x00\x01\x00\x5e\x02\x00" },
	{ FCGI_STDOUT, 0x0102, 0x0304, 5, "\x01\x06\x01\x02\x03\x04\x05\x00" },
	{ FCGI_GET_VALUES, 0, 0, 0, "\x01\x09\x00\x00\x00\x00\x00\x00" },
	{ FCGI_GET_VALUES_RESULT, 0, 48, 0,
	    "\x01\x0a\x00\x00\x00\x30\x00\x00" },
	{ FCGI_UNKNOWN_TYPE, 0, 8, 0, "\x01\x0b\x00\x00\x00\x08\x00\x00" },
	{ FCGI_STDIN, 0xffff, 0xffff, 0xff, "\x01\x05\xff\xff\xff\xff\xff\x00" },
	{ FCGI_END_REQUEST, 0x8000, 0x0080, 0x80,
	    "\x01\x03\x80\x00\x00\x80\x80\x00" },
	{ (enum fcgi_type)0x2a, 0x00ff, 0xff00, 1,
	    "\x01\x2a\x00\xff\xff\x00\x01\x00" },
};

START_TEST(header_round_trip)
{
	uint8_t			 out[FCGI_HEADER_LEN];
	struct fcgi_header	 h;
	const uint8_t		*want = (const uint8_t *)header_vecs[_i].bytes;

	memset(out, 0xa5, sizeof(out));
	fcgi_header_encode(out, header_vecs[_i].type,
	    header_vecs[_i].request_id, header_vecs[_i].content_length,
	    header_vecs[_i].padding_length);
	ck_assert_mem_eq(out, want, FCGI_HEADER_LEN);

	memset(&h, 0x5a, sizeof(h));
	fcgi_header_decode(want, &h);
	ck_assert_uint_eq(h.version, FCGI_VERSION_1);
	ck_assert_uint_eq(h.type, (unsigned)header_vecs[_i].type);
	ck_assert_uint_eq(h.request_id, header_vecs[_i].request_id);
	ck_assert_uint_eq(h.content_length, header_vecs[_i].content_length);
	ck_assert_uint_eq(h.padding_length, header_vecs[_i].padding_length);

	fcgi_header_encode(out, (enum fcgi_type)h.type, h.request_id,
	    h.content_length, h.padding_length);
	ck_assert_mem_eq(out, want, FCGI_HEADER_LEN);
}
END_TEST

/* Decoding reports any version as it is and ignores the reserved byte. */
static const struct {
	const char	*bytes;
	uint8_t		 version, type, padding_length;
	uint16_t	 request_id, content_length;
} header_decode_vecs[] = {
	{ "\x02\x0b\xff\xfe\xab\xcd\xef\x99", 2, 11, 0xef, 0xfffe, 0xabcd },
	{ "\x00\x00\x00\x00\x00\x00\x00\xff", 0, 0, 0, 0, 0 },
	{ "GET / HT", 'G', 'E', 'H', 0x5420, 0x2f20 },
};

START_TEST(header_decode_any)
{
	struct fcgi_header	 h;

	fcgi_header_decode((const uint8_t *)header_decode_vecs[_i].bytes, &h);
	ck_assert_uint_eq(h.version, header_decode_vecs[_i].version);
	ck_assert_uint_eq(h.type, header_decode_vecs[_i].type);
	ck_assert_uint_eq(h.request_id, header_decode_vecs[_i].request_id);
	ck_assert_uint_eq(h.content_length,
	    header_decode_vecs[_i].content_length);
	ck_assert_uint_eq(h.padding_length,
	    header_decode_vecs[_i].padding_length);
}
END_TEST

/*
 * Fixed bodies.
 */

static const struct {
	uint16_t	 role;
	uint8_t		 flags;
	const char	*bytes;
} begin_vecs[] = {
	{ 1, FCGI_KEEP_CONN, "\x00\x01\x01\x00\x00\x00\x00\x00" },
	{ 1, 0, "\x00\x01\x00\x00\x00\x00\x00\x00" },
	{ 2, 0, "\x00\x02\x00\x00\x00\x00\x00\x00" },
	{ 3, FCGI_KEEP_CONN, "\x00\x03\x01\x00\x00\x00\x00\x00" },
	{ 0x0102, 0x80, "\x01\x02\x80\x00\x00\x00\x00\x00" },
	{ 0xffff, 0xff, "\xff\xff\xff\x00\x00\x00\x00\x00" },
	{ 0, 0, "\x00\x00\x00\x00\x00\x00\x00\x00" },
};

START_TEST(begin_round_trip)
{
	uint8_t			 out[8];
	struct fcgi_begin	 b;
	const uint8_t		*want = (const uint8_t *)begin_vecs[_i].bytes;

	memset(out, 0xa5, sizeof(out));
	fcgi_begin_encode(out, begin_vecs[_i].role, begin_vecs[_i].flags);
	ck_assert_mem_eq(out, want, 8);
	ck_assert_int_eq(fcgi_begin_decode(want, 8, &b), 0);
	ck_assert_uint_eq(b.role, begin_vecs[_i].role);
	ck_assert_uint_eq(b.flags, begin_vecs[_i].flags);
}
END_TEST

/* The body is exactly 8 bytes; its reserved bytes are not looked at. */
static const struct {
	const char	*bytes;
	size_t		 len;
	int		 ret;
	uint16_t	 role;
	uint8_t		 flags;
} begin_decode_vecs[] = {
	{ BYTES("\x00\x01\x01\xff\xff\xff\xff\xff"), 0, 1, 1 },
	{ BYTES("\x00\x03\x00\x00\x00\x00\x00"), -1, 0, 0 },
	{ BYTES("\x00\x01\x01\x00\x00\x00\x00\x00\x00"), -1, 0, 0 },
	{ BYTES(""), -1, 0, 0 },
	{ BYTES("\x00"), -1, 0, 0 },
};

START_TEST(begin_decode_lengths)
{
	struct fcgi_begin	 b = { .role = 0x5a5a, .flags = 0x5a };
	uint8_t			*body;

	body = copy_exact(begin_decode_vecs[_i].bytes,
	    begin_decode_vecs[_i].len);
	ck_assert_int_eq(fcgi_begin_decode(body, begin_decode_vecs[_i].len,
	    &b), begin_decode_vecs[_i].ret);
	if (begin_decode_vecs[_i].ret == 0) {
		ck_assert_uint_eq(b.role, begin_decode_vecs[_i].role);
		ck_assert_uint_eq(b.flags, begin_decode_vecs[_i].flags);
	}
	free(body);
}
END_TEST

static const struct {
	uint32_t			 app_status;
	enum fcgi_protocol_status	 status;
	const char			*bytes;
} end_vecs[] = {
	{ 0, FCGI_REQUEST_COMPLETE, "\x00\x00\x00\x00\x00\x00\x00\x00" },
	{ 1, FCGI_CANT_MPX_CONN, "\x00\x00\x00\x01\x01\x00\x00\x00" },
	{ 0xffffffff, FCGI_OVERLOADED, "\xff\xff\xff\xff\x02\x00\x00\x00" },
	{ 0x01020304, FCGI_UNKNOWN_ROLE, "\x01\x02\x03\x04\x03\x00\x00\x00" },
	{ 0x80000000, FCGI_REQUEST_COMPLETE,
	    "\x80\x00\x00\x00\x00\x00\x00\x00" },
};

START_TEST(end_encode)
{
	uint8_t	 out[8];

	memset(out, 0xa5, sizeof(out));
	fcgi_end_encode(out, end_vecs[_i].app_status, end_vecs[_i].status);
	ck_assert_mem_eq(out, end_vecs[_i].bytes, 8);
}
END_TEST

static const struct {
	uint8_t		 type;
	const char	*bytes;
} unknown_type_vecs[] = {
	{ 0x2a, "\x2a\x00\x00\x00\x00\x00\x00\x00" },
	{ 0, "\x00\x00\x00\x00\x00\x00\x00\x00" },
	{ 12, "\x0c\x00\x00\x00\x00\x00\x00\x00" },
	{ 0xff, "\xff\x00\x00\x00\x00\x00\x00\x00" },
};

START_TEST(unknown_type_encode)
{
	uint8_t	 out[8];

	memset(out, 0xa5, sizeof(out));
	fcgi_unknown_type_encode(out, unknown_type_vecs[_i].type);
	ck_assert_mem_eq(out, unknown_type_vecs[_i].bytes, 8);
}
END_TEST

/*
 * Name-value pairs.
 */

struct want_nv {
	const char	*name;
	size_t		 name_len;
	const char	*value;
	size_t		 value_len;
};
#define NV(n, v)	{ (n), sizeof(n) - 1, (v), sizeof(v) - 1 }

static const struct {
	const char	*name;
	const char	*bytes;
	size_t		 len;
	struct want_nv	 pairs[MAX_PAIRS];
	size_t		 npairs;
	int		 last;	/* 0: a clean end; -1: the next pair is refused */
} nv_vecs[] = {
	{ "no pairs", BYTES(""), { { 0 } }, 0, 0 },
	{ "1-byte lengths", BYTES("\x03\x03" "FOOBAR"),
	    { NV("FOO", "BAR") }, 1, 0 },
	{ "empty name and value", BYTES("\x00\x00"), { NV("", "") }, 1, 0 },
	{ "empty value", BYTES("\x0c\x00" "QUERY_STRING"),
	    { NV("QUERY_STRING", "") }, 1, 0 },
	{ "empty name", BYTES("\x00\x03" "BAR"), { NV("", "BAR") }, 1, 0 },
	{ "4-byte encodings of small lengths",
	    BYTES("\x80\x00\x00\x03\x80\x00\x00\x03" "FOOBAR"),
	    { NV("FOO", "BAR") }, 1, 0 },
	{ "4-byte encodings of zero", BYTES("\x80\x00\x00\x00\x80\x00\x00\x00"),
	    { NV("", "") }, 1, 0 },
	{ "1-byte name, 4-byte value",
	    BYTES("\x01\x80\x00\x00\x02" "Axy"), { NV("A", "xy") }, 1, 0 },
	{ "4-byte name, 1-byte value",
	    BYTES("\x80\x00\x00\x02\x01" "xyA"), { NV("xy", "A") }, 1, 0 },
	{ "a whole nginx PARAMS body",
	    BYTES("\x0f\x1a" "SCRIPT_FILENAME" "/srv/www/cgi-bin/hello.cgi"
	    "\x0e\x04" "REQUEST_METHOD" "POST"
	    "\x0e\x01" "CONTENT_LENGTH" "5"
	    "\x0c\x00" "QUERY_STRING"
	    "\x00\x00"
	    "\x80\x00\x00\x09\x03" "HTTP_HOST" "a.b"),
	    {
		NV("SCRIPT_FILENAME", "/srv/www/cgi-bin/hello.cgi"),
		NV("REQUEST_METHOD", "POST"),
		NV("CONTENT_LENGTH", "5"),
		NV("QUERY_STRING", ""),
		NV("", ""),
		NV("HTTP_HOST", "a.b"),
	    }, 6, 0 },
	{ "NUL bytes in name and value", BYTES("\x02\x03" "a\0b\0c"),
	    { NV("a\0", "b\0c") }, 1, 0 },
	{ "value cut short", BYTES("\x03\x03" "FOOBA"), { { 0 } }, 0, -1 },
	{ "value length missing", BYTES("\x03"), { { 0 } }, 0, -1 },
	{ "4-byte name length cut", BYTES("\x80\x00\x00"), { { 0 } }, 0, -1 },
	{ "4-byte value length cut", BYTES("\x03\x80\x00" "FOO"),
	    { { 0 } }, 0, -1 },
	{ "good pair then a stray byte", BYTES("\x01\x01" "ab" "\x05"),
	    { NV("a", "b") }, 1, -1 },
	{ "name 0x7fffffff", BYTES("\xff\xff\xff\xff\x00" "abc"),
	    { { 0 } }, 0, -1 },
	{ "value 0x7fffffff", BYTES("\x00\xff\xff\xff\xff" "abc"),
	    { { 0 } }, 0, -1 },
	{ "name fits, value 0x7fffffff", BYTES("\x01\xff\xff\xff\xff" "AB"),
	    { { 0 } }, 0, -1 },
	{ "both 0x7fffffff", BYTES("\xff\xff\xff\xff\xff\xff\xff\xff"
	    "abcdefgh"), { { 0 } }, 0, -1 },
	{ "name 0x7fffffff after a good pair",
	    BYTES("\x00\x00" "\xff\xff\xff\xff\x01" "x"),
	    { NV("", "") }, 1, -1 },
	{ "name one past the end", BYTES("\x04\x00" "abc"), { { 0 } }, 0, -1 },
	{ "value one past the end", BYTES("\x01\x03" "abc"), { { 0 } }, 0, -1 },
	{ "4-byte length 256 in 6 bytes", BYTES("\x80\x00\x01\x00\x00" "x"),
	    { { 0 } }, 0, -1 },
};

static void
nv_check_pair(const struct fcgi_nv *nv, const struct want_nv *w,
    const char *ctx, size_t i)
{
	ck_assert_msg(nv->name_len == w->name_len &&
	    mem_same(nv->name, w->name, w->name_len),
	    "%s: pair %zu name differs", ctx, i);
	ck_assert_msg(nv->value_len == w->value_len &&
	    mem_same(nv->value, w->value, w->value_len),
	    "%s: pair %zu value differs", ctx, i);
}

START_TEST(nv_decode)
{
	struct fcgi_nv	 nv;
	uint8_t		*buf;
	size_t		 pos = 0, before, i;
	int		 r;

	buf = copy_exact(nv_vecs[_i].bytes, nv_vecs[_i].len);
	for (i = 0; i < nv_vecs[_i].npairs; i++) {
		before = pos;
		ck_assert_int_eq(fcgi_nv_decode(buf, nv_vecs[_i].len, &pos,
		    &nv), 1);
		ck_assert_uint_gt(pos, before);
		ck_assert_uint_le(pos, nv_vecs[_i].len);
		/* Both slices lie within what the call consumed. */
		ck_assert(nv.name >= buf + before);
		ck_assert(nv.value + nv.value_len == buf + pos);
		nv_check_pair(&nv, &nv_vecs[_i].pairs[i], nv_vecs[_i].name, i);
	}
	before = pos;
	/* Asked twice: a refusal or an end does not move *pos. */
	for (i = 0; i < 2; i++) {
		r = fcgi_nv_decode(buf, nv_vecs[_i].len, &pos, &nv);
		ck_assert_msg(r == nv_vecs[_i].last, "%s: got %d, want %d",
		    nv_vecs[_i].name, r, nv_vecs[_i].last);
		ck_assert_uint_eq(pos, before);
	}
	if (nv_vecs[_i].last == 0)
		ck_assert_uint_eq(pos, nv_vecs[_i].len);
	free(buf);
}
END_TEST

/*
 * Every proper prefix of a valid body decodes the pairs it holds whole,
 * then ends cleanly at a pair boundary or refuses the cut pair.
 */
START_TEST(nv_decode_truncated)
{
	struct fcgi_nv	 nv;
	uint8_t		*buf;
	size_t		 ends[MAX_PAIRS] = { 0 };
	size_t		 len = nv_vecs[_i].len, k, pos, m, i;
	int		 r;
	char		 ctx[160];

	if (nv_vecs[_i].last != 0)
		return;
	buf = copy_exact(nv_vecs[_i].bytes, len);
	pos = 0;
	for (i = 0; i < nv_vecs[_i].npairs; i++) {
		ck_assert_int_eq(fcgi_nv_decode(buf, len, &pos, &nv), 1);
		ends[i] = pos;
	}
	free(buf);
	for (k = 0; k < len; k++) {
		snprintf(ctx, sizeof(ctx), "%s, cut at %zu", nv_vecs[_i].name,
		    k);
		for (m = 0; m < nv_vecs[_i].npairs && ends[m] <= k; m++)
			;
		buf = copy_exact(nv_vecs[_i].bytes, k);
		pos = 0;
		for (i = 0; i < m; i++) {
			ck_assert_msg(fcgi_nv_decode(buf, k, &pos, &nv) == 1,
			    "%s: pair %zu refused", ctx, i);
			nv_check_pair(&nv, &nv_vecs[_i].pairs[i], ctx, i);
		}
		r = fcgi_nv_decode(buf, k, &pos, &nv);
		ck_assert_msg(r == ((m > 0 ? ends[m - 1] : 0) == k ? 0 : -1),
		    "%s: got %d", ctx, r);
		ck_assert_uint_eq(pos, m > 0 ? ends[m - 1] : 0);
		free(buf);
	}
}
END_TEST

/* Encoded sizes; WANT is wider than size_t so that it never wraps. */
static const struct {
	size_t		 name_len;
	size_t		 value_len;
	uint64_t	 want;		/* 0: refused */
	const char	*prefix;	/* the length bytes */
	size_t		 prefix_len;
} nv_size_vecs[] = {
	{ 0, 0, 2, "\x00\x00", 2 },
	{ 1, 0, 3, "\x01\x00", 2 },
	{ 0, 1, 3, "\x00\x01", 2 },
	{ 127, 127, 256, "\x7f\x7f", 2 },
	{ 128, 127, 260, "\x80\x00\x00\x80\x7f", 5 },
	{ 127, 128, 260, "\x7f\x80\x00\x00\x80", 5 },
	{ 128, 128, 264, "\x80\x00\x00\x80\x80\x00\x00\x80", 8 },
	{ 255, 256, 519, "\x80\x00\x00\xff\x80\x00\x01\x00", 8 },
	{ 65535, 65536, 131079, "\x80\x00\xff\xff\x80\x01\x00\x00", 8 },
	{ 0x12345, 3, 0x12345 + 8, "\x80\x01\x23\x45\x03", 5 },
	{ 15, 1 << 20, 15 + (1 << 20) + 5, "\x0f\x80\x10\x00\x00", 5 },
	/* Sizes only: too big to allocate in a unit test. */
	{ FCGI_NV_MAX_LEN, 0, 5 + (uint64_t)FCGI_NV_MAX_LEN, NULL, 0 },
	{ 0, FCGI_NV_MAX_LEN, 5 + (uint64_t)FCGI_NV_MAX_LEN, NULL, 0 },
	/*
	 * Where size_t is 32 bits, 8 + 2 * 0x7fffffff does not fit: the only
	 * right answer is 0 (refused), not the wrapped sum.
	 */
	{ FCGI_NV_MAX_LEN, FCGI_NV_MAX_LEN, 8 + 2 * (uint64_t)FCGI_NV_MAX_LEN,
	    NULL, 0 },
	/* The largest pair whose size still fits in 32 bits. */
	{ FCGI_NV_MAX_LEN, FCGI_NV_MAX_LEN - 8, 2 * (uint64_t)FCGI_NV_MAX_LEN,
	    NULL, 0 },
	{ (size_t)FCGI_NV_MAX_LEN + 1, 0, 0, NULL, 0 },
	{ 0, (size_t)FCGI_NV_MAX_LEN + 1, 0, NULL, 0 },
	{ SIZE_MAX, SIZE_MAX, 0, NULL, 0 },
	{ SIZE_MAX, 0, 0, NULL, 0 },
};

START_TEST(nv_size)
{
	uint64_t	 want = nv_size_vecs[_i].want;

	/* A size that size_t cannot hold can only be refused. */
	if (want > SIZE_MAX)
		want = 0;
	ck_assert_msg(fcgi_nv_size(nv_size_vecs[_i].name_len,
	    nv_size_vecs[_i].value_len) == want,
	    "fcgi_nv_size(%zu, %zu) = %zu, want %llu",
	    nv_size_vecs[_i].name_len, nv_size_vecs[_i].value_len,
	    fcgi_nv_size(nv_size_vecs[_i].name_len,
	    nv_size_vecs[_i].value_len), (unsigned long long)want);
}
END_TEST

static uint8_t *
pattern_new(size_t len, uint8_t seed)
{
	uint8_t	*p;
	size_t	 i;

	p = malloc(len > 0 ? len : 1);
	ck_assert_ptr_nonnull(p);
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 13 + (i >> 8));
	return p;
}

START_TEST(nv_encode_round_trip)
{
	size_t		 nlen = nv_size_vecs[_i].name_len;
	size_t		 vlen = nv_size_vecs[_i].value_len;
	size_t		 size = (size_t)nv_size_vecs[_i].want, pos;
	size_t		 plen = nv_size_vecs[_i].prefix_len;
	uint8_t		*name, *value, *out;
	struct fcgi_nv	 nv;

	if (nv_size_vecs[_i].prefix == NULL)
		return;
	name = pattern_new(nlen, 1);
	value = pattern_new(vlen, 2);
	out = malloc(size);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(fcgi_nv_encode(out, size, name, nlen, value, vlen),
	    size);
	ck_assert_mem_eq(out, nv_size_vecs[_i].prefix, plen);
	ck_assert(mem_same(out + plen, name, nlen));
	ck_assert(mem_same(out + plen + nlen, value, vlen));

	pos = 0;
	ck_assert_int_eq(fcgi_nv_decode(out, size, &pos, &nv), 1);
	ck_assert_uint_eq(pos, size);
	ck_assert_uint_eq(nv.name_len, nlen);
	ck_assert_uint_eq(nv.value_len, vlen);
	ck_assert(mem_same(nv.name, name, nlen));
	ck_assert(mem_same(nv.value, value, vlen));
	ck_assert_int_eq(fcgi_nv_decode(out, size, &pos, &nv), 0);

	/* Refused when one byte short, and nothing is written then. */
	memset(out, 0xa5, size);
	ck_assert_uint_eq(fcgi_nv_encode(out, size - 1, name, nlen, value,
	    vlen), 0);
	ck_assert_uint_eq(fcgi_nv_encode(out, 0, name, nlen, value, vlen), 0);
	ck_assert_uint_eq(out[0], 0xa5);
	ck_assert_uint_eq(out[size - 1], 0xa5);
	free(out);
	free(value);
	free(name);
}
END_TEST

/* Lengths the codec cannot represent are refused whatever the capacity. */
START_TEST(nv_encode_refuses_big)
{
	static const uint8_t	 dummy[8];
	uint8_t			 out[16];

	if (nv_size_vecs[_i].want != 0 && nv_size_vecs[_i].want <= SIZE_MAX)
		return;
	memset(out, 0xa5, sizeof(out));
	ck_assert_uint_eq(fcgi_nv_encode(out, SIZE_MAX, dummy,
	    nv_size_vecs[_i].name_len, dummy, nv_size_vecs[_i].value_len), 0);
	ck_assert_uint_eq(out[0], 0xa5);
}
END_TEST

/*
 * Small helpers.
 */

static const struct {
	size_t	 content_length;
	uint8_t	 padding;
} padding_vecs[] = {
	{ 0, 0 }, { 1, 7 }, { 2, 6 }, { 5, 3 }, { 7, 1 }, { 8, 0 }, { 9, 7 },
	{ 15, 1 }, { 16, 0 }, { 94, 2 }, { 255, 1 }, { 256, 0 },
	{ 65534, 2 }, { 65535, 1 }, { 65536, 0 }, { SIZE_MAX, 1 },
	{ SIZE_MAX - 7, 0 },
};

START_TEST(padding_for)
{
	ck_assert_uint_eq(fcgi_padding_for(padding_vecs[_i].content_length),
	    padding_vecs[_i].padding);
}
END_TEST

START_TEST(padding_for_every_length)
{
	size_t	 n;
	uint8_t	 pad;

	for (n = 0; n <= FCGI_MAX_CONTENT; n++) {
		pad = fcgi_padding_for(n);
		NEED(pad < 8 && (n + pad) % 8 == 0,
		    "fcgi_padding_for(%zu) = %u", n, (unsigned)pad);
	}
}
END_TEST

static const struct {
	unsigned int	 type;
	const char	*name;
} type_name_vecs[] = {
	{ FCGI_BEGIN_REQUEST, "BEGIN_REQUEST" },
	{ FCGI_ABORT_REQUEST, "ABORT_REQUEST" },
	{ FCGI_END_REQUEST, "END_REQUEST" },
	{ FCGI_PARAMS, "PARAMS" },
	{ FCGI_STDIN, "STDIN" },
	{ FCGI_STDOUT, "STDOUT" },
	{ FCGI_STDERR, "STDERR" },
	{ FCGI_DATA, "DATA" },
	{ FCGI_GET_VALUES, "GET_VALUES" },
	{ FCGI_GET_VALUES_RESULT, "GET_VALUES_RESULT" },
	{ FCGI_UNKNOWN_TYPE, "UNKNOWN_TYPE" },
	{ 0, "unknown" },
	{ 12, "unknown" },
	{ 255, "unknown" },
	{ UINT_MAX, "unknown" },
};

START_TEST(type_name)
{
	ck_assert_str_eq(fcgi_type_name(type_name_vecs[_i].type),
	    type_name_vecs[_i].name);
}
END_TEST

static const struct {
	enum fcgi_error	 error;
	const char	*str;
} error_str_vecs[] = {
	{ FCGI_ERR_NONE, "no error" },
	{ FCGI_ERR_VERSION, "unsupported protocol version" },
	{ (enum fcgi_error)77, "unknown error" },
};

START_TEST(error_str)
{
	ck_assert_str_eq(fcgi_error_str(error_str_vecs[_i].error),
	    error_str_vecs[_i].str);
}
END_TEST

static Suite *
fcgi_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("fcgi");

	tc = tcase_create("parser");
	/* The 65 KB streams split at every byte take a moment under ASan. */
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, parse_whole, 0, NELEM(parse_vecs));
	tcase_add_loop_test(tc, parse_split_every_byte, 0, NELEM(parse_vecs));
	tcase_add_loop_test(tc, parse_split_every_pair, 0, NELEM(parse_vecs));
	tcase_add_loop_test(tc, parse_one_byte_per_call, 0,
	    NELEM(parse_vecs));
	tcase_add_loop_test(tc, parse_error_is_sticky, 0, NELEM(broken_vecs));
	suite_add_tcase(s, tc);

	tc = tcase_create("header");
	tcase_add_loop_test(tc, header_round_trip, 0, NELEM(header_vecs));
	tcase_add_loop_test(tc, header_decode_any, 0,
	    NELEM(header_decode_vecs));
	suite_add_tcase(s, tc);

	tc = tcase_create("bodies");
	tcase_add_loop_test(tc, begin_round_trip, 0, NELEM(begin_vecs));
	tcase_add_loop_test(tc, begin_decode_lengths, 0,
	    NELEM(begin_decode_vecs));
	tcase_add_loop_test(tc, end_encode, 0, NELEM(end_vecs));
	tcase_add_loop_test(tc, unknown_type_encode, 0,
	    NELEM(unknown_type_vecs));
	suite_add_tcase(s, tc);

	tc = tcase_create("nv");
	tcase_add_loop_test(tc, nv_decode, 0, NELEM(nv_vecs));
	tcase_add_loop_test(tc, nv_decode_truncated, 0, NELEM(nv_vecs));
	tcase_add_loop_test(tc, nv_size, 0, NELEM(nv_size_vecs));
	tcase_add_loop_test(tc, nv_encode_round_trip, 0, NELEM(nv_size_vecs));
	tcase_add_loop_test(tc, nv_encode_refuses_big, 0,
	    NELEM(nv_size_vecs));
	suite_add_tcase(s, tc);

	tc = tcase_create("helpers");
	tcase_add_loop_test(tc, padding_for, 0, NELEM(padding_vecs));
	tcase_add_test(tc, padding_for_every_length);
	tcase_add_loop_test(tc, type_name, 0, NELEM(type_name_vecs));
	tcase_add_loop_test(tc, error_str, 0, NELEM(error_str_vecs));
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return unit_run(fcgi_suite(), CK_FORK);
}
