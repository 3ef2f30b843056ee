#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of examples/vmmu-run on a real KVM guest.

usage: vmmu_run_test.py VMMU_RUN CASE
Exits 0 (pass), 1 (fail) or 77 (skip: /dev/kvm cannot be opened).
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

GREETING = b"Hello from the vmmu-run guest"
EXIT_MIGFAIL, EXIT_IO, EXIT_PROTOCOL, EXIT_USAGE = 75, 74, 76, 64


def fail(why, out=b"", err=b""):
    print("FAIL:", why)
    if out:
        print("--- stdout\n" + out.decode(errors="replace"))
    if err:
        print("--- stderr\n" + err.decode(errors="replace"))
    sys.exit(1)


def run(args, timeout=30):
    p = subprocess.run([VMMU_RUN] + args, capture_output=True, timeout=timeout)
    print("$ vmmu-run", " ".join(args), "->", p.returncode)
    sys.stdout.write(p.stderr.decode(errors="replace"))
    return p


def expect(p, code, *needles):
    if p.returncode != code:
        fail("exit status %d, expected %d" % (p.returncode, code), p.stdout, p.stderr)
    both = p.stdout + p.stderr
    for n in needles:
        if n not in both:
            fail("%r not in the output" % n, p.stdout, p.stderr)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        with open("/proc/net/tcp") as f:
            if any(":%04X 00000000:0000 0A" % port in line for line in f):
                return True
        time.sleep(0.01)
    return False


def case_default():
    p = run([])
    expect(p, 0, GREETING, b"guest: done: memory checksum ok")


def case_bad_args():
    expect(run(["--dirty-log", "sideways"]), EXIT_USAGE, b"--dirty-log")
    expect(run(["--mem", "3"]), EXIT_USAGE, b"power of two")
    expect(run(["--migrate", "--listen", "1"]), EXIT_USAGE, b"choose one")
    expect(run(["--no-such-option"]), EXIT_USAGE, b"unknown")
    expect(run(["--backend", "soft"]), 69, b"cannot execute x86")
    expect(run(["--migrate", "--passes", "1", "--writes", "256", "--after", "5000"]), EXIT_MIGFAIL,
           b"guest: done: memory checksum ok", b"nothing was migrated")
    expect(run(["--backend", "nonesuch"]), EXIT_USAGE, b"unknown backend")


def case_migrate(mode):
    # ring: a small ring and a longer first round, so that ring-full exits happen
    extra = ["--ring-entries", "256", "--mem", "64"] if mode == "ring" else []
    # Every attempt must migrate correctly. Whether the ring fills during the
    # rounds depends on how much CPU the guest gets against the harvester, so a
    # ring run without a ring-full exit is tried again (up to 3 runs) before
    # the ring-full path counts as untested.
    for attempt in range(3):
        p = run(["--migrate", "--dirty-log", mode, "--after", "60"] + extra)
        expect(p, 0, GREETING, b"round 1:", b"migrated in",
               b"guest: resumed on a new VM: memory checksum ok", b"guest: done: memory checksum ok")
        if mode != "ring" or b" 0 ring-full exits" not in p.stderr:
            return
        print("no ring-full exit in run %d; again" % (attempt + 1))
    fail("no ring-full exit happened with a 256-entry ring in 3 runs", p.stdout, p.stderr)


def start_listener(extra=()):
    port = free_port()
    dst = subprocess.Popen([VMMU_RUN, "--listen", str(port)] + list(extra),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if not wait_listening(port, dst):
        out, err = dst.communicate(timeout=5)
        fail("the destination did not listen", out, err)
    return port, dst


def finish(proc, name, timeout=30):
    out, err = proc.communicate(timeout=timeout)
    print("%s -> %d" % (name, proc.returncode))
    sys.stdout.write(err.decode(errors="replace"))
    return subprocess.CompletedProcess([], proc.returncode, out, err)


def case_tcp():
    port, dst = start_listener()
    src = run(["--migrate-to", "127.0.0.1:%d" % port, "--after", "60"])
    d = finish(dst, "destination")
    expect(src, 0, GREETING, b"round 1:", b"migrated in")
    expect(d, 0, b"guest: resumed on a new VM: memory checksum ok", b"guest: done: memory checksum ok")
    if GREETING in d.stdout:
        fail("the destination booted its own guest instead of receiving one", d.stdout, d.stderr)


def proxy(listen_sock, dst_port, mode):
    """Forward one connection to dst_port, breaking the stream.

    truncate: cut after 300000 bytes (during the first pre-copy round);
    truncate-end: forward everything but the END record, then cut (the source
    is parked in stop-and-copy, waiting for the confirmation);
    version: rewrite the header's version field to 99;
    corrupt: flip one bit 200000 bytes into the stream.
    """
    c, _ = listen_sock.accept()
    d = socket.create_connection(("127.0.0.1", dst_port))
    done = threading.Event()

    def back():  # destination -> source, untouched (the peer's refusal)
        try:
            while True:
                b = d.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        done.set()

    threading.Thread(target=back, daemon=True).start()
    buf, base, next_rec = bytearray(), 0, 40  # truncate-end: record parsing (after the 40-byte header)
    sent = 0
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            if mode == "truncate-end":
                # records: u32 type, u32 len, u64 arg, u64 check, then len bytes; END is type 5
                buf += b
                end = None
                while next_rec + 24 <= base + len(buf):
                    rtype, rlen = struct.unpack_from("<II", buf, next_rec - base)
                    if rtype == 5:
                        end = next_rec - base
                        break
                    next_rec += 24 + rlen
                if end is not None:
                    d.sendall(bytes(buf[:end]))
                    break
                keep = min(next_rec - base, len(buf))
                d.sendall(bytes(buf[:keep]))
                del buf[:keep]
                base += keep
                continue
            if mode == "corrupt" and sent < 200000 <= sent + len(b):
                b = bytearray(b)
                b[200000 - sent] ^= 0x40  # a bit in the middle of some record
                b = bytes(b)
            if mode == "version" and sent < 12 <= sent + len(b):
                b = bytearray(b)
                b[8 - sent] = 99  # the version field: 4 bytes after the 8-byte magic
                b = bytes(b)
            if mode == "truncate" and sent + len(b) > 300000:
                d.sendall(b[:300000 - sent])
                break
            d.sendall(b)
            sent += len(b)
    except OSError:
        pass
    if mode.startswith("truncate"):
        # the stream ends mid-way: both sides see the connection go
        # (shutdown first: a close alone waits for the reader thread's recv)
        for s in (d, c):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
    else:
        done.wait(20)
        d.close()
        c.close()


def case_broken(mode):
    port, dst = start_listener()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    t = threading.Thread(target=proxy, args=(ls, port, mode), daemon=True)
    t.start()
    src = run(["--migrate-to", "127.0.0.1:%d" % ls.getsockname()[1], "--after", "60"])
    d = finish(dst, "destination")
    if mode == "truncate-end":
        expect(src, EXIT_MIGFAIL, b"with the guest stopped", b"resumes here")
    if mode.startswith("truncate"):
        expect(d, EXIT_IO, b"truncated")
    elif mode == "corrupt":
        if d.returncode not in (EXIT_IO, EXIT_PROTOCOL) or b"refused: " not in d.stderr:
            fail("the destination did not refuse a corrupt record", d.stdout, d.stderr)
        expect(src, EXIT_MIGFAIL, b"refused the stream")
    else:
        expect(d, EXIT_PROTOCOL, b"version 99")
        expect(src, EXIT_MIGFAIL, b"version")
    # The source's guest kept running and finished there, memory intact.
    expect(src, EXIT_MIGFAIL, b"keeps running", b"guest: done: memory checksum ok")
    if b"resumed on a new VM" in d.stdout:
        fail("the destination ran a guest from a broken stream", d.stdout, d.stderr)


def case_unreachable():
    port = free_port()
    p = run(["--migrate-to", "127.0.0.1:%d" % port, "--after", "20"])
    expect(p, EXIT_MIGFAIL, b"connect", b"guest: done: memory checksum ok")


def case_snapshot():
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "guest.snap")
        p = run(["--snapshot", f, "--after", "60"])
        expect(p, 0, GREETING, b"snapshot")
        st = os.stat(f)
        if st.st_blocks * 512 >= st.st_size:
            fail("the snapshot is not sparse: %d bytes allocated of %d" % (st.st_blocks * 512, st.st_size))
        r = run(["--restore", f])
        expect(r, 0, b"guest: resumed on a new VM: memory checksum ok", b"guest: done: memory checksum ok")
        if GREETING in r.stdout:
            fail("the restored guest booted again", r.stdout, r.stderr)
        # A damaged snapshot is refused.
        with open(f, "r+b") as fh:
            fh.seek(8)
            fh.write(b"\x63")
        expect(run(["--restore", f]), EXIT_PROTOCOL, b"version")


def case_no_kvm():
    """Hide /dev/kvm in a private mount namespace: the error must explain it (needs root and unshare)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("SKIP: hiding /dev/kvm needs root and unshare(1)")
        sys.exit(77)
    p = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /dev && exec "$0"', VMMU_RUN],
                       capture_output=True, timeout=30)
    print("$ vmmu-run without /dev/kvm ->", p.returncode)
    sys.stdout.write(p.stderr.decode(errors="replace"))
    expect(p, 69, b"/dev/kvm cannot be opened", b"cannot execute x86 guest code")


def status_of(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None


def case_caps():
    """While the guest runs, vmmu-run holds no capability and has no_new_privs (and a migration
    still creates its second VM); with --keep-caps it keeps them."""
    for keep in (False, True):
        args = [VMMU_RUN, "--migrate", "--after", "400"] + (["--keep-caps"] if keep else [])
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0, seen = time.time(), None
        while p.poll() is None and time.time() - t0 < 20:
            st = status_of(p.pid)
            if st and (st.get("NoNewPrivs", "").strip() == "1" or (keep and time.time() - t0 > 0.2)):
                seen = st
                break
            time.sleep(0.005)
        out, err = p.communicate(timeout=30)
        sys.stdout.write(err.decode(errors="replace"))
        if p.returncode != 0 or b"resumed on a new VM: memory checksum ok" not in out:
            fail("the migration did not complete", out, err)
        if seen is None:
            fail("never saw the process with its privileges dropped" if not keep else "process gone", out, err)
        caps = {k: int(seen[k].strip(), 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")}
        print("keep-caps" if keep else "default", {k: hex(v) for k, v in caps.items()},
              "NoNewPrivs", seen.get("NoNewPrivs", "?").strip())
        if keep:
            if b"privileges: dropped" in err:
                fail("--keep-caps dropped capabilities", out, err)
            if os.geteuid() == 0 and not caps["CapEff"]:
                fail("--keep-caps: root lost its capabilities", out, err)
        elif any(caps.values()) or seen.get("NoNewPrivs", "").strip() != "1":
            fail("capabilities left or no_new_privs unset while the guest ran", out, err)
        elif b"privileges: dropped" not in err:
            fail("no report of the dropped capabilities", out, err)


CASES = {
    "default": case_default,
    "bad-args": case_bad_args,
    "migrate-bitmap": lambda: case_migrate("bitmap"),
    "migrate-manual": lambda: case_migrate("manual"),
    "migrate-ring": lambda: case_migrate("ring"),
    "tcp": case_tcp,
    "tcp-truncated": lambda: case_broken("truncate"),
    "tcp-truncated-end": lambda: case_broken("truncate-end"),
    "tcp-corrupt": lambda: case_broken("corrupt"),
    "tcp-wrong-version": lambda: case_broken("version"),
    "tcp-unreachable": case_unreachable,
    "snapshot": case_snapshot,
    "no-kvm": case_no_kvm,
    "caps": case_caps,
}

if __name__ == "__main__":
    VMMU_RUN, case = sys.argv[1], sys.argv[2]
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        print("SKIP: /dev/kvm cannot be opened: %s" % e.strerror)
        sys.exit(77)
    CASES[case]()
    print("PASS")
