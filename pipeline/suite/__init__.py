"""`qa suite`: every optimizer under one equal tuning budget on several workloads.

``workloads`` (the registry of problems), ``protocol`` (tuning on validation data, fresh
final seeds, bootstrap CIs: the one implementation `qa tune` runs too), ``profiles``
(performance profiles and their score, ranks), ``figures`` and ``report``.
"""
