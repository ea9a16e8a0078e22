"""The media worker processes (pipelines/pool.py): answers and codes as in-process, deadlines kill, crashes end one."""

import asyncio
import os
import signal

import pytest

from crawler.errors import MediaError
from pipelines.media import phash, probe, sha256_file
from pipelines.pool import MediaPool


def run(coro):
    return asyncio.run(coro)


def test_workers_answer_as_the_functions_do_and_keep_the_codes_of_bad_media(media, tmp_path):
    text = tmp_path / "page.mp4"
    text.write_text("<html>not a video</html>")
    empty = tmp_path / "empty.mp4"
    empty.touch()

    async def main():
        pool = MediaPool(2)
        try:
            clip = str(media["bikes"])
            got = await asyncio.gather(pool.call(probe, clip, 30, None, timeout=60),
                                       pool.call(phash, clip, 30, timeout=60),
                                       pool.call(sha256_file, clip, timeout=60))  # fmt: skip
            codes = []
            for path in (text, empty):
                with pytest.raises(MediaError) as err:
                    await pool.call(probe, path, 30, None, timeout=60)
                codes.append(err.value.code)
            return got, codes, len(pool._all)
        finally:
            await pool.close()

    got, codes, workers = run(main())
    assert got == [probe(media["bikes"], 30, None), phash(media["bikes"], 30), sha256_file(media["bikes"])]
    assert codes == ["not_a_video", "empty_file"]
    assert workers == 2  # at most MEDIA_PROCESSES, started on demand


def test_a_call_past_its_deadline_is_a_timeout_and_its_worker_is_killed(media, tmp_path):
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)  # open() blocks until a writer comes: a worker that hangs for real

    async def main():
        pool = MediaPool(1)
        try:
            call = asyncio.ensure_future(pool.call(sha256_file, fifo, timeout=1.5))
            while not pool._all:
                await asyncio.sleep(0.05)
            hung = next(iter(pool._all)).proc
            with pytest.raises(MediaError) as err:
                await call
            exit_code = await asyncio.wait_for(hung.wait(), 5)
            after = await pool.call(sha256_file, media["gradio_a"], timeout=60)  # a fresh worker serves
            return err.value.code, pool.replaced, exit_code, after
        finally:
            await pool.close()

    code, replaced, exit_code, after = run(main())
    assert code == "timeout" and replaced == 1 and exit_code == -signal.SIGKILL
    assert after == sha256_file(media["gradio_a"])


def test_a_worker_that_dies_ends_its_item_as_worker_crashed_and_the_pool_goes_on(media, tmp_path):
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)

    async def kill_workers(pool, n):
        killed = set()
        while len(killed) < n:
            for worker in list(pool._all):
                if worker.proc.pid not in killed:
                    await asyncio.sleep(0.3)  # busy with the call
                    os.kill(worker.proc.pid, signal.SIGKILL)
                    killed.add(worker.proc.pid)
            await asyncio.sleep(0.05)

    async def main():
        pool = MediaPool(1)
        try:
            call = asyncio.ensure_future(pool.call(sha256_file, fifo, timeout=60))
            await asyncio.wait_for(kill_workers(pool, 2), 30)  # the call and its one retry
            with pytest.raises(MediaError) as err:
                await call
            after = await pool.call(probe, media["gradio_a"], 30, None, timeout=60)
            return err.value.code, after
        finally:
            await pool.close()

    code, after = run(main())
    assert code == "worker_crashed"
    assert after["width"] == probe(media["gradio_a"], 30, None)["width"]


def test_close_stops_every_worker_and_zero_processes_run_in_threads(media):
    async def main():
        pool = MediaPool(2)
        await asyncio.gather(*(pool.call(phash, media[n], 30, timeout=60) for n in ("bikes", "gradio_a")))
        procs = [w.proc for w in pool._all]
        await pool.close()
        threads = MediaPool(0)
        same = await threads.call(phash, media["bikes"], 30, timeout=60)
        return [p.returncode for p in procs], same, threads._all

    codes, same, none = run(main())
    assert len(codes) == 2 and all(code is not None for code in codes)  # exited, reaped
    assert same == phash(media["bikes"], 30) and not none
    with pytest.raises(ValueError):
        MediaPool(-1)


def test_prestarted_workers_serve_the_first_calls_and_stay_within_the_count(media):
    async def main():
        pool = MediaPool(2)
        pool.prestart()  # what the spider's opening does
        pool.prestart()  # once only
        for _ in range(200):  # both up and warm before any call (bounded wait)
            if len(pool._all) == 2 and all(t.done() for t in pool._starting):
                break
            await asyncio.sleep(0.05)
        started = {w.proc.pid for w in pool._all}
        names = ("bikes", "gradio_a", "bikes")
        got = await asyncio.gather(*(pool.call(phash, media[n], 30, timeout=60) for n in names))
        used = {w.proc.pid for w in pool._all}
        await pool.close()
        return started, used, got

    started, used, got = run(main())
    assert len(started) == 2 and used == started  # the calls ran on the prestarted workers, no third
    assert got == [phash(media["bikes"], 30), phash(media["gradio_a"], 30), phash(media["bikes"], 30)]


def test_prestart_without_a_running_loop_leaves_workers_to_start_on_demand():
    pool = MediaPool(2)
    pool.prestart()
    assert not pool._starting and not pool._all


def test_close_right_after_prestart_stops_the_workers_still_starting():
    async def main():
        pool = MediaPool(2)
        pool.prestart()
        starting = list(pool._starting)
        await pool.close()
        return [task.result().proc.returncode for task in starting]

    codes = run(main())
    assert len(codes) == 2 and all(code is not None for code in codes)  # exited, reaped
