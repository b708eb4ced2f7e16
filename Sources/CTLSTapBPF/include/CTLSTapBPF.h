/*
 * Thin C shims around the generated skeleton (tlstap.skel.h). They exist
 * because the skeleton is made of static inline functions and a large embedded
 * object, and because libbpf's options structs are filled with macros
 * (LIBBPF_OPTS) that Swift cannot call. Everything else, Swift does with
 * libbpf directly through the CLibbpf module.
 */
#ifndef CTLSTAPBPF_H
#define CTLSTAPBPF_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct tlstap_bpf;
struct bpf_program;
struct bpf_link;

/* The kernel-side filters, written into the programs' rodata before load. */
struct CTLSTapBPF_Filters {
	uint32_t own_pid;
	bool filter_pids;
	bool filter_comms;
	bool filter_cgroup;
	bool filter_ports;
	bool filter_hosts;
	bool capture_plaintext; /* also load the syscall return probes of --plaintext */
	bool follow_children;	/* -p: the given processes' children, now and later, too */
	bool stop_for_attach;	/* stop a process about to run code not seen before until probed */
	uint64_t target_cgroup_id;
};

/*
 * What the kernel's BPF offers that tlstap's programs use where it is there
 * (HostCheck decides; TLSTAP_KERNEL_WITHOUT can hide features for tests).
 */
struct CTLSTapBPF_KernelFeatures {
	bool bpf_loop;	     /* 5.17+: else a call's chunks go in a bounded loop (emit.bpf.h) */
	bool attach_cookies; /* 5.15+: else no probes in the inner function of SSL_write/SSL_read */
	/* 6.3+: socket tracepoints hook socket calls, not every syscall (syscalls.bpf.h); needs bpf_loop */
	bool socket_tracepoints;
};

/* Whether the kernel's BTF has the BTF tracepoint `name` (btf_trace_NAME). */
bool CTLSTapBPF_kernel_has_tracepoint(const char *name);

/* The tracepoints socket_tracepoints needs, by index from 0; NULL past the last. */
const char *CTLSTapBPF_socket_tracepoint(size_t index);

/* Whether the kernel has every one of them (socket_tracepoints also needs bpf_loop). */
bool CTLSTapBPF_kernel_has_socket_tracepoints(void);

/* The programs of tlstap.bpf.c, by role. */
enum CTLSTapBPF_Program {
	CTLSTapBPF_SSL_WRITE_ENTER,
	CTLSTapBPF_SSL_READ_ENTER,
	CTLSTapBPF_SSL_WRITE_EX_ENTER,
	CTLSTapBPF_SSL_READ_EX_ENTER,
	CTLSTapBPF_SSL_WRITE_EXIT,
	CTLSTapBPF_SSL_READ_EXIT,
	CTLSTapBPF_GNUTLS_SEND_ENTER,
	CTLSTapBPF_GNUTLS_RECV_ENTER,
	CTLSTapBPF_GO_WRITE_ENTER, /* at writeRecordLocked, where a Write's records start (bpf/stacks/go.bpf.h) */
	CTLSTapBPF_GO_READ_ENTER,
	CTLSTapBPF_GO_WRITE_RETURN,
	CTLSTapBPF_GO_READ_RETURN,
	CTLSTapBPF_PR_WRITE_ENTER,
	CTLSTapBPF_PR_SEND_ENTER,
	CTLSTapBPF_PR_READ_ENTER,
	CTLSTapBPF_PR_RECV_ENTER,
	CTLSTapBPF_SSL_HANDSHAKE_ENTER,
	CTLSTapBPF_SSL_HANDSHAKE_EXIT,
	CTLSTapBPF_SSL_WRITE_INNER_ENTER, /* the function SSL_write and SSL_write_ex call */
	CTLSTapBPF_SSL_READ_INNER_ENTER,
	CTLSTapBPF_BIO_WRITE_ENTER,    /* records handed to a write BIO: memory BIOs' sockets */
	CTLSTapBPF_OBJECT_FREE_ENTER,  /* SSL_free, gnutls_deinit */
	CTLSTapBPF_BORINGSSL_WRITE_ENTER, /* BoringSSL's twins of the OpenSSL API's entry programs */
	CTLSTapBPF_BORINGSSL_READ_ENTER,
	CTLSTapBPF_BORINGSSL_WRITE_EX_ENTER,
	CTLSTapBPF_BORINGSSL_READ_EX_ENTER,
	CTLSTapBPF_BORINGSSL_HANDSHAKE_ENTER,
	CTLSTapBPF_GO_HANDSHAKE_ENTER, /* Go's clientHandshake and serverHandshake */
	CTLSTapBPF_GO_HANDSHAKE_RETURN,
};

/* The maps user space reads or fills. */
enum CTLSTapBPF_Map {
	CTLSTapBPF_MAP_EVENTS,
	CTLSTapBPF_MAP_LOST_COUNTS,
	CTLSTapBPF_MAP_TRACED_COMMS,
	CTLSTapBPF_MAP_TRACED_PORTS,
	CTLSTapBPF_MAP_TRACED_HOSTS,
};

/*
 * Deletes what the kernel side keeps for an exited process that it could
 * not delete itself: its sockets by fd, and its TLS objects' bindings and
 * marks of data sent unbound.
 */
void CTLSTapBPF_forget_process(struct tlstap_bpf *skel, uint32_t pid, const int32_t *fds, size_t fd_count,
			       const uint64_t *tls_objects, size_t tls_object_count);

/*
 * The ring buffer read in place (`tlstap record`): its committed bytes go to
 * a file as they lie, and the consumer position follows (ring_dump.c).
 */
struct CTLSTapBPF_RingDump {
	unsigned long *consumer_pos;	   /* the kernel's consumer page, which this side moves */
	const unsigned long *producer_pos; /* the producer page, read-only */
	const uint8_t *data;		   /* the data pages, mapped twice in a row */
	uint64_t mask;			   /* the ring's size minus one */
	long page;
	uint64_t scanned;		   /* where the first record not yet handed to a visitor begins */
	int wakeups;			   /* an epoll fd that BPF's wakeups make ready */
};

/* Called with each committed record's sample (not its 8-byte ring header). */
typedef void (*CTLSTapBPF_RecordVisitor)(void *context, const void *sample, uint32_t length);

/* Maps the ring buffer `map_fd` of `ring_bytes`. 0 or -errno. */
int CTLSTapBPF_ring_dump_open(struct CTLSTapBPF_RingDump *dump, int map_fd, uint32_t ring_bytes);

void CTLSTapBPF_ring_dump_close(struct CTLSTapBPF_RingDump *dump);

/* Waits up to `timeout_ms` for BPF to wake the reader; consumes nothing. */
void CTLSTapBPF_ring_dump_wait(const struct CTLSTapBPF_RingDump *dump, int timeout_ms);

/*
 * Hands every record committed since the last scan to `visit`, skipping
 * discarded ones, and stops at the first record still being written.
 * Returns the stream position up to which every record is committed.
 */
uint64_t CTLSTapBPF_ring_dump_scan(struct CTLSTapBPF_RingDump *dump, CTLSTapBPF_RecordVisitor visit, void *context);

/* Where stream position `position` lies: the ring's size of bytes from there on is contiguous. */
const void *CTLSTapBPF_ring_dump_bytes(const struct CTLSTapBPF_RingDump *dump, uint64_t position);

/* Gives the ring's bytes before `position` back to the producers. */
void CTLSTapBPF_ring_dump_release(struct CTLSTapBPF_RingDump *dump, uint64_t position);

/* Opens the embedded object. NULL with errno set on failure. */
struct tlstap_bpf *CTLSTapBPF_open(void);

/*
 * Sets the filters and the ring buffer's size, and picks the programs the
 * kernel's features allow; between open and load.
 */
int CTLSTapBPF_configure(struct tlstap_bpf *skel, const struct CTLSTapBPF_Filters *filters,
			 const struct CTLSTapBPF_KernelFeatures *features, uint32_t ring_buffer_bytes);

/* Verifies and loads the programs and creates the maps. 0 or -errno. */
int CTLSTapBPF_load(struct tlstap_bpf *skel);

/* An attached uprobe (CTLSTapBPF_attach_uprobe), owned by the caller until destroy. */
struct CTLSTapBPF_Probe;

/*
 * Detaches `probes` (and frees them) and every link the skeleton owns, all
 * at once; the maps and the ring buffer stay. NULL skel is fine.
 */
void CTLSTapBPF_detach(struct tlstap_bpf *skel, struct CTLSTapBPF_Probe *const *probes, size_t probe_count);

/* CTLSTapBPF_detach, then unloads everything. NULL skel is fine. */
void CTLSTapBPF_destroy(struct tlstap_bpf *skel, struct CTLSTapBPF_Probe *const *probes, size_t probe_count);

/* The program's name in tlstap.bpf.c, for tools that attach from `tlstap check --attach-plan`. */
const char *CTLSTapBPF_program_name(enum CTLSTapBPF_Program program);
struct bpf_program *CTLSTapBPF_program(struct tlstap_bpf *skel, enum CTLSTapBPF_Program program);

/* The map's file descriptor once loaded, or -1. */
int CTLSTapBPF_map_fd(struct tlstap_bpf *skel, enum CTLSTapBPF_Map map);

/*
 * Attaches `program` as a uprobe (or uretprobe) on `function` in the ELF file
 * at `path` (or, when function is NULL, at file offset `offset`), for process
 * `pid` or for all processes when pid is -1, with `cookie` readable in BPF
 * through bpf_get_attach_cookie. NULL with errno set on failure. On a kernel
 * with uprobe_multi links (6.6+) the probe is one of those, which needs
 * `offset`: `function` then fails with ENOENT.
 */
struct CTLSTapBPF_Probe *CTLSTapBPF_attach_uprobe(struct bpf_program *program, bool retprobe, pid_t pid,
						  const char *path, const char *function, uint64_t offset,
						  uint64_t cookie);

/*
 * Whether the kernel loads an fentry program (BPF trampolines): loads a
 * two-instruction program against a vmlinux function and unloads it.
 * 0 if it loads, else -errno.
 */
int CTLSTapBPF_probe_fentry(void);

/*
 * Adds processes to -p's set (filters->filter_pids, after load): 0, or
 * -ERANGE for a PID Linux cannot give, or -errno.
 */
int CTLSTapBPF_trace_pids(struct tlstap_bpf *skel, const int32_t *pids, size_t count);

/*
 * Attaches the raw tracepoints (syscalls, exec, exit, and fork with -p) that
 * tie TLS calls to sockets and follow processes. 0 on success; else -errno,
 * with the failing program's section name in `failed` (may be NULL).
 */
int CTLSTapBPF_attach_socket_probes(struct tlstap_bpf *skel, const char **failed);

/* Tells the syscall probes that Go programs have probes (after load). */
void CTLSTapBPF_set_go_probes_attached(struct tlstap_bpf *skel);

/* Receives libbpf's log, one formatted message at a time. */
typedef void (*CTLSTapBPF_LogHandler)(int level, const char *message);

/* Routes libbpf's printf-style log to `handler` (formatting happens here). */
void CTLSTapBPF_set_log_handler(CTLSTapBPF_LogHandler handler);

#endif /* CTLSTAPBPF_H */
