"""What a scenario cost Redis: its CPU time (main thread) and the commands it ran, per delivery, from
``INFO cpu``, ``INFO stats`` and ``INFO commandstats`` read before and after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

TOP_COMMANDS = 6  # the costliest commands shown per scenario


@dataclass(frozen=True)
class RedisUsage:
    """Counters read from one Redis at one moment."""

    cpu_s: float
    commands: int
    by_command: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (calls, µs)

    @classmethod
    def read(cls, client: redis.Redis) -> RedisUsage:
        cpu = client.info("cpu")
        main = ("used_cpu_user_main_thread", "used_cpu_sys_main_thread")
        names = main if all(k in cpu for k in main) else ("used_cpu_user", "used_cpu_sys")
        by_command = {
            name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in client.info("commandstats").items()
        }
        return cls(sum(float(cpu[k]) for k in names), int(client.info("stats")["total_commands_processed"]), by_command)

    def per_delivery(self, before: RedisUsage, deliveries: int) -> dict[str, Any]:
        """CPU µs and commands per delivery since ``before``, and the costliest commands (µs per delivery;
        commands run by Lua scripts are counted under their own names too)."""
        n = max(1, deliveries)
        spent = {
            name: (calls - before.by_command.get(name, (0, 0))[0], usec - before.by_command.get(name, (0, 0))[1])
            for name, (calls, usec) in self.by_command.items()
        }
        top = sorted(((name, usec / n) for name, (_, usec) in spent.items() if usec > 0), key=lambda t: -t[1])
        return {
            "redis_cpu_us": round((self.cpu_s - before.cpu_s) * 1e6 / n, 1),
            "redis_commands": round((self.commands - before.commands) / n, 1),
            "redis_top_us": {name: round(us, 1) for name, us in top[:TOP_COMMANDS]},
        }


def describe_cost(res: dict[str, Any]) -> str:
    top = ", ".join(f"{name} {us}" for name, us in res["redis_top_us"].items())
    return f"Redis {res['redis_cpu_us']} µs CPU and {res['redis_commands']} commands per delivery (µs: {top})"
