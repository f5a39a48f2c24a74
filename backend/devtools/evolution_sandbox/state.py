"""The sandbox's memory: instances and their fault switches, accepted messages, received
requests and webhook deliveries. One re-entrant lock guards all of it, because the HTTP server
handles every request on its own thread. Lists are bounded so a long local run cannot grow
without limit."""

from __future__ import annotations

import hmac
import itertools
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from . import contract

MAX_RECORDS = 20_000
# Neutral states; each provider reports them in its own words (WAHA: waha_contract.SESSION_STATUS).
# "qr": waiting for the QR code to be scanned (pairing).
STATES = ("open", "close", "connecting", "refused", "qr")
API_VERSIONS = ("v2", "v1")
PROVIDERS = ("evolution", "waha")
DEFAULT_ACK_DELAYS = {"SERVER_ACK": 0.5, "DELIVERY_ACK": 1.5, "READ": 3.0}
DEFAULT_OWNER_NUMBER = "5511900000000"


class OptionError(ValueError):
    """A control request asked for an option or value the sandbox does not have."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: Any, name: str, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(f"{name} must be a number")
    if value < minimum or (maximum is not None and value > maximum):
        raise OptionError(f"{name} must be between {minimum} and {maximum if maximum is not None else 'infinity'}")
    return float(value)


def _integer(value: Any, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name} must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        raise OptionError(f"{name} must be between {minimum} and {maximum if maximum is not None else 'infinity'}")
    return value


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"{name} must be true or false")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise OptionError(f"{name} must be a non-empty string")
    return value


def _choice(choices: tuple[str, ...]):
    def check(value: Any, name: str) -> str:
        if value not in choices:
            raise OptionError(f"{name} must be one of {', '.join(choices)}")
        return value

    return check


def _ack_delays(value: Any, name: str) -> dict[str, float | None]:
    if not isinstance(value, dict) or set(value) - set(contract.ACK_STATUSES):
        raise OptionError(f"{name} must be an object with keys among {', '.join(contract.ACK_STATUSES)}")
    delays: dict[str, float | None] = dict(DEFAULT_ACK_DELAYS)
    for status, delay in value.items():
        delays[status] = None if delay is None else _number(delay, f"{name}.{status}")
    return delays


def _anything(value: Any, name: str) -> Any:
    return value


def _optional_int(value: Any, name: str) -> int | None:
    return None if value is None else _integer(value, name, minimum=-(2**62))


# Every option an instance has, with its validator. Documented in docs/providers.md.
INSTANCE_OPTIONS = {
    "token": _text,
    "state": _choice(STATES),
    "loaded": _boolean,
    "api_version": _choice(API_VERSIONS),
    "provider": _choice(PROVIDERS),
    "owner_number": _text,
    "profile_name": _text,
    "latency_ms": lambda v, n: _number(v, n, maximum=600_000),
    "failure_rate": lambda v, n: _number(v, n, maximum=1.0),
    "failure_status": lambda v, n: _integer(v, n, minimum=400, maximum=599),
    "failure_message": _anything,
    "fail_next": _integer,
    "rate_limited": _boolean,
    "rate_limit_next": _integer,
    "retry_after": lambda v, n: _number(v, n, maximum=86_400),
    "hang": _boolean,
    "hang_next": _integer,
    "hang_seconds": lambda v, n: _number(v, n, maximum=3600),
    "drip": _boolean,
    "drip_next": _integer,
    "drip_interval": lambda v, n: _number(v, n, minimum=0.001, maximum=60),
    "ambiguous_next": _integer,
    "ack_error_next": _integer,
    "ack_delays": _ack_delays,
    "seed": _optional_int,
}

CONFIG_OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "expose_apikey": _boolean,
    "server_url": _text,
    "version": _text,
    "webhook_timeout": lambda v, n: _number(v, n, maximum=600),
    "webhook_retry_attempts": lambda v, n: _integer(v, n, minimum=1, maximum=50),
    "webhook_retry_base": lambda v, n: _number(v, n, maximum=3600),
    "webhook_retry_max": lambda v, n: _number(v, n, maximum=3600),
}


@dataclass
class SandboxInstance:
    name: str
    token: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = "open"
    loaded: bool = True
    api_version: str = "v2"
    provider: str = "evolution"
    owner_number: str = DEFAULT_OWNER_NUMBER
    profile_name: str = "Evolution Sandbox"
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    failure_status: int = 500
    failure_message: Any = None
    fail_next: int = 0
    rate_limited: bool = False
    rate_limit_next: int = 0
    retry_after: float = 30.0
    hang: bool = False
    hang_next: int = 0
    hang_seconds: float = 30.0
    drip: bool = False
    drip_next: int = 0
    drip_interval: float = 2.0
    ambiguous_next: int = 0
    ack_error_next: int = 0  # the next N accepted messages get an ERROR receipt (WhatsApp refused them)
    ack_delays: dict[str, float | None] = field(default_factory=lambda: dict(DEFAULT_ACK_DELAYS))
    seed: int | None = None
    webhook: dict[str, Any] | None = None  # Evolution's webhook row
    session_config: dict[str, Any] = field(default_factory=dict)  # WAHA's session config (webhooks...)
    qr_code: str = ""  # the pairing code the current QR carries (state "qr")
    qr_count: int = 0
    paired: bool = True  # logged in to WhatsApp (a stopped session comes back WORKING); a logout clears it
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("rng")
        return data


@dataclass
class SandboxConfig:
    api_key: str = "sandbox-global-key"
    server_url: str = ""
    version: str = contract.V2_VERSION
    not_on_whatsapp: set[str] = field(default_factory=set)
    expose_apikey: bool = False
    webhook_timeout: float = 10.0
    webhook_retry_attempts: int = 10
    webhook_retry_base: float = 5.0
    webhook_retry_max: float = 300.0

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("api_key")  # the control API never echoes the global key
        data["not_on_whatsapp"] = sorted(self.not_on_whatsapp)
        return data


@dataclass(frozen=True)
class PreSendFaults:
    """Decided before the body is validated: what a proxy or a broken server would do."""

    latency: float
    retry_after: float | None  # set: answer 429
    failure: tuple[int, Any] | None  # set: answer this status and message


@dataclass(frozen=True)
class PostSendFaults:
    """Decided once the message is accepted (it goes out either way)."""

    ambiguous: bool  # answer 400 although the message was sent (issue #1247)
    hang: float  # seconds to hold the answer back
    drip: float  # > 0: write the answer one byte every `drip` seconds


def _default_failure_message(status: int) -> Any:
    if status == 500:
        return "Connection Closed"
    return [contract.STATUS_TEXT.get(status, "Error")]


class SandboxState:
    def __init__(self, config: SandboxConfig, initial_instances: list[tuple[str, str | None]] | None = None) -> None:
        self.lock = threading.RLock()
        self._initial_config = replace(config, not_on_whatsapp=set(config.not_on_whatsapp))
        self._initial_instances = list(initial_instances or [])
        self.config = config
        self.instances: dict[str, SandboxInstance] = {}
        self.messages: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.webhooks: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self._message_ids: set[str] = set()
        self._seq = itertools.count(1)
        for name, token in self._initial_instances:
            self.create_instance(name, token)

    # ------------------------------------------------------------------ lifecycle
    def keep_as_baseline(self) -> None:
        """Make the current configuration the one `reset()` returns to (after startup)."""
        with self.lock:
            self._initial_config = replace(self.config, not_on_whatsapp=set(self.config.not_on_whatsapp))

    def reset(self) -> None:
        """Back to the startup state: startup instances only, no records, startup config."""
        with self.lock:
            self.config = replace(self._initial_config, not_on_whatsapp=set(self._initial_config.not_on_whatsapp))
            self.instances.clear()
            self.clear()
            for name, token in self._initial_instances:
                self.create_instance(name, token)

    def clear(self, instance: str | None = None, kinds: tuple[str, ...] = ("messages", "requests", "webhooks")) -> None:
        """Forget messages, requests and/or webhook deliveries (of one instance, or all)."""
        with self.lock:
            for kind in kinds:
                records = getattr(self, kind)
                kept = [record for record in records if instance is not None and record.get("instance") != instance]
                records.clear()
                records.extend(kept)

    # ------------------------------------------------------------------ configuration
    def update_config(self, options: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            for name, value in options.items():
                if name not in CONFIG_OPTIONS and name != "not_on_whatsapp":
                    raise OptionError(f"unknown config option {name!r}")
                if name == "not_on_whatsapp":  # a list of numbers, handled apart
                    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                        raise OptionError("not_on_whatsapp must be a list of phone numbers (strings)")
                    continue
                CONFIG_OPTIONS[name](value, name)
            for name, value in options.items():
                if name == "not_on_whatsapp":
                    self.config.not_on_whatsapp = {contract.number_digits(item) for item in value}
                else:
                    setattr(self.config, name, CONFIG_OPTIONS[name](value, name))
            return self.config.public()

    def is_on_whatsapp(self, number: str) -> bool:
        with self.lock:
            return contract.number_digits(number) not in self.config.not_on_whatsapp

    # ------------------------------------------------------------------ instances
    def create_instance(self, name: str, token: str | None = None, **options: Any) -> SandboxInstance:
        """Create (or replace) an instance; a missing token becomes an uppercase UUID, as in
        `POST /instance/create`."""
        if not isinstance(name, str) or not name or "/" in name or len(name) > 100:
            raise OptionError("name must be a non-empty string without '/' (at most 100 characters)")
        instance = SandboxInstance(name=name, token=token or str(uuid.uuid4()).upper())
        self._apply(instance, options)
        instance.paired = instance.state == "open"  # created elsewhere in any other state: not logged in yet
        if instance.state == "qr":
            instance.qr_code, instance.qr_count = contract.new_pairing_code(), 1
        with self.lock:
            self.instances[name] = instance
        return instance

    def configure_instance(self, name: str, options: dict[str, Any]) -> tuple[SandboxInstance, str] | None:
        """Change options; returns (a copy of the instance, its previous state) or None."""
        with self.lock:
            instance = self.instances.get(name)
            if instance is None:
                return None
            previous_state = instance.state
            self._apply(instance, options)
            instance.updated_at = now_iso()
            return replace(instance), previous_state

    def delete_instance(self, name: str) -> bool:
        with self.lock:
            return self.instances.pop(name, None) is not None

    def get_instance(self, name: str) -> SandboxInstance | None:
        """A copy, safe to read without the lock."""
        with self.lock:
            instance = self.instances.get(name)
            return replace(instance) if instance is not None else None

    def key_kind(self, key: str | None, instance: SandboxInstance | None) -> str:
        """Whose key a request carries: "global" (the server's), "instance" (its token),
        "invalid" or "missing". Compared in constant time."""
        if key is None:
            return "missing"
        if hmac.compare_digest(key.encode(), self.config.api_key.encode()):
            return "global"
        if instance is not None and hmac.compare_digest(key.encode(), instance.token.encode()):
            return "instance"
        return "invalid"

    def find_by_token(self, token: str) -> list[SandboxInstance]:
        with self.lock:
            return [replace(instance) for instance in self.instances.values() if instance.token == token]

    def list_instances(self) -> list[SandboxInstance]:
        with self.lock:
            return [replace(instance) for instance in self.instances.values()]

    def set_webhook(self, name: str, webhook: dict[str, Any]) -> SandboxInstance | None:
        with self.lock:
            instance = self.instances.get(name)
            if instance is None:
                return None
            previous = instance.webhook or {}
            webhook["id"] = previous.get("id") or str(uuid.uuid4())
            webhook["created_at"] = previous.get("created_at") or now_iso()
            webhook["updated_at"] = now_iso()
            instance.webhook = webhook
            return replace(instance)

    def set_session_config(self, name: str, config: dict[str, Any]) -> SandboxInstance | None:
        with self.lock:
            instance = self.instances.get(name)
            if instance is None:
                return None
            instance.session_config = config
            instance.updated_at = now_iso()
            return replace(instance)

    def set_state(self, name: str, state: str, *, logged_out: bool = False) -> tuple[SandboxInstance, str] | None:
        """Move to `state` (a new QR when it is "qr"; `logged_out`: the WhatsApp session ended);
        (a copy, the previous state) or None."""
        if state not in STATES:
            raise OptionError(f"state must be one of {', '.join(STATES)}")
        with self.lock:
            instance = self.instances.get(name)
            if instance is None:
                return None
            previous = instance.state
            if state == "qr" and (previous != "qr" or not instance.qr_code):
                instance.qr_code = contract.new_pairing_code()
                instance.qr_count += 1
            instance.state = state
            if state == "open":
                instance.paired = True
            elif logged_out or state == "qr":
                instance.paired = False
            instance.updated_at = now_iso()
            return replace(instance), previous

    def take_ack_error(self, name: str) -> bool:
        with self.lock:
            instance = self.instances.get(name)
            if instance is None or instance.ack_error_next <= 0:
                return False
            instance.ack_error_next -= 1
            return True

    def _apply(self, instance: SandboxInstance, options: dict[str, Any]) -> None:
        validated = {}
        for name, value in options.items():
            if name not in INSTANCE_OPTIONS:
                raise OptionError(f"unknown instance option {name!r}")
            validated[name] = INSTANCE_OPTIONS[name](value, name)
        with self.lock:
            for name, value in validated.items():
                setattr(instance, name, value)
            if "seed" in validated:
                instance.rng = random.Random(validated["seed"])

    # ------------------------------------------------------------------ faults
    def take_pre_send_faults(self, name: str) -> PreSendFaults:
        """Consume the one-shot counters that apply before validation (429 first, then failures)."""
        with self.lock:
            instance = self.instances.get(name)
            if instance is None:  # deleted while this request was on its way
                return PreSendFaults(0.0, None, None)
            latency = instance.latency_ms / 1000
            if instance.rate_limited or instance.rate_limit_next > 0:
                instance.rate_limit_next = max(0, instance.rate_limit_next - 1)
                return PreSendFaults(latency, instance.retry_after, None)
            failing = instance.fail_next > 0 or (
                instance.failure_rate > 0 and instance.rng.random() < instance.failure_rate
            )
            if failing:
                instance.fail_next = max(0, instance.fail_next - 1)
                status = instance.failure_status
                message = (
                    instance.failure_message
                    if instance.failure_message is not None
                    else _default_failure_message(status)
                )
                return PreSendFaults(latency, None, (status, message))
            return PreSendFaults(latency, None, None)

    def take_post_send_faults(self, name: str) -> PostSendFaults:
        with self.lock:
            instance = self.instances.get(name)
            if instance is None:  # deleted meanwhile
                return PostSendFaults(False, 0.0, 0.0)
            ambiguous = instance.ambiguous_next > 0
            instance.ambiguous_next = max(0, instance.ambiguous_next - 1)
            return PostSendFaults(ambiguous, self._take_hang(instance), self._take_drip(instance))

    def take_read_faults(self, name: str) -> tuple[float, float, float]:
        """(latency, hang, drip interval) for read routes such as connectionState."""
        with self.lock:
            instance = self.instances.get(name)
            if instance is None:
                return 0.0, 0.0, 0.0
            return instance.latency_ms / 1000, self._take_hang(instance), self._take_drip(instance)

    @staticmethod
    def _take_drip(instance: SandboxInstance) -> float:
        if instance.drip or instance.drip_next > 0:
            instance.drip_next = max(0, instance.drip_next - 1)
            return instance.drip_interval
        return 0.0

    @staticmethod
    def _take_hang(instance: SandboxInstance) -> float:
        if instance.hang or instance.hang_next > 0:
            instance.hang_next = max(0, instance.hang_next - 1)
            return instance.hang_seconds
        return 0.0

    # ------------------------------------------------------------------ messages
    def record_message(self, instance: SandboxInstance, *, number: str, jid: str, text: str) -> dict[str, Any]:
        with self.lock:
            v1 = instance.api_version == "v1"
            message_id = contract.new_message_id(v1)
            while message_id in self._message_ids:
                message_id = contract.new_message_id(v1)
            self._message_ids.add(message_id)
            created = datetime.now(UTC)
            record = {
                "seq": next(self._seq),
                "id": message_id,
                "instance": instance.name,
                "number": contract.number_digits(number),
                "remote_jid": jid,
                "text": text,
                "status": "PENDING",
                "timestamp": int(created.timestamp()),
                "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "api_version": instance.api_version,
                "provider": instance.provider,
                "db_id": str(uuid.uuid4()),
            }
            self.messages.append(record)
            return dict(record)

    def set_message_status(self, message_id: str, status: str) -> dict[str, Any] | None:
        with self.lock:
            for record in self.messages:
                if record["id"] == message_id:
                    record["status"] = status
                    return dict(record)
            return None

    def find_messages(
        self, instance: str, *, remote_jid: str | None, message_id: str | None, since: int | None, until: int | None
    ) -> list[dict[str, Any]]:
        """Records of `instance` matching a findMessages filter, newest first."""
        with self.lock:
            found = [
                dict(record)
                for record in self.messages
                if record["instance"] == instance
                and (remote_jid is None or record["remote_jid"] == remote_jid)
                and (message_id is None or record["id"] == message_id)
                and (since is None or until is None or since <= record["timestamp"] <= until)
            ]
        return sorted(found, key=lambda record: (record["timestamp"], record["seq"]), reverse=True)

    def list_messages(self, instance: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        digits = contract.number_digits(number) if number else None
        with self.lock:
            return [
                dict(record)
                for record in self.messages
                if (instance is None or record["instance"] == instance)
                and (digits is None or record["number"] == digits)
            ]

    # ------------------------------------------------------------------ request log
    def log_request(
        self, *, method: str, path: str, instance: str | None, body: Any, auth: str, user_agent: str, peer: str = ""
    ) -> dict[str, Any]:
        with self.lock:
            entry = {
                "seq": next(self._seq),
                "method": method,
                "path": path,
                "instance": instance,
                "auth": auth,
                "user_agent": user_agent,
                "peer": peer,
                "body": body,
                "status": None,  # set when the answer is written (None while hanging)
                "at": now_iso(),
            }
            self.requests.append(entry)
            return entry

    def finish_request(self, entry: dict[str, Any], status: int) -> None:
        with self.lock:
            entry["status"] = status

    def list_requests(
        self, instance: str | None = None, path_contains: str | None = None, method: str | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(entry)
                for entry in self.requests
                if (instance is None or entry["instance"] == instance)
                and (path_contains is None or path_contains in entry["path"])
                and (method is None or entry["method"] == method.upper())
            ]

    # ------------------------------------------------------------------ webhook log
    def log_webhook(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry["seq"] = next(self._seq)
            self.webhooks.append(entry)
            return entry

    def update_webhook(self, entry: dict[str, Any], **changes: Any) -> None:
        with self.lock:
            entry.update(changes)

    def list_webhooks(self, instance: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(entry)
                for entry in self.webhooks
                if (instance is None or entry["instance"] == instance) and (event is None or entry["event"] == event)
            ]
