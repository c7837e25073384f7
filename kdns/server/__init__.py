"""A running kdns process: plan (typed data), planner (Corefile -> plan), lifecycle (start, run,
stop), transport (UDP/TCP: moves bytes only), http (probes, metrics, webhook listeners).

May import every package below it; never kdns.cli (nothing but cli imports the server).
"""
