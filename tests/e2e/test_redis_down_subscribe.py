"""A subscribe while Redis cannot be reached is answered with an error naming Redis (the
history read failed), logged as one line: no "internal error" and no traceback."""

from __future__ import annotations

from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer
from tests.support.wsclient import NativeClient


async def test_a_subscribe_with_redis_down_is_told_why() -> None:
    redis = RedisServer()
    server = RunningServer(args=("--engine", redis.url))
    try:
        client = await NativeClient.open(server.ws_url)
        try:
            redis.stop()
            answer = await client.call("subscribe", channel="news")
            assert answer["error"]["code"] == 100
            assert "Redis" in answer["error"]["message"]
            assert "internal server error" not in answer["error"]["message"]
        finally:
            await client.close()
        assert "internal error" not in server.log
        assert "Traceback" not in server.log
    finally:
        server.stop()
        redis.close()
