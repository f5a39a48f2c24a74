"""The broker below the services: the topology (exchanges, queues, priorities), the message
format, and the publisher the services call to wake a queue. The consumer process that reads
these queues sits at the top, in `apps.billing.rabbitmq`, and nothing here imports it."""
