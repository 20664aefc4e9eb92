// procmon: what the exec and exit programs share (events, maps, the cgroup filter).
//
// Compiled by bcc at run time, prepended to bpf_exec.c, bpf_chdir.c and bpf_exit.c (one object, one
// set of maps).
// Only tracepoint fields and BPF helpers are used, never task_struct offsets: the node's kernel
// headers may not match the running kernel, and a wrong offset silently reads garbage.
//
// The loader defines: ARGV_SIZE (power of two), ARG_CHUNK, MAX_ARGS, USE_RINGBUF (kernel >= 5.8),
// HAVE_GROUP_DEAD (sched_process_exit has the group_dead field), RINGBUF_PAGES / PERF_PAGES,
// CAPTURE_STDERR and STDERR_MAX (bpf_stderr.c compiled in, its per-process budget in bytes).

#define EV_EXEC 1
#define EV_EXIT 2
#define EV_CHDIR 3

// exec_event.flags
#define F_ARGV_TRUNCATED 0x01   // more than MAX_ARGS arguments or more than ARGV_SIZE bytes
#define F_ARGV_MISSING   0x02   // execve not seen (started before procmon, or the map entry was evicted)
#define F_PPID_KNOWN     0x04   // ppid comes from a fork seen by sched_process_fork

// exit_event.how: which of these the process did (user space decides the verdict, see ebpf.py)
#define H_EXIT_GROUP  0x01      // called exit_group(code): code in exit_code
#define H_THREAD_EXIT 0x02      // a thread called exit(code): code in thread_code
#define H_LEADER_ONLY 0x04      // kernel has no group_dead: reported when the leader thread exited

// counters[] slots, read and summed over CPUs by user space
#define C_LOST          0       // ring/perf buffer full: event dropped
#define C_FILTERED_EXEC 1       // exec in a cgroup user space marked "not a student's"
#define C_EXEC          2       // exec events sent
#define C_EXIT          3       // exit events sent
#define C_ARGV_MISSING  4       // exec without a matching execve entry
#define C_STDERR_LOST   5       // stderr events dropped (ring/perf buffer full)
#define C_STDERR_TRUNCATED 6    // owners whose stderr went past STDERR_MAX (the rest not sent)
#define N_COUNTERS      7

// One exec. Sent with a variable length: the header plus argv_len bytes of argv.
struct exec_event {
    u8  type;
    u8  flags;
    u16 argv_len;               // bytes of argv used: NUL-separated arguments
    u32 argc;                   // arguments copied
    u32 pid;                    // process id (tgid) after the exec
    u32 tid;                    // thread that called execve (differs when a non-leader thread execs)
    u32 ppid;                   // parent's tgid (F_PPID_KNOWN), else 0
    u32 uid;
    u64 cgroup_id;              // cgroup v2 id of the process
    u64 ktime_ns;               // CLOCK_MONOTONIC at the exec
    char comm[16];
    char filename[256];         // path given to execve (may be relative to the cwd)
    char argv[ARGV_SIZE + ARG_CHUNK];   // room for one whole chunk past the limit (verifier bound)
};

struct exit_event {
    u8  type;
    u8  how;                    // H_* bits
    u8  sig_delivered;          // first default-action fatal signal taken by one of its threads
    u8  sig_generated;          // last fatal-by-default signal queued to the process
    u32 pid;
    u32 tid;                    // the thread whose exit ended the process
    s32 exit_code;              // exit_group() argument (H_EXIT_GROUP)
    s32 thread_code;            // last exit() argument (H_THREAD_EXIT)
    u32 pad;
    u64 start_ns;               // ktime of the exec
    u64 ktime_ns;               // ktime of the exit
    char comm[16];
};

// What we remember about a process between its exec and its exit (only processes not filtered).
struct proc_state {
    u64 start_ns;
    s32 exit_code;
    s32 thread_code;
    u8  how;
    u8  sig_delivered;
    u8  sig_generated;
    u8  pad;
};

#ifdef USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#else
BPF_PERF_OUTPUT(events);
#endif

// cgroup id -> verdict written by user space: 1 = a student's, 2 = not a student's (filtered here).
// Unknown cgroups pass, so user space can look at their first process and decide.
BPF_HASH(cgroup_verdict, u64, u8, 65536);
// config[0] = 1: drop events of cgroups with verdict 2. 0: send everything (filter off).
BPF_ARRAY(config, u32, 4);
BPF_PERCPU_ARRAY(counters, u64, N_COUNTERS);
// execve argv waiting for its sched_process_exec, by thread id. LRU: failed execve attempts
// (execvp's PATH search) leave entries that simply age out.
BPF_TABLE("lru_hash", u32, struct exec_event, pending, 1024);
// A zeroed exec_event to initialise `pending` entries (too large for the 512-byte stack).
BPF_ARRAY(zero_event, struct exec_event, 1);
// child pid -> parent tgid, from sched_process_fork (ppid without reading task_struct). Entries
// go at the child's exec or exit; LRU in case one is missed.
BPF_TABLE("lru_hash", u32, u32, parents, 65536);
// Processes between exec and exit. User space deletes those it does not care about, so only
// compiles and runs of students produce exit events.
BPF_TABLE("lru_hash", u32, struct proc_state, tracked, 65536);

static __always_inline void count(int slot) {
    u64 *c = counters.lookup(&slot);
    if (c)
        (*c)++;
}

// True when the current task's cgroup was marked "not a student's" and filtering is on.
static __always_inline int filtered_out(u64 cgid) {
    int k = 0;
    u32 *on = config.lookup(&k);
    if (!on || !*on)
        return 0;
    u8 *v = cgroup_verdict.lookup(&cgid);
    return v && *v == 2;
}

// wake: 1 to wake the reader now (execs: /proc must be read while the process lives), 0 to let it
// find the event at its next wakeup or poll timeout (exits: saves a cross-CPU wakeup per process).
// Execs force the wakeup: the kernel's adaptive wakeup would skip it while an exit is unread.
static __always_inline int emit(void *ctx, void *data, u32 size, int wake) {
#ifdef USE_RINGBUF
    // bpf_ringbuf_output copies `size` bytes; it fails (and we count) when the ring is full.
    return events.ringbuf_output(data, size, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
#else
    return events.perf_submit(ctx, data, size);
#endif
}

#ifndef CAPTURE_STDERR
// Without bpf_stderr.c its hooks in the exec and exit programs do nothing.
#define stderr_on_exec(tgid) do {} while (0)
#define stderr_on_fork(parent, child) do {} while (0)
#define stderr_on_exit(tid) do {} while (0)
#define stderr_on_last(ctx) do {} while (0)
#endif
