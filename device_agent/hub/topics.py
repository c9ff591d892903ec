"""The plain-MQTT topic scheme of ``docs/hub-protocol.md``: pure building and parsing.

    P/D/health                      device -> health report (telemetry)
    P/D/state/reported              device -> reported state (retained)
    P/D/state/desired               -> device desired state (retained)
    P/D/status                      device -> {"online": bool} (retained; last will)
    P/D/commands/<name>             -> device command request
    P/D/commands/<name>/response    device -> command response
    P/D/infer/<model>               -> device v2 inference request
    P/D/infer/<model>/response      device -> v2 inference response

``P`` is the prefix (one or more levels, default ``edgekit``), ``D`` the device id. Device ids,
command names and model names are single topic levels: no ``/``, ``+``, ``#`` or NUL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from device_agent.errors import HubError

_FORBIDDEN = frozenset("/+#\x00")


class Kind(Enum):
    HEALTH = "health"
    STATE_REPORTED = "state/reported"
    STATE_DESIRED = "state/desired"
    STATUS = "status"
    COMMAND = "commands"
    COMMAND_RESPONSE = "commands/response"
    INFER = "infer"
    INFER_RESPONSE = "infer/response"


@dataclass(frozen=True)
class Topic:
    """A parsed topic: which device, what kind, and the command or model name where there is one."""

    device_id: str
    kind: Kind
    name: str | None = None


def check_level(what: str, value: str) -> str:
    """``value`` must fit in one topic level; raises :class:`HubError` naming ``what`` otherwise."""
    if not value or any(c in _FORBIDDEN for c in value):
        raise HubError(f"{what} {value!r} cannot be used in an MQTT topic (empty, or has '/', '+', '#')")
    return value


@dataclass(frozen=True)
class TopicScheme:
    prefix: str
    device_id: str

    def __post_init__(self) -> None:
        if not self.prefix or any(not level or level in ("+", "#") for level in self.prefix.split("/")):
            raise HubError(f"topic prefix {self.prefix!r} must be non-empty levels without wildcards")
        check_level("device id", self.device_id)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    def build(self, topic: Topic) -> str:
        if topic.device_id != self.device_id:
            return TopicScheme(self.prefix, topic.device_id).build(topic)
        if topic.kind in (Kind.COMMAND, Kind.INFER, Kind.COMMAND_RESPONSE, Kind.INFER_RESPONSE):
            if topic.name is None:
                raise HubError(f"a {topic.kind.value} topic needs a name")
            name = check_level("name", topic.name)
            head = "commands" if topic.kind in (Kind.COMMAND, Kind.COMMAND_RESPONSE) else "infer"
            tail = "/response" if topic.kind in (Kind.COMMAND_RESPONSE, Kind.INFER_RESPONSE) else ""
            return f"{self.base}/{head}/{name}{tail}"
        return f"{self.base}/{topic.kind.value}"

    # Shorthands for the topics this device publishes or subscribes to.
    @property
    def health(self) -> str:
        return self.build(Topic(self.device_id, Kind.HEALTH))

    @property
    def state_reported(self) -> str:
        return self.build(Topic(self.device_id, Kind.STATE_REPORTED))

    @property
    def state_desired(self) -> str:
        return self.build(Topic(self.device_id, Kind.STATE_DESIRED))

    @property
    def status(self) -> str:
        return self.build(Topic(self.device_id, Kind.STATUS))

    def command_response(self, name: str) -> str:
        return self.build(Topic(self.device_id, Kind.COMMAND_RESPONSE, name))

    def infer_response(self, model: str) -> str:
        return self.build(Topic(self.device_id, Kind.INFER_RESPONSE, model))

    def subscriptions(self) -> list[str]:
        """What the device subscribes to: its desired state, commands and inference requests."""
        return [self.state_desired, f"{self.base}/commands/+", f"{self.base}/infer/+"]


def fleet_filter(prefix: str, kind: Kind) -> str:
    """A subscription for ``kind`` from every device (``P/+/health``), as a monitor uses."""
    return f"{prefix}/+/{kind.value}"


def parse(prefix: str, topic: str) -> Topic | None:
    """The inverse of :meth:`TopicScheme.build`; ``None`` for a topic outside the scheme."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    levels = topic[len(head) :].split("/")
    if len(levels) < 2 or not levels[0] or any(c in _FORBIDDEN for c in levels[0]):
        return None
    device, rest = levels[0], levels[1:]
    match rest:
        case ["health"]:
            return Topic(device, Kind.HEALTH)
        case ["status"]:
            return Topic(device, Kind.STATUS)
        case ["state", "reported"]:
            return Topic(device, Kind.STATE_REPORTED)
        case ["state", "desired"]:
            return Topic(device, Kind.STATE_DESIRED)
        case ["commands", name] if name and "+" not in name and "#" not in name:
            return Topic(device, Kind.COMMAND, name)
        case ["commands", name, "response"] if name and "+" not in name and "#" not in name:
            return Topic(device, Kind.COMMAND_RESPONSE, name)
        case ["infer", name] if name and "+" not in name and "#" not in name:
            return Topic(device, Kind.INFER, name)
        case ["infer", name, "response"] if name and "+" not in name and "#" not in name:
            return Topic(device, Kind.INFER_RESPONSE, name)
    return None
