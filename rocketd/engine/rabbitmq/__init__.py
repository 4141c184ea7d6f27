"""
The RabbitMQ engine (experimental): a RestMS feed is an exchange, a pipe a
queue, a join a binding, on the broker named by an AMQP URI. See
C{docs/architecture.md} ("The RabbitMQ engine") for what works so far.

Only C{_amqp} imports the AMQP client (pika); C{_mapping} turns messages
into AMQP and back.
"""

from rocketd.engine.rabbitmq._engine import RabbitMQEngine

__all__ = ["RabbitMQEngine"]
