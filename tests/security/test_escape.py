"""Escape attempts: network, host files, other processes' environments."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.security.helpers import (
    LEVEL,
    LIMITS,
    assert_none_survive,
    needs_bwrap,
    needs_bwrap_or_own_uid,
    needs_netns,
    needs_own_uid_or_pidns,
    needs_sandbox,
    new_token,
    run_hostile,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = needs_sandbox


@needs_netns
def test_no_network_to_loopback_or_outside() -> None:
    token = new_token()
    with socket.socket() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        tcp_port, udp_port = server.getsockname()[1], udp.getsockname()[1]
        outcome = run_hostile(
            f"""
            import socket
            for host, port in (("127.0.0.1", {tcp_port}), ("192.0.2.1", 80)):
                s = socket.socket()
                s.settimeout(5)
                try:
                    s.connect((host, port))
                    print("CONNECTED", host)
                except OSError as exc:
                    print("no route", host, type(exc).__name__)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.sendto(b"escaped", ("127.0.0.1", {udp_port}))
                print("SENT udp")
            except OSError as exc:
                print("no route udp", type(exc).__name__)
            try:
                print("RESOLVED", socket.getaddrinfo("example.com", 80)[0][4])
            except OSError as exc:
                print("no dns", type(exc).__name__)
            """,
            token,
        )
        assert outcome.passed, outcome
        assert "CONNECTED" not in outcome.stdout_tail and "RESOLVED" not in outcome.stdout_tail
        assert "no route 192.0.2.1" in outcome.stdout_tail
        # A failed connect to TEST-NET fails at once (no route), not after the 5 s timeout.
        assert outcome.duration_s < 5.0
        try:
            connection, _ = server.accept()
            connection.close()
            raise AssertionError("the sandbox reached a socket on the host's loopback")
        except BlockingIOError:
            pass
        try:
            data = udp.recv(100)
            raise AssertionError(f"the sandbox sent {data!r} to the host's loopback")
        except BlockingIOError:
            pass


@needs_bwrap
def test_no_writes_to_home_tmp_or_the_project() -> None:
    token = new_token()
    home = Path(os.path.expanduser("~"))
    targets = [home / f"escape-{token}", Path("/tmp") / f"escape-{token}", REPO / f"escape-{token}"]
    try:
        outcome = run_hostile(
            f"""
            import os
            for path in {[str(t) for t in targets]!r}:
                try:
                    with open(path, "w") as handle:
                        handle.write("escaped")
                    print("WROTE", path)
                except OSError as exc:
                    print("refused", path, type(exc).__name__)
            # Its own HOME and /tmp are writable, and are its own.
            open(os.path.expanduser("~/mine"), "w").write("ok")
            open("/tmp/mine", "w").write("ok")
            for secret in ({str(REPO / "pyproject.toml")!r}, "/etc/shadow", "/root/.bash_history"):
                try:
                    open(secret).read()
                    print("READ", secret)
                except OSError as exc:
                    print("unreadable", secret, type(exc).__name__)
            """,
            token,
        )
        assert outcome.passed, outcome
        for target in targets:
            assert not target.exists(), f"{target} was written from the sandbox"
        assert "READ" not in outcome.stdout_tail
    finally:
        for target in targets:
            target.unlink(missing_ok=True)


@needs_bwrap_or_own_uid
def test_files_next_to_its_temp_dir_survive(tmp_path: Path) -> None:
    token = new_token()
    root = tmp_path / "runs"
    root.mkdir()
    sentinels = [tmp_path / "sentinel", root / "sentinel"]
    for sentinel in sentinels:
        sentinel.write_text("keep")
    outcome = run_hostile(
        f"""
        import os, shutil
        for path in ("../sentinel", "../../sentinel", *{[str(s) for s in sentinels]!r}):
            try:
                os.remove(path)
                print("REMOVED", path)
            except OSError as exc:
                print("refused", path, type(exc).__name__)
        # Its siblings one level deep; rmtree("..") under bwrap would walk all of /usr.
        for name in os.listdir(".."):
            for remove in (os.remove, os.rmdir):
                try:
                    remove(os.path.join("..", name))
                    print("REMOVED", name)
                except OSError:
                    pass
        for tree in ({str(root)!r}, {str(tmp_path)!r}):
            shutil.rmtree(tree, ignore_errors=True)
        """,
        token,
        work_root=root,
    )
    assert outcome.status in ("pass", "fail"), outcome
    assert all(s.read_text() == "keep" for s in sentinels)
    assert sorted(p.name for p in root.iterdir()) == ["sentinel"]  # its own dir is gone


# Run in a child interpreter whose initial environment holds the secret, so that its
# /proc/<pid>/environ (which shows the environment at exec time) holds it too.
RUNNER = r'''
import dataclasses, json, os, sys
from tests.security.helpers import hostile
from udfs.sandbox import Limits, run_program
body = """
import os
print("ENV", sorted(os.environ))
for pid in [1, "self", os.getppid(), HOST_PIDS]:
    for name in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{name}", "rb").read()
        except OSError as exc:
            print(pid, name, "unreadable", type(exc).__name__)
            continue
        print(pid, name, "LEAK" if NEEDLE in data else "clean", len(data))
""".replace("HOST_PIDS", f"{os.getpid()}, {os.getppid()}")
# Built at run time: the command lines scanned hold this source, not the secret.
body = body.replace("NEEDLE", f"('secret-' + {sys.argv[1]!r}).encode()")
program = hostile(body, sys.argv[1])
limits = Limits(**json.loads(sys.argv[2]))
print(json.dumps(dataclasses.asdict(run_program(program, limits, isolation=sys.argv[3]))))
'''


@needs_own_uid_or_pidns
def test_environments_of_other_processes_stay_secret() -> None:
    token = new_token()
    secret = f"secret-{token}"
    env = {**os.environ, "SELFALIGN_TEST_SECRET": secret, "AWS_SECRET_ACCESS_KEY": secret}
    limits = json.dumps(LIMITS.__dict__)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, token, limits, LEVEL], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=60, check=True,
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "pass", outcome
    seen = outcome["stdout_tail"] + outcome["stderr_tail"]
    assert "ENV" in seen and "LEAK" not in seen, seen
    assert secret not in seen and "AWS_" not in seen
    assert_none_survive(token)
