"""The kernel keyring from Python (ctypes), for tests that plant a secret key."""

from __future__ import annotations

import ctypes
import platform

# keyctl(2) and add_key(2) numbers per architecture.
SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}
ADD_KEY, KEYCTL = SYSCALLS.get(platform.machine(), SYSCALLS["x86_64"])
SESSION_KEYRING = -3
JOIN_SESSION_KEYRING, READ = 1, 11

_libc = ctypes.CDLL(None, use_errno=True)


def call(number: int, *args: object) -> int:
    result = _libc.syscall(number, *args)
    if result < 0:
        raise OSError(ctypes.get_errno(), f"syscall {number} failed")
    return result


def join_session_keyring(name: bytes) -> int:
    return call(KEYCTL, JOIN_SESSION_KEYRING, ctypes.c_char_p(name))


def add_user_key(description: bytes, payload: bytes) -> int:
    return call(ADD_KEY, ctypes.c_char_p(b"user"), ctypes.c_char_p(description),
                ctypes.c_char_p(payload), ctypes.c_size_t(len(payload)),
                ctypes.c_long(SESSION_KEYRING))


def read_key(key: int) -> bytes:
    buffer = ctypes.create_string_buffer(256)
    size = call(KEYCTL, READ, ctypes.c_long(key), buffer, ctypes.c_size_t(256))
    return buffer.raw[:size]
