/* SPDX-License-Identifier: MIT */
/*
 * The migration stream and the snapshot file of vmmu-run (docs/vmmu-run.md has
 * the tables). Little-endian, x86-64 layouts; every header and record carries
 * a 64-bit check (hash64) of its contents.
 */
#ifndef VMMU_RUN_STREAM_H
#define VMMU_RUN_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STREAM_MAGIC   "VMMU-MIG"
#define STREAM_VERSION 1u

/* Sent first, source -> destination. */
struct stream_header {
	char magic[8];         /* STREAM_MAGIC */
	uint32_t version;      /* STREAM_VERSION; anything else is refused with a NAK */
	uint32_t header_size;  /* sizeof(struct stream_header) */
	uint64_t mem_size;     /* guest RAM, bytes */
	uint32_t page_size;    /* 4096 */
	uint32_t state_size;   /* sizeof(struct vcpu_state) */
	uint64_t check;        /* hash64 of the bytes before this field */
};

/* A PAGE record carries 1 to 64 consecutive pages. */
#define MAX_RUN (64u * 4096u)

enum record_type {
	REC_PAGE = 1,  /* arg: GPA of the first page; payload: len / 4096 consecutive pages (len <= MAX_RUN) */
	REC_ZERO = 2,  /* arg: GPA of a page that is now all zero; no payload */
	REC_ROUND = 3, /* arg: number of the pre-copy round that begins */
	REC_STATE = 4, /* payload: struct vcpu_state (registers, special registers, epoch) */
	REC_END = 5,   /* arg: number of records before this one; the stream is complete */
	REC_ACK = 6,   /* destination -> source: all received, the guest runs there */
	REC_NAK = 7,   /* destination -> source: refused; payload: u32 reason, u32 version, text */
};

/* Every record: this header, then @len bytes of payload. */
struct record {
	uint32_t type;  /* enum record_type */
	uint32_t len;   /* payload bytes */
	uint64_t arg;
	uint64_t check; /* hash64 of the payload, seeded with type, len and arg */
};

enum nak_reason { NAK_VERSION = 1, NAK_FORMAT = 2, NAK_BROKEN = 3, NAK_NOVM = 4 };

#define SNAP_MAGIC   "VMMUSNAP"
#define SNAP_VERSION 1u
#define SNAP_MEM_OFFSET 4096ULL /* guest RAM starts here in the file; GPA g is at offset 4096 + g */

/* hash64: a 64-bit multiply-xor hash over 8-byte words, 4 lanes; not cryptographic. */
static inline uint64_t hash64(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h[4] = { seed ^ 0x9e3779b97f4a7c15ULL, seed + 1, seed ^ 0xc2b2ae3d27d4eb4fULL, ~seed };
	const uint64_t k = 0xff51afd7ed558ccdULL;
	size_t i = 0;

	for (; i + 32 <= len; i += 32)
		for (int l = 0; l < 4; l++) {
			uint64_t w;

			__builtin_memcpy(&w, p + i + 8 * l, 8);
			h[l] = (h[l] ^ w) * k;
			h[l] ^= h[l] >> 29;
		}
	for (; i < len; i++)
		h[0] = (h[0] ^ p[i]) * k;
	uint64_t r = h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7) ^ len;

	r ^= r >> 33;
	r *= 0xc4ceb9fe1a85ec53ULL;
	return r ^ (r >> 33);
}

static inline uint64_t record_check(const struct record *r, const void *payload)
{
	return hash64(payload, r->len, ((uint64_t)r->type | (uint64_t)r->len << 32) ^ (r->arg * 0x100000001b3ULL));
}

/*
 * The destination's checks, kept free of I/O so that tests/fuzz/fuzz_stream.c
 * drives them from a buffer. stream_header_ok(): the sizes and check of a
 * header whose magic and version were accepted; RAM must be a whole number of
 * pages in [@min_mem, @max_mem]. stream_record_ok(): may record number
 * @records (header @rec, payload not read yet) be accepted? Returns 0, or
 * STREAM_CORRUPT (unknown type, payload longer than MAX_RUN) or
 * STREAM_INCONSISTENT (a page outside RAM, a length its type does not allow,
 * an END that does not count the records or comes before the vCPU state).
 */
enum { STREAM_OK = 0, STREAM_CORRUPT = 1, STREAM_INCONSISTENT = 2 };

static inline bool stream_header_ok(const struct stream_header *h, uint32_t state_size, uint64_t min_mem,
				    uint64_t max_mem)
{
	return h->check == hash64(h, offsetof(struct stream_header, check), 0) && h->header_size == sizeof(*h) &&
	       h->page_size == 4096 && h->state_size == state_size && h->mem_size >= min_mem &&
	       h->mem_size <= max_mem && h->mem_size % 4096 == 0;
}

static inline int stream_record_ok(const struct record *rec, const struct stream_header *h, uint32_t state_size,
				   uint64_t records, bool have_state)
{
	bool page = rec->type == REC_PAGE, zero = rec->type == REC_ZERO;

	if (rec->len > MAX_RUN || rec->type < REC_PAGE || rec->type > REC_END)
		return STREAM_CORRUPT;
	if (((page || zero) && (rec->arg % 4096 || rec->arg >= h->mem_size)) ||
	    (page && (!rec->len || rec->len % 4096 || rec->len > h->mem_size - rec->arg)) ||
	    (!page && rec->type != REC_STATE && rec->len) || (rec->type == REC_STATE && rec->len != state_size) ||
	    (rec->type == REC_END && (rec->arg != records || !have_state)))
		return STREAM_INCONSISTENT;
	return STREAM_OK;
}

#endif
