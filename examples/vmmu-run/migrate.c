/* SPDX-License-Identifier: MIT */
/*
 * Live migration by pre-copy, and snapshots.
 *
 * The source side (precopy()) does not know where pages go: it hands them to
 * a sink. Sinks: another machine in this process (memcpy), a TCP stream
 * (records batched into io_uring writes), and, for snapshots, a sparse file.
 *
 *   1. turn dirty logging on for the RAM slot; send every non-zero page
 *      (the destination starts zeroed);
 *   2. rounds: read the dirty log (vmmu_vm_dirty_get(): one call whatever the
 *      mode, bitmap, manual protect or ring) and send those pages, while the
 *      guest runs on; stop when what is left would go out within a quarter
 *      of the downtime budget at the bandwidth of the last round, when rounds
 *      stop converging, or after max_rounds;
 *   3. stop-and-copy: park the vCPU, read the log once more, send the pages
 *      still dirty and the vCPU state; the destination resumes.
 * A failure before the destination confirmed resumes the source guest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvmmu/vmmu.h>

#include "stream.h"
#include "vmmu-run.h"

/* ------------------------------------------------------------------ sinks */

struct sink {
	int (*page)(struct sink *s, uint64_t gpa, const uint8_t *data, bool zero);
	int (*round_begin)(struct sink *s, unsigned int round);
	int (*round_end)(struct sink *s);
	int (*finish)(struct sink *s, const struct vcpu_state *st); /* state, end, confirmation */
	uint64_t bytes; /* payload and framing handed to the sink */
};

/* In this process: straight into the destination's RAM. */
struct local_sink {
	struct sink s;
	struct machine *dst;
};

static int local_page(struct sink *s, uint64_t gpa, const uint8_t *data, bool zero)
{
	struct local_sink *ls = (struct local_sink *)s;
	uint8_t *to = (uint8_t *)ls->dst->ram.hva + gpa;

	if (zero)
		memset(to, 0, PAGE_SIZE);
	else
		memcpy(to, data, PAGE_SIZE);
	s->bytes += PAGE_SIZE;
	return 0;
}

static int local_nop(struct sink *s)
{
	(void)s;
	return 0;
}

static int local_round(struct sink *s, unsigned int round)
{
	(void)s;
	(void)round;
	return 0;
}

static int local_finish(struct sink *s, const struct vcpu_state *st)
{
	struct local_sink *ls = (struct local_sink *)s;
	struct vcpu_state next = *st;
	int ret;

	next.epoch++;
	ret = machine_set_state(ls->dst, &next);
	if (ret)
		return ret;
	atomic_store(&ls->dst->stop_guest, true); /* the demo ends once the guest checked itself */
	return machine_resume(ls->dst);
}

/* Over a socket: records packed into 4 MiB batches, two batches alternating. */
#define BATCH_SIZE (4u << 20)
/*
 * The receiver reads ahead at most this much into its buffer: the rest of a
 * PAGE record is received straight into guest RAM (one copy fewer).
 */
#define READ_AHEAD (64u << 10)
/* A peer silent this long has gone: the destination aborts, the source resumes its guest. */
#define STREAM_TIMEOUT_MS 10000

struct stream_sink {
	struct sink s;
	struct loop *l;
	int fd;
	uint8_t *buf[2];
	size_t used;
	int cur;
	uint64_t records;
	size_t open;        /* offset in the current batch of the PAGE record still growing, or NO_OPEN */
	uint64_t open_next; /* the GPA that would extend it */
	char peer_msg[200]; /* the destination's NAK text, if it sent one */
};

#define NO_OPEN SIZE_MAX

/* Finish the growing PAGE record: its check covers the copy in the batch (the guest may write the page meanwhile). */
static void stream_close(struct stream_sink *ss)
{
	struct record r;
	uint8_t *at = ss->buf[ss->cur] + ss->open;

	if (ss->open == NO_OPEN)
		return;
	memcpy(&r, at, sizeof(r));
	r.check = record_check(&r, at + sizeof(r));
	memcpy(at, &r, sizeof(r));
	ss->open = NO_OPEN;
}

static int stream_flush(struct stream_sink *ss)
{
	int ret;

	stream_close(ss);
	if (!ss->used)
		return 0;
	ret = loop_write_async(ss->l, ss->fd, ss->buf[ss->cur], ss->used);
	ss->cur ^= 1;
	ss->used = 0;
	return ret;
}

/* Append a record, copying @len bytes of @payload; with @grow leave it open for stream_page() to extend. */
static int stream_put_record(struct stream_sink *ss, uint32_t type, uint64_t arg, const void *payload, uint32_t len,
			     bool grow)
{
	struct record r = { .type = type, .len = len, .arg = arg };
	uint8_t *to;
	int ret;

	stream_close(ss);
	if (ss->used + sizeof(r) + len > BATCH_SIZE) {
		ret = stream_flush(ss);
		if (ret)
			return ret;
	}
	to = ss->buf[ss->cur] + ss->used;
	if (len)
		memcpy(to + sizeof(r), payload, len);
	memcpy(to, &r, sizeof(r));
	ss->open = ss->used;
	ss->used += sizeof(r) + len;
	ss->s.bytes += sizeof(r) + len;
	ss->records++;
	if (!grow)
		stream_close(ss);
	return 0;
}

static int stream_put(struct stream_sink *ss, uint32_t type, uint64_t arg, const void *payload, uint32_t len)
{
	return stream_put_record(ss, type, arg, payload, len, false);
}

/* Consecutive pages share one PAGE record (up to MAX_RUN bytes): fewer headers, longer receives. */
static int stream_page(struct sink *s, uint64_t gpa, const uint8_t *data, bool zero)
{
	struct stream_sink *ss = (struct stream_sink *)s;
	struct record r;
	uint8_t *at;

	if (zero)
		return stream_put(ss, REC_ZERO, gpa, NULL, 0);
	if (ss->open != NO_OPEN && gpa == ss->open_next && ss->used + PAGE_SIZE <= BATCH_SIZE) {
		at = ss->buf[ss->cur] + ss->open;
		memcpy(&r, at, sizeof(r));
		if (r.len + PAGE_SIZE <= MAX_RUN) {
			memcpy(ss->buf[ss->cur] + ss->used, data, PAGE_SIZE);
			r.len += PAGE_SIZE;
			memcpy(at, &r, sizeof(r));
			ss->used += PAGE_SIZE;
			ss->s.bytes += PAGE_SIZE;
			ss->open_next += PAGE_SIZE;
			return 0;
		}
	}
	ss->open_next = gpa + PAGE_SIZE;
	return stream_put_record(ss, REC_PAGE, gpa, data, PAGE_SIZE, true);
}

static int stream_round(struct sink *s, unsigned int round)
{
	return stream_put((struct stream_sink *)s, REC_ROUND, round, NULL, 0);
}

/*
 * Look (without consuming: it may be the ACK) for a NAK the destination sent;
 * report it. Return true if there was one.
 */
static bool stream_peer_refused(struct stream_sink *ss)
{
	uint8_t buf[sizeof(struct record) + 256];
	ssize_t n = recv(ss->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);
	struct record r;

	if (n < (ssize_t)sizeof(r))
		return false;
	memcpy(&r, buf, sizeof(r));
	if (r.type != REC_NAK || r.len < 8 || r.len > sizeof(buf) - sizeof(r) ||
	    (size_t)n < sizeof(r) + r.len)
		return false;
	uint32_t version;

	memcpy(&version, buf + sizeof(r) + 4, 4);
	snprintf(ss->peer_msg, sizeof(ss->peer_msg), "%.*s", (int)(r.len - 8), (const char *)buf + sizeof(r) + 8);
	msg("the destination refused the stream: %s (its stream version: %u)", ss->peer_msg, version);
	return true;
}

static int stream_round_end(struct sink *s)
{
	struct stream_sink *ss = (struct stream_sink *)s;
	int ret = stream_flush(ss);

	if (!ret)
		ret = loop_write_wait(ss->l);
	if (!ret && stream_peer_refused(ss))
		ret = -ECONNREFUSED;
	return ret;
}

static int stream_finish(struct sink *s, const struct vcpu_state *st)
{
	struct stream_sink *ss = (struct stream_sink *)s;
	struct record r;
	uint64_t before = ss->records;
	int ret = stream_put(ss, REC_STATE, 0, st, sizeof(*st));

	if (!ret)
		ret = stream_put(ss, REC_END, before + 1, NULL, 0);
	if (!ret)
		ret = stream_round_end(s);
	if (ret)
		return ret;
	/* The destination confirms before its guest runs: only then may the source go. */
	for (size_t got = 0; got < sizeof(r); got += (size_t)ret) {
		ret = loop_read(ss->l, ss->fd, (uint8_t *)&r + got, sizeof(r) - got, STREAM_TIMEOUT_MS);
		if (ret <= 0) {
			msg("no confirmation from the destination: %s", ret ? strerror(-ret) : "connection closed");
			return ret ? ret : -ECONNRESET;
		}
	}
	if (r.type == REC_ACK && r.len == 0 && r.check == record_check(&r, NULL))
		return 0;
	msg("the destination answered %s instead of confirming", r.type == REC_NAK ? "a refusal" : "garbage");
	return -ECONNREFUSED;
}

/* ---------------------------------------------------------------- precopy */

struct precopy_stats {
	unsigned int rounds;
	uint64_t pages, last_pages;
	uint64_t t_start, t_stop, t_parked, t_logged, t_copied, t_end; /* the phases of the switch */
};

/*
 * Read the dirty log of the RAM slot into @bm; return the number of pages set
 * (vmmu_vm_dirty_get() returns 0, not a count: the bits are counted here).
 */
static int dirty_get(struct machine *m, uint64_t *bm, uint64_t words)
{
	int ret, n = 0, tries = 0;

	/*
	 * Ring mode: KVM_RESET_DIRTY_RINGS stops early with -EINTR when a signal
	 * is pending (Linux 6.18 does), and the library passes that on. Harvested
	 * entries stay in the VM's log, so calling again loses nothing.
	 */
	do
		ret = vmmu_vm_dirty_get(m->vm, 0, bm);
	while (ret == -EINTR && ++tries < 1000);

	if (ret < 0)
		return ret;
	for (uint64_t w = 0; w < words; w++)
		n += __builtin_popcountll(bm[w]);
	return n;
}

/* Send the pages set in @bm; with @skip_zero leave out all-zero pages (first round). */
static int send_pages(struct machine *m, struct sink *s, const uint64_t *bm, uint64_t npages, bool skip_zero,
		      uint64_t *sent)
{
	const uint8_t *ram = m->ram.hva;

	for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
		for (uint64_t bits = bm[w]; bits; bits &= bits - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			const uint8_t *page = ram + p * PAGE_SIZE;
			bool zero = page_is_zero(page);
			int ret;

			if (zero && skip_zero)
				continue;
			ret = s->page(s, p * PAGE_SIZE, page, zero);
			if (ret)
				return ret;
			(*sent)++;
		}
	}
	return 0;
}

static void progress(unsigned int round, uint64_t sent, uint64_t bytes, uint64_t ns, int left)
{
	msg("round %u: sent %llu pages (%.1f MiB) in %.1f ms, %.0f MB/s; %d dirty pages left", round,
	    (unsigned long long)sent, (double)bytes / (1 << 20), (double)ns / 1e6,
	    ns ? (double)bytes * 1e3 / (double)ns : 0.0, left);
}

static int precopy(struct machine *m, struct sink *s, const struct migrate_opts *o, struct precopy_stats *st)
{
	uint64_t npages = m->mem_size / PAGE_SIZE, words = (npages + 63) / 64;
	uint64_t *bm = calloc(words, 8), *last = calloc(words, 8);
	double bytes_per_ns = 0;
	uint64_t prev_dirty = 0;
	bool parked = false;
	int ret, dirty;

	if (!bm || !last) {
		ret = -ENOMEM;
		goto out;
	}
	memset(st, 0, sizeof(*st));
	st->t_start = now_ns();
	ret = vmmu_vm_memslot_set_flags(m->vm, 0, VMMU_MEMSLOT_LOG_DIRTY);
	if (ret)
		goto out;
	/* Round 1: everything, from the moment tracking is on. */
	memset(bm, 0xff, words * 8);
	if (npages % 64)
		bm[words - 1] = (1ULL << (npages % 64)) - 1;
	for (unsigned int round = 1;; round++) {
		uint64_t t = now_ns(), b0 = s->bytes, sent = 0;

		ret = s->round_begin(s, round);
		if (!ret)
			ret = send_pages(m, s, bm, npages, round == 1, &sent);
		if (!ret)
			ret = s->round_end(s);
		if (ret)
			goto out;
		t = now_ns() - t;
		st->pages += sent;
		st->rounds = round;
		if (t && s->bytes > b0)
			bytes_per_ns = (double)(s->bytes - b0) / (double)t;
		dirty = dirty_get(m, bm, words);
		if (dirty < 0) {
			ret = dirty;
			goto out;
		}
		progress(round, sent, s->bytes - b0, t, dirty);
		/*
		 * Stop-and-copy when the rest would copy, at this round's bandwidth,
		 * in a quarter of the downtime budget (the rest of it goes to stopping
		 * the vCPU and handing over), when a round no longer halves the dirty
		 * set (more rounds would not converge), or after max_rounds.
		 */
		if ((double)dirty * PAGE_SIZE <= bytes_per_ns * o->max_downtime_ms * 1e6 / 4 ||
		    (round > 1 && (uint64_t)dirty * 2 > prev_dirty) || round >= o->max_rounds)
			break;
		prev_dirty = (uint64_t)dirty;
	}

	/* Stop-and-copy. The pages in bm were reported but not sent yet. */
	st->t_stop = now_ns();
	ret = machine_park(m);
	if (ret) {
		msg("the guest ended before the switch");
		goto out;
	}
	parked = true;
	st->t_parked = now_ns();
	dirty = dirty_get(m, last, words);
	if (dirty < 0) {
		ret = dirty;
		goto out;
	}
	for (uint64_t w = 0; w < words; w++)
		bm[w] |= last[w];
	struct vcpu_state vs;
	uint64_t sent = 0;

	st->t_logged = now_ns();
	ret = machine_get_state(m, &vs);
	if (!ret)
		ret = s->round_begin(s, st->rounds + 1);
	if (!ret)
		ret = send_pages(m, s, bm, npages, false, &sent);
	st->t_copied = now_ns();
	if (!ret)
		ret = s->finish(s, &vs);
	st->last_pages = sent;
	st->pages += sent;
	st->t_end = now_ns();
out:
	if (ret) {
		vmmu_vm_memslot_set_flags(m->vm, 0, 0);
		if (parked) {
			msg("the switch failed with the guest stopped (%.1f ms): it resumes here",
			    (double)(now_ns() - st->t_stop) / 1e6);
			machine_resume(m);
		}
	}
	free(bm);
	free(last);
	return ret;
}

static void summary(struct machine *m, const struct precopy_stats *st, uint64_t bytes)
{
	uint64_t mem_size = m->mem_size;

	double total = (double)(st->t_end - st->t_start) / 1e6;

	msg("migrated in %.1f ms: downtime %.2f ms (last %llu pages + vCPU), %u pre-copy rounds, %llu pages, "
	    "%.1f MiB sent (%.2fx RAM), %.0f MB/s overall", total, (double)(st->t_end - st->t_stop) / 1e6,
	    (unsigned long long)st->last_pages, st->rounds, (unsigned long long)st->pages,
	    (double)bytes / (1 << 20), (double)bytes / (double)mem_size, (double)bytes / 1e3 / total);
	msg("downtime: stop the vCPU %.2f ms, read the dirty log %.2f ms, copy %.2f ms, state and resume %.2f ms",
	    (double)(st->t_parked - st->t_stop) / 1e6, (double)(st->t_logged - st->t_parked) / 1e6,
	    (double)(st->t_copied - st->t_logged) / 1e6, (double)(st->t_end - st->t_copied) / 1e6);
	if (m->dirty_mode == VMMU_DIRTY_RING)
		msg("dirty ring: %llu ring-full exits harvested by the vCPU thread",
		    (unsigned long long)m->ring_full_exits);
}

int migrate_local(struct machine *src, struct loop *l, const struct migrate_opts *o, struct machine *dst)
{
	struct local_sink ls = { .s = { .page = local_page, .round_begin = local_round, .round_end = local_nop,
					.finish = local_finish },
				 .dst = dst };
	struct precopy_stats st;
	int ret;

	(void)l;
	msg("migrating to a second VM in this process (dirty log: %s)",
	    o->dirty_mode == VMMU_DIRTY_RING ? "ring" : o->dirty_mode == VMMU_DIRTY_MANUAL ? "manual" : "bitmap");
	ret = machine_create(dst, vmmu_vm_backend_name(src->vm), VMMU_DIRTY_GET_CLEAR, src->mem_size, true);
	if (ret) {
		machine_destroy(dst);
		return ret;
	}
	dst->dirty_rate = src->dirty_rate;
	dst->writes_per_tick = src->writes_per_tick;
	ret = precopy(src, &ls.s, o, &st);
	if (ret) {
		machine_destroy(dst);
		return ret;
	}
	summary(src, &st, ls.s.bytes);
	return 0;
}

/* ------------------------------------------------------------------- TCP */

static int resolve(const char *spec, const char *default_host, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon = strrchr(spec, ':'), *port = colon ? colon + 1 : spec;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
	int ret;

	if (colon) {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
	} else if (default_host) {
		snprintf(host, sizeof(host), "%s", default_host);
	} else {
		msg("\"%s\" is not HOST:PORT", spec);
		return -EINVAL;
	}
	if (!*port || strspn(port, "0123456789") != strlen(port) || atoi(port) <= 0 || atoi(port) > 65535) {
		msg("\"%s\": bad port", spec);
		return -EINVAL;
	}
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret) {
		msg("\"%s\": %s", host, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int migrate_to_peer(struct machine *src, struct loop *l, const struct migrate_opts *o)
{
	struct stream_sink ss = { .s = { .page = stream_page, .round_begin = stream_round,
					 .round_end = stream_round_end, .finish = stream_finish }, .l = l,
				  .fd = -1, .open = NO_OPEN };
	struct stream_header h = { .magic = STREAM_MAGIC, .version = STREAM_VERSION, .header_size = sizeof(h),
				   .mem_size = src->mem_size, .page_size = PAGE_SIZE,
				   .state_size = sizeof(struct vcpu_state) };
	struct sockaddr_storage addr;
	struct precopy_stats st;
	socklen_t alen;
	int ret = resolve(o->peer, NULL, &addr, &alen), one = 1;

	if (ret)
		return ret;
	ss.fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ss.buf[0] = malloc(BATCH_SIZE);
	ss.buf[1] = malloc(BATCH_SIZE);
	if (ss.fd < 0 || !ss.buf[0] || !ss.buf[1]) {
		ret = ss.fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	setsockopt(ss.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ret = loop_connect(l, ss.fd, &addr, alen);
	if (ret) {
		msg("cannot connect to %s: %s", o->peer, strerror(-ret));
		goto out;
	}
	msg("connected to %s; migrating (dirty log: %s)", o->peer,
	    o->dirty_mode == VMMU_DIRTY_RING ? "ring" : o->dirty_mode == VMMU_DIRTY_MANUAL ? "manual" : "bitmap");
	h.check = hash64(&h, offsetof(struct stream_header, check), 0);
	ret = loop_write_all(l, ss.fd, &h, sizeof(h));
	if (!ret)
		ret = precopy(src, &ss.s, o, &st);
	if (ret) {
		if (ret != -ECONNREFUSED && !stream_peer_refused(&ss))
			msg("the stream broke: %s", strerror(-ret));
		goto out;
	}
	summary(src, &st, ss.s.bytes + sizeof(h));
out:
	if (ss.fd >= 0)
		close(ss.fd);
	free(ss.buf[0]);
	free(ss.buf[1]);
	return ret;
}

/* Buffered reads of the stream through the loop. */
struct reader {
	struct loop *l;
	int fd;
	uint8_t *buf;
	size_t start, end;
	uint64_t consumed;
};

/* Make @len bytes available at r->buf + r->start. Return 0, -ENODATA at the end, -errno. */
static int reader_need(struct reader *r, size_t len)
{
	while (r->end - r->start < len) {
		int n;

		if (r->end + READ_AHEAD > BATCH_SIZE) { /* compact: the unread part moves to the front */
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		n = loop_read(r->l, r->fd, r->buf + r->end, READ_AHEAD, STREAM_TIMEOUT_MS);
		if (n < 0)
			return n;
		if (n == 0)
			return -ENODATA;
		r->end += (size_t)n;
	}
	return 0;
}

/* Move @len bytes of the stream to @to: what is buffered, then straight from the socket. */
static int reader_into(struct reader *r, uint8_t *to, size_t len)
{
	size_t have = r->end - r->start;

	if (have > len)
		have = len;
	memcpy(to, r->buf + r->start, have);
	r->start += have;
	r->consumed += have;
	while (have < len) {
		int n = loop_read(r->l, r->fd, to + have, len - have, STREAM_TIMEOUT_MS);

		if (n <= 0)
			return n ? n : -ENODATA;
		have += (size_t)n;
		r->consumed += (uint64_t)n;
	}
	return 0;
}

static const uint8_t *reader_take(struct reader *r, size_t len)
{
	const uint8_t *p = r->buf + r->start;

	r->start += len;
	r->consumed += len;
	return p;
}

static void send_reply(int fd, uint32_t type, uint32_t reason, const char *text)
{
	uint8_t buf[sizeof(struct record) + 256];
	struct record rec = { .type = type };
	size_t tl = text ? strlen(text) : 0;

	if (tl > 200)
		tl = 200;
	if (type == REC_NAK) {
		uint32_t v = STREAM_VERSION;

		rec.len = (uint32_t)(8 + tl);
		memcpy(buf + sizeof(rec), &reason, 4);
		memcpy(buf + sizeof(rec) + 4, &v, 4);
		memcpy(buf + sizeof(rec) + 8, text, tl);
	}
	rec.check = record_check(&rec, buf + sizeof(rec));
	memcpy(buf, &rec, sizeof(rec));
	if (send(fd, buf, sizeof(rec) + rec.len, MSG_NOSIGNAL) < 0)
		return;
}

/* Refuse: tell the source why, let it read that (no reset), and close. */
static void refuse(int fd, uint32_t reason, const char *text)
{
	char drain[4096];

	send_reply(fd, REC_NAK, reason, text);
	shutdown(fd, SHUT_WR);
	struct timeval tv = { 2, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (recv(fd, drain, sizeof(drain), 0) > 0)
		;
}

/* Receive a whole stream into @dst (created here). Return 0 or a vmmu-run exit status. */
static int receive(struct reader *r, const char *backend, struct machine *dst, bool keep_caps)
{
	struct stream_header h;
	struct vcpu_state vs;
	char why[200];
	uint64_t records = 0, pages = 0, zeros = 0, rounds = 0, t0 = 0;
	bool have_state = false;
	int ret;

	ret = reader_need(r, sizeof(h));
	if (ret)
		goto broken;
	memcpy(&h, reader_take(r, sizeof(h)), sizeof(h));
	if (memcmp(h.magic, STREAM_MAGIC, 8)) {
		refuse(r->fd, NAK_FORMAT, "not a vmmu-run migration stream");
		msg("refused: not a vmmu-run migration stream (bad magic)");
		return EXIT_PROTOCOL;
	}
	if (h.version != STREAM_VERSION) {
		snprintf(why, sizeof(why), "stream version %u, this vmmu-run speaks version %u", h.version,
			 STREAM_VERSION);
		refuse(r->fd, NAK_VERSION, why);
		msg("refused: %s", why);
		return EXIT_PROTOCOL;
	}
	if (!stream_header_ok(&h, sizeof(vs), GUEST_WORK_GPA + (2 << 20), GUEST_WORK_GPA + (1ULL << 36))) {
		refuse(r->fd, NAK_FORMAT, "bad stream header");
		msg("refused: bad stream header (check, sizes or RAM size %llu)", (unsigned long long)h.mem_size);
		return EXIT_PROTOCOL;
	}
	msg("incoming guest: %llu MiB of RAM", (unsigned long long)(h.mem_size >> 20));
	ret = machine_create(dst, backend, VMMU_DIRTY_GET_CLEAR, h.mem_size, true);
	if (ret) {
		refuse(r->fd, NAK_NOVM, "the destination cannot create a VM");
		msg("cannot create a VM: %s", vmmu_strerror(ret));
		return EXIT_NOVM;
	}
	if (!keep_caps) {
		ret = privs_drop();
		if (ret)
			msg("dropping capabilities failed: %s (going on)", strerror(-ret));
	}
	t0 = now_ns();
	for (;;) {
		struct record rec;
		const uint8_t *payload;

		ret = reader_need(r, sizeof(rec));
		if (ret)
			goto broken;
		memcpy(&rec, reader_take(r, sizeof(rec)), sizeof(rec));
		/* Where a record may go is checked before its payload is read. */
		int fault = stream_record_ok(&rec, &h, sizeof(vs), records, have_state);
		bool page = rec.type == REC_PAGE;

		if (fault == STREAM_CORRUPT) {
			snprintf(why, sizeof(why), "corrupt record %llu (type %u, %u bytes)",
				 (unsigned long long)records, rec.type, rec.len);
			refuse(r->fd, NAK_FORMAT, why);
			msg("refused: %s", why);
			return EXIT_PROTOCOL;
		}
		if (fault) {
			snprintf(why, sizeof(why), "inconsistent record %llu (type %u)", (unsigned long long)records,
				 rec.type);
			refuse(r->fd, NAK_FORMAT, why);
			msg("refused: %s", why);
			return EXIT_PROTOCOL;
		}
		if (page) {
			/* Straight into guest RAM, received there for the most part; checked in place. */
			payload = (uint8_t *)dst->ram.hva + rec.arg;
			ret = reader_into(r, (uint8_t *)payload, rec.len);
		} else {
			ret = reader_need(r, rec.len);
			payload = ret ? NULL : reader_take(r, rec.len);
		}
		if (ret)
			goto broken;
		if (rec.check != record_check(&rec, payload)) {
			snprintf(why, sizeof(why), "record %llu fails its check", (unsigned long long)records);
			refuse(r->fd, NAK_BROKEN, why);
			msg("refused: %s", why);
			return EXIT_IO;
		}
		if (rec.type == REC_END)
			break;
		records++;
		switch (rec.type) {
		case REC_PAGE:
			pages += rec.len / PAGE_SIZE; /* already in place */
			break;
		case REC_ZERO:
			memset((uint8_t *)dst->ram.hva + rec.arg, 0, PAGE_SIZE);
			zeros++;
			break;
		case REC_ROUND:
			rounds++;
			break;
		case REC_STATE:
			memcpy(&vs, payload, sizeof(vs));
			have_state = true;
			break;
		}
	}
	vs.epoch++;
	ret = machine_set_state(dst, &vs);
	if (ret) {
		refuse(r->fd, NAK_FORMAT, "the vCPU state was refused");
		msg("refused: the vCPU state was refused by the backend: %s", vmmu_strerror(ret));
		return EXIT_PROTOCOL;
	}
	atomic_store(&dst->stop_guest, true);
	send_reply(r->fd, REC_ACK, 0, NULL);
	msg("received %llu pages and %llu zero pages in %llu rounds (%.1f MiB, %.1f ms); resuming the guest",
	    (unsigned long long)pages, (unsigned long long)zeros, (unsigned long long)rounds,
	    (double)r->consumed / (1 << 20), (double)(now_ns() - t0) / 1e6);
	return 0;
broken:
	if (ret == -ENODATA)
		snprintf(why, sizeof(why), "stream truncated after %llu bytes (%llu records)",
			 (unsigned long long)(r->consumed + (r->end - r->start)), (unsigned long long)records);
	else
		snprintf(why, sizeof(why), "stream broken: %s", strerror(-ret));
	refuse(r->fd, NAK_BROKEN, why);
	msg("aborted: %s; no guest was started", why);
	return EXIT_IO;
}

int migrate_listen(const char *spec, struct loop *l, const char *backend, struct machine *dst, bool keep_caps)
{
	struct sockaddr_storage addr;
	struct reader r = { .l = l, .fd = -1 };
	socklen_t alen;
	int lfd = -1, one = 1, ret = resolve(spec, "127.0.0.1", &addr, &alen);

	if (ret)
		return EXIT_USAGE;
	lfd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&addr, alen) || listen(lfd, 1)) {
		msg("cannot listen on %s: %s", spec, strerror(errno));
		ret = EXIT_IO;
		goto out;
	}
	msg("listening on %s for a migrating guest", spec);
	r.fd = loop_accept(l, lfd);
	if (r.fd < 0) {
		msg("accept: %s", strerror(-r.fd));
		ret = EXIT_IO;
		goto out;
	}
	r.buf = malloc(BATCH_SIZE);
	ret = r.buf ? receive(&r, backend, dst, keep_caps) : EXIT_INTERNAL;
	if (ret)
		machine_destroy(dst);
out:
	if (r.fd >= 0)
		close(r.fd);
	if (lfd >= 0)
		close(lfd);
	free(r.buf);
	return ret;
}

/* -------------------------------------------------------------- snapshots */

struct snap_header {
	char magic[8];         /* SNAP_MAGIC */
	uint32_t version;      /* SNAP_VERSION */
	uint32_t header_size;
	uint64_t mem_size;
	uint64_t mem_offset;   /* SNAP_MEM_OFFSET */
	uint64_t pages;        /* non-zero pages written */
	struct vcpu_state state;
	uint64_t check;        /* hash64 of everything before */
};

_Static_assert(sizeof(struct snap_header) <= SNAP_MEM_OFFSET, "snapshot header fits its page");

int snapshot_write(struct machine *m, const char *path)
{
	struct snap_header h = { .magic = SNAP_MAGIC, .version = SNAP_VERSION, .header_size = sizeof(h),
				 .mem_size = m->mem_size, .mem_offset = SNAP_MEM_OFFSET };
	const uint8_t *ram = m->ram.hva;
	uint64_t t0 = now_ns(), npages = m->mem_size / PAGE_SIZE;
	struct stat sb;
	int fd, ret = machine_park(m);

	if (ret) {
		msg("snapshot: the guest ended before it could be stopped");
		return ret;
	}
	ret = machine_get_state(m, &h.state);
	if (ret)
		return ret;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		msg("snapshot: %s: %s", path, strerror(errno));
		return -errno;
	}
	/* Sparse: size the file, then write runs of non-zero pages; zero pages stay holes. */
	if (ftruncate(fd, (off_t)(SNAP_MEM_OFFSET + m->mem_size)))
		goto io;
	for (uint64_t p = 0; p < npages;) {
		uint64_t q = p;

		while (q < npages && !page_is_zero(ram + q * PAGE_SIZE))
			q++;
		if (q > p) {
			size_t len = (size_t)((q - p) * PAGE_SIZE);
			const uint8_t *from = ram + p * PAGE_SIZE;
			off_t off = (off_t)(SNAP_MEM_OFFSET + p * PAGE_SIZE);

			while (len) {
				ssize_t w = pwrite(fd, from, len, off);

				if (w <= 0)
					goto io;
				from += w;
				off += w;
				len -= (size_t)w;
			}
			h.pages += q - p;
		}
		p = q + 1;
	}
	h.check = hash64(&h, offsetof(struct snap_header, check), 0);
	if (pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || fsync(fd) || fstat(fd, &sb))
		goto io;
	close(fd);
	msg("snapshot: wrote %s in %.1f ms: %llu of %llu pages, %.1f MiB allocated of %.1f MiB", path,
	    (double)(now_ns() - t0) / 1e6, (unsigned long long)h.pages, (unsigned long long)npages,
	    (double)sb.st_blocks * 512 / (1 << 20), (double)sb.st_size / (1 << 20));
	return 0;
io:
	ret = -errno;
	msg("snapshot: writing %s: %s", path, strerror(errno));
	close(fd);
	return ret ? ret : -EIO;
}

/* Return 0 (m is ready to resume) or a vmmu-run exit status. */
int snapshot_restore(const char *path, const char *backend, struct machine *m)
{
	struct snap_header h;
	uint64_t t0 = now_ns(), bytes = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;
	off_t end, data, hole;

	if (fd < 0) {
		msg("restore: %s: %s", path, strerror(errno));
		return EXIT_IO;
	}
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h.magic, SNAP_MAGIC, 8)) {
		msg("restore: %s is not a vmmu-run snapshot", path);
		ret = EXIT_PROTOCOL;
		goto out;
	}
	if (h.version != SNAP_VERSION) {
		msg("restore: %s has snapshot version %u, this vmmu-run reads version %u", path, h.version,
		    SNAP_VERSION);
		ret = EXIT_PROTOCOL;
		goto out;
	}
	end = lseek(fd, 0, SEEK_END);
	if (h.check != hash64(&h, offsetof(struct snap_header, check), 0) || h.header_size != sizeof(h) ||
	    h.mem_offset != SNAP_MEM_OFFSET || h.mem_size < GUEST_WORK_GPA + (2 << 20) ||
	    h.mem_size % PAGE_SIZE || end != (off_t)(h.mem_offset + h.mem_size)) {
		msg("restore: %s is damaged (header check or sizes)", path);
		ret = EXIT_IO;
		goto out;
	}
	ret = machine_setup(m, backend, VMMU_DIRTY_GET_CLEAR, h.mem_size);
	if (ret)
		goto out;
	/* Read only the data extents; holes stay zero in fresh guest memory. */
	for (data = lseek(fd, (off_t)h.mem_offset, SEEK_DATA); data >= 0 && data < end;
	     data = lseek(fd, hole, SEEK_DATA)) {
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = end;
		for (off_t off = data; off < hole;) {
			ssize_t n = pread(fd, (uint8_t *)m->ram.hva + (off - (off_t)h.mem_offset), (size_t)(hole - off),
					  off);

			if (n <= 0) {
				msg("restore: reading %s: %s", path, n ? strerror(errno) : "unexpected end");
				ret = EXIT_IO;
				goto out;
			}
			off += n;
			bytes += (uint64_t)n;
		}
	}
	h.state.epoch++;
	ret = machine_set_state(m, &h.state);
	if (ret) {
		msg("restore: the backend refused the vCPU state: %s", vmmu_strerror(ret));
		ret = EXIT_PROTOCOL;
		goto out;
	}
	atomic_store(&m->stop_guest, true);
	msg("restored %s: %.1f MiB read in %.1f ms; resuming the guest", path, (double)bytes / (1 << 20),
	    (double)(now_ns() - t0) / 1e6);
out:
	close(fd);
	return ret;
}
