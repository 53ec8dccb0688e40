"""The measurement engine: one way to load a design and read what happened.

- :mod:`.schedule`: when requests are issued (open loop: constant, Poisson, stepped rates).
- :mod:`.openloop`: the Locust side: arrivals on the schedule, one deadline per request, the exact
  recorder (imported only inside Locust processes: Locust monkey-patches the interpreter).
- :mod:`.generator`: runs Locust and reads back its recordings.
- :mod:`.recording`, :mod:`.summary`: what happened, exactly (HdrHistograms, per-second counts), and
  what it says against an SLO; :mod:`.sweep`: the knee of a stepped run.
- :mod:`.cpu`: one CPU reader for every process family, the generator's steady state included.
- :mod:`.verdicts`: interleaved rounds, paired ratios, bootstrap intervals and the verdict they bear.
"""
