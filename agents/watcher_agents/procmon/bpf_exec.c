// procmon: exec events (argv at execve entry, the event itself at sched_process_exec) and ppid
// tracking from sched_process_fork. Each exec of a cgroup not filtered starts a `tracked` entry
// (bpf_exit.c reports its exit unless user space untracks it).

// execve/execveat entry: copy argv from the caller's memory while it still exists (after the exec
// the old address space is gone). Stored by thread id until the exec succeeds.
static __always_inline int capture_argv(const char *const *argv) {
    u64 cgid = bpf_get_current_cgroup_id();
    if (filtered_out(cgid))
        return 0;   // cheap path for other workloads: one array and one hash lookup
    u32 tid = (u32)bpf_get_current_pid_tgid();
    int zero = 0;
    struct exec_event *init = zero_event.lookup(&zero);
    if (!init)
        return 0;
    pending.update(&tid, init);
    struct exec_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    u32 off = 0;
    u32 argc = 0;
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
            goto done;
        if (off >= ARGV_SIZE) {
            e->flags |= F_ARGV_TRUNCATED;
            goto done;
        }
        // Each argument gets at most ARG_CHUNK bytes; the buffer has ARG_CHUNK bytes of slack
        // past ARGV_SIZE so the verifier can see the write stays inside it.
        int n = bpf_probe_read_user_str(&e->argv[off], ARG_CHUNK, arg);
        if (n <= 0)
            goto done;
        if (n == ARG_CHUNK)
            e->flags |= F_ARGV_TRUNCATED;   // possibly cut (an argument of exactly ARG_CHUNK-1 bytes too)
        off += n;
        argc++;
    }
    // MAX_ARGS copied: is there another one?
    {
        const char *more = NULL;
        if (!bpf_probe_read_user(&more, sizeof(more), &argv[MAX_ARGS]) && more)
            e->flags |= F_ARGV_TRUNCATED;
    }
done:
    if (off > ARGV_SIZE) {
        off = ARGV_SIZE;
        e->flags |= F_ARGV_TRUNCATED;
    }
    e->argv_len = off;
    e->argc = argc;
    return 0;
}

// The old program's memory is still there: a stderr write waiting to be read again is read now
// (bpf_stderr.c), never after the exec from the new program's memory.
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    stderr_on_last(args);
    return capture_argv((const char *const *)args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    stderr_on_last(args);
    return capture_argv((const char *const *)args->argv);
}

// The exec succeeded: the task now runs the new program (comm and cgroup are the new ones).
TRACEPOINT_PROBE(sched, sched_process_exec) {
    u64 cgid = bpf_get_current_cgroup_id();
    if (filtered_out(cgid)) {
        count(C_FILTERED_EXEC);
        return 0;
    }
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    u32 old_tid = args->old_pid;   // the thread that called execve (== tgid unless a thread exec'd)
    struct exec_event *e = pending.lookup(&old_tid);
    if (!e) {
        // No execve seen: send what the tracepoint has, with an empty argv.
        int zero = 0;
        struct exec_event *init = zero_event.lookup(&zero);
        if (!init)
            return 0;
        pending.update(&old_tid, init);
        e = pending.lookup(&old_tid);
        if (!e)
            return 0;
        e->flags |= F_ARGV_MISSING;
        count(C_ARGV_MISSING);
    }
    e->type = EV_EXEC;
    e->pid = tgid;
    e->tid = old_tid;
    e->uid = (u32)bpf_get_current_uid_gid();
    e->cgroup_id = cgid;
    e->ktime_ns = bpf_ktime_get_ns();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    TP_DATA_LOC_READ_STR(e->filename, filename, sizeof(e->filename));
    u32 *ppid = parents.lookup(&tgid);
    if (ppid) {
        e->ppid = *ppid;
        e->flags |= F_PPID_KNOWN;
        parents.delete(&tgid);
    } else {
        e->ppid = 0;
    }
    u32 len = e->argv_len;
    if (len > ARGV_SIZE)
        len = ARGV_SIZE;
    u32 size = offsetof(struct exec_event, argv) + len;
    if (size > sizeof(struct exec_event))   // never true; tells the verifier the bound
        size = sizeof(struct exec_event);
    if (emit(args, e, size, EXEC_WAKEUP))
        count(C_LOST);
    else
        count(C_EXEC);
    pending.delete(&old_tid);

    // Remember the process until its exit. A second exec of the same process starts afresh.
    struct proc_state st = {};
    st.start_ns = e->ktime_ns;
    tracked.update(&tgid, &st);
    stderr_on_exec(tgid);
    return 0;
}

// fork/clone: remember the parent of every new task (threads included; harmless) so the exec
// event can carry the ppid without reading task_struct.
TRACEPOINT_PROBE(sched, sched_process_fork) {
    if (filtered_out(bpf_get_current_cgroup_id()))
        return 0;
    u32 child = args->child_pid;
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    parents.update(&child, &parent);
    stderr_on_fork(parent, child);
    return 0;
}
