"""Several Lua script calls in one round trip (redis-py's pipeline adds a ``SCRIPT EXISTS`` trip).

``pipelined(client, [(script, keys, args), ...])`` sends every call as ``EVALSHA`` in one
non-transactional pipeline and returns their results in order. A script the server does not
know yet (``NOSCRIPT``: it did not run) is loaded and run on its own afterwards; any other
error is raised after the others ran, as a single call would raise it.
"""

from __future__ import annotations

from redis.commands.core import Script
from redis.exceptions import NoScriptError


def pipelined(client, calls: list[tuple[Script, list, list]]) -> list:
    """Run ``script(keys=keys, args=args)`` for each call, in one round trip when they are loaded."""
    with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results = pipe.execute(raise_on_error=False)
    out = []
    for (script, keys, args), result in zip(calls, results):
        if isinstance(result, NoScriptError):
            result = script(keys=keys, args=args)  # loads it, then runs it
        out.append(result)
    for result in out:
        if isinstance(result, Exception):
            raise result
    return out
