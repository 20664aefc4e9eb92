// procmon: working-directory changes of processes in cgroups we watch. User space reads the new cwd
// from /proc at once: a shell that `cd`s and then runs a 1 ms program is the witness of that program's
// cwd. chdir's own argument comes along for a child that chdir's and execs a program gone before /proc
// can be read (Python's subprocess with cwd=, libuv's spawn).

#define CHDIR_PATH_SIZE 256
struct chdir_event {
    u8  type;
    u8  has_path;               // 1: path is the chdir argument (absolute, or relative to the old cwd)
    u8  pad[2];
    u32 pid;
    char path[CHDIR_PATH_SIZE];
};

// chdir argument (a user pointer) by thread id, from sys_enter_chdir to sys_exit_chdir.
BPF_TABLE("lru_hash", u32, u64, chdir_args, 1024);

// chdir/fchdir succeeded in a cgroup we watch: tell user space (rare; shells and build tools).
static __always_inline int cwd_changed(void *ctx, long ret, int with_path) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    u64 *arg = with_path ? chdir_args.lookup(&tid) : NULL;
    u64 ptr = arg ? *arg : 0;
    if (arg)
        chdir_args.delete(&tid);
    if (ret != 0 || filtered_out(bpf_get_current_cgroup_id()))
        return 0;
    struct chdir_event e = {};
    e.type = EV_CHDIR;
    e.pid = pid_tgid >> 32;
    if (ptr && bpf_probe_read_user_str(e.path, sizeof(e.path), (const void *)ptr) > 0)
        e.has_path = 1;
    if (emit(ctx, &e, sizeof(e), 1))
        count(C_LOST);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_chdir) {
    if (filtered_out(bpf_get_current_cgroup_id()))
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 ptr = (u64)args->filename;
    chdir_args.update(&tid, &ptr);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_chdir) {
    return cwd_changed(args, args->ret, 1);
}

TRACEPOINT_PROBE(syscalls, sys_exit_fchdir) {
    return cwd_changed(args, args->ret, 0);
}
