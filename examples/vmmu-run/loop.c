/* SPDX-License-Identifier: MIT */
/*
 * The main thread's event loop: one io_uring carries every wait of the main
 * thread. Watched eventfds (the vCPU thread's events, the guest's end-of-pass
 * ioeventfd) are 8-byte reads re-armed after each completion; the timer is an
 * IORING_OP_TIMEOUT; the migration socket's connect, accept, reads (each
 * with a linked timeout) and batched writes are ring operations too. Synchronous helpers wait for their
 * own completion and queue the events that arrive meanwhile for loop_wait().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <liburing.h>

#include "vmmu-run.h"

#define MAX_WATCH   4
#define MAX_QUEUED  32
#define IO_SYNC     0x100
#define IO_ASYNC    0x200
#define TIMER_DATA  0x300
#define LINK_TIMEOUT_DATA 0x400

struct watch {
	int fd;
	enum loop_tag tag;
	uint64_t value;
};

struct event {
	enum loop_tag tag;
	uint64_t value;
};

struct loop {
	struct io_uring ring;
	struct watch watch[MAX_WATCH];
	unsigned int nwatch;
	struct event queued[MAX_QUEUED];
	unsigned int nqueued;
	struct __kernel_timespec ts;  /* the --after timer */
	struct __kernel_timespec lts; /* a read's linked timeout */
	bool timer_armed;
	/* the one asynchronous write in flight */
	int afd;
	const uint8_t *abuf;
	size_t alen;
	bool apending;
	int ares;  /* its result, once !apending */
	bool adone; /* a result waits in ares */
};

int loop_create(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));
	int ret;

	if (!l)
		return -ENOMEM;
	ret = io_uring_queue_init(64, &l->ring, 0);
	if (ret) {
		free(l);
		return ret;
	}
	*out = l;
	return 0;
}

void loop_destroy(struct loop *l)
{
	if (!l)
		return;
	io_uring_queue_exit(&l->ring);
	free(l);
}

static struct io_uring_sqe *sqe_get(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (!sqe) {
		io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

static int arm_watch(struct loop *l, unsigned int i)
{
	struct io_uring_sqe *sqe = sqe_get(l);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, l->watch[i].fd, &l->watch[i].value, 8, 0);
	io_uring_sqe_set_data64(sqe, i);
	return 0;
}

int loop_watch(struct loop *l, int fd, enum loop_tag tag)
{
	if (fd < 0)
		return 0;
	if (l->nwatch == MAX_WATCH)
		return -ENOSPC;
	l->watch[l->nwatch] = (struct watch){ .fd = fd, .tag = tag };
	return arm_watch(l, l->nwatch++);
}

int loop_timer(struct loop *l, uint64_t ns)
{
	struct io_uring_sqe *sqe;

	if (l->timer_armed) {
		sqe = sqe_get(l);
		if (!sqe)
			return -EBUSY;
		io_uring_prep_timeout_remove(sqe, TIMER_DATA, 0);
		io_uring_sqe_set_data64(sqe, TIMER_DATA + 1);
	}
	sqe = sqe_get(l);
	if (!sqe)
		return -EBUSY;
	l->ts.tv_sec = (long long)(ns / 1000000000ULL);
	l->ts.tv_nsec = (long long)(ns % 1000000000ULL);
	io_uring_prep_timeout(sqe, &l->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, TIMER_DATA);
	l->timer_armed = true;
	return 0;
}

/* Queue an event for loop_wait(), adding to one of the same tag: the queue never overflows. */
static void queue(struct loop *l, enum loop_tag tag, uint64_t value)
{
	for (unsigned int i = 0; i < l->nqueued; i++)
		if (l->queued[i].tag == tag) {
			l->queued[i].value += value;
			return;
		}
	if (l->nqueued < MAX_QUEUED)
		l->queued[l->nqueued++] = (struct event){ tag, value };
}

/* Take one completion. Watched fds and the timer become queued events; I/O results are returned. */
static int reap(struct loop *l, uint64_t *data, int *res)
{
	struct io_uring_cqe *cqe;
	int ret;

	io_uring_submit(&l->ring);
	do
		ret = io_uring_wait_cqe(&l->ring, &cqe);
	while (ret == -EINTR);
	if (ret)
		return ret;
	*data = io_uring_cqe_get_data64(cqe);
	*res = cqe->res;
	io_uring_cqe_seen(&l->ring, cqe);
	if (*data < MAX_WATCH) {
		unsigned int i = (unsigned int)*data;

		if (*res != 8)
			return 0; /* the fd failed (or the ring is going away): stop watching it */
		queue(l, l->watch[i].tag, l->watch[i].value);
		arm_watch(l, i);
	} else if (*data == IO_ASYNC) {
		l->apending = false;
		l->adone = true;
		l->ares = *res;
	} else if (*data == TIMER_DATA) {
		l->timer_armed = false;
		if (*res == -ETIME)
			queue(l, TAG_TIMER, 1);
	}
	return 0;
}

int loop_wait(struct loop *l, enum loop_tag *tag, uint64_t *count)
{
	while (!l->nqueued) {
		uint64_t data;
		int res, ret = reap(l, &data, &res);

		if (ret)
			return ret;
	}
	*tag = l->queued[0].tag;
	*count = l->queued[0].value;
	memmove(&l->queued[0], &l->queued[1], --l->nqueued * sizeof(l->queued[0]));
	return 0;
}

/* Submit @sqe and wait for its result (other events are queued). */
static int io_sync(struct loop *l, struct io_uring_sqe *sqe)
{
	uint64_t data;
	int res, ret;

	io_uring_sqe_set_data64(sqe, IO_SYNC);
	for (;;) {
		ret = reap(l, &data, &res);
		if (ret)
			return ret;
		if (data == IO_SYNC)
			return res;
	}
}

static int rw_all(struct loop *l, int fd, uint8_t *buf, size_t len, bool write)
{
	while (len) {
		struct io_uring_sqe *sqe = sqe_get(l);
		unsigned int n = len > (1u << 30) ? 1u << 30 : (unsigned int)len;
		int ret;

		if (!sqe)
			return -EBUSY;
		if (write)
			io_uring_prep_send(sqe, fd, buf, n, MSG_NOSIGNAL);
		else
			io_uring_prep_recv(sqe, fd, buf, n, 0);
		ret = io_sync(l, sqe);
		if (ret == -EINTR || ret == -EAGAIN)
			continue;
		if (ret < 0)
			return ret;
		if (ret == 0)
			return write ? -EPIPE : -ENODATA; /* -ENODATA: the peer closed the stream */
		buf += ret;
		len -= (size_t)ret;
	}
	return 0;
}

int loop_write_all(struct loop *l, int fd, const void *buf, size_t len)
{
	int ret = loop_write_wait(l);

	return ret ? ret : rw_all(l, fd, (uint8_t *)buf, len, true);
}

/*
 * Read up to @len bytes (at least one). Return the count; 0 at the end of the
 * stream; -ETIMEDOUT when nothing came for @timeout_ms (a linked timeout).
 */
int loop_read(struct loop *l, int fd, void *buf, size_t len, unsigned int timeout_ms)
{
	struct io_uring_sqe *sqe, *t;
	int ret;

	if (io_uring_sq_space_left(&l->ring) < 2)
		io_uring_submit(&l->ring); /* the read and its timeout must go in together */
	sqe = sqe_get(l);
	t = sqe_get(l);
	if (!sqe || !t)
		return -EBUSY;
	io_uring_prep_recv(sqe, fd, buf, (unsigned int)(len > (1u << 30) ? 1u << 30 : len), 0);
	sqe->flags |= IOSQE_IO_LINK;
	l->lts.tv_sec = timeout_ms / 1000;
	l->lts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
	io_uring_prep_link_timeout(t, &l->lts, 0);
	io_uring_sqe_set_data64(t, LINK_TIMEOUT_DATA); /* its completion is ignored */
	ret = io_sync(l, sqe);
	return ret == -ECANCELED ? -ETIMEDOUT : ret;
}

/*
 * Start sending @buf (the caller keeps it unchanged until loop_write_wait());
 * one write is in flight at a time, so a caller fills its next batch while
 * this one goes out.
 */
int loop_write_async(struct loop *l, int fd, const void *buf, size_t len)
{
	struct io_uring_sqe *sqe;
	int ret = loop_write_wait(l);

	if (ret)
		return ret;
	sqe = sqe_get(l);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_send(sqe, fd, buf, (unsigned int)len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, IO_ASYNC);
	io_uring_submit(&l->ring);
	l->afd = fd;
	l->abuf = buf;
	l->alen = len;
	l->apending = true;
	return 0;
}

/* Wait for the write in flight; finish it if it was short. */
int loop_write_wait(struct loop *l)
{
	uint64_t data;
	int res, ret;

	while (l->apending) {
		ret = reap(l, &data, &res);
		if (ret)
			return ret;
	}
	if (!l->adone)
		return 0;
	l->adone = false;
	if (l->ares < 0)
		return l->ares;
	if ((size_t)l->ares < l->alen)
		return rw_all(l, l->afd, (uint8_t *)l->abuf + l->ares, l->alen - (size_t)l->ares, true);
	return 0;
}

int loop_connect(struct loop *l, int fd, const void *addr, unsigned int addrlen)
{
	struct io_uring_sqe *sqe = sqe_get(l);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_connect(sqe, fd, addr, addrlen);
	return io_sync(l, sqe);
}

int loop_accept(struct loop *l, int fd)
{
	struct io_uring_sqe *sqe = sqe_get(l);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
	return io_sync(l, sqe);
}
