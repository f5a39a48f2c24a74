"""Development tools: neither production code nor tests.

The provider sandbox (a Django app only the local run and the tests install), the driver that
starts it as a process, and a private RabbitMQ node. Tests and benchmarks share them; no module
under `apps/` imports them."""
