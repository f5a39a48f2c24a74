"""Crash-safety tests: real processes killed, frozen and stopped by PID; brokers restarted (issue #7)."""
