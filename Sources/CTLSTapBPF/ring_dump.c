/*
 * Reading the BPF ring buffer in place, for `tlstap record`: instead of
 * handing each record to a callback and copying it out (libbpf's
 * ring_buffer), the ring's own pages are written to the capture file with
 * direct I/O, and the consumer position moves past them once written. The
 * layout is the kernel's (kernel/bpf/ringbuf.c): a consumer page, a producer
 * page, then the data pages mapped twice in a row, so that any run of bytes
 * up to the ring's size is contiguous in memory.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/bpf.h>

#include "CTLSTapBPF.h"

int CTLSTapBPF_ring_dump_open(struct CTLSTapBPF_RingDump *dump, int map_fd, uint32_t ring_bytes)
{
	/* Edge-triggered: bytes left in the ring between writes must not make every wait return at once. */
	struct epoll_event wakeup = { .events = EPOLLIN | EPOLLET };
	long page = sysconf(_SC_PAGESIZE);
	void *consumer, *producer;
	int wakeups, err;

	wakeups = epoll_create1(EPOLL_CLOEXEC);
	if (wakeups < 0)
		return -errno;
	if (epoll_ctl(wakeups, EPOLL_CTL_ADD, map_fd, &wakeup)) {
		err = -errno;
		close(wakeups);
		return err;
	}
	consumer = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (consumer == MAP_FAILED) {
		err = -errno;
		close(wakeups);
		return err;
	}
	producer = mmap(NULL, page + 2 * (size_t)ring_bytes, PROT_READ, MAP_SHARED, map_fd, page);
	if (producer == MAP_FAILED) {
		err = -errno;
		munmap(consumer, page);
		close(wakeups);
		return err;
	}
	dump->wakeups = wakeups;
	dump->consumer_pos = consumer;
	dump->producer_pos = producer;
	dump->data = (const uint8_t *)producer + page;
	dump->mask = ring_bytes - 1;
	dump->page = page;
	dump->scanned = __atomic_load_n(dump->consumer_pos, __ATOMIC_ACQUIRE);
	return 0;
}

void CTLSTapBPF_ring_dump_close(struct CTLSTapBPF_RingDump *dump)
{
	if (!dump->consumer_pos)
		return;
	munmap((void *)dump->consumer_pos, dump->page);
	munmap((void *)dump->producer_pos, dump->page + 2 * (dump->mask + 1));
	close(dump->wakeups);
	dump->consumer_pos = NULL;
	dump->producer_pos = NULL;
}

void CTLSTapBPF_ring_dump_wait(const struct CTLSTapBPF_RingDump *dump, int timeout_ms)
{
	struct epoll_event event;

	epoll_wait(dump->wakeups, &event, 1, timeout_ms);
}

uint64_t CTLSTapBPF_ring_dump_scan(struct CTLSTapBPF_RingDump *dump, CTLSTapBPF_RecordVisitor visit, void *context)
{
	uint64_t producer = __atomic_load_n(dump->producer_pos, __ATOMIC_ACQUIRE);
	uint64_t position = dump->scanned;

	while (position < producer) {
		const uint32_t *header = (const uint32_t *)(dump->data + (position & dump->mask));
		uint32_t length = __atomic_load_n(header, __ATOMIC_ACQUIRE);

		if (length & BPF_RINGBUF_BUSY_BIT)
			break; /* not committed yet: nor is anything after it, for the file */
		if (!(length & BPF_RINGBUF_DISCARD_BIT))
			visit(context, header + 2, length & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT));
		length &= ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
		position += (BPF_RINGBUF_HDR_SZ + length + 7) & ~7ULL;
	}
	dump->scanned = position;
	return position;
}

const void *CTLSTapBPF_ring_dump_bytes(const struct CTLSTapBPF_RingDump *dump, uint64_t position)
{
	return dump->data + (position & dump->mask);
}

void CTLSTapBPF_ring_dump_release(struct CTLSTapBPF_RingDump *dump, uint64_t position)
{
	__atomic_store_n(dump->consumer_pos, position, __ATOMIC_RELEASE);
}
