"""Stress suites: scenarios as data (tests/stress/<suite>/*.yaml), the programs the icache
scenarios generate with jit_core, and ``jitprobe run``, which runs them in sanitized guests and
checks every cell of the detection matrix (architecture, CPU model, scenario, mutation) against
the verdict the architectures' rules give."""

__all__: list[str] = []
