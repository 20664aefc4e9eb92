"""Exit status from tracepoint facts, event decoding, and the process connector's wire format."""

import struct

import pytest

from watcher_agents.procmon import ebpf, procconn


@pytest.mark.parametrize(
    "facts,expected",
    [
        ((ebpf.H_EXIT_GROUP, 3, 0, 0, 0), (3, None)),  # exit(3)
        ((ebpf.H_EXIT_GROUP, 256, 0, 0, 0), (0, None)),  # exit(256) is 0, as wait() sees it
        ((0, 0, 0, 11, 11), (None, 11)),  # SIGSEGV, default action
        ((0, 0, 0, 9, 15), (None, 15)),  # SIGTERM became a group SIGKILL
        ((0, 0, 0, 9, 9), (None, 9)),  # kill -9
        ((0, 0, 0, 9, 0), (None, 9)),  # SIGKILL without a queued signal seen
        ((ebpf.H_EXIT_GROUP, 0, 0, 9, 0), (0, None)),  # exit_group zaps the other threads
        ((ebpf.H_THREAD_EXIT, 0, 7, 0, 0), (7, None)),  # last thread called exit(7)
        ((ebpf.H_THREAD_EXIT, 0, 0, 6, 6), (None, 6)),  # abort() after threads exited
        ((0, 0, 0, 0, 15), (None, None)),  # a handled signal says nothing
    ],
)
def test_exit_status(facts, expected):
    assert ebpf.exit_status(*facts) == expected


def test_decode_exec_copies_argv_and_flags():
    head = ebpf._EXEC_HEAD.pack(
        ebpf.EV_EXEC,
        ebpf.F_ARGV_TRUNCATED | ebpf.F_PPID_KNOWN,
        11,
        2,
        42,
        43,
        7,
        1000,
        99,
        123456,
        b"gcc",
        b"/usr/bin/gcc",
    )
    raw = head + b"gcc\0main.c\0"
    e = ebpf.decode_exec(raw)
    assert (e.pid, e.ppid, e.uid, e.cgroup_id, e.ktime_ns, e.comm, e.filename) == (
        42,
        7,
        1000,
        99,
        123456,
        "gcc",
        "/usr/bin/gcc",
    )
    assert e.argv == ["gcc", "main.c"] and e.argv_truncated and not e.argv_missing


def test_decode_exec_without_ppid_and_bad_utf8():
    head = ebpf._EXEC_HEAD.pack(ebpf.EV_EXEC, 0, 4, 1, 5, 5, 7, 0, 1, 1, b"x", b"x")
    e = ebpf.decode_exec(head + b"\xff\xfe\0")
    assert e.ppid == 0 and len(e.argv) == 1


def test_decode_exit():
    raw = ebpf._EXIT.pack(ebpf.EV_EXIT, 0, 11, 11, 42, 44, 0, 0, 0, 100, 200, b"a.out")
    e = ebpf.decode_exit(raw)
    assert (e.pid, e.exit_code, e.signal, e.start_ns, e.ktime_ns, e.comm) == (42, None, 11, 100, 200, "a.out")


def test_struct_sizes_match_the_c_layout():
    # struct exec_event: argv starts at offset 312; struct exit_event is 56 bytes.
    assert ebpf._EXEC_HEAD.size == 312
    assert ebpf._EXIT.size == 56


@pytest.mark.parametrize(
    "status,expected",
    [(0, (0, None)), (1 << 8, (1, None)), (11, (None, 11)), (11 | 0x80, (None, 11)), (255 << 8, (255, None))],
)
def test_wait_status(status, expected):
    assert procconn.decode_wait_status(status) == expected


def _proc_msg(what, payload):
    body = procconn._PROC_EVENT_HEAD.pack(what, 0, 777) + payload
    cn = procconn._CN_MSG.pack(procconn.CN_IDX_PROC, procconn.CN_VAL_PROC, 0, 0, len(body), 0) + body
    return procconn._NLMSGHDR.pack(16 + len(cn), procconn.NLMSG_DONE, 0, 0, 0) + cn


def test_parse_connector_messages():
    data = _proc_msg(procconn.PROC_EVENT_EXEC, struct.pack("=ii", 5, 5))
    data += b"\0" * ((4 - len(data) % 4) % 4)
    data += _proc_msg(procconn.PROC_EVENT_EXIT, struct.pack("=iiIIii", 5, 5, 11, 17, 1, 1))
    got = list(procconn.parse_messages(data))
    assert [(w, ts) for w, ts, _ in got] == [(procconn.PROC_EVENT_EXEC, 777), (procconn.PROC_EVENT_EXIT, 777)]


def test_subscription_message_layout():
    msg = procconn.subscription_message()
    length, mtype = struct.unpack_from("=IH", msg)
    assert length == len(msg) == 16 + 20 + 4 and mtype == procconn.NLMSG_DONE
    assert struct.unpack_from("=II", msg, 16) == (procconn.CN_IDX_PROC, procconn.CN_VAL_PROC)
    assert struct.unpack_from("=I", msg, 36)[0] == procconn.PROC_CN_MCAST_LISTEN
