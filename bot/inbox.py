"""Updates taken from a platform and not yet handled, kept in Redis until they are.

A long-polling adapter writes each batch here before it confirms the batch to the platform,
and removes an update once it has been handled; what a stop or a crash cut short is still
here on the next start, which handles it then. One round trip per batch: the removals that
piled up since the last write travel with it, in the same script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from bot import metrics

#: How long an update may wait here for a restart (everything in Redis expires).
INBOX_TTL = 24 * 3600
#: Removals per script call: ``unpack`` is bounded by Lua's stack.
_CHUNK = 1000

# KEYS[1] the inbox; ARGV[1] its TTL (ms), ARGV[2] how many ids to remove, then those ids,
# then update_id, JSON pairs to keep.
_WRITE = """
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 3, 2 + n)) end
if #ARGV > 2 + n then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3 + n, #ARGV))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"""


class UpdateInbox:
    """One bot's inbox: a hash of update id -> the update as the platform sent it (JSON)."""

    def __init__(self, redis: Redis, key: str, *, ttl: float = INBOX_TTL) -> None:
        self.redis = redis
        self.key = key
        self._ttl_ms = int(ttl * 1000)
        self._write = redis.register_script(_WRITE)

    async def write(self, keep: Mapping[int, str], *, remove: Sequence[int] = ()) -> None:
        """Keep ``keep`` (update id -> JSON) and forget ``remove``, in one round trip (more
        only past a thousand removals). Raises RedisError: then nothing may be confirmed."""
        remove = list(remove)
        while len(remove) > _CHUNK:
            await self._run(remove[:_CHUNK], {})
            remove = remove[_CHUNK:]
        await self._run(remove, keep)

    async def _run(self, remove: Sequence[int], keep: Mapping[int, str]) -> None:
        args: list[int | str] = [self._ttl_ms, len(remove), *remove]
        for update_id, raw in keep.items():
            args += [update_id, raw]
        if len(args) == 2:
            return
        with metrics.timed(metrics.REDIS_SECONDS, metrics.REDIS_ERRORS, "inbox"):
            await self._write(keys=[self.key], args=args)

    async def pending(self) -> dict[int, str]:
        """Every update kept and not removed, by id."""
        with metrics.timed(metrics.REDIS_SECONDS, metrics.REDIS_ERRORS, "inbox"):
            raw = await self.redis.hgetall(self.key)
        return {int(k): v.decode() if isinstance(v, bytes) else v for k, v in raw.items()}
