/*
 * fcgi.h -- the pure FastCGI 1.0 codec (fcgi.c).
 *
 * Kept apart from fpmd.h so that the fuzz harnesses and the unit tests can
 * include the codec and nothing else.
 */
#ifndef FPMD_FCGI_H
#define FPMD_FCGI_H

#include <stddef.h>
#include <stdint.h>

#define FCGI_VERSION_1		1
#define FCGI_HEADER_LEN		8
#define FCGI_MAX_CONTENT	65535
#define FCGI_MAX_PADDING	255
#define FCGI_NV_MAX_LEN		0x7fffffffu

enum fcgi_type {
	FCGI_BEGIN_REQUEST = 1,
	FCGI_ABORT_REQUEST = 2,
	FCGI_END_REQUEST = 3,
	FCGI_PARAMS = 4,
	FCGI_STDIN = 5,
	FCGI_STDOUT = 6,
	FCGI_STDERR = 7,
	FCGI_DATA = 8,
	FCGI_GET_VALUES = 9,
	FCGI_GET_VALUES_RESULT = 10,
	FCGI_UNKNOWN_TYPE = 11
};

enum fcgi_protocol_status {
	FCGI_REQUEST_COMPLETE = 0,
	FCGI_CANT_MPX_CONN = 1,
	FCGI_OVERLOADED = 2,
	FCGI_UNKNOWN_ROLE = 3
};

#define FCGI_KEEP_CONN		1

struct fcgi_header {
	uint8_t		version;
	uint8_t		type;
	uint16_t	request_id;
	uint16_t	content_length;
	uint8_t		padding_length;
};

/* What a decoder step produced. */
enum fcgi_event {
	FCGI_EV_NEED_MORE,	/* every input byte consumed, nothing to report */
	FCGI_EV_HEADER,		/* a record header was read: see parser.hdr */
	FCGI_EV_CONTENT,	/* a piece of the record's content: see ev_data */
	FCGI_EV_RECORD_END,	/* the record, padding included, is complete */
	FCGI_EV_ERROR		/* the stream is broken: see parser.error */
};

enum fcgi_error {
	FCGI_ERR_NONE = 0,
	FCGI_ERR_VERSION,	/* version byte is not 1 */
};

enum fcgi_parser_state {
	FCGI_ST_HEADER,
	FCGI_ST_CONTENT,
	FCGI_ST_PADDING,
	FCGI_ST_DONE,		/* RECORD_END reported; next call starts a header */
	FCGI_ST_BROKEN
};

/*
 * A resumable record decoder.  It copies nothing but the 8 header bytes:
 * content is handed back as slices of the caller's buffer, so a record may
 * be split at any byte boundary across calls.
 */
struct fcgi_parser {
	enum fcgi_parser_state	state;
	struct fcgi_header	hdr;
	uint8_t			hbuf[FCGI_HEADER_LEN];
	size_t			hfill;
	size_t			content_left;
	size_t			padding_left;
	enum fcgi_error		error;
	const uint8_t		*ev_data;	/* FCGI_EV_CONTENT: the slice */
	size_t			ev_len;
};

void		 fcgi_parser_init(struct fcgi_parser *);
enum fcgi_event	 fcgi_parse(struct fcgi_parser *, const uint8_t *buf,
		    size_t len, size_t *consumed);
const char	*fcgi_error_str(enum fcgi_error);
const char	*fcgi_type_name(unsigned int type);

/* Header and fixed bodies. */
void	fcgi_header_decode(const uint8_t in[FCGI_HEADER_LEN],
	    struct fcgi_header *);
void	fcgi_header_encode(uint8_t out[FCGI_HEADER_LEN], enum fcgi_type,
	    uint16_t request_id, uint16_t content_length,
	    uint8_t padding_length);

struct fcgi_begin {
	uint16_t	role;
	uint8_t		flags;
};
int	fcgi_begin_decode(const uint8_t *body, size_t len, struct fcgi_begin *);
void	fcgi_begin_encode(uint8_t out[8], uint16_t role, uint8_t flags);
void	fcgi_end_encode(uint8_t out[8], uint32_t app_status,
	    enum fcgi_protocol_status);
void	fcgi_unknown_type_encode(uint8_t out[8], uint8_t type);

/*
 * Name-value pairs (section 3.4).  fcgi_nv_decode reads the pair at
 * *pos in BUF[0..LEN) and advances *pos; it returns 1 for a pair, 0 at
 * the exact end of the buffer, -1 when the pair is truncated or its
 * lengths run past LEN.  Lengths are checked without overflow.
 */
struct fcgi_nv {
	const uint8_t	*name;
	size_t		 name_len;
	const uint8_t	*value;
	size_t		 value_len;
};
int	fcgi_nv_decode(const uint8_t *buf, size_t len, size_t *pos,
	    struct fcgi_nv *);
/*
 * Encodes one pair into OUT (capacity CAP); returns the bytes written, or
 * 0 when it does not fit or a length exceeds FCGI_NV_MAX_LEN.
 */
size_t	fcgi_nv_encode(uint8_t *out, size_t cap, const void *name,
	    size_t name_len, const void *value, size_t value_len);
/* The encoded size of one pair, or 0 on a length over FCGI_NV_MAX_LEN. */
size_t	fcgi_nv_size(size_t name_len, size_t value_len);

/* Padding that aligns CONTENT_LENGTH to 8 bytes, as the spec recommends. */
uint8_t	fcgi_padding_for(size_t content_length);

#endif /* FPMD_FCGI_H */
