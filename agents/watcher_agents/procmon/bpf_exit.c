// procmon: how a tracked process ended. sched_process_exit has no exit code, so we record what
// leads to one and let user space decide (ebpf.exit_status):
//   exit_group(code)                      -> exited with code & 0xff
//   a default-action fatal signal taken   -> killed by that signal (SIGSEGV is 11, never "exit 0")
//   SIGKILL taken after a fatal signal was queued -> that signal: the kernel turns e.g. SIGTERM into
//                                            a group-wide SIGKILL internally (complete_signal)
//   the last thread called exit(code)     -> exited with code

// Signals whose default action does not end a process: CHLD CONT STOP TSTP TTIN TTOU URG WINCH.
#define NONFATAL_MASK ((1ULL << 17) | (1ULL << 18) | (1ULL << 19) | (1ULL << 20) | (1ULL << 21) | \
                       (1ULL << 22) | (1ULL << 23) | (1ULL << 28))

static __always_inline int fatal_by_default(int sig) {
    if (sig <= 0 || sig > 64)
        return 0;
    if (sig >= 32)
        return 1;   // real-time signals terminate by default
    return !((1ULL << sig) & NONFATAL_MASK);
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit_group) {
    stderr_on_last(args);   // a write to stderr still to be read (bpf_stderr.c)
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc_state *s = tracked.lookup(&tgid);
    if (s && !(s->how & H_EXIT_GROUP)) {
        s->exit_code = (s32)args->error_code;
        s->how |= H_EXIT_GROUP;
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_exit) {
    stderr_on_last(args);
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc_state *s = tracked.lookup(&tgid);
    if (s) {
        s->thread_code = (s32)args->error_code;
        s->how |= H_THREAD_EXIT;
    }
    return 0;
}

// A signal is queued (runs in the sender's context; args->pid is the target task).
TRACEPOINT_PROBE(signal, signal_generate) {
    int sig = args->sig;
    if (!fatal_by_default(sig) || args->result != 0)   // 0 = TRACE_SIGNAL_DELIVERED (queued)
        return 0;
    u32 pid = args->pid;
    struct proc_state *s = tracked.lookup(&pid);
    if (s)
        s->sig_generated = sig;
    return 0;
}

// A signal is taken by a thread of the process (runs in that thread). Only the default action
// (sa_handler == SIG_DFL) kills; the first such fatal signal is the one that ended the process.
TRACEPOINT_PROBE(signal, signal_deliver) {
    int sig = args->sig;
    if (!fatal_by_default(sig) || args->sa_handler != 0)
        return 0;
    stderr_on_last(args);
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc_state *s = tracked.lookup(&tgid);
    if (s && !s->sig_delivered)
        s->sig_delivered = sig;
    return 0;
}

// Fires once per thread. A process is reported once, when its last thread exits (group_dead).
TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    u32 tid = (u32)pid_tgid;
    u8 how_extra = 0;
    if (!filtered_out(bpf_get_current_cgroup_id()))
        parents.delete(&tid);   // a task that never exec'd (or a thread)
    stderr_on_last(args);       // too late where the memory is gone already (older kernels): dropped
    if (tid != tgid)
        stderr_on_exit(tid);    // a thread's inherited entry
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if (tid != tgid)
        return 0;
    how_extra = H_LEADER_ONLY;
#endif
    stderr_on_exit(tgid);
    struct proc_state *s = tracked.lookup(&tgid);
    if (!s)
        return 0;
    struct exit_event e = {};
    e.type = EV_EXIT;
    e.how = s->how | how_extra;
    e.sig_delivered = s->sig_delivered;
    e.sig_generated = s->sig_generated;
    e.pid = tgid;
    e.tid = tid;
    e.exit_code = s->exit_code;
    e.thread_code = s->thread_code;
    e.start_ns = s->start_ns;
    e.ktime_ns = bpf_ktime_get_ns();
    bpf_get_current_comm(e.comm, sizeof(e.comm));
    if (emit(args, &e, sizeof(e), 0))
        count(C_LOST);
    else
        count(C_EXIT);
    tracked.delete(&tgid);
    return 0;
}
