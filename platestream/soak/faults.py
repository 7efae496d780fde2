"""The soak's fault schedule: which part fails how, and when, drawn from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

# kind -> what it does to its target
KINDS = {
    "kill-worker": "SIGKILL a worker, start it again",
    "pause-worker": "SIGSTOP a worker past its session timeout (its partitions move), then SIGCONT",
    "kill-aggregator": "SIGKILL the aggregator, start it again",
    "kill-store": "SIGKILL a store writer (SQLite or PostgreSQL), start it again",
    "kill-webhooks": "SIGKILL the webhook sender, start it again",
    "kill-producer": "SIGKILL a producer (the S3 backfill or the file sender), start it again (it resumes from "
    "its checkpoint)",
    "kill-broker": "SIGKILL a broker that is not the controller, start it again",
    "kill-controller": "SIGKILL the active controller, start it again",
    "slow-s3": "delay every request to the S3 server by seconds, for a while",
    "down-s3": "cut the S3 server off (connections refused and cut), for a while",
    "slow-webhook": "the webhook target answers seconds late, for a while",
    "down-webhook": "the webhook target answers 503, for a while",
}


@dataclass(frozen=True)
class Fault:
    at_s: float  # from the start of traffic
    kind: str
    target: str  # e.g. worker-2; brokers are picked when the fault lands


def schedule(
    duration_s: float,
    *,
    seed: int,
    workers: int,
    kinds: list[str] | None = None,
    stores: tuple[str, ...] = ("store",),
    producers: tuple[str, ...] = ("producer",),
) -> list[Fault]:
    """Each kind once per round, in a seeded order, spread evenly over the first 70% of
    `duration_s` (the rest lets the pipeline drain); as many rounds as fit one fault per 12 s.
    Targets: a worker-N, one of `stores` or `producers`, else the part the kind names."""
    rng = random.Random(seed)
    chosen = list(kinds or KINDS)
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(KINDS)}")
    window = duration_s * 0.7
    rounds = max(1, int(window // (12 * len(chosen))))
    order = [kind for _ in range(rounds) for kind in rng.sample(chosen, len(chosen))]
    gap = window / (len(order) + 1)
    faults = []
    for n, kind in enumerate(order, start=1):
        if kind.endswith("worker"):
            target = f"worker-{rng.randint(1, workers)}"
        elif kind == "kill-store":
            target = rng.choice(stores)
        elif kind == "kill-producer":
            target = rng.choice(producers)
        else:
            target = kind.split("-", 1)[1]
        faults.append(Fault(round(gap * n, 1), kind, target))
    return faults
