# cython: language_level=3, boundscheck=False, wraparound=False
"""Facts about the libcrypto the core is linked to, and its thread-local error queue.

Tests use ``error_queue_is_empty`` after every native call (STYLE.md §2): it must be
the same libcrypto the other ``_fast`` modules use, so it is asked here, not via ctypes.
"""

from ikecore._fast._libcrypto cimport (
    ERR_clear_error,
    ERR_peek_error,
    OPENSSL_VERSION,
    OpenSSL_version,
    OpenSSL_version_num,
)


def openssl_version() -> str:
    """The version string of the linked libcrypto, e.g. ``"OpenSSL 3.0.19 27 Jan 2026"``."""
    return OpenSSL_version(OPENSSL_VERSION).decode("ascii")


def openssl_version_number() -> int:
    return OpenSSL_version_num()


def error_queue_is_empty() -> bool:
    """True when this thread's OpenSSL error queue holds no error."""
    return ERR_peek_error() == 0


def clear_error_queue() -> None:
    ERR_clear_error()
