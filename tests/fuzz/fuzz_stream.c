/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the migration stream as vmmu-run's destination parses it
 * (examples/vmmu-run/migrate.c, receive()), from a buffer instead of a socket.
 * The header and record checks are vmmu-run's own (stream_header_ok() and
 * stream_record_ok() in stream.h); the order of the steps is receive()'s: the
 * header (magic, version, sizes), then per record its header, its checks
 * before any payload is read, the payload (a PAGE straight into guest RAM),
 * then its hash.
 *
 * What is asserted, independently of those checks: an accepted PAGE or ZERO
 * record lies wholly inside guest RAM (guest RAM is an exact-size heap block
 * when it is small enough, so ASan sees any stray byte too), a STATE payload
 * has the vCPU state's size, an accepted stream ends with an END that counts
 * the records before it and comes after a STATE, and nothing is read beyond
 * the input.
 *
 * Input: one mode byte, then the stream. Mode bit 0 set: the harness fixes up
 * every hash (header and records) before parsing, so the fuzzer reaches the
 * structural checks; clear: the bytes are parsed as they are.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_helpers.h"
#include "../../examples/vmmu-run/stream.h"
#include "../../examples/vmmu-run/vmmu-run.h"

#define MIN_MEM (GUEST_WORK_GPA + (2 << 20))
#define MAX_MEM (GUEST_WORK_GPA + (1ULL << 36))
#define RAM_ALLOC_MAX (8ULL << 20) /* guest RAM larger than this is checked arithmetically only */


enum outcome { ACCEPTED, REFUSED, TRUNCATED, BROKEN };

struct input {
	uint8_t *p;
	size_t len, pos;
};

static uint8_t *take(struct input *in, size_t n)
{
	uint8_t *p;

	if (in->len - in->pos < n)
		return NULL;
	p = in->p + in->pos;
	in->pos += n;
	return p;
}

/* Recompute the hashes in place: the header's, then each record's that fits. */
static void fix_checks(uint8_t *p, size_t len)
{
	struct stream_header h;
	size_t pos = sizeof(h);

	if (len < sizeof(h))
		return;
	memcpy(&h, p, sizeof(h));
	h.check = hash64(&h, offsetof(struct stream_header, check), 0);
	memcpy(p, &h, sizeof(h));
	while (len - pos >= sizeof(struct record)) {
		struct record rec;

		memcpy(&rec, p + pos, sizeof(rec));
		if (rec.len > len - pos - sizeof(rec))
			return;
		rec.check = record_check(&rec, p + pos + sizeof(rec));
		memcpy(p + pos, &rec, sizeof(rec));
		pos += sizeof(rec) + rec.len;
	}
}

static enum outcome parse(struct input *in)
{
	struct stream_header h;
	uint64_t records = 0;
	bool have_state = false;
	uint8_t *ram = NULL, *hp;
	enum outcome out = BROKEN;

	hp = take(in, sizeof(h));
	if (!hp)
		return TRUNCATED;
	memcpy(&h, hp, sizeof(h));
	if (memcmp(h.magic, STREAM_MAGIC, 8) || h.version != STREAM_VERSION ||
	    !stream_header_ok(&h, sizeof(struct vcpu_state), MIN_MEM, MAX_MEM))
		return REFUSED;
	CHECK(h.mem_size % 4096 == 0 && h.mem_size >= MIN_MEM && h.mem_size <= MAX_MEM);
	if (h.mem_size <= RAM_ALLOC_MAX) {
		ram = malloc(h.mem_size);
		CHECK(ram);
	}
	for (;;) {
		struct record rec;
		const uint8_t *payload, *rp = take(in, sizeof(rec));

		if (!rp) {
			out = TRUNCATED;
			break;
		}
		memcpy(&rec, rp, sizeof(rec));
		if (stream_record_ok(&rec, &h, sizeof(struct vcpu_state), records, have_state)) {
			out = REFUSED;
			break;
		}
		/* accepted: an independent statement of where it may go */
		CHECK(rec.type >= REC_PAGE && rec.type <= REC_END && rec.len <= MAX_RUN);
		if (rec.type == REC_PAGE || rec.type == REC_ZERO) {
			uint64_t len = rec.type == REC_PAGE ? rec.len : 4096;

			CHECK(rec.arg % 4096 == 0 && len % 4096 == 0 && len > 0);
			CHECK((unsigned __int128)rec.arg + len <= h.mem_size);
		}
		if (rec.type == REC_STATE)
			CHECK(rec.len == sizeof(struct vcpu_state));
		else if (rec.type != REC_PAGE)
			CHECK(rec.len == 0);
		payload = take(in, rec.len);
		if (!payload) {
			out = TRUNCATED;
			break;
		}
		if (rec.type == REC_PAGE && ram) {
			memcpy(ram + rec.arg, payload, rec.len); /* received in place, checked there */
			payload = ram + rec.arg;
		}
		if (rec.check != record_check(&rec, payload)) {
			out = BROKEN;
			break;
		}
		if (rec.type == REC_END) {
			CHECK(have_state && rec.arg == records);
			out = ACCEPTED;
			break;
		}
		records++;
		if (rec.type == REC_ZERO && ram)
			memset(ram + rec.arg, 0, 4096);
		else if (rec.type == REC_STATE)
			have_state = true;
	}
	free(ram);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;

	if (size < 1)
		return 0;
	/* an exact-size copy: a read past the stream is an ASan report */
	in = (struct input){ .p = malloc(size - 1 ? size - 1 : 1), .len = size - 1 };
	CHECK(in.p);
	memcpy(in.p, data + 1, size - 1);
	if (data[0] & 1)
		fix_checks(in.p, in.len);
	enum outcome out = parse(&in);

	if (getenv("FUZZ_STREAM_VERBOSE"))
		fprintf(stderr, "fuzz_stream: %s after %zu of %zu bytes\n",
			(const char *[]){ "accepted", "refused", "truncated", "broken" }[out], in.pos, in.len);
	CHECK(in.pos <= in.len);
	free(in.p);
	return 0;
}
