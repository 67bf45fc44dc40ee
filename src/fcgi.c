/*
 * fcgi.c -- the FastCGI 1.0 codec: bytes in, events out.
 *
 * Taboos: no I/O, no allocation, no logging, no global state.  Every length
 * read from the wire is checked before it is used; a broken stream is an
 * event the caller acts on, never an abort.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "fcgi.h"

void
fcgi_parser_init(struct fcgi_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->state = FCGI_ST_HEADER;
}

void
fcgi_header_decode(const uint8_t in[FCGI_HEADER_LEN], struct fcgi_header *h)
{
	h->version = in[0];
	h->type = in[1];
	h->request_id = (uint16_t)(in[2] << 8 | in[3]);
	h->content_length = (uint16_t)(in[4] << 8 | in[5]);
	h->padding_length = in[6];
}

void
fcgi_header_encode(uint8_t out[FCGI_HEADER_LEN], enum fcgi_type type,
    uint16_t request_id, uint16_t content_length, uint8_t padding_length)
{
	out[0] = FCGI_VERSION_1;
	out[1] = (uint8_t)type;
	out[2] = (uint8_t)(request_id >> 8);
	out[3] = (uint8_t)request_id;
	out[4] = (uint8_t)(content_length >> 8);
	out[5] = (uint8_t)content_length;
	out[6] = padding_length;
	out[7] = 0;
}

/*
 * Advances the decoder over BUF and stops at the first thing worth
 * reporting.  *consumed says how many bytes were used; the caller calls
 * again with the rest.  A zero-length record yields HEADER then RECORD_END.
 */
enum fcgi_event
fcgi_parse(struct fcgi_parser *p, const uint8_t *buf, size_t len,
    size_t *consumed)
{
	size_t	 used = 0, n;

	*consumed = 0;
	p->ev_data = NULL;
	p->ev_len = 0;

	if (p->state == FCGI_ST_BROKEN)
		return FCGI_EV_ERROR;
	if (p->state == FCGI_ST_DONE) {
		p->state = FCGI_ST_HEADER;
		p->hfill = 0;
	}

	for (;;) {
		switch (p->state) {
		case FCGI_ST_HEADER:
			/* Nothing to read: never touch BUF (it may be NULL). */
			if (used == len)
				return FCGI_EV_NEED_MORE;
			n = FCGI_HEADER_LEN - p->hfill;
			if (n > len - used)
				n = len - used;
			memcpy(p->hbuf + p->hfill, buf + used, n);
			p->hfill += n;
			used += n;
			*consumed = used;
			if (p->hfill < FCGI_HEADER_LEN)
				return FCGI_EV_NEED_MORE;
			fcgi_header_decode(p->hbuf, &p->hdr);
			if (p->hdr.version != FCGI_VERSION_1) {
				p->error = FCGI_ERR_VERSION;
				p->state = FCGI_ST_BROKEN;
				return FCGI_EV_ERROR;
			}
			p->content_left = p->hdr.content_length;
			p->padding_left = p->hdr.padding_length;
			p->state = FCGI_ST_CONTENT;
			return FCGI_EV_HEADER;
		case FCGI_ST_CONTENT:
			if (p->content_left == 0) {
				p->state = FCGI_ST_PADDING;
				break;
			}
			if (used == len)
				return FCGI_EV_NEED_MORE;
			n = p->content_left;
			if (n > len - used)
				n = len - used;
			p->ev_data = buf + used;
			p->ev_len = n;
			p->content_left -= n;
			used += n;
			*consumed = used;
			return FCGI_EV_CONTENT;
		case FCGI_ST_PADDING:
			n = p->padding_left;
			if (n > len - used)
				n = len - used;
			p->padding_left -= n;
			used += n;
			*consumed = used;
			if (p->padding_left > 0)
				return FCGI_EV_NEED_MORE;
			p->state = FCGI_ST_DONE;
			return FCGI_EV_RECORD_END;
		case FCGI_ST_DONE:
		case FCGI_ST_BROKEN:
			/* Handled above; a DONE parser restarts at a header. */
			return FCGI_EV_ERROR;
		}
	}
}

const char *
fcgi_error_str(enum fcgi_error e)
{
	switch (e) {
	case FCGI_ERR_NONE:
		return "no error";
	case FCGI_ERR_VERSION:
		return "unsupported protocol version";
	}
	return "unknown error";
}

const char *
fcgi_type_name(unsigned int type)
{
	static const char *const names[] = {
		[FCGI_BEGIN_REQUEST] = "BEGIN_REQUEST",
		[FCGI_ABORT_REQUEST] = "ABORT_REQUEST",
		[FCGI_END_REQUEST] = "END_REQUEST",
		[FCGI_PARAMS] = "PARAMS",
		[FCGI_STDIN] = "STDIN",
		[FCGI_STDOUT] = "STDOUT",
		[FCGI_STDERR] = "STDERR",
		[FCGI_DATA] = "DATA",
		[FCGI_GET_VALUES] = "GET_VALUES",
		[FCGI_GET_VALUES_RESULT] = "GET_VALUES_RESULT",
		[FCGI_UNKNOWN_TYPE] = "UNKNOWN_TYPE",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type] != NULL)
		return names[type];
	return "unknown";
}

int
fcgi_begin_decode(const uint8_t *body, size_t len, struct fcgi_begin *b)
{
	if (len != 8)
		return -1;
	b->role = (uint16_t)(body[0] << 8 | body[1]);
	b->flags = body[2];
	return 0;
}

void
fcgi_begin_encode(uint8_t out[8], uint16_t role, uint8_t flags)
{
	memset(out, 0, 8);
	out[0] = (uint8_t)(role >> 8);
	out[1] = (uint8_t)role;
	out[2] = flags;
}

void
fcgi_end_encode(uint8_t out[8], uint32_t app_status,
    enum fcgi_protocol_status status)
{
	out[0] = (uint8_t)(app_status >> 24);
	out[1] = (uint8_t)(app_status >> 16);
	out[2] = (uint8_t)(app_status >> 8);
	out[3] = (uint8_t)app_status;
	out[4] = (uint8_t)status;
	out[5] = out[6] = out[7] = 0;
}

void
fcgi_unknown_type_encode(uint8_t out[8], uint8_t type)
{
	memset(out, 0, 8);
	out[0] = type;
}

/* Reads one length (1 or 4 bytes); -1 when it does not fit in LEN. */
static int
fcgi_nv_len(const uint8_t *buf, size_t len, size_t *pos, size_t *out)
{
	if (*pos >= len)
		return -1;
	if ((buf[*pos] & 0x80) == 0) {
		*out = buf[*pos];
		*pos += 1;
		return 0;
	}
	if (len - *pos < 4)
		return -1;
	*out = ((size_t)(buf[*pos] & 0x7f) << 24) |
	    ((size_t)buf[*pos + 1] << 16) | ((size_t)buf[*pos + 2] << 8) |
	    (size_t)buf[*pos + 3];
	*pos += 4;
	return 0;
}

int
fcgi_nv_decode(const uint8_t *buf, size_t len, size_t *pos,
    struct fcgi_nv *nv)
{
	size_t	 p = *pos, nlen, vlen;

	if (p == len)
		return 0;
	if (fcgi_nv_len(buf, len, &p, &nlen) == -1 ||
	    fcgi_nv_len(buf, len, &p, &vlen) == -1)
		return -1;
	/* Compare against what is left, never add: no overflow. */
	if (nlen > len - p || vlen > len - p - nlen)
		return -1;
	nv->name = buf + p;
	nv->name_len = nlen;
	nv->value = buf + p + nlen;
	nv->value_len = vlen;
	*pos = p + nlen + vlen;
	return 1;
}

size_t
fcgi_nv_size(size_t name_len, size_t value_len)
{
	if (name_len > FCGI_NV_MAX_LEN || value_len > FCGI_NV_MAX_LEN)
		return 0;
	/* Where size_t is 32 bits the sum could wrap. */
	if (name_len + 8 > SIZE_MAX - value_len)
		return 0;
	return (name_len > 127 ? 4 : 1) + (value_len > 127 ? 4 : 1) +
	    name_len + value_len;
}

static uint8_t *
fcgi_nv_put_len(uint8_t *out, size_t n)
{
	if (n <= 127) {
		*out++ = (uint8_t)n;
		return out;
	}
	*out++ = (uint8_t)(0x80 | (n >> 24));
	*out++ = (uint8_t)(n >> 16);
	*out++ = (uint8_t)(n >> 8);
	*out++ = (uint8_t)n;
	return out;
}

size_t
fcgi_nv_encode(uint8_t *out, size_t cap, const void *name, size_t name_len,
    const void *value, size_t value_len)
{
	size_t	 need = fcgi_nv_size(name_len, value_len);
	uint8_t	*p = out;

	if (need == 0 || need > cap)
		return 0;
	p = fcgi_nv_put_len(p, name_len);
	p = fcgi_nv_put_len(p, value_len);
	if (name_len > 0)
		memcpy(p, name, name_len);
	p += name_len;
	if (value_len > 0)
		memcpy(p, value, value_len);
	return need;
}

uint8_t
fcgi_padding_for(size_t content_length)
{
	return (uint8_t)((8 - (content_length & 7)) & 7);
}
