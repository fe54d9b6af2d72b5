"""progreid.profiling: parameters, Mul-Adds, inference memory and throughput (PLA Sec. 4.5).

Modules: ``counts`` (parameters, Mul-Adds), ``memory`` (peak inference memory), ``throughput``
(images per second), ``spec`` (what to profile), ``profiler`` (all of it, as a table) and
``figures`` (accuracy against Mul-Adds and memory, PLA Fig. 4 and 5).
"""
