"""crawler.ytdlp_guard: the lookup hook checks and pins the guarded thread's connections, and only its."""

import socket
import threading

import pytest

from crawler.netguard import Guard, Refused
from crawler.ytdlp_guard import guarded, policy_text


def test_a_guarded_thread_gets_only_checked_addresses_and_others_are_untouched():
    with guarded(Guard("127.0.0.1:8080")) as refusals:
        for spelling in ("127.0.0.1", "0x7f.1", "2130706433"):  # one address, however written
            answers = socket.getaddrinfo(spelling, 8080, 0, socket.SOCK_STREAM)
            assert {a[4][0] for a in answers} == {"127.0.0.1"}
        for host, port in (("127.0.0.1", 8081), ("::1", 8080), ("0x7f.1", 8081), ("10.0.0.1", 80)):
            with pytest.raises(Refused) as err:
                socket.getaddrinfo(host, port)
            assert err.value.code == "private_address"
        other: list = []
        worker = threading.Thread(target=lambda: other.append(socket.getaddrinfo("127.0.0.1", 8081)))
        worker.start()
        worker.join()
        assert other and other[0][0][4][0] == "127.0.0.1"  # another thread: not guarded
    assert [r[0] for r in refusals.seen] == ["private_address"] * 4
    assert refusals.code == "private_address" and "127.0.0.1:8081" in refusals.describe()
    assert socket.getaddrinfo("127.0.0.1", 8081)  # after the block: not guarded


def test_process_wide_guard_covers_every_thread():
    caught: list = []

    def lookup():
        try:
            socket.getaddrinfo("127.0.0.1", 80)
        except Refused as exc:
            caught.append(exc.code)

    with guarded(Guard(False), process_wide=True) as refusals:
        worker = threading.Thread(target=lookup)
        worker.start()
        worker.join()
    assert caught == ["private_address"] and refusals


def test_policy_text_reads_back_as_the_same_policy():
    assert policy_text(True) == "1" and policy_text(False) == "0" and policy_text(None) == "0"
    assert policy_text(["127.0.0.1:80", "10.0.0.0/8"]) == "127.0.0.1:80,10.0.0.0/8"
