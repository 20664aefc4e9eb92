// procmon: what reported processes write to their stderr (fd 2): a compiler's diagnostics, Python's
// traceback. Never another fd, so never a program's stdout. Compiled in only with CAPTURE_STDERR.
//
// Whose writes: `capture` maps a process (tgid) to the owner of its writes, the process whose record
// they join. Every exec in a cgroup we watch makes the process its own owner (unless it inherited
// one); a fork passes the owner on, so gcc's cc1, as, collect2 and ld write into gcc's record. User
// space drops the entry of a process it does not report (and that is no compiler's child), and the
// entry goes at exit. A write to fd 2 by any other process costs one hash lookup.
//
// How much: STDERR_MAX bytes per owner, its children included; past that nothing more is sent, and
// one event (F_STDERR_TRUNCATED) says so. Each event carries at most STDERR_CHUNK bytes: a longer
// write is sent in several.

// What it costs: only the entry of write and writev is hooked, never their exit. On every write of
// every process the kernel runs the program: about 80 ns on the benchmark machine whatever the program
// does, the price is the tracepoint's (bench/results/procmon.md, "Price of a hook on the write path").
// The program rejects any fd but 2 with one comparison, and a write to fd 2 by a process with no
// `capture` entry with one hash lookup. A second hook on the exit cost as much again, for every write.

#define EV_STDERR 4
#define F_STDERR_TRUNCATED 0x01
#define STDERR_CHUNK 4096       // power of two: the verifier's bound for one copy
#define STDERR_CHUNKS 4         // chunks of one write (or one iovec) sent at most
#define STDERR_IOVECS 8         // iovecs of one writev looked at

struct capture {
    u32 owner;                  // tgid whose record the writes join
    u32 sent;                   // bytes sent for this owner (kept on the owner's own entry)
    u32 truncated;              // the owner's budget ran out (the flag event was sent)
    u32 retries;                // writes of this process waiting in stderr_retry (kept on its own entry)
};

struct stderr_event {
    u8  type;
    u8  flags;
    u16 len;                    // bytes of data
    u32 pid;                    // the writer
    u32 owner;
    u32 pad;
    char data[STDERR_CHUNK];
};

BPF_TABLE("lru_hash", u32, struct capture, capture, 65536);
// A write whose buffer could not be read at its entry: a page the program has not touched yet (a string
// literal in its first write) is only faulted in by the write itself, and a tracepoint cannot fault.
// Read again, by thread id, at the thread's next write to fd 2 (before that write: the order holds) or
// at its end (exit, exit_group, a fatal signal, sched_process_exit, execve), whichever comes first, and never
// at the write's own exit: hooking sys_exit_write would cost every write on the node. A page the write
// faulted in was not touched by the program before, so it is read-only data (or a buffer never
// written), and it still holds what was written. What is lost: the byte count the write returned (the
// whole buffer is sent; a write that failed before copying fails to read here too), and the retry of a
// thread killed by another thread's exit_group on a kernel that runs sched_process_exit after the
// memory is gone.
struct stderr_retry {
    u64 buf;                    // the part not sent yet
    u64 len;
};
BPF_TABLE("lru_hash", u32, struct stderr_retry, stderr_retry, 1024);
// One event under construction per CPU (too large for the 512-byte stack).
BPF_PERCPU_ARRAY(stderr_scratch, struct stderr_event, 1);

// exec (sched_process_exec, cgroup not filtered): its own owner unless it inherited one. A write still
// waiting to be read is dropped: its address was in the old program's memory (execve's entry read it).
static __always_inline void stderr_on_exec(u32 tgid) {
    stderr_retry.delete(&tgid);
    struct capture fresh = {};
    fresh.owner = tgid;
    capture.insert(&tgid, &fresh);      // no-op if an entry exists
}

// fork/clone: the child's writes join the parent's owner. Threads get an entry too (keyed by thread
// id, never looked up: writes are looked up by tgid); it goes at their exit.
static __always_inline void stderr_on_fork(u32 parent, u32 child) {
    struct capture *p = capture.lookup(&parent);
    if (!p)
        return;
    struct capture inherited = {};
    inherited.owner = p->owner;
    capture.update(&child, &inherited);
}

static __always_inline void stderr_on_exit(u32 tid) {
    capture.delete(&tid);
    stderr_retry.delete(&tid);
}

// The owner's budget ran out: one event says so.
static __always_inline void stderr_cut(void *ctx, struct stderr_event *e, struct capture *budget, u32 pid,
                                       u32 owner) {
    if (budget->truncated)
        return;
    budget->truncated = 1;      // racy between CPUs: at worst a second flag event
    e->type = EV_STDERR;
    e->flags = F_STDERR_TRUNCATED;
    e->len = 0;
    e->pid = pid;
    e->owner = owner;
    count(C_STDERR_TRUNCATED);
    if (emit(ctx, e, offsetof(struct stderr_event, data), 0))
        count(C_STDERR_LOST);
}

// Sends `len` bytes of `buf` for `owner`, within its budget, a chunk per event. Returns 0 when the
// budget has run out (nothing more of this write, or of this writev, is sent).
static __always_inline int stderr_send(void *ctx, struct capture *writer, struct capture *budget, u32 pid,
                                       u32 owner, const char *buf, u64 len, int at_entry) {
    int zero = 0;
    struct stderr_event *e = stderr_scratch.lookup(&zero);
    if (!e || budget->truncated)
        return 0;
    for (int i = 0; i < STDERR_CHUNKS; i++) {
        if (len == 0)
            return 1;
        u64 n = len > STDERR_CHUNK ? STDERR_CHUNK : len;   // u64: no zero-extended copy to lose the bound
        u64 sent = budget->sent;   // racy between CPUs: at worst a few bytes over, cut in user space
        if (sent >= STDERR_MAX) {
            stderr_cut(ctx, e, budget, pid, owner);
            return 0;
        }
        if (n > STDERR_MAX - sent)
            n = STDERR_MAX - sent;
        __sync_fetch_and_add(&budget->sent, n);
        // Never true, but the verifier must see the bound of the copy: the empty asm keeps clang
        // from dropping the check it can prove redundant.
        asm volatile("" : "+r"(n));
        if (n > STDERR_CHUNK)
            n = STDERR_CHUNK;
        e->type = EV_STDERR;
        e->flags = 0;
        e->len = n;
        e->pid = pid;
        e->owner = owner;
        if (bpf_probe_read_user(e->data, n, buf)) {
            __sync_fetch_and_add(&budget->sent, -n);
            if (at_entry) {     // not faulted in yet: read the rest later (stderr_retry)
                u32 tid = (u32)bpf_get_current_pid_tgid();
                struct stderr_retry r = {};
                r.buf = (u64)buf;
                r.len = len;
                if (stderr_retry.insert(&tid, &r) == 0)
                    __sync_fetch_and_add(&writer->retries, 1);
            }
            return 0;   // read again: the write failed before copying it, nothing was written
        }
        if (emit(ctx, e, offsetof(struct stderr_event, data) + n, 0))
            count(C_STDERR_LOST);
        buf += n;
        len -= n;
    }
    if (len > 0) {      // longer than STDERR_CHUNKS chunks: the rest is cut
        stderr_cut(ctx, e, budget, pid, owner);
        return 0;
    }
    return 1;
}

// The writer's entry and its owner's budget (its own entry when the owner has gone), or NULL.
static __always_inline struct capture *stderr_writer(u32 tgid, struct capture **budget) {
    struct capture *c = capture.lookup(&tgid);
    if (!c)
        return NULL;
    *budget = c;
    if (c->owner != tgid) {
        u32 owner = c->owner;
        struct capture *o = capture.lookup(&owner);
        if (o)
            *budget = o;
    }
    return c;
}

// The write of this thread waiting to be read again, if any (`writer`: the thread's process's entry).
static __always_inline void stderr_retry_now(void *ctx, u32 tgid, struct capture *writer,
                                             struct capture *budget) {
    if (!writer->retries)
        return;     // the common case: nothing waits
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct stderr_retry *r = stderr_retry.lookup(&tid);
    if (!r)
        return;     // another thread's (or evicted: this process's fd-2 writes keep one more lookup)
    u64 buf = r->buf, len = r->len;
    stderr_retry.delete(&tid);
    __sync_fetch_and_add(&writer->retries, -1);
    stderr_send(ctx, writer, budget, tgid, writer->owner, (const char *)buf, len, 0);
}

// The end of a thread (exit, exit_group, a fatal signal taken, sched_process_exit): its last chance.
static __always_inline void stderr_on_last(void *ctx) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct capture *budget = NULL;
    struct capture *c = stderr_writer(tgid, &budget);
    if (c && budget)
        stderr_retry_now(ctx, tgid, c, budget);
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) {
    if (args->fd != 2)
        return 0;   // every other write on the node: this comparison only
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct capture *budget = NULL;
    struct capture *c = stderr_writer(tgid, &budget);
    if (!c || !budget)
        return 0;
    stderr_retry_now(args, tgid, c, budget);
    stderr_send(args, c, budget, tgid, c->owner, (const char *)args->buf, args->count, 1);
    return 0;
}

struct stderr_iovec {
    const char *base;
    u64 len;
};

TRACEPOINT_PROBE(syscalls, sys_enter_writev) {
    if (args->fd != 2)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct capture *budget = NULL;
    struct capture *c = stderr_writer(tgid, &budget);
    if (!c || !budget)
        return 0;
    stderr_retry_now(args, tgid, c, budget);
    u32 owner = c->owner;
    const struct stderr_iovec *vec = (const struct stderr_iovec *)args->vec;
    u64 vlen = args->vlen;
    for (int i = 0; i < STDERR_IOVECS; i++) {
        if (i >= vlen)
            return 0;
        struct stderr_iovec iov = {};
        if (bpf_probe_read_user(&iov, sizeof(iov), &vec[i]))
            return 0;
        if (!stderr_send(args, c, budget, tgid, owner, iov.base, iov.len, 0))
            return 0;
    }
    if (vlen > STDERR_IOVECS) {     // iovecs past the ones looked at: cut
        int zero = 0;
        struct stderr_event *e = stderr_scratch.lookup(&zero);
        if (e)
            stderr_cut(args, e, budget, tgid, owner);
    }
    return 0;
}
