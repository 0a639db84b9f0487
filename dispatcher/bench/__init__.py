"""The benchmark room: ``dispatcher bench`` (see README, "Performance").

``harness`` starts and talks to the processes (receiver, workers), ``registry`` holds the scenarios and
baselines in the order they run, ``baselines`` and ``scenarios`` fill it, ``run`` runs a selection,
``progress`` shows how far each step is, ``chart`` draws the figures as SVG. The command itself is in
``dispatcher/cli/bench.py``; it picks the Redis (given or embedded) and hands its URL here.
"""
