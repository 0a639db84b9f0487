"""``RedisUsage``: Redis CPU and commands per delivery, read from a real Redis before and after work."""

from __future__ import annotations

import redis

from dispatcher.bench.redis_cost import RedisUsage, describe_cost


def test_usage_per_delivery_counts_the_work_done_in_between(raw_redis: redis.Redis, prefix: str) -> None:
    before = RedisUsage.read(raw_redis)
    for i in range(200):
        raw_redis.hset(f"{prefix}h", str(i), "x" * 100)
    cost = RedisUsage.read(raw_redis).per_delivery(before, 100)
    assert cost["redis_commands"] >= 2.0  # 200 HSETs (and the INFO calls) over 100 deliveries
    assert cost["redis_cpu_us"] >= 0 and cost["redis_top_us"]["hset"] > 0
    assert "commands per delivery" in describe_cost(cost)
