"""The sandbox's limits, each proven by code that tries to break it, then proof it still works.

Where the machine cannot confine a child, every isolation test is skipped with the reason
`sandbox_support()` gives; none of them can pass without a real sandbox.
"""

from __future__ import annotations

import glob
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from learner.sandbox import ExecResult, Limits, Sandbox, sandbox_support


@pytest.fixture(scope="module")
def supported() -> None:
    reason = sandbox_support()
    if reason is not None:
        pytest.skip(f"the sandbox cannot run here: {reason}")


@pytest.fixture
def box(supported: None) -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


def assert_still_works(box: Sandbox) -> None:
    assert box.run("probe = 41").ok
    result = box.run("print(probe + 1)")
    assert (result.ok, result.stdout) == (True, "42\n"), result.error


def test_support_is_reported_as_none_when_root() -> None:
    reason = sandbox_support()
    if os.geteuid() == 0:  # as in CI: the isolation tests must run, not skip
        assert reason is None, reason
    else:
        assert reason and "root" in reason


def test_state_persists_across_calls(box: Sandbox) -> None:
    assert box.run("x = 1") == ExecResult(ok=True, stdout="")
    result = box.run("print(x + 1)")
    assert (result.ok, result.stdout, result.error, result.restarted) == (True, "2\n", None, False)
    box.load_data("episode", {"turns": [{"text": "hi"}, {"text": "bye"}]})
    assert box.run("print(episode['turns'][1]['text'], x)").stdout == "bye 1\n"


def test_infinite_loop_times_out_and_the_next_call_starts_fresh(supported: None) -> None:
    with Sandbox(Limits(timeout=1.0)) as box:
        box.load_data("episode", [1, 2, 3])
        assert box.run("x = 1").ok
        started = time.monotonic()
        result = box.run("while True: pass")
        assert time.monotonic() - started < 1.0 + 1.0
        assert result.timed_out and not result.ok
        assert result.error and "lost" in result.error
        after = box.run("print(x)")
        assert after.restarted and after.error and "NameError" in after.error
        assert box.run("print(sum(episode))").stdout == "6\n"  # loaded data came back
        assert_still_works(box)


def test_fork_bomb_fails_at_once(box: Sandbox) -> None:
    started = time.monotonic()
    result = box.run("import os\nwhile True: os.fork()")
    assert time.monotonic() - started < 2.0 and not result.timed_out
    assert result.error and "BlockingIOError" in result.error
    threads = box.run("import _thread\n_thread.start_new_thread(print, ())")
    assert threads.error and "can't start new thread" in threads.error
    assert_still_works(box)


def test_huge_allocation_fails_with_memory_error(box: Sandbox) -> None:
    result = box.run("b = bytearray(2 * 1024**3)")
    assert not result.ok and result.error and "MemoryError" in result.error
    assert_still_works(box)


def test_network_is_unreachable_even_on_loopback(box: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        local = box.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2)")
        assert not local.ok and local.error and "Network is unreachable" in local.error
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever arrived
    remote = box.run("import socket\nsocket.create_connection(('1.1.1.1', 53), 2)")
    assert not remote.ok and remote.error and "Network is unreachable" in remote.error
    lookup = box.run("import socket\nsocket.getaddrinfo('example.com', 443)")
    assert not lookup.ok and lookup.error and "gaierror" in lookup.error
    assert_still_works(box)


def test_host_files_are_unreachable(box: Sandbox, tmp_path: Path) -> None:
    database = tmp_path / "proxy.db"
    database.write_text("SECRET-API-KEY-sk-12345")
    for path in (str(database), "/etc/passwd"):
        result = box.run(f"print(open({path!r}).read())")
        assert result.error and "FileNotFoundError" in result.error
        assert "SECRET" not in result.stdout + result.error
    assert box.run("import os\nprint(os.listdir('/'))").stdout == "[]\n"
    escape = box.run("import os\nos.mkdir('jail')\nos.chroot('jail')")
    assert escape.error and "PermissionError" in escape.error
    assert_still_works(box)


def test_environment_is_empty_and_identity_unprivileged(
    supported: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKILLPROXY_TEST_SECRET", "hunter2")
    with Sandbox() as box:
        assert box.run("import os\nprint(dict(os.environ))").stdout == "{}\n"
        identity = box.run(
            "import os\nprint(os.getuid(), os.getgid(), os.getgroups(), os.getpid())"
        )
        assert identity.stdout == "65534 65534 [] 1\n"
        assert_still_works(box)


def test_big_file_hits_the_file_size_limit(box: Sandbox) -> None:
    code = "with open('big', 'wb') as f:\n    for _ in range(100): f.write(b'x' * 2**20)"
    result = box.run(code)
    assert result.error and "File too large" in result.error
    assert int(box.run("import os\nprint(os.path.getsize('big'))").stdout) <= 16 * 2**20
    assert_still_works(box)


def test_huge_output_is_cut_and_reported(box: Sandbox) -> None:
    result = box.run("print('x' * 10_000_000)")
    assert result.ok and len(result.stdout) < 21_000
    assert "[output cut: 9,980,001 more characters not shown]" in result.stdout
    assert_still_works(box)


def test_syntax_error_is_reported_not_raised(box: Sandbox) -> None:
    result = box.run("def (")
    assert not result.ok and result.error and "SyntaxError" in result.error
    assert_still_works(box)


def test_traceback_shows_only_the_users_code(box: Sandbox) -> None:
    result = box.run("import json\ndef parse():\n    return json.loads('{')\nparse()")
    assert result.error and "JSONDecodeError" in result.error
    assert 'File "<cell 1>", line 3, in parse' in result.error
    assert "sandbox.py" not in result.error and "json/" not in result.error
    assert_still_works(box)


def test_a_dead_child_is_reported_and_replaced(box: Sandbox) -> None:
    result = box.run("import os\nos._exit(3)")
    assert not result.ok and result.error and "exit status 3" in result.error
    assert box.run("print(1)").restarted
    assert_still_works(box)


def test_close_removes_the_scratch_dir(supported: None) -> None:
    pattern = os.path.join(tempfile.gettempdir(), "skillproxy-sandbox-*")
    before = set(glob.glob(pattern))
    with Sandbox() as box:
        assert box.run("open('notes.txt', 'w').write('kept in scratch')").ok
        assert set(glob.glob(pattern)) - before
    assert set(glob.glob(pattern)) == before
