"""What :class:`clerk._agent.Agent` provides to the mixins it is made of
(:class:`clerk._agentfeed.AgentFeed`, :class:`clerk._agentreplies.AgentReplies`): declared
once, for the type checker only (nothing at run time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections import Counter

    from clerk._batch import Coalescer
    from clerk._clock import Clock
    from clerk._config import NodeConfig
    from clerk._core import NodeCore
    from clerk._messages import Peer
    from clerk._quorumshell import QuorumShell
    from clerk._runner import TaskRunner
    from clerk._transport import Inbound, Transport

__all__ = ["AgentAttrs"]


class AgentAttrs:
    """The agent's attributes its mixins share (each mixin declares the ones only it uses)."""

    if TYPE_CHECKING:
        me: Peer
        core: NodeCore
        config: NodeConfig
        clock: Clock
        transport: Transport
        outgoing: Coalescer
        tasks: TaskRunner
        quorum: QuorumShell
        bad_frames: Counter[str]
        _inbound: Inbound | None
