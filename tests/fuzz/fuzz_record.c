/*
 * fuzz_record.c -- libFuzzer harness for the FastCGI record parser
 * (fcgi_parse in src/fcgi.c).
 *
 * The input is a byte stream as a peer would send it.  It is parsed three
 * ways: whole, in pieces whose sizes come from a generator seeded with the
 * input's own hash (so a crash replays from the input alone), and one byte
 * per call.  Each piece is a heap copy of exactly its size, so ASan sees a
 * read past the caller's buffer.  Every event is checked against the
 * fcgi_parse contract in fcgi.h and against the input bytes, the three
 * parses must agree on everything, and all of them must agree with a
 * twenty-line reference walk of the record framing.
 *
 * Build and run: tests/fuzz/run.sh.  Invariant failures abort(), which
 * libFuzzer reports as a crash and saves the input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "fuzz_record: %s:%d: invariant failed: %s\n",\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* What one parse of the whole input came to. */
struct run {
	const uint8_t		*data;		/* the whole input */
	size_t			 size;
	size_t			 off;		/* stream offset of the next byte */
	struct fcgi_parser	 p;
	uint64_t		 hash;		/* of headers, content, ends */
	size_t			 records;	/* completed */
	size_t			 headers;
	bool			 in_record;
	size_t			 rec_start;	/* stream offset of its header */
	size_t			 rec_content;	/* content bytes seen so far */
	bool			 broken;
	size_t			 broken_at;	/* stream offset after the bad header */
};

/* The record framing walked by hand: the oracle for every run. */
struct ref {
	size_t	 records;	/* complete records */
	size_t	 headers;	/* headers fully read, version 1 */
	bool	 broken;
	size_t	 broken_at;
	size_t	 tail;		/* stream offset where the last record began */
};

static uint64_t
fnv(uint64_t h, const uint8_t *p, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void
ref_walk(const uint8_t *d, size_t n, struct ref *r)
{
	size_t	 pos = 0, rec;

	memset(r, 0, sizeof(*r));
	while (n - pos >= FCGI_HEADER_LEN) {
		r->tail = pos;
		if (d[pos] != FCGI_VERSION_1) {
			r->broken = true;
			r->broken_at = pos + FCGI_HEADER_LEN;
			return;
		}
		r->headers++;
		rec = FCGI_HEADER_LEN + ((size_t)d[pos + 4] << 8 | d[pos + 5]) +
		    d[pos + 6];
		if (rec > n - pos)
			return;
		r->records++;
		pos += rec;
	}
	r->tail = pos;
}

static void
run_init(struct run *r, const uint8_t *data, size_t size)
{
	memset(r, 0, sizeof(*r));
	r->data = data;
	r->size = size;
	r->hash = 0xcbf29ce484222325ULL;
	fcgi_parser_init(&r->p);
}

/* Feeds one piece of N bytes, a heap block of exactly that size. */
static void
run_piece(struct run *r, const uint8_t *piece, size_t n)
{
	struct fcgi_parser	*p = &r->p;
	enum fcgi_event		 ev;
	size_t			 pos = 0, c, calls = 0, total;
	const uint8_t		*h;
	uint8_t			 tag;

	if (r->broken) {
		c = 1;
		CHECK(fcgi_parse(p, piece, n, &c) == FCGI_EV_ERROR);
		CHECK(c == 0);
		CHECK(p->state == FCGI_ST_BROKEN);
		return;
	}
	for (;;) {
		/* Only RECORD_END may consume nothing, once per record. */
		CHECK(++calls <= 2 * n + 4);
		c = SIZE_MAX;
		ev = fcgi_parse(p, piece + pos, n - pos, &c);
		CHECK(c <= n - pos);
		if (ev != FCGI_EV_CONTENT)
			CHECK(p->ev_data == NULL && p->ev_len == 0);
		switch (ev) {
		case FCGI_EV_NEED_MORE:
			CHECK(c == n - pos);
			r->off += c;
			return;
		case FCGI_EV_HEADER:
			CHECK(!r->in_record);
			CHECK(c <= FCGI_HEADER_LEN);
			CHECK(r->off + c >= FCGI_HEADER_LEN);
			r->rec_start = r->off + c - FCGI_HEADER_LEN;
			/* The header is the 8 input bytes that end here. */
			h = r->data + r->rec_start;
			CHECK(p->hdr.version == FCGI_VERSION_1 && h[0] == 1);
			CHECK(p->hdr.type == h[1]);
			CHECK(p->hdr.request_id == (h[2] << 8 | h[3]));
			CHECK(p->hdr.content_length == (h[4] << 8 | h[5]));
			CHECK(p->hdr.padding_length == h[6]);
			r->in_record = true;
			r->rec_content = 0;
			r->headers++;
			tag = 'H';
			r->hash = fnv(r->hash, &tag, 1);
			r->hash = fnv(r->hash, h, FCGI_HEADER_LEN);
			break;
		case FCGI_EV_CONTENT:
			CHECK(r->in_record);
			CHECK(p->ev_len > 0 && p->ev_len <= c);
			/* The slice is the bytes just consumed, in this piece. */
			CHECK(p->ev_data == piece + pos + c - p->ev_len);
			CHECK(r->rec_content + p->ev_len <= p->hdr.content_length);
			CHECK(r->rec_start + FCGI_HEADER_LEN + r->rec_content ==
			    r->off + c - p->ev_len);
			CHECK(memcmp(p->ev_data, r->data + r->off + c - p->ev_len,
			    p->ev_len) == 0);
			r->rec_content += p->ev_len;
			r->hash = fnv(r->hash, p->ev_data, p->ev_len);
			break;
		case FCGI_EV_RECORD_END:
			CHECK(r->in_record);
			CHECK(r->rec_content == p->hdr.content_length);
			total = FCGI_HEADER_LEN + (size_t)p->hdr.content_length +
			    p->hdr.padding_length;
			CHECK(r->off + c - r->rec_start == total);
			r->in_record = false;
			r->records++;
			tag = 'E';
			r->hash = fnv(r->hash, &tag, 1);
			break;
		case FCGI_EV_ERROR:
			CHECK(!r->in_record);
			CHECK(p->state == FCGI_ST_BROKEN);
			CHECK(p->error == FCGI_ERR_VERSION);
			CHECK(p->hdr.version != FCGI_VERSION_1);
			CHECK(fcgi_error_str(p->error) != NULL);
			r->off += c;
			r->broken = true;
			r->broken_at = r->off;
			/* The rest of the piece is refused too. */
			run_piece(r, piece + pos + c, n - pos - c);
			return;
		default:
			CHECK(!"unknown event");
		}
		pos += c;
		r->off += c;
	}
}

/*
 * Feeds the input whole (MAX_PIECE 0), one byte per call (1), or in pieces
 * of 0..MAX_PIECE bytes drawn from SEED.
 */
static void
run_feed(struct run *r, const uint8_t *data, size_t size, uint64_t seed,
    size_t max_piece)
{
	size_t	 off = 0, n;
	uint8_t	*piece;

	run_init(r, data, size);
	do {
		if (max_piece <= 1)
			n = max_piece == 0 ? size : 1;
		else {
			/* xorshift64: cheap, and it replays from the input. */
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			/* Now and then an empty piece: it must be harmless. */
			n = seed % (max_piece + 1);
		}
		if (n > size - off)
			n = size - off;
		piece = malloc(n > 0 ? n : 1);
		CHECK(piece != NULL);
		if (n > 0)
			memcpy(piece, data + off, n);
		run_piece(r, piece, n);
		free(piece);
		off += n;
	} while (off < size);
	CHECK(r->off == (r->broken ? r->broken_at : size));
}

static void
run_same(const struct run *a, const struct run *b)
{
	CHECK(a->hash == b->hash);
	CHECK(a->records == b->records && a->headers == b->headers);
	CHECK(a->broken == b->broken && a->broken_at == b->broken_at);
	CHECK(a->in_record == b->in_record);
	CHECK(a->p.state == b->p.state && a->p.hfill == b->p.hfill);
	CHECK(a->p.content_left == b->p.content_left);
	CHECK(a->p.padding_left == b->p.padding_left);
}

static void
run_matches_ref(const struct run *a, const struct ref *ref, size_t size)
{
	CHECK(a->records == ref->records && a->headers == ref->headers);
	CHECK(a->broken == ref->broken);
	if (ref->broken) {
		CHECK(a->broken_at == ref->broken_at);
		return;
	}
	/* Ends on a boundary exactly when the walk used every byte. */
	CHECK((ref->tail == size) == (a->p.state == FCGI_ST_DONE ||
	    (a->p.state == FCGI_ST_HEADER && a->p.hfill == 0)));
	CHECK(a->in_record == (ref->headers > ref->records));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t	 max_pieces[] = { 3, 16, 300, 70000 };
	struct run		 whole, split, bytewise;
	struct ref		 ref;
	uint64_t		 seed;

	ref_walk(data, size, &ref);
	seed = fnv(0xcbf29ce484222325ULL, data, size) | 1;

	run_feed(&whole, data, size, 0, 0);
	run_matches_ref(&whole, &ref, size);
	run_feed(&split, data, size, seed, max_pieces[seed >> 62]);
	run_same(&split, &whole);
	run_feed(&bytewise, data, size, 0, 1);
	run_same(&bytewise, &whole);
	return 0;
}
