/*
 * fuzz_params.c -- libFuzzer harness for the FastCGI name-value codec
 * (fcgi_nv_decode, fcgi_nv_size, fcgi_nv_encode in src/fcgi.c).
 *
 * The input is a PARAMS or GET_VALUES body.  It is decoded pair by pair
 * until the end or a refusal; each answer is checked against the contract
 * in fcgi.h and against a reference decoder that does its sums in 64 bits.
 * Every pair is then encoded again into a buffer of exactly the size
 * fcgi_nv_size gives, decoded once more, and must come back byte for byte;
 * a pair already in the shortest encoding must re-encode to its input bytes.
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
		fprintf(stderr, "fuzz_params: %s:%d: invariant failed: %s\n",\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* One pair read by hand, in 64-bit arithmetic. */
struct ref_pair {
	uint64_t	 name_len;
	uint64_t	 value_len;
	uint64_t	 hdr_len;	/* 2, 5 or 8 length bytes */
	bool		 shortest;	/* no 4-byte length under 128 */
};

static int
ref_len(const uint8_t *d, uint64_t n, uint64_t *pos, uint64_t *out,
    bool *shortest)
{
	if (*pos >= n)
		return -1;
	if (d[*pos] < 0x80) {
		*out = d[*pos];
		*pos += 1;
		return 0;
	}
	if (n - *pos < 4)
		return -1;
	*out = (uint64_t)(d[*pos] & 0x7f) << 24 | (uint64_t)d[*pos + 1] << 16 |
	    (uint64_t)d[*pos + 2] << 8 | d[*pos + 3];
	if (*out < 128)
		*shortest = false;
	*pos += 4;
	return 0;
}

/* 1: a pair; 0: the exact end; -1: cut short or longer than the input. */
static int
ref_pair(const uint8_t *d, uint64_t n, uint64_t pos, struct ref_pair *rp)
{
	uint64_t	 p = pos;

	if (pos == n)
		return 0;
	rp->shortest = true;
	if (ref_len(d, n, &p, &rp->name_len, &rp->shortest) == -1 ||
	    ref_len(d, n, &p, &rp->value_len, &rp->shortest) == -1)
		return -1;
	if (p + rp->name_len + rp->value_len > n)
		return -1;
	rp->hdr_len = p - pos;
	return 1;
}

/* Encodes NV again, decodes that, and compares; ORIG is its input bytes. */
static void
round_trip(const struct fcgi_nv *nv, const uint8_t *orig, size_t orig_len,
    bool shortest)
{
	size_t		 size, pos = 0;
	uint8_t		*out;
	struct fcgi_nv	 again;

	size = fcgi_nv_size(nv->name_len, nv->value_len);
	CHECK(size == (nv->name_len > 127 ? 4u : 1u) +
	    (nv->value_len > 127 ? 4u : 1u) + nv->name_len + nv->value_len);
	CHECK(size <= orig_len);
	out = malloc(size);
	CHECK(out != NULL);
	CHECK(fcgi_nv_encode(out, size - 1, nv->name, nv->name_len,
	    nv->value, nv->value_len) == 0);
	CHECK(fcgi_nv_encode(out, size, nv->name, nv->name_len, nv->value,
	    nv->value_len) == size);
	if (shortest) {
		CHECK(size == orig_len);
		CHECK(memcmp(out, orig, size) == 0);
	}
	CHECK(fcgi_nv_decode(out, size, &pos, &again) == 1);
	CHECK(pos == size);
	CHECK(again.name_len == nv->name_len);
	CHECK(again.value_len == nv->value_len);
	CHECK(again.name_len == 0 ||
	    memcmp(again.name, nv->name, nv->name_len) == 0);
	CHECK(again.value_len == 0 ||
	    memcmp(again.value, nv->value, nv->value_len) == 0);
	CHECK(fcgi_nv_decode(out, size, &pos, &again) == 0);
	CHECK(pos == size);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fcgi_nv	 nv;
	struct ref_pair	 rp;
	size_t		 pos = 0, before, pairs = 0;
	int		 r, want;

	for (;;) {
		before = pos;
		memset(&nv, 0, sizeof(nv));
		r = fcgi_nv_decode(data, size, &pos, &nv);
		want = ref_pair(data, size, before, &rp);
		CHECK(r == want);
		if (r != 1) {
			/* An end or a refusal leaves *pos alone, and repeats. */
			CHECK(pos == before);
			CHECK(fcgi_nv_decode(data, size, &pos, &nv) == r);
			CHECK(pos == before);
			if (r == 0)
				CHECK(pos == size);
			break;
		}
		CHECK(pos > before && pos <= size);
		CHECK(nv.name_len == rp.name_len);
		CHECK(nv.value_len == rp.value_len);
		CHECK(nv.name == data + before + rp.hdr_len);
		CHECK(nv.value == nv.name + nv.name_len);
		CHECK(nv.value + nv.value_len == data + pos);
		round_trip(&nv, data + before, pos - before, rp.shortest);
		/* Each pair takes at least its two length bytes. */
		CHECK(++pairs <= size / 2);
	}
	return 0;
}
