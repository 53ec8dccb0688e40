"""The measurement engine: one way to load a design and read what happened.

- :mod:`.schedule`: when requests are issued (open loop: constant, Poisson, stepped rates).
- :mod:`.recording`: what happened to each of them, recorded exactly (HdrHistograms, per-second counts).
- :mod:`.openloop`: the Locust side (imported only inside Locust processes: Locust monkey-patches).
"""
